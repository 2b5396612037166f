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

use crate::backend::BackendTarget;
use crate::config::{Config, LimitsConfig, ListenerConfig, ListenerTls, Protocol};
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

/// What a session needs from its listener; shared by all its connections.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// The `[[listener]]` section.
    pub config: ListenerConfig,
    /// TLS for this listener's protocol (ALPN pinned).
    pub tls: Arc<rustls::ServerConfig>,
    /// The backend to relay to.
    pub backend: BackendTarget,
    /// Protocol limits.
    pub limits: LimitsConfig,
    /// The scan pipeline shared by every listener.
    pub scanner: Arc<Scanner>,
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

/// Everything one client connection's session gets.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The listener it arrived on.
    pub listener: Arc<ListenerRuntime>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Cancelled when the process shuts down.
    pub shutdown: CancellationToken,
}

/// Upgrades a plaintext client connection to TLS (implicit TLS or after STARTTLS/STLS).
pub async fn accept_tls(
    config: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> std::io::Result<Stream> {
    let acceptor = TlsAcceptor::from(config.clone());
    let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
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
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let backend = config
                .backend(&listener.backend)
                .ok_or_else(|| ServerError::UnknownBackend(listener.name.clone()))?;
            let runtime = ListenerRuntime {
                config: listener.clone(),
                tls: server_config(certs.clone(), listener.protocol)?,
                backend: BackendTarget::new(backend, listener.protocol)?,
                limits: config.limits.clone(),
                scanner: scanner.clone(),
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
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(listener = runtime.name(), %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        set_nodelay(&tcp);
        let context = SessionContext {
            listener: runtime.clone(),
            peer,
            shutdown: shutdown.clone(),
        };
        let span = tracing::info_span!("session", listener = runtime.name(), %peer, user = tracing::field::Empty);
        tracker.spawn(handle_connection(context, tcp).instrument(span));
    }
}

async fn handle_connection(context: SessionContext, tcp: TcpStream) {
    let stream = match context.listener.config.tls {
        ListenerTls::Implicit => match accept_tls(&context.listener.tls, tcp).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(%error, "client TLS handshake failed");
                return;
            }
        },
        ListenerTls::Starttls | ListenerTls::None => Stream::Plain(tcp),
    };
    match context.listener.protocol() {
        Protocol::Imap => crate::imap::session::run(context, stream).await,
        Protocol::Pop3 => crate::pop3::session::run(context, stream).await,
    }
}
