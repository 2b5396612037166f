//! portcullis: a TLS-terminating, mail-scanning proxy for legacy IMAP and POP3 servers.
//!
//! Layers, bottom up: [`config`] (what the admin wrote), [`tls`] and [`net`] (streams and TLS for
//! both sides), [`backend`] (connect to the legacy server), [`budget`] (the memory budget all
//! sessions reserve from), [`context`] (what a connection gets
//! from its listener, client TLS handshakes), [`session`] (what both protocol sessions share),
//! the protocol sessions [`imap`] and [`pop3`], [`accept`] (per-connection setup) and [`server`]
//! (listeners, accept loop, shutdown). Dependencies point down only.

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unused_qualifications)]

mod accept;
pub mod backend;
pub mod budget;
pub mod capacity;
mod certinfo;
pub mod check;
pub mod cluster;
pub mod config;
pub mod config_print;
mod context;
mod driver;
pub mod error_text;
mod framing;
pub mod health;
pub mod imap;
mod limits;
pub mod logging;
pub mod login_log;
pub mod metrics;
mod net;
pub mod pop3;
pub mod proxy_protocol;
mod read_buffer;
pub mod reload;
pub mod routing;
mod sasl;
pub mod scan;
pub mod server;
mod session;
mod tls;
