//! Listeners, the accept loop and graceful shutdown, shared by IMAP and POP3.
//!
//! Each `[[listener]]` gets a TCP listener; every accepted connection gets `TCP_NODELAY`, an
//! implicit-TLS handshake where configured (RFC 8314), and then the protocol session for the
//! listener. On shutdown the listeners stop accepting, sessions are told (they send `* BYE` /
//! close when idle), and in-flight commands get `shutdown_grace` to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, ListenerTls};
use crate::context::{ClientTls, ListenerRuntime, SharedLimits};
use crate::metrics::{
    metrics, BackendErrorKind, BackendErrorSide, TlsOutcome, TlsReason, TlsVersion,
};
use crate::net::set_nodelay;
use crate::scan::{ScanError, Scanner};
use crate::tls::{server_config, CertStore, TlsError};

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
    /// `[cluster]` cannot be used (bad URL, unreadable CA file).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A listener's backend or router could not be prepared.
    #[error(transparent)]
    Upstream(#[from] crate::routing::UpstreamError),
    /// A router could not be built (map file, rules).
    #[error(transparent)]
    Routing(#[from] crate::routing::RoutingError),
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
    /// The routers, for reloads of their tables.
    pub routers: crate::routing::Routers,
}

impl Server {
    /// Builds TLS material and binds every listener.
    pub async fn bind(config: &Config) -> Result<Server, ServerError> {
        let certs = CertStore::from_config(config.tls.as_ref())?;
        metrics().set_certificates(certs.current().expiry());
        if config.tls.is_none() {
            tracing::warn!("NO [tls] SECTION: serving an in-memory SELF-SIGNED certificate; clients cannot verify it. Configure [tls] cert/key for production.");
        }
        let cluster = config
            .cluster
            .as_ref()
            .map(crate::cluster::Cluster::connect)
            .transpose()?;
        let scanner = Arc::new(Scanner::with_cluster(&config.scan, cluster.clone()).await?);
        let shared = SharedLimits::with_cluster(&config.limits, cluster);
        prime_metrics(config);
        let routers = crate::routing::Routers::build(config)?;
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let runtime = ListenerRuntime {
                config: listener.clone(),
                tls: ClientTls {
                    config: server_config(certs.clone(), listener.protocol)?,
                    listener: listener.name.clone(),
                },
                upstream: crate::routing::Upstream::for_listener(config, listener, &routers)?,
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
            routers,
        })
    }

    /// What a configuration reload may swap live.
    pub fn reload_handles(&self) -> crate::reload::ReloadHandles {
        crate::reload::ReloadHandles {
            certs: self.certs.clone(),
            scanner: self.scanner.clone(),
            routers: self.routers.clone(),
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
        m.prime_listener(&listener.name, listener.protocol);
        if listener.tls != ListenerTls::None {
            m.tls_handshakes.with_label_values(&[
                &listener.name,
                TlsOutcome::Ok.as_str(),
                TlsReason::Ok.as_str(),
                TlsVersion::Tls13.as_str(),
            ]);
        }
    }
    for router in &config.routers {
        m.prime_router(&router.name);
    }
    for backend in &config.backends {
        m.prime_backend(&backend.name);
        for kind in BackendErrorKind::ALL {
            m.backend_errors.with_label_values(&[
                &backend.name,
                BackendErrorSide::Connect.as_str(),
                kind.as_str(),
            ]);
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
        // Shutdown wins over a connection waiting in the backlog: once the token is cancelled
        // no new session starts, and dropping the listener resets what is still queued.
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        if shutdown.is_cancelled() {
            return;
        }
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
