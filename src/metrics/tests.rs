//! Tests of the metric families and their rendering.

use super::*;

#[test]
fn render_contains_prefixed_families_and_build_info() {
    let m = Metrics::new().unwrap();
    m.connections_accepted
        .with_label_values(&["imaps", "imap"])
        .inc();
    m.bytes
        .with_label_values(&["imaps", "client_to_backend"])
        .inc_by(42);
    m.scan_seconds.with_label_values(&["clamd"]).observe(0.02);
    let text = m.render();
    assert!(text.contains("# TYPE portcullis_connections_accepted_total counter"));
    assert!(text
        .contains("portcullis_connections_accepted_total{listener=\"imaps\",protocol=\"imap\"} 1"));
    assert!(text
        .contains("portcullis_bytes_total{direction=\"client_to_backend\",listener=\"imaps\"} 42"));
    assert!(text.contains("portcullis_scan_seconds_bucket{engine=\"clamd\",le=\"0.025\"} 1"));
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("portcullis_build_info{{version=\"{version}\"}} 1")));
}

#[test]
fn fixed_series_exist_at_zero_before_any_event() {
    let text = Metrics::new().unwrap().render();
    assert!(text.contains("portcullis_scan_cache_total{result=\"miss\"} 0"));
    assert!(text.contains("portcullis_policy_actions_total{action=\"tempfail\",cause=\"error\"} 0"));
    assert!(text.contains("portcullis_limit_rejections_total{limit=\"scan_concurrency\"} 0"));
    assert!(text.contains("portcullis_limit_rejections_total{limit=\"memory\"} 0"));
    for family in [
        "memory_budget_bytes",
        "memory_reserved_bytes",
        "memory_waits_total",
    ] {
        assert!(text.contains(&format!("portcullis_{family} 0")), "{family}");
    }
    assert!(!text.contains("portcullis_connections_accepted_total{"));
}

#[test]
fn prime_listener_and_backend_create_zero_series() {
    let m = Metrics::new().unwrap();
    m.prime_listener("pop3s", Protocol::Pop3);
    m.prime_backend("legacy");
    let text = m.render();
    assert!(text.contains(
        "portcullis_sessions_total{end=\"logout\",listener=\"pop3s\",protocol=\"pop3\"} 0"
    ));
    assert!(text.contains("portcullis_backend_connect_seconds_count{backend=\"legacy\"} 0"));
}

#[test]
fn connection_guard_counts_and_releases() {
    let m = Metrics::new().unwrap();
    let first = m.track_connection("imaps", Protocol::Imap);
    let second = m.track_connection("imaps", Protocol::Imap);
    let active = m.connections_active.with_label_values(&["imaps", "imap"]);
    assert_eq!(active.get(), 2);
    drop(first);
    assert_eq!(active.get(), 1);
    drop(second);
    assert_eq!(active.get(), 0);
    let accepted = m.connections_accepted.with_label_values(&["imaps", "imap"]);
    assert_eq!(accepted.get(), 2);
}

#[test]
fn global_registry_is_shared_and_rendered() {
    metrics()
        .rule_hits
        .with_label_values(&["unit-test-rule"])
        .inc();
    assert!(render().contains("portcullis_rule_hits_total{rule=\"unit-test-rule\"}"));
    assert!(std::ptr::eq(metrics(), metrics()));
}
