//! A one-shot check of a backend through the sessions' own connector: TCP, the configured TLS
//! mode (plaintext, STARTTLS/STLS per RFC 2595, implicit TLS per RFC 8314 §3), the same
//! certificate verification, and the greeting. Used by `/readyz` and `check-config --probe`.
//!
//! The only difference from a session's connection: the probe's TLS configuration does not
//! resume TLS sessions, so every probe verifies the certificate the backend presents now (a
//! resumed session would skip that), and no metrics of sessions are counted.

use std::fmt;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use tokio::io::AsyncWriteExt;

use super::trust::Fingerprints;
use super::{printable, BackendError, BackendTarget, Dialect};
use crate::config::{BackendConfig, BackendTls, Protocol};
use crate::net::Stream;
use crate::tls::TlsError;

/// Longest greeting excerpt shown in a probe report.
const GREETING_EXCERPT: usize = 60;

/// What a successful probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The configured mode.
    pub mode: BackendTls,
    /// The start of the greeting line, log-safe.
    pub greeting: String,
    /// Negotiated TLS version, if TLS was used (`TLSv1_3`).
    pub tls_version: Option<String>,
    /// Fingerprints of the certificate the backend presented, if TLS was used.
    pub certificate: Option<Fingerprints>,
    /// How the certificate was trusted (`ca`, `pin_sha256`, ...).
    pub trusted_by: &'static str,
    /// How long connecting took.
    pub elapsed: Duration,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            BackendTls::None => "plaintext",
            BackendTls::Starttls => "STARTTLS",
            BackendTls::Implicit => "implicit TLS",
        };
        write!(f, "greeting \"{}\" over {mode}", self.greeting)?;
        if let Some(version) = &self.tls_version {
            write!(f, " ({version}")?;
            if let Some(certificate) = &self.certificate {
                write!(
                    f,
                    ", certificate sha256 {} trusted by {}",
                    certificate.cert_hex(),
                    self.trusted_by
                )?;
            }
            f.write_str(")")?;
        }
        write!(f, " in {} ms", self.elapsed.as_millis())
    }
}

/// How `backend`'s certificate is trusted, for reports.
fn trusted_by(backend: &BackendConfig) -> &'static str {
    if !backend.verify {
        "nothing (verify = false)"
    } else if !backend.pin_sha256.is_empty() {
        "pin_sha256"
    } else if backend.ca.is_some() {
        "ca"
    } else {
        "the system roots"
    }
}

impl BackendTarget {
    /// A target for probes: like [`BackendTarget::new`], with TLS session resumption off.
    pub fn for_probe(config: &BackendConfig, protocol: Protocol) -> Result<Self, TlsError> {
        let mut target = BackendTarget::new(config, protocol)?;
        if let Some((client, _)) = target.tls.as_mut() {
            let mut fresh = (**client).clone();
            fresh.resumption = Resumption::disabled();
            *client = std::sync::Arc::new(fresh);
        }
        Ok(target)
    }

    /// Connects as a session would (no client address is forwarded; a PROXY header announces
    /// this connection itself), within `limit` or `connect_timeout`, whichever is shorter;
    /// then closes the connection. Nothing is counted in the session metrics.
    pub async fn probe<D: Dialect>(&self, limit: Duration) -> Result<ProbeReport, BackendError> {
        let started = Instant::now();
        let limit = limit.min(self.config.connect_timeout);
        let mut conn = self.connect_within::<D>(limit, None).await?;
        let elapsed = started.elapsed();
        let (tls_version, certificate) = match &conn.stream {
            Stream::Tls(tls) => {
                let (_, session) = tls.get_ref();
                (
                    session.protocol_version().map(|v| format!("{v:?}")),
                    session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| Fingerprints::of(cert.as_ref())),
                )
            }
            Stream::Plain(_) => (None, None),
        };
        let mut greeting = printable(&conn.greeting);
        if greeting.chars().count() > GREETING_EXCERPT {
            greeting = greeting.chars().take(GREETING_EXCERPT).collect::<String>() + "…";
        }
        // A polite close (TLS close_notify, then FIN); the backend logs a disconnect
        // without authentication attempts.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.stream.shutdown()).await;
        Ok(ProbeReport {
            mode: self.config.tls,
            greeting,
            tls_version,
            certificate,
            trusted_by: trusted_by(&self.config),
            elapsed,
        })
    }
}
