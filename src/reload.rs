//! Live configuration reload (SIGHUP): certificates and the SNI set are swapped, rules are
//! recompiled, static routers' rules and map files are reloaded, and whatever cannot change in a running process is reported as needing a
//! restart. Sessions in progress keep the TLS session and rules snapshot they started with.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::{metrics, WriteOutcome};
use crate::scan::Scanner;
use crate::tls::{CertSet, CertStore, TlsError};

/// Why a new configuration was rejected; the old one stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load, parse or validate.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A certificate or key (default or SNI) is unusable.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The rules did not compile.
    #[error("scan rules: {0}")]
    Rules(crate::scan::ScanError),
    /// A router's rules or map file are unusable.
    #[error("routing: {0}")]
    Routing(#[from] crate::routing::RoutingError),
}

/// The parts of a running server a reload can change.
#[derive(Debug, Clone)]
pub struct ReloadHandles {
    /// Client-facing certificates.
    pub certs: Arc<CertStore>,
    /// The scan pipeline (rules).
    pub scanner: Arc<Scanner>,
    /// The routers (static tables and map files are reloaded).
    pub routers: crate::routing::Routers,
}

/// What a successful reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Number of SNI certificate entries now served.
    pub sni_entries: usize,
    /// Changed settings that only take effect after a restart (dotted keys).
    pub needs_restart: Vec<String>,
}

/// Applies `new` to a server started with `running`: everything is validated and prepared
/// first, then swapped, so a failure changes nothing. Counted in `config_reloads_total`.
pub fn apply(
    handles: &ReloadHandles,
    running: &Config,
    new: &Config,
) -> Result<ReloadReport, ReloadError> {
    let result = prepare_and_swap(handles, running, new);
    let outcome = WriteOutcome::of(result.is_ok());
    metrics()
        .config_reloads
        .with_label_values(&[outcome.as_str()])
        .inc();
    match &result {
        Ok(report) if report.needs_restart.is_empty() => {
            tracing::info!(sni = report.sni_entries, "configuration reloaded")
        }
        Ok(report) => tracing::warn!(
            sni = report.sni_entries,
            needs_restart = ?report.needs_restart,
            "configuration reloaded; some changes need a restart"
        ),
        Err(error) => {
            tracing::error!(%error, "configuration reload REJECTED; the old configuration stays in force")
        }
    }
    result
}

/// Loads `path` and [`apply`]s it; a file that does not load is counted as a failed reload.
pub fn reload_file(
    handles: &ReloadHandles,
    running: &Config,
    path: &std::path::Path,
) -> Result<ReloadReport, ReloadError> {
    match Config::load(path) {
        Ok(new) => apply(handles, running, &new),
        Err(error) => {
            let error = ReloadError::Config(error);
            metrics()
                .config_reloads
                .with_label_values(&[WriteOutcome::Error.as_str()])
                .inc();
            tracing::error!(%error, "configuration reload REJECTED; the old configuration stays in force");
            Err(error)
        }
    }
}

fn prepare_and_swap(
    handles: &ReloadHandles,
    running: &Config,
    new: &Config,
) -> Result<ReloadReport, ReloadError> {
    new.validate()?;
    let certs = CertSet::load(new.tls.as_ref())?;
    let routes = handles.routers.prepare_reload(running, new)?;
    // Compiles and swaps atomically; on error the old rules stay. Done after the certificates
    // loaded and before they are swapped, so either both change or neither does.
    handles
        .scanner
        .reload_rules(new.scan.rules_dir.as_deref())
        .map_err(ReloadError::Rules)?;
    if *handles.scanner.policy() != crate::scan::Policy::from_config(&new.scan) {
        handles.scanner.reload_policy(&new.scan);
    }
    metrics().set_certificates(certs.expiry());
    handles.certs.replace_set(certs);
    let map_entries = routes.commit();
    tracing::info!(map_entries, "routing tables reloaded");
    Ok(ReloadReport {
        sni_entries: new.tls.as_ref().map_or(0, |tls| tls.sni.len()),
        needs_restart: needs_restart(running, new),
    })
}

/// Settings that differ between `running` and `new` but cannot change live.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    if running.listeners != new.listeners {
        changed.push("listener".to_string());
    }
    if running.backends != new.backends {
        changed.push("backend".to_string());
    }
    if router_shape(running) != router_shape(new) {
        changed.push("router (other than static rules, default and map files)".to_string());
    }
    if running.limits != new.limits {
        changed.push("limits".to_string());
    }
    if running.metrics != new.metrics {
        changed.push("metrics".to_string());
    }
    if running.shutdown_grace != new.shutdown_grace {
        changed.push("shutdown_grace".to_string());
    }
    let mut old_scan = running.scan.clone();
    old_scan.rules_dir = new.scan.rules_dir.clone();
    old_scan.on_error = new.scan.on_error;
    old_scan.on_oversize = new.scan.on_oversize;
    old_scan.max_size = new.scan.max_size;
    old_scan.contact = new.scan.contact.clone();
    old_scan.scan_append = new.scan.scan_append;
    old_scan.scan_on_structure = new.scan.scan_on_structure;
    if format!("{old_scan:?}") != format!("{:?}", new.scan) {
        changed.push("scan (other than rules)".to_string());
    }
    changed
}

/// What of the routers cannot change live: everything but static rules, defaults and map
/// files (http settings, names and kinds).
fn router_shape(config: &Config) -> Vec<crate::config::RouterConfig> {
    config
        .routers
        .iter()
        .map(|router| match router.kind {
            crate::config::RouterKind::Static => crate::config::RouterConfig {
                rules: Vec::new(),
                default: None,
                map_file: None,
                ..router.clone()
            },
            crate::config::RouterKind::Http => router.clone(),
        })
        .collect()
}
