//! POP3 relay (RFC 1939, RFC 2449, RFC 2595 §4).

pub mod session;
