//! IMAP4rev1/IMAP4rev2 proxy (RFC 3501 / RFC 9051): framing ([`codec`]), command assembly
//! ([`assembler`]) and grammar ([`grammar`]), the pre-login phase the proxy answers itself
//! ([`prelogin`]), capability allow-listing ([`capability`]), FETCH interception for scanning,
//! and the session that drives them ([`session`]).

mod append;
mod assembler;
mod capability;
mod client;
pub mod codec;
pub mod command;
mod decide;
mod fetch;
pub mod fetch_response;
pub mod grammar;
mod login;
mod prelogin;
mod responses;
mod scanning;
mod section;
pub(crate) mod session;
