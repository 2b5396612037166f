//! POP3 relay (RFC 1939, RFC 2449, RFC 2595 §4, RFC 5034).
//!
//! [`codec`] frames both directions without I/O, [`multiline`] keeps multi-line responses and
//! does dot-stuffing, [`command`] classifies client commands and
//! provides the backend [`command::Pop3Dialect`], [`capa`] rewrites CAPA responses and
//! [`session`] runs one client connection.

pub mod capa;
pub mod codec;
pub mod command;
pub mod multiline;
pub mod session;
