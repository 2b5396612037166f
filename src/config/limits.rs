//! `[limits]`: hard bounds on what a peer can make portcullis buffer or do, including the
//! connection caps and the auth-failure penalty enforced in [`crate::limits`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, humantime_duration, ConfigError};
use crate::scan::config::ByteSize;

/// `[limits]`: hard bounds on what a peer can make portcullis buffer or do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest command or response line, in octets (without literals).
    pub max_line: usize,
    /// Largest literal a client may send (APPEND etc.); larger synchronizing literals get `NO [TOOBIG]`.
    pub max_client_literal: u64,
    /// Largest literal a backend may send (message bodies).
    pub max_backend_literal: u64,
    /// Deepest parenthesis nesting accepted in one command/response.
    pub max_nesting: usize,
    /// Longest a connection may stay unauthenticated.
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub prelogin_timeout: Duration,
    /// Longest an authenticated connection may stay silent (IMAP IDLE needs ≥ 30 min, RFC 9051).
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub idle_timeout: Duration,
    /// POP3 pipeline depth (commands awaiting responses).
    pub max_pipeline: usize,
    /// Slack over the 255-octet POP3 command limit of RFC 2449.
    pub pop3_command_margin: usize,
    /// Client connections open at once, over all listeners.
    pub max_connections: usize,
    /// Client connections open at once from one client address (after the PROXY header).
    pub max_connections_per_ip: usize,
    /// Protocol errors (bad commands) tolerated per connection before it is closed.
    pub max_errors: u32,
    /// Messages scanned at once over all sessions; further scans wait (back-pressure).
    pub max_scans: usize,
    /// Delay after the first failed login from an address; doubles per further failure.
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub auth_penalty_initial: Duration,
    /// Cap of the auth-failure delay (Dovecot uses 15 s).
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub auth_penalty_max: Duration,
    /// An address's failure count is forgotten after this long without a failure.
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub auth_penalty_expiry: Duration,
    /// Most client addresses remembered in the penalty table (least recently used dropped).
    pub auth_penalty_entries: u64,
    /// Longest a PROXY-protocol peer may take to send the header.
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub proxy_header_timeout: Duration,
    /// Memory budget for everything buffered on behalf of sessions, over all sessions
    /// ([`crate::budget`]); beyond it sessions wait (back-pressure). Not live-reloadable.
    pub memory: ByteSize,
    /// Longest a session waits for the memory budget before it is ended.
    #[serde(deserialize_with = "duration", serialize_with = "humantime_duration")]
    pub memory_wait: Duration,
}

/// Smallest `memory`: a few sessions' read buffers.
const MIN_MEMORY: u64 = 1 << 20;

/// Upper bound of `max_scans` (far below tokio's semaphore limit).
const MAX_SCANS: usize = 1 << 20;

/// Default for `max_scans`: four per available core.
pub fn default_max_scans() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_line: 64 * 1024,
            max_client_literal: 64 * 1024 * 1024,
            max_backend_literal: 256 * 1024 * 1024,
            max_nesting: 64,
            prelogin_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(31 * 60),
            max_pipeline: 128,
            pop3_command_margin: 257,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            max_errors: 10,
            max_scans: default_max_scans(),
            auth_penalty_initial: Duration::from_secs(1),
            auth_penalty_max: Duration::from_secs(15),
            auth_penalty_expiry: Duration::from_secs(15 * 60),
            auth_penalty_entries: 100_000,
            proxy_header_timeout: Duration::from_secs(5),
            memory: ByteSize(1 << 30),
            memory_wait: Duration::from_secs(60),
        }
    }
}

impl LimitsConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("limits.max_nesting", self.max_nesting),
            ("limits.max_pipeline", self.max_pipeline),
            ("limits.max_connections", self.max_connections),
            ("limits.max_connections_per_ip", self.max_connections_per_ip),
            ("limits.max_scans", self.max_scans),
            ("limits.max_errors", self.max_errors as usize),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.max_scans > MAX_SCANS {
            return Err(ConfigError::invalid(
                "limits.max_scans",
                format!("must be at most {MAX_SCANS}"),
            ));
        }
        if self.max_line < 1024 {
            return Err(ConfigError::invalid(
                "limits.max_line",
                "must be at least 1024",
            ));
        }
        if self.auth_penalty_max < self.auth_penalty_initial {
            return Err(ConfigError::invalid(
                "limits.auth_penalty_max",
                "must not be smaller than auth_penalty_initial",
            ));
        }
        if self.memory.0 < MIN_MEMORY || self.memory.0 > 1 << 42 {
            return Err(ConfigError::invalid(
                "limits.memory",
                "must be between 1MiB and 4096GiB",
            ));
        }
        if self.memory_wait.is_zero() {
            return Err(ConfigError::invalid(
                "limits.memory_wait",
                "must be longer than 0s",
            ));
        }
        if self.proxy_header_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "limits.proxy_header_timeout",
                "must be longer than 0s",
            ));
        }
        Ok(())
    }
}
