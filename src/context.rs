//! What one client connection's session gets from its listener and the process: the listener's
//! runtime (configuration, client TLS, backend target, limits, scanner), the per-connection
//! [`SessionContext`], and the client-side TLS handshake ([`accept_tls`], RFC 8314 implicit TLS
//! and the upgrade after STARTTLS/STLS). Sits below both the sessions and the server, so
//! neither imports the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendConn, BackendError, Dialect};
use crate::config::{LimitsConfig, ListenerConfig, ListenerTls, Protocol};
use crate::limits::{AuthPenalty, ConnectionLimiter, ConnectionPermit};
use crate::metrics::{metrics, ActiveConnection, TlsOutcome, TlsReason, TlsVersion};
use crate::net::Stream;
use crate::scan::Scanner;

/// Longest a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A listener's client-side TLS configuration (ALPN pinned, certificates from the reloadable
/// [`CertStore`]) plus the listener name its handshakes are counted under.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// Listener name (metric label).
    pub listener: String,
}

/// Limits shared by every listener of the process.
#[derive(Debug, Clone)]
pub struct SharedLimits {
    /// Open connections, in total and per client address.
    pub connections: Arc<ConnectionLimiter>,
    /// Failed-login delays per client address.
    pub penalty: Arc<AuthPenalty>,
    /// Concurrent scans (`max_scans`).
    pub scan_permits: Arc<Semaphore>,
    /// The memory budget of all sessions (`memory`, `memory_wait`).
    pub memory: Arc<crate::budget::MemoryBudget>,
}

impl SharedLimits {
    /// Builds the shared state from `[limits]`.
    pub fn new(limits: &LimitsConfig) -> SharedLimits {
        SharedLimits::with_cluster(limits, None)
    }

    /// Builds the shared state from `[limits]`, sharing auth-failure counts through `cluster`.
    pub fn with_cluster(
        limits: &LimitsConfig,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> SharedLimits {
        SharedLimits {
            connections: ConnectionLimiter::new(limits),
            penalty: AuthPenalty::shared(limits, cluster),
            scan_permits: Arc::new(Semaphore::new(limits.max_scans)),
            memory: crate::budget::MemoryBudget::new(limits.memory.0, limits.memory_wait),
        }
    }
}

/// What a session needs from its listener; shared by all its connections.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// The `[[listener]]` section.
    pub config: ListenerConfig,
    /// TLS for this listener's protocol (ALPN pinned).
    pub tls: ClientTls,
    /// What to relay to: one backend, or a router choosing one per login.
    pub upstream: crate::routing::Upstream,
    /// Protocol limits.
    pub limits: LimitsConfig,
    /// The scan pipeline shared by every listener.
    pub scanner: Arc<Scanner>,
    /// Connection caps, auth penalty and scan permits shared by every listener.
    pub shared: SharedLimits,
}

impl ListenerRuntime {
    /// Listener name, for logs and metric labels.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Listener protocol.
    pub fn protocol(&self) -> Protocol {
        self.config.protocol
    }

    /// Whether a router picks the backend at login (no backend before the login command).
    pub fn routed(&self) -> bool {
        self.upstream.single().is_none()
    }

    /// Whether STARTTLS/STLS is offered on this listener.
    pub fn offers_starttls(&self) -> bool {
        self.config.tls == ListenerTls::Starttls
    }
}

/// Holds a connection's slot in the connection limits and in `connections_active`.
#[derive(Debug)]
pub struct ConnectionGuard {
    _permit: ConnectionPermit,
    _active: ActiveConnection,
}

impl ConnectionGuard {
    pub(crate) fn new(permit: ConnectionPermit, active: ActiveConnection) -> ConnectionGuard {
        ConnectionGuard {
            _permit: permit,
            _active: active,
        }
    }
}

/// Everything one client connection's session gets.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The listener it arrived on.
    pub listener: Arc<ListenerRuntime>,
    /// The client's address: from the PROXY header when the listener takes one, else the
    /// socket's peer. Use it for logs, limits and forwarding.
    pub peer: SocketAddr,
    /// The address the client connected to (PROXY header destination, else the socket's
    /// local address): `x-connected-ip`/`x-connected-port` in IMAP `ID`.
    pub local: SocketAddr,
    /// Cancelled when the process shuts down.
    pub shutdown: CancellationToken,
    /// Failed-login delays: `penalty.delay(ip)` before relaying a login, then
    /// `penalty.failed(ip)` / `penalty.succeeded(ip)` on its outcome.
    pub penalty: Arc<AuthPenalty>,
    /// Acquire one permit per message scan (`max_scans`).
    pub scan_permits: Arc<Semaphore>,
    /// The memory budget the session's buffers are reserved from ([`crate::driver`]).
    pub memory: Arc<crate::budget::MemoryBudget>,
    /// Releases the connection's limit slot when the last clone is dropped.
    pub _connection: Arc<ConnectionGuard>,
}

impl SessionContext {
    /// What the client may do on this connection given whether it is TLS yet (RFC 2595 §3.1/§4,
    /// shared by IMAP STARTTLS and POP3 STLS): `(offer the upgrade, refuse logins)`.
    pub fn tls_gate(&self, client_is_tls: bool) -> (bool, bool) {
        let before_tls = !client_is_tls;
        (
            before_tls && self.listener.offers_starttls(),
            before_tls && self.listener.config.requires_tls(),
        )
    }

    /// Connects to the listener's single backend for this client (writes a PROXY header when
    /// configured). Router listeners connect at login ([`crate::routing::session`]).
    pub async fn connect_backend<D: Dialect>(&self) -> Result<BackendConn, BackendError> {
        let Some(target) = self.listener.upstream.single() else {
            return Err(BackendError::Connect {
                backend: self.listener.name().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "this listener connects its backend at login",
                ),
            });
        };
        target.connect_for::<D>(Some((self.peer, self.local))).await
    }

    /// The single backend's name, when the listener has no router.
    pub fn single_backend(&self) -> Option<&str> {
        self.listener
            .upstream
            .single()
            .map(|target| target.config.name.as_str())
    }
}

/// Upgrades a plaintext client connection to TLS (implicit TLS or after STARTTLS/STLS); the
/// outcome is counted in `tls_handshakes_total`.
pub async fn accept_tls(tls: &ClientTls, tcp: TcpStream) -> std::io::Result<Stream> {
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let result = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
        .and_then(|inner| inner);
    let handshakes = &metrics().tls_handshakes;
    match result {
        Ok(stream) => {
            let version = TlsVersion::of(stream.get_ref().1.protocol_version());
            handshakes
                .with_label_values(&[
                    &tls.listener,
                    TlsOutcome::Ok.as_str(),
                    TlsReason::Ok.as_str(),
                    version.as_str(),
                ])
                .inc();
            Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(
                stream,
            ))))
        }
        Err(error) => {
            let reason = handshake_failure_reason(&error);
            handshakes
                .with_label_values(&[
                    &tls.listener,
                    TlsOutcome::Error.as_str(),
                    reason.as_str(),
                    TlsVersion::None.as_str(),
                ])
                .inc();
            Err(error)
        }
    }
}

/// Maps a failed handshake to the `reason` label.
fn handshake_failure_reason(error: &std::io::Error) -> TlsReason {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::TimedOut => return TlsReason::Timeout,
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => return TlsReason::Eof,
        _ => {}
    }
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsReason::Other;
    };
    match tls {
        rustls::Error::NoApplicationProtocol => TlsReason::Alpn,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsReason::Certificate
        }
        rustls::Error::General(text) if text.contains("certificate") => TlsReason::Certificate,
        rustls::Error::PeerIncompatible(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::AlertReceived(_) => TlsReason::Protocol,
        _ => TlsReason::Other,
    }
}
