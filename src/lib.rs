//! portcullis: a TLS-terminating, mail-scanning proxy for legacy IMAP and POP3 servers.
//!
//! Layers, bottom up: [`config`] (what the admin wrote), [`tls`] and [`net`] (streams and TLS for
//! both sides), [`backend`] (connect to the legacy server), [`session`] (what both protocol
//! sessions share), the protocol relays [`imap`] and [`pop3`], and [`server`] (listeners, accept
//! loop, shutdown).

pub mod accept;
pub mod backend;
pub mod certinfo;
pub mod check;
pub mod config;
pub mod framing;
pub mod health;
pub mod imap;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod pop3;
pub mod proxy_protocol;
pub mod reload;
pub mod sasl;
pub mod scan;
pub mod server;
pub mod session;
pub mod tls;
