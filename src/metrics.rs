//! Process-wide Prometheus metrics for portcullis and the HTTP endpoint that exposes them.
//!
//! Every metric family lives in one [`Metrics`] value reachable through [`metrics()`]; callers
//! update it directly, e.g. `metrics().scan_cache.with_label_values(&[CacheResult::Hit.as_str()])
//! .inc()`. Names follow the Prometheus conventions (`portcullis_` prefix, `_total` for
//! counters, base units such as `_seconds` and `_bytes`).
//!
//! **Label sets are bounded.** Every label value is either a configured name chosen by the
//! administrator (listener, backend, rule) or a value of one of the enums in [`labels`], turned
//! into a string with `as_str()` only at the `with_label_values` call.
//! User names, client addresses, mailbox names or free-form error text must never be used as
//! label values: each distinct value creates a time series for the life of the process.
//!
//! The HTTP side (`/metrics`, `/healthz`, `/readyz`) is in [`http`] and re-exported here.

mod expiry;
pub mod http;
pub mod labels;
mod memory;

pub use http::{serve_http, serve_listener, ReadinessCheck, ReadinessProbe, DEGRADED};
pub use labels::*;
pub use memory::MemoryMetrics;

use std::sync::{LazyLock, Mutex};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Errors of the metrics module.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric family could not be created or registered (a programming error in this module).
    #[error("metric registration failed: {0}")]
    Register(#[from] prometheus::Error),
    /// The HTTP listener could not be bound.
    #[error("cannot bind metrics listener on {addr}: {source}")]
    Bind {
        /// The address that was requested.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("metrics HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Histogram buckets (seconds) for establishing a backend connection (TCP + optional TLS).
const CONNECT_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Histogram buckets (seconds) for scanning one message; clamd on large mail can take seconds.
const SCAN_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// All metric families of the process, registered in one private [`Registry`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `portcullis_connections_accepted_total{listener,protocol}`.
    pub connections_accepted: IntCounterVec,
    /// `portcullis_connections_active{listener,protocol}` (gauge).
    pub connections_active: IntGaugeVec,
    /// `portcullis_tls_handshakes_total{listener,outcome,reason,version}`; see [`TlsOutcome`], [`TlsReason`], [`TlsVersion`].
    pub tls_handshakes: IntCounterVec,
    /// `portcullis_logins_total{listener,protocol,outcome}`; see [`LoginOutcome`].
    pub logins: IntCounterVec,
    /// `portcullis_backend_connect_seconds{backend}` histogram.
    pub backend_connect_seconds: HistogramVec,
    /// `portcullis_backend_errors_total{backend,side,kind}`; see [`BackendErrorSide`], [`BackendErrorKind`].
    pub backend_errors: IntCounterVec,
    /// `portcullis_bytes_total{listener,direction}`; see [`ByteDirection`].
    pub bytes: IntCounterVec,
    /// `portcullis_messages_scanned_total{protocol,verdict}`; see [`ScanVerdict`].
    pub messages_scanned: IntCounterVec,
    /// `portcullis_scan_seconds{engine}` histogram; see [`ScanEngine`].
    pub scan_seconds: HistogramVec,
    /// `portcullis_scan_cache_total{result}`; see [`CacheResult`].
    pub scan_cache: IntCounterVec,
    /// `portcullis_quarantine_writes_total{outcome}`; see [`WriteOutcome`].
    pub quarantine_writes: IntCounterVec,
    /// `portcullis_quarantine_releases_total`: releases a running scanner took into effect
    /// (new entries in the quarantine's `released/` directory; those present at start are not
    /// counted).
    pub quarantine_releases: IntCounterVec,
    /// `portcullis_released_messages_served_total{protocol}`: originals served because their
    /// content was released.
    pub released_served: IntCounterVec,
    /// `portcullis_policy_actions_total{cause,action}`; see [`PolicyCause`], [`PolicyActionLabel`].
    pub policy_actions: IntCounterVec,
    /// `portcullis_rule_hits_total{rule}`; rule names come from admin-controlled rule files.
    pub rule_hits: IntCounterVec,
    /// `portcullis_keepalives_sent_total{protocol}`.
    pub keepalives_sent: IntCounterVec,
    /// `portcullis_limit_rejections_total{limit}`; see [`Limit`].
    pub limit_rejections: IntCounterVec,
    /// `portcullis_sessions_total{listener,protocol,end}`; see [`SessionEndLabel`].
    pub sessions: IntCounterVec,
    /// `portcullis_build_info{version}`, always 1.
    pub build_info: IntGaugeVec,
    /// `portcullis_config_reloads_total{outcome}`; see [`WriteOutcome`].
    pub config_reloads: IntCounterVec,
    /// `portcullis_backend_ready{backend}`: 1 when the last readiness probe of the backend
    /// (TCP, TLS with verification, greeting) succeeded, else 0; see [`crate::health`].
    pub backend_ready: IntGaugeVec,
    /// `portcullis_log_lines_dropped_total`: log lines lost because the log queue was full or
    /// the log sink failed (see [`crate::logging`]).
    pub log_lines_dropped: IntCounter,
    /// `portcullis_tls_certificate_expiry_seconds{certificate}` (gauge): seconds until notAfter
    /// of each served certificate, negative once expired; labelled with the configured
    /// certificate file (or `self-signed`). Replaced as a whole on reload.
    pub tls_certificate_expiry_seconds: IntGaugeVec,
    /// `(certificate, notAfter as Unix time)` behind `tls_certificate_expiry_seconds`,
    /// recomputed on every render so the gauge counts down between reloads.
    certificate_not_after: Mutex<Vec<(String, i64)>>,
    /// `portcullis_route_decisions_total{router,outcome}`; see [`RouteOutcome`].
    pub route_decisions: IntCounterVec,
    /// `portcullis_backend_logins_total{backend,outcome}` (`ok`/`fail`); see [`LoginOutcome`].
    pub backend_logins: IntCounterVec,
    /// `portcullis_backend_sessions_total{backend}`: sessions logged in on each backend.
    pub backend_sessions: IntCounterVec,
    /// `portcullis_cluster_errors_total{op}`: shared-store calls that failed or timed out (the
    /// replica went on alone); see [`ClusterOp`].
    pub cluster_errors: IntCounterVec,
    /// `portcullis_cluster_lookups_total{result}`: verdict lookups in the shared store after a
    /// local miss; see [`CacheResult`].
    pub cluster_lookups: IntCounterVec,
    /// `portcullis_memory_*`: the memory budget ([`crate::budget`]).
    pub memory: MemoryMetrics,
}

/// An open client connection, counted in `connections_active` until dropped; see
/// [`Metrics::track_connection`].
#[derive(Debug)]
pub struct ActiveConnection(IntGauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    // The definitions below are compile-time constants; failing here is a bug in this module,
    // caught by the unit tests, never a consequence of runtime data.
    Metrics::new().expect("static metric definitions are valid")
});

/// The process-wide metrics, created and registered on first use.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Renders every metric of [`metrics()`] in the Prometheus text exposition format 0.0.4.
pub fn render() -> String {
    metrics().render()
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let vec = IntCounterVec::new(Opts::new(name, help).namespace("portcullis"), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let vec = IntGaugeVec::new(Opts::new(name, help).namespace("portcullis"), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help)
        .namespace("portcullis")
        .buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl Metrics {
    /// Creates every family in a fresh registry. Use [`metrics()`] in production code; this is
    /// public so tests can work on an isolated instance.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let m = Metrics {
            connections_accepted: counter(
                &r,
                "connections_accepted_total",
                "Client connections accepted.",
                &["listener", "protocol"],
            )?,
            connections_active: gauge(
                &r,
                "connections_active",
                "Client connections currently open.",
                &["listener", "protocol"],
            )?,
            tls_handshakes: counter(
                &r,
                "tls_handshakes_total",
                "Client TLS handshakes by outcome, failure reason and negotiated version.",
                &["listener", "outcome", "reason", "version"],
            )?,
            logins: counter(
                &r,
                "logins_total",
                "Client login attempts relayed or refused.",
                &["listener", "protocol", "outcome"],
            )?,
            backend_connect_seconds: histogram(
                &r,
                "backend_connect_seconds",
                "Time to establish a backend connection, including TLS.",
                &["backend"],
                &CONNECT_BUCKETS,
            )?,
            backend_errors: counter(
                &r,
                "backend_errors_total",
                "Backend failures by operation and kind.",
                &["backend", "side", "kind"],
            )?,
            bytes: counter(
                &r,
                "bytes_total",
                "Bytes relayed between clients and backends.",
                &["listener", "direction"],
            )?,
            messages_scanned: counter(
                &r,
                "messages_scanned_total",
                "Messages scanned, by verdict.",
                &["protocol", "verdict"],
            )?,
            scan_seconds: histogram(
                &r,
                "scan_seconds",
                "Time spent scanning one message, per engine.",
                &["engine"],
                &SCAN_BUCKETS,
            )?,
            scan_cache: counter(
                &r,
                "scan_cache_total",
                "Verdict cache lookups.",
                &["result"],
            )?,
            quarantine_writes: counter(
                &r,
                "quarantine_writes_total",
                "Messages written to the quarantine.",
                &["outcome"],
            )?,
            quarantine_releases: counter(
                &r,
                "quarantine_releases_total",
                "Quarantine releases picked up by the running scanner.",
                &[],
            )?,
            released_served: counter(
                &r,
                "released_messages_served_total",
                "Released originals served instead of a notice.",
                &["protocol"],
            )?,
            policy_actions: counter(
                &r,
                "policy_actions_total",
                "Policy actions applied, by cause.",
                &["cause", "action"],
            )?,
            rule_hits: counter(
                &r,
                "rule_hits_total",
                "Content rule matches, by rule name.",
                &["rule"],
            )?,
            keepalives_sent: counter(
                &r,
                "keepalives_sent_total",
                "Keepalive responses sent to clients while a scan was running.",
                &["protocol"],
            )?,
            limit_rejections: counter(
                &r,
                "limit_rejections_total",
                "Connections or commands rejected by a limit.",
                &["limit"],
            )?,
            sessions: counter(
                &r,
                "sessions_total",
                "Finished client sessions, by how they ended.",
                &["listener", "protocol", "end"],
            )?,
            build_info: gauge(
                &r,
                "build_info",
                "Build information; the value is always 1.",
                &["version"],
            )?,
            config_reloads: counter(
                &r,
                "config_reloads_total",
                "Configuration reloads (SIGHUP).",
                &["outcome"],
            )?,
            backend_ready: gauge(
                &r,
                "backend_ready",
                "1 if the last readiness probe of the backend (connect, TLS and certificate check, greeting) succeeded, else 0.",
                &["backend"],
            )?,
            log_lines_dropped: {
                let opts = Opts::new(
                    "log_lines_dropped_total",
                    "Log lines dropped because the log queue was full or the log sink failed.",
                )
                .namespace("portcullis");
                let counter = IntCounter::with_opts(opts)?;
                r.register(Box::new(counter.clone()))?;
                counter
            },
            tls_certificate_expiry_seconds: gauge(
                &r,
                "tls_certificate_expiry_seconds",
                "Seconds until the notAfter time of each served certificate; negative once expired.",
                &["certificate"],
            )?,
            certificate_not_after: Mutex::new(Vec::new()),
            route_decisions: counter(
                &r,
                "route_decisions_total",
                "Logins routed (or refused) by each router, by outcome.",
                &["router", "outcome"],
            )?,
            backend_logins: counter(
                &r,
                "backend_logins_total",
                "Logins the proxy performed on each backend, by outcome.",
                &["backend", "outcome"],
            )?,
            backend_sessions: counter(
                &r,
                "backend_sessions_total",
                "Client sessions logged in on each backend.",
                &["backend"],
            )?,
            cluster_errors: counter(
                &r,
                "cluster_errors_total",
                "Shared-store calls that failed or timed out, by operation.",
                &["op"],
            )?,
            cluster_lookups: counter(
                &r,
                "cluster_lookups_total",
                "Shared-store verdict lookups after a local cache miss.",
                &["result"],
            )?,
            memory: MemoryMetrics::register(&r)?,
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.prime_fixed_series();
        Ok(m)
    }

    /// Creates the zero-valued series of every family whose labels are all fixed, so that
    /// `rate()` and ratio alerts have data before the first event.
    fn prime_fixed_series(&self) {
        for protocol in Protocol::ALL {
            self.keepalives_sent.with_label_values(&[protocol.as_str()]);
            self.released_served.with_label_values(&[protocol.as_str()]);
            for verdict in ScanVerdict::ALL {
                self.messages_scanned
                    .with_label_values(&[protocol.as_str(), verdict.as_str()]);
            }
        }
        for engine in ScanEngine::ALL {
            self.scan_seconds.with_label_values(&[engine.as_str()]);
        }
        self.quarantine_releases.with_label_values(&[] as &[&str]);
        for result in CacheResult::ALL {
            self.scan_cache.with_label_values(&[result.as_str()]);
        }
        for outcome in WriteOutcome::ALL {
            self.quarantine_writes
                .with_label_values(&[outcome.as_str()]);
            self.config_reloads.with_label_values(&[outcome.as_str()]);
        }
        for cause in PolicyCause::ALL {
            for action in PolicyActionLabel::ALL {
                self.policy_actions
                    .with_label_values(&[cause.as_str(), action.as_str()]);
            }
        }
        for limit in Limit::ALL {
            self.limit_rejections.with_label_values(&[limit.as_str()]);
        }
    }

    /// Creates the zero-valued per-listener series (call once per configured listener).
    pub fn prime_listener(&self, listener: &str, protocol: Protocol) {
        let protocol = protocol.as_str();
        self.connections_accepted
            .with_label_values(&[listener, protocol]);
        self.connections_active
            .with_label_values(&[listener, protocol]);
        for outcome in LoginOutcome::ALL {
            self.logins
                .with_label_values(&[listener, protocol, outcome.as_str()]);
        }
        for direction in ByteDirection::ALL {
            self.bytes
                .with_label_values(&[listener, direction.as_str()]);
        }
        for end in SessionEndLabel::ALL {
            self.sessions
                .with_label_values(&[listener, protocol, end.as_str()]);
        }
    }

    /// Counts an accepted connection and keeps it in `connections_active` until the returned
    /// guard is dropped (also on early returns and panics, so the gauge cannot drift).
    pub fn track_connection(&self, listener: &str, protocol: Protocol) -> ActiveConnection {
        let protocol = protocol.as_str();
        self.connections_accepted
            .with_label_values(&[listener, protocol])
            .inc();
        let gauge = self
            .connections_active
            .with_label_values(&[listener, protocol]);
        gauge.inc();
        ActiveConnection(gauge)
    }

    /// Creates the zero-valued per-backend series (call once per configured backend).
    pub fn prime_backend(&self, backend: &str) {
        self.backend_connect_seconds.with_label_values(&[backend]);
        self.backend_sessions.with_label_values(&[backend]);
        for outcome in [LoginOutcome::Ok, LoginOutcome::Fail] {
            self.backend_logins
                .with_label_values(&[backend, outcome.as_str()]);
        }
    }

    /// Creates the zero-valued series of a router.
    pub fn prime_router(&self, router: &str) {
        for outcome in RouteOutcome::ALL {
            self.route_decisions
                .with_label_values(&[router, outcome.as_str()]);
        }
    }

    /// Renders this instance's registry in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        self.refresh_certificate_expiry();
        let families = self.registry.gather();
        match TextEncoder::new().encode_to_string(&families) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "cannot encode metrics");
                String::new()
            }
        }
    }
}

#[cfg(test)]
#[path = "metrics/tests.rs"]
mod tests;
