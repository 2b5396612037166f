//! Integration-test harness: real Dovecot and real clamd instances per test, a test CA, a message
//! corpus and tiny blocking protocol clients.
//!
//! Use it from a `tests/*.rs` file with `mod support;`. Every daemon lives in its own temporary
//! directory, listens on ephemeral loopback ports only (never the system instances on
//! 110/143/993/995/3310) and is killed when its handle is dropped.
//!
//! Requirements (see `scripts/install-test-deps.sh`): the tests run as root, the packages
//! `dovecot-imapd dovecot-pop3d clamav-daemon clamav-testfiles` are installed.
#![allow(dead_code)]

pub mod cert_params;
pub mod certs;
pub mod clamd;
pub mod cluster;
pub mod corpus;
pub mod dovecot;
pub mod dovecot_config;
pub mod fake;
pub mod logs;
pub mod mime;
pub mod ops;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod rawlog;
pub mod readiness;
pub mod redis;
pub mod routing;
pub mod scanning;

#[allow(unused_imports)]
pub use ports::{free_port, free_ports, wait_for_port};
