//! POP3 relay (RFC 1939, RFC 2449, RFC 2595 §4, RFC 3206, RFC 5034): parse, then forward.
//!
//! [`codec`] frames both directions without I/O, [`multiline`] keeps multi-line responses and
//! does dot-stuffing, [`grammar`] parses every client command into a typed value whose canonical
//! form is all a backend ever receives, [`prelogin`] answers the AUTHORIZATION state itself (no
//! client byte reaches the backend before login), [`capa`] rewrites capabilities through an
//! allow-list, [`transaction`] decides the TRANSACTION state after login (sans I/O) and [`views`] keeps
//! `LIST`/`STAT`/`UIDL` consistent with what `RETR` serves, [`command`] provides the backend [`command::Pop3Dialect`] and [`session`] drives
//! one client connection.

mod capa;
pub mod codec;
pub(crate) mod command;
pub mod grammar;
mod login;
mod multiline;
mod prelogin;
mod scanning;
pub(crate) mod session;
pub(crate) mod transaction;
mod views;
