//! Lints the rendered metrics with Prometheus' own checker: `promtool check metrics` reads the
//! exposition text on stdin and reports naming-convention and format problems.

use std::io::Write;
use std::process::{Command, Stdio};

use portcullis::metrics::{self, metrics};

const PROMTOOL: &str = "promtool";

/// Increments every family, across every fixed label value, at least once.
fn touch_every_family() {
    let m = metrics();
    for protocol in metrics::Protocol::ALL {
        m.prime_listener("imaps", protocol);
        let protocol = protocol.as_str();
        m.connections_accepted
            .with_label_values(&["imaps", protocol])
            .inc();
        m.connections_active
            .with_label_values(&["imaps", protocol])
            .inc();
        m.keepalives_sent.with_label_values(&[protocol]).inc();
        m.released_served.with_label_values(&[protocol]).inc();
        for outcome in metrics::LoginOutcome::ALL {
            m.logins
                .with_label_values(&["imaps", protocol, outcome.as_str()])
                .inc();
        }
        for end in metrics::SessionEndLabel::ALL.map(|e| e.as_str()) {
            m.sessions
                .with_label_values(&["imaps", protocol, end])
                .inc();
        }
        for verdict in metrics::ScanVerdict::ALL.map(|v| v.as_str()) {
            m.messages_scanned
                .with_label_values(&[protocol, verdict])
                .inc();
        }
    }
    for reason in metrics::TlsReason::ALL.map(|r| r.as_str()) {
        let outcome = if reason == "ok" { "ok" } else { "error" };
        for version in metrics::TlsVersion::ALL.map(|v| v.as_str()) {
            m.tls_handshakes
                .with_label_values(&["imaps", outcome, reason, version])
                .inc();
        }
    }
    m.prime_backend("legacy");
    m.backend_ready.with_label_values(&["legacy"]).set(1);
    m.backend_connect_seconds
        .with_label_values(&["legacy"])
        .observe(0.004);
    for side in metrics::BackendErrorSide::ALL.map(|s| s.as_str()) {
        for kind in metrics::BackendErrorKind::ALL.map(|k| k.as_str()) {
            m.backend_errors
                .with_label_values(&["legacy", side, kind])
                .inc();
        }
    }
    for direction in metrics::ByteDirection::ALL.map(|d| d.as_str()) {
        m.bytes
            .with_label_values(&["imaps", direction])
            .inc_by(1024);
    }
    for engine in metrics::ScanEngine::ALL.map(|e| e.as_str()) {
        m.scan_seconds.with_label_values(&[engine]).observe(0.05);
    }
    for result in metrics::CacheResult::ALL.map(|r| r.as_str()) {
        m.scan_cache.with_label_values(&[result]).inc();
        m.cluster_lookups.with_label_values(&[result]).inc();
    }
    for op in metrics::ClusterOp::ALL.map(|o| o.as_str()) {
        m.cluster_errors.with_label_values(&[op]).inc();
    }
    for outcome in metrics::WriteOutcome::ALL.map(|o| o.as_str()) {
        m.quarantine_writes.with_label_values(&[outcome]).inc();
        m.config_reloads.with_label_values(&[outcome]).inc();
    }
    for cause in metrics::PolicyCause::ALL.map(|c| c.as_str()) {
        for action in metrics::PolicyActionLabel::ALL.map(|a| a.as_str()) {
            m.policy_actions.with_label_values(&[cause, action]).inc();
        }
    }
    m.rule_hits.with_label_values(&["eicar-subject"]).inc();
    m.log_lines_dropped.inc();
    m.tls_certificate_expiry_seconds
        .with_label_values(&["/etc/portcullis/cert.pem"])
        .set(86_400);
    m.quarantine_releases
        .with_label_values(&[] as &[&str])
        .inc();
    m.prime_router("imap-users");
    for outcome in metrics::RouteOutcome::ALL.map(|o| o.as_str()) {
        m.route_decisions
            .with_label_values(&["imap-users", outcome])
            .inc();
    }
    for outcome in ["ok", "fail"] {
        m.backend_logins
            .with_label_values(&["legacy", outcome])
            .inc();
    }
    m.backend_sessions.with_label_values(&["legacy"]).inc();
    m.memory.budget_bytes.set(1 << 30);
    m.memory.reserved_bytes.set(8192);
    m.memory.waits.inc();
    for limit in metrics::Limit::ALL {
        m.limit_rejections
            .with_label_values(&[limit.as_str()])
            .inc();
    }
}

#[test]
fn rendered_metrics_pass_promtool_lint() {
    touch_every_family();
    let text = metrics::render();
    let families = text
        .lines()
        .filter(|l| l.starts_with("# TYPE portcullis_"))
        .count();
    assert_eq!(families, 31, "every family must be rendered:\n{text}");

    let mut child = match Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run `{PROMTOOL}` ({e}); install the test tools with \
             scripts/install-test-deps.sh (Debian package `prometheus`)"
        ),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool failed ({}):\n{report}",
        output.status
    );
    assert!(
        report.trim().is_empty(),
        "promtool reported problems:\n{report}"
    );
}
