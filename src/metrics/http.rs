//! HTTP endpoint for monitoring: `/metrics` (Prometheus text format 0.0.4), `/healthz`
//! (liveness: the process answers) and `/readyz` (readiness: every [`ReadinessCheck`] passes).
//!
//! The endpoint is meant for a private monitoring network (Kubernetes probes, a Prometheus
//! scraper); it has no authentication and serves no user data.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::MetricsError;

/// Upper bound for one round of readiness checks; a probe that hangs counts as not ready.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for the length of one check's detail text in the `/readyz` body (long enough
/// for a backend TLS explanation with the fingerprints to pin).
const MAX_DETAIL_CHARS: usize = 1000;

/// The outcome of one readiness check (e.g. "clamd reachable", "backend legacy reachable").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessCheck {
    /// Short name of the check, shown in the `/readyz` body.
    pub name: String,
    /// Whether the check passed.
    pub ok: bool,
    /// Reason of a failure (shown in the body); may be empty when the check passed.
    pub detail: String,
}

/// Start of the detail of a check that passes degraded (see [`ReadinessCheck::degraded`]).
pub const DEGRADED: &str = "degraded: ";

impl ReadinessCheck {
    /// A check that passes (the replica is ready) while something optional is missing: shown
    /// as `name: degraded (detail)`.
    pub fn degraded(name: String, detail: String) -> ReadinessCheck {
        ReadinessCheck {
            name,
            ok: true,
            detail: format!("{DEGRADED}{detail}"),
        }
    }
}

/// Something that can tell whether this replica is ready to take traffic.
///
/// Implementations should bound their own work (timeouts on clamd pings, backend connects);
/// the endpoint additionally gives up after 5 seconds and answers 503.
pub trait ReadinessProbe: Send + Sync {
    /// Runs every check and returns their outcomes.
    fn check(&self) -> Pin<Box<dyn Future<Output = Vec<ReadinessCheck>> + Send + '_>>;
}

/// Builds the router with `/metrics`, `/healthz` and `/readyz`.
pub fn router(readiness: Arc<dyn ReadinessProbe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(readiness)
}

/// Binds `bind` and serves the monitoring endpoint until `shutdown` completes.
pub async fn serve_http(
    bind: SocketAddr,
    readiness: Arc<dyn ReadinessProbe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| MetricsError::Bind { addr: bind, source })?;
    serve_listener(listener, readiness, shutdown).await
}

/// Serves the monitoring endpoint on an already bound listener until `shutdown` completes
/// (in-flight requests are finished first).
pub async fn serve_listener(
    listener: TcpListener,
    readiness: Arc<dyn ReadinessProbe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    axum::serve(listener, router(readiness))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MetricsError::Serve)
}

async fn metrics_handler() -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        super::render(),
    )
        .into_response()
}

async fn healthz_handler() -> &'static str {
    "ok\n"
}

async fn readyz_handler(State(readiness): State<Arc<dyn ReadinessProbe>>) -> Response {
    let (status, body) = run_checks(readiness.as_ref(), READINESS_TIMEOUT).await;
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Runs the probe within `limit` and formats the outcome; a timeout counts as not ready.
async fn run_checks(readiness: &dyn ReadinessProbe, limit: Duration) -> (StatusCode, String) {
    match tokio::time::timeout(limit, readiness.check()).await {
        Ok(checks) => readiness_report(&checks),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "readiness: error (checks timed out)\n".to_owned(),
        ),
    }
}

/// Formats the checks one per line as `name: ok`, `name: ok (detail)` or `name: error
/// (detail)`; 200 only when all checks passed.
fn readiness_report(checks: &[ReadinessCheck]) -> (StatusCode, String) {
    let mut body = String::new();
    for check in checks {
        let name = single_line(&check.name);
        if let Some(detail) = check.detail.strip_prefix(DEGRADED).filter(|_| check.ok) {
            body.push_str(&format!("{name}: degraded ({})\n", single_line(detail)));
        } else if check.ok && check.detail.is_empty() {
            body.push_str(&format!("{name}: ok\n"));
        } else if check.ok {
            body.push_str(&format!("{name}: ok ({})\n", single_line(&check.detail)));
        } else {
            body.push_str(&format!("{name}: error ({})\n", single_line(&check.detail)));
        }
    }
    let status = if checks.iter().all(|check| check.ok) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// Keeps a line-oriented body parseable: control characters become spaces, length is bounded.
fn single_line(text: &str) -> String {
    text.chars()
        .take(MAX_DETAIL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    struct FixedProbe(Vec<ReadinessCheck>);

    impl ReadinessProbe for FixedProbe {
        fn check(&self) -> Pin<Box<dyn Future<Output = Vec<ReadinessCheck>> + Send + '_>> {
            Box::pin(async move { self.0.clone() })
        }
    }

    struct HangingProbe;

    impl ReadinessProbe for HangingProbe {
        fn check(&self) -> Pin<Box<dyn Future<Output = Vec<ReadinessCheck>> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    fn check(name: &str, ok: bool, detail: &str) -> ReadinessCheck {
        let (name, detail) = (name.to_owned(), detail.to_owned());
        ReadinessCheck { name, ok, detail }
    }

    /// Starts the endpoint on an ephemeral port; dropping the sender shuts it down.
    async fn start(probe: impl ReadinessProbe + 'static) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(serve_listener(listener, Arc::new(probe), shutdown));
        (addr, stop)
    }

    /// Sends one HTTP/1.1 GET with `Connection: close`; returns (status, raw head, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_text_format() {
        let (addr, _stop) = start(FixedProbe(vec![])).await;
        crate::metrics::metrics()
            .keepalives_sent
            .with_label_values(&[crate::metrics::Protocol::Imap.as_str()])
            .inc();
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("# TYPE portcullis_keepalives_sent_total counter"));
        assert!(body.contains("portcullis_build_info{version="));
    }

    #[tokio::test]
    async fn healthz_is_ok_even_when_not_ready() {
        let (addr, _stop) = start(FixedProbe(vec![check("clamd", false, "down")])).await;
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
    }

    #[tokio::test]
    async fn readyz_ok_when_all_checks_pass() {
        let probe = FixedProbe(vec![
            check("clamd", true, ""),
            check("backend legacy", true, ""),
        ]);
        let (addr, _stop) = start(probe).await;
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200);
        assert_eq!(body, "clamd: ok\nbackend legacy: ok\n");
    }

    #[tokio::test]
    async fn readyz_degraded_check_is_still_ready() {
        let probe = FixedProbe(vec![
            check("clamd", true, ""),
            ReadinessCheck::degraded("cluster".into(), "redis://s:6379: refused".into()),
        ]);
        let (addr, _stop) = start(probe).await;
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            "clamd: ok\ncluster: degraded (redis://s:6379: refused)\n"
        );
    }

    #[tokio::test]
    async fn readyz_503_lists_failing_check_with_reason() {
        let probe = FixedProbe(vec![
            check("clamd", false, "connection refused\r\ninjected"),
            check("backend legacy", true, ""),
        ]);
        let (addr, _stop) = start(probe).await;
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            "clamd: error (connection refused  injected)\nbackend legacy: ok\n"
        );
    }

    #[tokio::test]
    async fn readyz_503_when_probe_hangs() {
        let (status, body) = run_checks(&HangingProbe, Duration::from_millis(20)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "readiness: error (checks timed out)\n");
    }

    #[tokio::test]
    async fn unknown_path_is_404() {
        let (addr, _stop) = start(FixedProbe(vec![])).await;
        assert_eq!(get(addr, "/nope").await.0, 404);
    }

    #[tokio::test]
    async fn serve_http_reports_bind_error_and_stops_on_shutdown() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let probe: Arc<dyn ReadinessProbe> = Arc::new(FixedProbe(vec![]));
        let result = serve_http(addr, probe.clone(), async {}).await;
        assert!(
            matches!(result, Err(MetricsError::Bind { .. })),
            "{result:?}"
        );
        drop(taken);
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let served =
            tokio::time::timeout(Duration::from_secs(5), serve_http(free, probe, async {}));
        assert!(served.await.unwrap().is_ok());
    }
}
