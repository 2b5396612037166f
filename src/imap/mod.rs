//! IMAP4rev1/IMAP4rev2 proxy (RFC 3501 / RFC 9051): framing ([`codec`]), command assembly
//! ([`assembler`]) and grammar ([`grammar`]), the pre-login phase the proxy answers itself
//! ([`prelogin`]), capability allow-listing ([`capability`]), FETCH interception for scanning,
//! the logged-in session core ([`relay`]) and the async shell that drives them ([`session`]).

mod assembler;
mod capability;
pub mod codec;
pub mod command;
mod decide;
mod fetch;
mod fetch_match;
pub mod fetch_response;
pub mod grammar;
mod login;
mod prelogin;
mod relay;
mod relay_backend;
mod relay_client;
mod relay_fetch;
mod relay_memory;
mod relay_own;
mod section;
pub mod segments;
pub(crate) mod session;
mod session_relay;
