use std::collections::BTreeSet;

use super::*;

/// Asserts that `values` are distinct and exactly `expected`, in order.
fn check(values: &[&'static str], expected: &[&str]) {
    assert_eq!(values, expected);
    let distinct: BTreeSet<_> = values.iter().collect();
    assert_eq!(
        distinct.len(),
        values.len(),
        "duplicate label in {values:?}"
    );
}

#[test]
fn label_enums_match_the_former_string_lists() {
    check(&Protocol::ALL.map(Protocol::as_str), &["imap", "pop3"]);
    check(&TlsOutcome::ALL.map(TlsOutcome::as_str), &["ok", "error"]);
    check(
        &TlsReason::ALL.map(TlsReason::as_str),
        &[
            "ok",
            "alpn",
            "protocol",
            "certificate",
            "eof",
            "timeout",
            "other",
        ],
    );
    check(
        &TlsVersion::ALL.map(TlsVersion::as_str),
        &["TLSv1_2", "TLSv1_3", "none"],
    );
    check(
        &LoginOutcome::ALL.map(LoginOutcome::as_str),
        &["ok", "fail", "refused"],
    );
    check(
        &BackendErrorSide::ALL.map(BackendErrorSide::as_str),
        &["connect", "read", "write"],
    );
    check(
        &BackendErrorKind::ALL.map(BackendErrorKind::as_str),
        &[
            "timeout", "refused", "dns", "tls", "protocol", "io", "closed",
        ],
    );
    check(
        &ByteDirection::ALL.map(ByteDirection::as_str),
        &["client_to_backend", "backend_to_client"],
    );
    check(
        &ScanVerdict::ALL.map(ScanVerdict::as_str),
        &["clean", "infected", "rule", "error", "oversize"],
    );
    check(
        &ScanEngine::ALL.map(ScanEngine::as_str),
        &["clamd", "rules"],
    );
    check(&CacheResult::ALL.map(CacheResult::as_str), &["hit", "miss"]);
    check(
        &WriteOutcome::ALL.map(WriteOutcome::as_str),
        &["ok", "error"],
    );
    check(
        &PolicyCause::ALL.map(PolicyCause::as_str),
        &["error", "oversize", "infected", "rule"],
    );
    check(
        &PolicyActionLabel::ALL.map(PolicyActionLabel::as_str),
        &["tempfail", "pass", "block", "strip", "tag", "log"],
    );
    check(
        &Limit::ALL.map(Limit::as_str),
        &[
            "max_connections",
            "per_ip_connections",
            "auth_penalty",
            "max_errors",
            "prelogin_timeout",
            "idle_timeout",
            "line_length",
            "literal_size",
            "response_size",
            "nesting",
            "syntax",
            "pipeline_depth",
            "scan_concurrency",
            "memory",
            "proxy_header",
        ],
    );
    check(
        &SessionEndLabel::ALL.map(SessionEndLabel::as_str),
        &[
            "logout",
            "client_closed",
            "backend_closed",
            "error",
            "shutdown",
            "timeout",
        ],
    );
}

#[test]
fn tls_versions_map_to_the_fixed_set() {
    use rustls::ProtocolVersion;
    assert_eq!(
        TlsVersion::of(Some(ProtocolVersion::TLSv1_3)).as_str(),
        "TLSv1_3"
    );
    assert_eq!(
        TlsVersion::of(Some(ProtocolVersion::TLSv1_2)).as_str(),
        "TLSv1_2"
    );
    assert_eq!(
        TlsVersion::of(Some(ProtocolVersion::TLSv1_1)),
        TlsVersion::None
    );
    assert_eq!(TlsVersion::of(None).as_str(), "none");
}

#[test]
fn bool_helpers_pick_the_right_value() {
    assert_eq!(CacheResult::of(true), CacheResult::Hit);
    assert_eq!(CacheResult::of(false), CacheResult::Miss);
    assert_eq!(WriteOutcome::of(true), WriteOutcome::Ok);
    assert_eq!(WriteOutcome::of(false), WriteOutcome::Error);
}

#[test]
fn scan_protocol_maps_to_the_listener_protocol() {
    assert_eq!(Protocol::from(crate::scan::Protocol::Imap).as_str(), "imap");
    assert_eq!(Protocol::from(crate::scan::Protocol::Pop3).as_str(), "pop3");
}
