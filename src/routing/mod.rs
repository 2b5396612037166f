//! Per-login backend selection: a listener names either one `backend` or a `router`
//! (`[[router]]`, [`crate::config::RouterConfig`]) that picks the backend once the proxy knows
//! the login name — a `static` table ([`rules`]) or an nginx-compatible `auth_http` service
//! ([`http`], protocol in [`auth_http`]).
//!
//! What a listener relays to is its [`Upstream`]. With a router the backend connection is made
//! only after the client's login command (there is no backend greeting before it: the proxy
//! greets itself, so POP3 APOP is not offered on router listeners). The session side of a
//! routed login is [`session`]. Static tables (rules, default, map file) are swapped whole on
//! reload ([`Routers::prepare_reload`]); sessions keep the backend they were routed to.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backend::BackendTarget;
use crate::config::{Config, Protocol, RouterConfig, RouterKind};
use crate::metrics::{metrics, RouteOutcome};

pub mod auth_http;
pub mod http;
pub mod rules;
pub mod session;

pub use auth_http::HttpUrl;
pub use rules::{parse_map, Decision, MapFile, StaticTable};

/// Why routers could not be built or reloaded (configuration side, before any session).
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A map file could not be read.
    #[error("router {router}: cannot read map file {path}: {source}")]
    MapRead {
        /// Router name.
        router: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A map file line is malformed.
    #[error("router {router}: map file {path}: {error}")]
    MapLine {
        /// Router name.
        router: String,
        /// The file.
        path: PathBuf,
        /// Line and reason.
        error: rules::MapLineError,
    },
    /// A rule, map entry or URL is unusable.
    #[error("router {router}: {reason}")]
    Rule {
        /// Router name.
        router: String,
        /// What is wrong.
        reason: String,
    },
    /// A backend named by a router is not declared (or not in the running configuration).
    #[error("router {router}: no [[backend]] named {backend:?}")]
    UnknownBackend {
        /// Router name.
        router: String,
        /// The name it used.
        backend: String,
    },
}

/// Why a login could not be routed, naming the side at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Client side: no rule, map entry or default matches the login name.
    #[error("no route for this login")]
    NoRoute,
    /// Client side: the auth service refused the login (wrong password, unknown user).
    #[error("refused by the auth service: {message}")]
    Rejected {
        /// `Auth-Status` text.
        message: String,
        /// `Auth-Wait` before answering the client.
        wait: Duration,
        /// `Auth-Error-Code`, if any.
        code: Option<String>,
    },
    /// Router side: the auth service is down, slow or answered nonsense.
    #[error("router {router} unavailable: {reason}")]
    Unavailable {
        /// Router name.
        router: String,
        /// What went wrong.
        reason: String,
    },
    /// Router side: the service named a server that is not a declared backend of this router.
    #[error("router {router} named undeclared backend {server}:{port}")]
    Undeclared {
        /// Router name.
        router: String,
        /// `Auth-Server`.
        server: String,
        /// `Auth-Port`.
        port: u16,
    },
}

impl RouteError {
    /// Whether the client's login itself failed (as opposed to the routing machinery).
    pub fn is_login_failure(&self) -> bool {
        matches!(self, RouteError::NoRoute | RouteError::Rejected { .. })
    }

    /// The `outcome` label of `route_decisions_total`.
    pub fn outcome(&self) -> RouteOutcome {
        match self {
            RouteError::NoRoute => RouteOutcome::NoRoute,
            RouteError::Rejected { .. } => RouteOutcome::Rejected,
            RouteError::Unavailable { .. } => RouteOutcome::Unavailable,
            RouteError::Undeclared { .. } => RouteOutcome::Undeclared,
        }
    }
}

/// One login to route.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    /// The listener's protocol.
    pub protocol: Protocol,
    /// The client's login name.
    pub user: &'a str,
    /// The client's password (only the http router sends it on, to its service).
    pub password: &'a str,
    /// Login attempts in this session, this one included.
    pub attempt: u32,
    /// The client's address.
    pub client: IpAddr,
    /// Whether the client connection is TLS.
    pub client_tls: bool,
}

/// Where a login goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The `[[backend]]` name.
    pub backend: String,
    /// The login name for the backend, when it differs from the client's.
    pub user: Option<String>,
    /// The password for the backend, when the auth service replaced it.
    pub password: Option<String>,
    /// Whether the answer came from the http router's cache.
    pub cached: bool,
}

#[derive(Debug)]
enum Kind {
    Static(RwLock<Arc<StaticTable>>),
    Http(Box<http::HttpRouter>),
}

/// One configured router, shared by the listeners naming it.
#[derive(Debug)]
pub struct Router {
    name: String,
    kind: Kind,
}

impl Router {
    /// The router's name (`router` metric label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where `request` goes; counted in `route_decisions_total{router,outcome}`.
    pub async fn route(&self, request: &RouteRequest<'_>) -> Result<Route, RouteError> {
        let result = match &self.kind {
            Kind::Static(table) => {
                let table =
                    table
                        .read()
                        .map(|t| t.clone())
                        .map_err(|_| RouteError::Unavailable {
                            router: self.name.clone(),
                            reason: "routing table unavailable".into(),
                        })?;
                table
                    .decide(request.user)
                    .map(|decision| Route {
                        backend: decision.backend,
                        user: decision.login,
                        password: None,
                        cached: false,
                    })
                    .ok_or(RouteError::NoRoute)
            }
            Kind::Http(client) => client.route(request).await,
        };
        let outcome = match &result {
            Ok(route) if route.cached => RouteOutcome::Cached,
            Ok(_) => RouteOutcome::Routed,
            Err(error) => error.outcome(),
        };
        metrics()
            .route_decisions
            .with_label_values(&[&self.name, outcome.as_str()])
            .inc();
        result
    }
}

/// Every router of a configuration, by name.
#[derive(Debug, Clone, Default)]
pub struct Routers {
    by_name: HashMap<String, Arc<Router>>,
}

impl Routers {
    /// Builds every router of `config` (validated), reading map files.
    pub fn build(config: &Config) -> Result<Routers, RoutingError> {
        let mut by_name = HashMap::new();
        for router in &config.routers {
            let kind = match router.kind {
                RouterKind::Static => {
                    Kind::Static(RwLock::new(Arc::new(load_table(config, router)?)))
                }
                RouterKind::Http => Kind::Http(Box::new(http::HttpRouter::new(config, router)?)),
            };
            let name = router.name.clone();
            by_name.insert(name.clone(), Arc::new(Router { name, kind }));
        }
        Ok(Routers { by_name })
    }

    /// The router named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Router>> {
        self.by_name.get(name).cloned()
    }

    /// Prepares a reload of every static router's table (rules, default, map file) from
    /// `new`; backends must exist in `running` (new backends need a restart). Nothing changes
    /// until [`PreparedReload::commit`], so a failure anywhere in a reload changes nothing.
    pub fn prepare_reload(
        &self,
        running: &Config,
        new: &Config,
    ) -> Result<PreparedReload, RoutingError> {
        let mut tables = Vec::new();
        for (name, router) in &self.by_name {
            let (Kind::Static(_), Some(config)) = (&router.kind, new.router(name)) else {
                continue;
            };
            if config.kind != RouterKind::Static {
                continue;
            }
            let table = load_table(new, config)?;
            if let Some(missing) = table.backends().find(|b| running.backend(b).is_none()) {
                return Err(RoutingError::UnknownBackend {
                    router: name.clone(),
                    backend: missing.to_string(),
                });
            }
            tables.push((router.clone(), table));
        }
        Ok(PreparedReload { tables })
    }
}

/// Static tables loaded for a reload, not yet in force.
#[derive(Debug)]
pub struct PreparedReload {
    tables: Vec<(Arc<Router>, StaticTable)>,
}

impl PreparedReload {
    /// Puts the tables in force for new logins; returns the map entries now loaded.
    pub fn commit(self) -> usize {
        let mut entries = 0;
        for (router, table) in self.tables {
            entries += table.map_entries();
            if let Kind::Static(slot) = &router.kind {
                if let Ok(mut current) = slot.write() {
                    *current = Arc::new(table);
                }
            }
        }
        entries
    }
}

/// Loads a static router's table: its map file (if any) parsed, every backend checked.
pub fn load_table(config: &Config, router: &RouterConfig) -> Result<StaticTable, RoutingError> {
    let map = match &router.map_file {
        None => MapFile::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| RoutingError::MapRead {
                router: router.name.clone(),
                path: path.clone(),
                source,
            })?;
            parse_map(&text).map_err(|error| RoutingError::MapLine {
                router: router.name.clone(),
                path: path.clone(),
                error,
            })?
        }
    };
    let table = StaticTable::new(router, map)?;
    if let Some(missing) = table.backends().find(|b| config.backend(b).is_none()) {
        return Err(RoutingError::UnknownBackend {
            router: router.name.clone(),
            backend: missing.to_string(),
        });
    }
    Ok(table)
}

/// What a listener relays to.
#[derive(Debug)]
pub enum Upstream {
    /// One backend, connected at accept time.
    Backend(Arc<BackendTarget>),
    /// A router; the backend is connected once the login name is known.
    Router {
        /// The router.
        router: Arc<Router>,
        /// Every declared backend, prepared for this listener's protocol, by name.
        targets: HashMap<String, Arc<BackendTarget>>,
    },
}

impl Upstream {
    /// Builds what `listener` relays to from `config` and the built `routers`.
    pub fn for_listener(
        config: &Config,
        listener: &crate::config::ListenerConfig,
        routers: &Routers,
    ) -> Result<Upstream, UpstreamError> {
        let protocol = listener.protocol;
        if let Some(router) = &listener.router {
            let router = routers
                .get(router)
                .ok_or_else(|| UpstreamError::Unknown(listener.name.clone()))?;
            let mut targets = HashMap::new();
            for backend in &config.backends {
                let target = target_of(backend, protocol)?;
                targets.insert(backend.name.clone(), Arc::new(target));
            }
            return Ok(Upstream::Router { router, targets });
        }
        let backend = listener
            .backend
            .as_deref()
            .and_then(|name| config.backend(name))
            .ok_or_else(|| UpstreamError::Unknown(listener.name.clone()))?;
        Ok(Upstream::Backend(Arc::new(target_of(backend, protocol)?)))
    }

    /// The single backend, when the listener has no router.
    pub fn single(&self) -> Option<&Arc<BackendTarget>> {
        match self {
            Upstream::Backend(target) => Some(target),
            Upstream::Router { .. } => None,
        }
    }
}

/// The backend's target, its TLS errors naming the backend.
fn target_of(
    backend: &crate::config::BackendConfig,
    protocol: Protocol,
) -> Result<BackendTarget, UpstreamError> {
    BackendTarget::new(backend, protocol).map_err(|source| UpstreamError::Tls {
        name: backend.name.clone(),
        source,
    })
}

/// Why a listener's upstream could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The listener names a backend or router that does not exist.
    #[error("listener {0}: unknown backend or router")]
    Unknown(String),
    /// A backend's TLS material (`ca`, `server_name`, `pin_sha256`) is unusable.
    #[error("backend {name}: {source}")]
    Tls {
        /// Backend name.
        name: String,
        /// What is wrong.
        source: crate::tls::TlsError,
    },
}
