//! IMAP4rev1/IMAP4rev2 relay (RFC 3501 / RFC 9051): framing, capability rewriting, FETCH
//! interception for scanning, and the session state machine.

pub mod append;
pub mod capability;
mod client;
pub mod codec;
pub mod command;
pub mod fetch;
pub mod fetch_response;
pub mod grammar;
mod responses;
pub mod scanning;
pub mod section;
pub mod session;
