//! Why a backend could not be used, in words an operator can act on: every variant is a
//! backend-side failure and names the backend; TLS failures carry a [`TlsFailure`]
//! explanation, timeouts the step that did not finish and, where the TLS mode is the likely
//! culprit (RFC 8314 implicit TLS vs RFC 2595 STARTTLS), which mode to try.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::diagnose::TlsFailure;
use crate::config::BackendTls;
use crate::metrics::BackendErrorKind;
use crate::net::LineError;

/// The step of connecting to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// TCP connect.
    Connect = 0,
    /// The TLS handshake (implicit, or after STARTTLS/STLS).
    TlsHandshake = 1,
    /// Waiting for the greeting.
    Greeting = 2,
    /// Waiting for the answer to STARTTLS/STLS.
    Starttls = 3,
    /// Waiting for capabilities over TLS.
    Capabilities = 4,
    /// Waiting for the answer to IMAP `ID` / POP3 `XCLIENT`.
    ClientAddress = 5,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::TlsHandshake,
            2 => Phase::Greeting,
            3 => Phase::Starttls,
            4 => Phase::Capabilities,
            5 => Phase::ClientAddress,
            _ => Phase::Connect,
        }
    }

    /// What did not complete, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Connect => "TCP connect did not complete",
            Phase::TlsHandshake => "TLS handshake did not complete",
            Phase::Greeting => "no greeting arrived",
            Phase::Starttls => "no answer to STARTTLS",
            Phase::Capabilities => "no answer to the capability request over TLS",
            Phase::ClientAddress => "no answer to the forwarded client address",
        }
    }

    /// A guess at the cause when `mode` is configured and this step stalled or the connection
    /// closed here; `""` when there is none.
    pub fn mode_hint(self, mode: BackendTls) -> &'static str {
        match (self, mode) {
            (Phase::Greeting, BackendTls::None | BackendTls::Starttls) => {
                ": a server that waits silently usually expects TLS from the first byte (RFC 8314): is `tls = \"implicit\"` meant, or the wrong port?"
            }
            (Phase::TlsHandshake, BackendTls::Implicit) => {
                ": the server did not answer the TLS ClientHello: is `tls = \"starttls\"` or `tls = \"none\"` meant, or the wrong port?"
            }
            _ => "",
        }
    }
}

/// How far a connection attempt got; read after a timeout to say which step stalled.
#[derive(Debug, Default)]
pub struct Progress(AtomicU8);

impl Progress {
    /// Records that `phase` has started.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    /// The step in progress.
    pub fn get(&self) -> Phase {
        Phase::from_u8(self.0.load(Ordering::Relaxed))
    }
}

/// Why a backend could not be used; every variant is a backend-side failure.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed (refused, unreachable, DNS).
    #[error("backend {backend} unreachable: {source}")]
    Connect {
        /// Backend name.
        backend: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connect plus handshake took longer than allowed.
    #[error("backend {backend}: {} within {limit:?}{hint}", .phase.describe())]
    Timeout {
        /// Backend name.
        backend: String,
        /// The step that stalled.
        phase: Phase,
        /// The deadline (`connect_timeout`, or the probe's).
        limit: Duration,
        /// Which TLS mode may be meant (from [`Phase::mode_hint`]).
        hint: &'static str,
    },
    /// TLS handshake failed (including certificate or name verification), explained.
    #[error("backend {backend} TLS failed: {failure}")]
    Tls {
        /// Backend name.
        backend: String,
        /// What went wrong and what to do.
        failure: Box<TlsFailure>,
    },
    /// The greeting was not a usable positive greeting.
    #[error("backend {backend} sent an unusable greeting: {detail}")]
    Greeting {
        /// Backend name.
        backend: String,
        /// The offending line, truncated.
        detail: String,
    },
    /// The backend refused or botched STARTTLS/STLS.
    #[error("backend {backend} refused STARTTLS: {detail} (it offers no TLS on this port: use its implicit-TLS port with `tls = \"implicit\"`, or `tls = \"none\"` on a private link)")]
    StarttlsRefused {
        /// Backend name.
        backend: String,
        /// The reply line, truncated.
        detail: String,
    },
    /// Reading handshake lines failed.
    #[error("backend {backend} handshake: {source}{hint}")]
    Handshake {
        /// Backend name.
        backend: String,
        /// Closed, too long or socket error.
        source: LineError,
        /// Which TLS mode may be meant (from [`Phase::mode_hint`]) when it closed early.
        hint: &'static str,
    },
}

impl BackendError {
    /// Short label for metrics (`kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Connect { .. } => "connect",
            BackendError::Timeout { .. } => "timeout",
            BackendError::Tls { .. } => "tls",
            BackendError::Greeting { .. } => "greeting",
            BackendError::StarttlsRefused { .. } => "starttls",
            BackendError::Handshake { .. } => "handshake",
        }
    }

    /// Value of the `kind` label of `backend_errors_total`.
    pub fn metric_kind(&self) -> BackendErrorKind {
        match self {
            BackendError::Connect { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused => BackendErrorKind::Refused,
                std::io::ErrorKind::TimedOut => BackendErrorKind::Timeout,
                _ if source.to_string().contains("lookup") => BackendErrorKind::Dns,
                _ => BackendErrorKind::Io,
            },
            BackendError::Timeout { .. } => BackendErrorKind::Timeout,
            BackendError::Tls { .. } => BackendErrorKind::Tls,
            BackendError::Greeting { .. } | BackendError::StarttlsRefused { .. } => {
                BackendErrorKind::Protocol
            }
            BackendError::Handshake { source, .. } => match source {
                LineError::Io(_) => BackendErrorKind::Io,
                LineError::Closed => BackendErrorKind::Closed,
                LineError::TooLong(_) => BackendErrorKind::Protocol,
            },
        }
    }

    /// Text safe to show a client in `* BYE` / `-ERR`.
    pub fn client_reason(&self) -> &'static str {
        match self {
            BackendError::Connect { .. } | BackendError::Timeout { .. } => {
                "mail server unavailable"
            }
            BackendError::Tls { .. } => "mail server failed TLS verification",
            BackendError::Greeting { .. } => "mail server sent an invalid greeting",
            BackendError::StarttlsRefused { .. } => "mail server refused STARTTLS",
            BackendError::Handshake { .. } => "mail server connection failed",
        }
    }
}
