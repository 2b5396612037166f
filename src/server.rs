//! Listeners, the accept loop and graceful shutdown, shared by IMAP and POP3.
//!
//! Each `[[listener]]` gets a TCP listener; every accepted connection gets `TCP_NODELAY`, an
//! implicit-TLS handshake where configured (RFC 8314), and then the protocol session for the
//! listener. On shutdown the listeners stop accepting, sessions are told (they send `* BYE` /
//! close when idle), and in-flight commands get `shutdown_grace` to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use tokio::sync::Semaphore;

use crate::backend::{BackendConn, BackendError, BackendTarget, Dialect};
use crate::config::{Config, ForwardClientIp, LimitsConfig, ListenerConfig, ListenerTls, Protocol};
use crate::limits::{AuthPenalty, ConnectionLimiter, ConnectionPermit};
use crate::metrics::{metrics, tls_version_label, ActiveConnection, BACKEND_ERROR_KINDS};
use crate::net::{set_nodelay, Stream};
use crate::scan::{ScanError, Scanner};
use crate::tls::{server_config, CertStore, TlsError};

/// Longest a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Startup failures, naming the listener or material at fault.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener address could not be bound.
    #[error("listener {name}: cannot bind {bind}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        bind: SocketAddr,
        /// Socket error.
        source: std::io::Error,
    },
    /// The scan pipeline could not start (bad rules, unusable quarantine, ...).
    #[error("scan: {0}")]
    Scan(#[from] ScanError),
    /// A listener refers to a backend that does not exist.
    #[error("listener {0}: unknown backend")]
    UnknownBackend(String),
}

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
}

impl SharedLimits {
    /// Builds the shared state from `[limits]`.
    pub fn new(limits: &LimitsConfig) -> SharedLimits {
        SharedLimits {
            connections: ConnectionLimiter::new(limits),
            penalty: AuthPenalty::new(limits),
            scan_permits: Arc::new(Semaphore::new(limits.max_scans)),
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
    /// The backend to relay to.
    pub backend: BackendTarget,
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
    /// The load balancer's address when the connection came with a PROXY header.
    pub proxied_by: Option<SocketAddr>,
    /// Cancelled when the process shuts down.
    pub shutdown: CancellationToken,
    /// Failed-login delays: `penalty.delay(ip)` before relaying a login, then
    /// `penalty.failed(ip)` / `penalty.succeeded(ip)` on its outcome.
    pub penalty: Arc<AuthPenalty>,
    /// Acquire one permit per message scan (`max_scans`).
    pub scan_permits: Arc<Semaphore>,
    /// Releases the connection's limit slot when the last clone is dropped.
    pub connection: Arc<ConnectionGuard>,
}

impl SessionContext {
    /// How this listener's backend wants the client address (`forward_client_ip`); `id` and
    /// `xclient` are the sessions' job, the PROXY variants are done by [`Self::connect_backend`].
    pub fn forward_client_ip(&self) -> ForwardClientIp {
        self.listener.backend.config.forward_client_ip
    }

    /// What the client may do on this connection given whether it is TLS yet (RFC 2595 §3.1/§4,
    /// shared by IMAP STARTTLS and POP3 STLS): `(offer the upgrade, refuse logins)`.
    pub fn tls_gate(&self, client_is_tls: bool) -> (bool, bool) {
        let before_tls = !client_is_tls;
        (
            before_tls && self.listener.offers_starttls(),
            before_tls && self.listener.config.requires_tls(),
        )
    }

    /// Connects to the backend for this client (writes a PROXY header when configured).
    pub async fn connect_backend<D: Dialect>(&self) -> Result<BackendConn, BackendError> {
        self.listener
            .backend
            .connect_for::<D>(Some((self.peer, self.local)))
            .await
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
            let version = tls_version_label(stream.get_ref().1.protocol_version());
            handshakes
                .with_label_values(&[&tls.listener, "ok", "ok", version])
                .inc();
            Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(
                stream,
            ))))
        }
        Err(error) => {
            let reason = handshake_failure_reason(&error);
            handshakes
                .with_label_values(&[&tls.listener, "error", reason, "none"])
                .inc();
            Err(error)
        }
    }
}

/// Maps a failed handshake to the `reason` label (one of `TLS_REASONS`).
fn handshake_failure_reason(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::TimedOut => return "timeout",
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => return "eof",
        _ => {}
    }
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "other";
    };
    match tls {
        rustls::Error::NoApplicationProtocol => "alpn",
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            "certificate"
        }
        rustls::Error::General(text) if text.contains("certificate") => "certificate",
        rustls::Error::PeerIncompatible(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::AlertReceived(_) => "protocol",
        _ => "other",
    }
}

/// A bound, ready-to-run proxy.
pub struct Server {
    listeners: Vec<(TcpListener, Arc<ListenerRuntime>)>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    /// The certificate store, for reloads.
    pub certs: Arc<CertStore>,
    /// The scan pipeline, for reloads and readiness.
    pub scanner: Arc<Scanner>,
}

impl Server {
    /// Builds TLS material and binds every listener.
    pub async fn bind(config: &Config) -> Result<Server, ServerError> {
        let certs = CertStore::from_config(config.tls.as_ref())?;
        if config.tls.is_none() {
            tracing::warn!("NO [tls] SECTION: serving an in-memory SELF-SIGNED certificate; clients cannot verify it. Configure [tls] cert/key for production.");
        }
        let scanner = Arc::new(Scanner::new(&config.scan).await?);
        let shared = SharedLimits::new(&config.limits);
        prime_metrics(config);
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let backend = config
                .backend(&listener.backend)
                .ok_or_else(|| ServerError::UnknownBackend(listener.name.clone()))?;
            let runtime = ListenerRuntime {
                config: listener.clone(),
                tls: ClientTls {
                    config: server_config(certs.clone(), listener.protocol)?,
                    listener: listener.name.clone(),
                },
                backend: BackendTarget::new(backend, listener.protocol)?,
                limits: config.limits.clone(),
                scanner: scanner.clone(),
                shared: shared.clone(),
            };
            let socket =
                TcpListener::bind(listener.bind)
                    .await
                    .map_err(|source| ServerError::Bind {
                        name: listener.name.clone(),
                        bind: listener.bind,
                        source,
                    })?;
            listeners.push((socket, Arc::new(runtime)));
        }
        Ok(Server {
            listeners,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace: config.shutdown_grace,
            certs,
            scanner,
        })
    }

    /// What a configuration reload may swap live.
    pub fn reload_handles(&self) -> crate::reload::ReloadHandles {
        crate::reload::ReloadHandles {
            certs: self.certs.clone(),
            scanner: self.scanner.clone(),
        }
    }

    /// The bound addresses, in configuration order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(socket, _)| socket.local_addr().ok())
            .collect()
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Accepts until shutdown, then drains sessions within the grace period.
    pub async fn run(self) {
        for (socket, runtime) in self.listeners {
            let shutdown = self.shutdown.clone();
            let tracker = self.tracker.clone();
            tokio::spawn(accept_loop(socket, runtime, shutdown, tracker));
        }
        self.shutdown.cancelled().await;
        self.tracker.close();
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, draining sessions");
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tracker.len(),
                "grace period over: closing remaining sessions"
            );
        }
    }
}

/// Creates the zero-valued per-listener and per-backend series.
fn prime_metrics(config: &Config) {
    let m = metrics();
    for listener in &config.listeners {
        m.prime_listener(&listener.name, listener.protocol.as_str());
        if listener.tls != ListenerTls::None {
            m.tls_handshakes
                .with_label_values(&[&listener.name, "ok", "ok", "TLSv1_3"]);
        }
    }
    for backend in &config.backends {
        m.prime_backend(&backend.name);
        for kind in BACKEND_ERROR_KINDS {
            m.backend_errors
                .with_label_values(&[&backend.name, "connect", kind]);
        }
    }
    m.limit_rejections
        .with_label_values(&[crate::proxy_protocol::LIMIT_LABEL]);
}

async fn accept_loop(
    socket: TcpListener,
    runtime: Arc<ListenerRuntime>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        let (tcp, socket_peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(listener = runtime.name(), %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        set_nodelay(&tcp);
        let span = tracing::info_span!(
            "session",
            listener = runtime.name(),
            peer = %socket_peer,
            proxied_by = tracing::field::Empty,
            user = tracing::field::Empty
        );
        let connection = crate::accept::handle_connection(runtime.clone(), shutdown.clone(), tcp);
        tracker.spawn(connection.instrument(span));
    }
}
