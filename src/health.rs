//! Readiness checks behind `/readyz`, the `portcullis_backend_ready{backend}` gauge and
//! `portcullis check-config --probe`:
//!
//! * every backend is probed the way sessions use it, through the sessions' own connector
//!   ([`BackendTarget::probe`]): TCP, the configured TLS mode, the same certificate
//!   verification, and the greeting, for the protocol of the listeners that use it;
//! * the quarantine directory accepts a new file (created, fsynced and removed);
//! * when clamd is configured, at least one clamd answers PING;
//! * when `[cluster]` is configured, the shared store answers PING — a store that does not
//!   makes the replica *degraded*, never unready (`cluster: degraded (…)`, HTTP 200).
//!
//! The checks run concurrently, each bounded by [`PROBE_LIMIT`] so that a hanging backend is
//! reported with its reason before the endpoint's own 5 s deadline. `/readyz` requests that
//! arrive together (a load balancer checking several server lines, Kubernetes) share one round
//! of probes, and a round younger than [`REUSE_WITHIN`] is reused, so the backends see at most
//! one probe connection per [`REUSE_WITHIN`] from each replica plus the background refresh.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::BackendTarget;
use crate::config::{Config, Protocol};
use crate::imap::command::ImapDialect;
use crate::metrics::{metrics, ReadinessCheck, ReadinessProbe};
use crate::pop3::command::Pop3Dialect;
use crate::scan::quarantine::Quarantine;
use crate::scan::{ScanError, Scanner};

/// Longest one check may take (a backend probe uses `connect_timeout` if that is shorter).
pub const PROBE_LIMIT: Duration = Duration::from_secs(4);
/// How often `serve` re-probes in the background, so the gauge is current without `/readyz`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// `/readyz` answers from a round of checks at most this old.
pub const REUSE_WITHIN: Duration = Duration::from_secs(2);

/// One backend as one protocol's listeners use it.
struct BackendCheck {
    /// Check name: `backend NAME`, or `backend NAME (imap)` when both protocols use it.
    label: String,
    backend: String,
    protocol: Protocol,
    /// The connector, or why it could not be built.
    target: Result<BackendTarget, String>,
}

impl BackendCheck {
    async fn run(&self) -> ReadinessCheck {
        let outcome = match &self.target {
            Err(reason) => Err(reason.clone()),
            Ok(target) => match self.protocol {
                Protocol::Imap => target.probe::<ImapDialect>(PROBE_LIMIT).await,
                Protocol::Pop3 => target.probe::<Pop3Dialect>(PROBE_LIMIT).await,
            }
            .map(|report| format!("{}: {report}", self.protocol.as_str()))
            .map_err(|error| error.to_string()),
        };
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        ReadinessCheck {
            name: self.label.clone(),
            ok,
            detail,
        }
    }
}

/// The proxy's readiness probe.
pub struct Readiness {
    backends: Vec<Arc<BackendCheck>>,
    quarantine: Quarantine,
    scanner: Arc<Scanner>,
    clamd_configured: bool,
    /// Whether a missing quarantine directory is created (as a quarantine write would), or
    /// only its nearest existing ancestor checked (`check-config --probe`, often run as root:
    /// a directory it created would belong to root, not to the service user).
    create_quarantine: bool,
    /// Last failure text per check (`None` = passed), when changes are logged.
    last: Option<Mutex<HashMap<String, Option<String>>>>,
    /// The latest round for `/readyz`; the lock also makes concurrent requests share a round.
    recent: tokio::sync::Mutex<Option<(Instant, Vec<ReadinessCheck>)>>,
}

impl Readiness {
    /// Checks for every backend of `config` (per protocol of the listeners using it), the
    /// quarantine directory and the scanner.
    pub fn new(config: &Config, scanner: Arc<Scanner>) -> Readiness {
        let mut backends = Vec::new();
        for backend in &config.backends {
            let mut protocols: Vec<Protocol> = Vec::new();
            for listener in config
                .listeners
                .iter()
                .filter(|l| config.listener_may_use(l, &backend.name))
            {
                if !protocols.contains(&listener.protocol) {
                    protocols.push(listener.protocol);
                }
            }
            for &protocol in &protocols {
                let label = match protocols.len() {
                    1 => format!("backend {}", backend.name),
                    _ => format!("backend {} ({})", backend.name, protocol.as_str()),
                };
                backends.push(Arc::new(BackendCheck {
                    label,
                    backend: backend.name.clone(),
                    protocol,
                    target: BackendTarget::for_probe(backend, protocol).map_err(|e| e.to_string()),
                }));
            }
        }
        Readiness {
            backends,
            quarantine: Quarantine::new(config.scan.quarantine_dir.clone()),
            scanner,
            clamd_configured: !config.scan.clamd.is_empty(),
            create_quarantine: true,
            last: None,
            recent: tokio::sync::Mutex::new(None),
        }
    }

    /// Logs a warning when a check starts failing (or fails differently) and a notice when
    /// it passes again (for the long-running process, not for `check-config --probe`).
    pub fn log_changes(mut self) -> Readiness {
        self.last = Some(Mutex::new(HashMap::new()));
        self
    }

    /// Runs every check concurrently; results in a fixed order (backends, quarantine, clamd).
    /// Updates `portcullis_backend_ready{backend}`.
    pub async fn run(&self) -> Vec<ReadinessCheck> {
        let mut tasks = JoinSet::new();
        for (index, check) in self.backends.iter().enumerate() {
            let check = check.clone();
            tasks.spawn(async move { (index, check.run().await) });
        }
        let quarantine = self.quarantine.clone();
        let after_backends = self.backends.len();
        let create = self.create_quarantine;
        tasks.spawn(async move { (after_backends, check_quarantine(quarantine, create).await) });
        if self.clamd_configured {
            let scanner = self.scanner.clone();
            tasks.spawn(async move { (after_backends + 1, check_clamd(&scanner).await) });
        }
        if let Some(cluster) = self.scanner.cluster() {
            tasks.spawn(async move { (after_backends + 2, cluster.check().await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(error) => tracing::error!(%error, "readiness check task failed"),
            }
        }
        results.sort_by_key(|(index, _)| *index);
        let checks: Vec<ReadinessCheck> = results.into_iter().map(|(_, check)| check).collect();
        self.update_gauge(&checks);
        self.log(&checks);
        checks
    }

    /// [`Readiness::run`], or the outcome of a round that finished within [`REUSE_WITHIN`].
    pub async fn run_shared(&self) -> Vec<ReadinessCheck> {
        let mut recent = self.recent.lock().await;
        if let Some((at, checks)) = recent.as_ref() {
            if at.elapsed() < REUSE_WITHIN {
                return checks.clone();
            }
        }
        let checks = self.run().await;
        *recent = Some((Instant::now(), checks.clone()));
        checks
    }

    fn update_gauge(&self, checks: &[ReadinessCheck]) {
        let mut ready: HashMap<&str, bool> = HashMap::new();
        for (backend, check) in self.backends.iter().zip(checks) {
            *ready.entry(backend.backend.as_str()).or_insert(true) &= check.ok;
        }
        for (backend, ok) in ready {
            metrics()
                .backend_ready
                .with_label_values(&[backend])
                .set(i64::from(ok));
        }
    }

    fn log(&self, checks: &[ReadinessCheck]) {
        let Some(last) = &self.last else {
            return;
        };
        let mut last = match last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for check in checks {
            let now = (!check.ok).then(|| check.detail.clone());
            let before = last.insert(check.name.clone(), now.clone()).flatten();
            match (&before, &now) {
                (_, Some(reason)) if before.as_ref() != Some(reason) => {
                    tracing::warn!(check = %check.name, %reason, "readiness check failed");
                }
                (Some(_), None) => {
                    tracing::info!(check = %check.name, "readiness check passes again")
                }
                _ => {}
            }
        }
    }
}

/// Where a missing quarantine directory would be created: `Ok(ancestor)` when the nearest
/// existing ancestor is a directory, `Err(ancestor)` when it is something else.
fn creatable_below(dir: &std::path::Path) -> Result<std::path::PathBuf, std::path::PathBuf> {
    let ancestor = dir
        .ancestors()
        .skip(1)
        .find(|path| path.exists())
        .unwrap_or_else(|| std::path::Path::new("/"))
        .to_path_buf();
    if ancestor.is_dir() {
        Ok(ancestor)
    } else {
        Err(ancestor)
    }
}

async fn check_quarantine(quarantine: Quarantine, create: bool) -> ReadinessCheck {
    let dir = quarantine.dir().display().to_string();
    if !create && !quarantine.dir().exists() {
        let (ok, detail) = match creatable_below(quarantine.dir()) {
            Ok(below) => (
                true,
                format!(
                    "{dir} does not exist yet: the first quarantine write creates it below {}",
                    below.display()
                ),
            ),
            Err(blocker) => (
                false,
                format!(
                    "cannot write to quarantine_dir {dir}: {} is not a directory",
                    blocker.display()
                ),
            ),
        };
        return ReadinessCheck {
            name: "quarantine".into(),
            ok,
            detail,
        };
    }
    let outcome = tokio::time::timeout(
        PROBE_LIMIT,
        tokio::task::spawn_blocking(move || quarantine.check_writable_blocking()),
    )
    .await;
    let (ok, detail) = match outcome {
        Ok(Ok(Ok(()))) => (true, format!("{dir} writable")),
        Ok(Ok(Err(error))) => (
            false,
            format!("cannot write to quarantine_dir {dir}: {error}: blocked messages could not be quarantined (they would be withheld)"),
        ),
        Ok(Err(error)) => (false, format!("quarantine check task failed: {error}")),
        Err(_) => (false, format!("{dir}: no answer within {PROBE_LIMIT:?}")),
    };
    ReadinessCheck {
        name: "quarantine".into(),
        ok,
        detail,
    }
}

async fn check_clamd(scanner: &Scanner) -> ReadinessCheck {
    let (ok, detail) = match tokio::time::timeout(PROBE_LIMIT, scanner.ping()).await {
        Ok(Ok(())) => (true, "PONG".to_string()),
        Ok(Err(error)) => (false, error.to_string()),
        Err(_) => (false, format!("no PONG within {PROBE_LIMIT:?}")),
    };
    ReadinessCheck {
        name: "clamd".into(),
        ok,
        detail,
    }
}

impl ReadinessProbe for Readiness {
    fn check(&self) -> Pin<Box<dyn Future<Output = Vec<ReadinessCheck>> + Send + '_>> {
        Box::pin(self.run_shared())
    }
}

/// Re-runs the checks every `every` until `shutdown`, so the gauge and the logs follow the
/// backends even when nothing polls `/readyz`.
pub async fn refresh(readiness: Arc<Readiness>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => { readiness.run().await; }
        }
    }
}

/// `check-config --probe`: starts the scanner of `config` and runs every check once; a
/// missing quarantine directory is not created.
pub async fn probe_once(config: &Config) -> Result<Vec<ReadinessCheck>, ScanError> {
    let cluster = config
        .cluster
        .as_ref()
        .map(crate::cluster::Cluster::connect)
        .transpose()
        .map_err(|e| ScanError::Config(e.to_string()))?;
    let scanner = Arc::new(Scanner::with_cluster(&config.scan, cluster).await?);
    let mut readiness = Readiness::new(config, scanner);
    readiness.create_quarantine = false;
    Ok(readiness.run().await)
}

/// One line of `check-config --probe` output.
pub fn describe(check: &ReadinessCheck) -> String {
    if check.ok {
        format!("probe {}: ok ({})", check.name, check.detail)
    } else {
        format!("probe {}: FAILED: {}", check.name, check.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;

    /// A plaintext IMAP "backend" that greets and counts connections.
    async fn greeter() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.write_all(b"* OK ready\r\n").await;
            }
        });
        (port, count)
    }

    fn config(port: u16, dir: &std::path::Path) -> Config {
        Config::parse(&format!(
            "[scan]\nrules_dir = {rules:?}\nquarantine_dir = {q:?}\n\n\
             [[listener]]\nname = \"l\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\nbackend = \"health-unit\"\n\n\
             [[backend]]\nname = \"health-unit\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\n",
            rules = dir.display().to_string(),
            q = dir.join("q").display().to_string(),
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_round_and_set_the_gauge() {
        let dir = tempfile::tempdir().unwrap();
        let (port, connections) = greeter().await;
        let config = config(port, dir.path());
        let scanner = Arc::new(Scanner::new(&config.scan).await.unwrap());
        let readiness = Readiness::new(&config, scanner);
        let (first, second) = tokio::join!(readiness.run_shared(), readiness.run_shared());
        assert_eq!(first, second);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(first[0].name, "backend health-unit");
        assert!(
            first[0].ok
                && first[0]
                    .detail
                    .starts_with("imap: greeting \"* OK ready\" over plaintext"),
            "{first:?}"
        );
        assert_eq!(first[1].name, "quarantine");
        assert!(first[1].ok, "{first:?}");
        let gauge = metrics().backend_ready.with_label_values(&["health-unit"]);
        assert_eq!(gauge.get(), 1);
        // `run` (the background refresh, check-config --probe) always probes anew.
        readiness.run().await;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}
