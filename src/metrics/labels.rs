//! The fixed label values of the metric families in [`super::Metrics`].
//!
//! Keeping every non-configured label value in a closed list bounds the number of time series;
//! callers pick a value from these lists instead of formatting error text into a label.

/// Values of the `protocol` label.
pub const PROTOCOLS: [&str; 2] = ["imap", "pop3"];
/// Values of the `outcome` label of `tls_handshakes_total`.
pub const TLS_OUTCOMES: [&str; 2] = ["ok", "error"];
/// Values of the `reason` label of `tls_handshakes_total`.
pub const TLS_REASONS: [&str; 7] = [
    "ok",
    "alpn",
    "protocol",
    "certificate",
    "eof",
    "timeout",
    "other",
];
/// Values of the `version` label of `tls_handshakes_total`.
pub const TLS_VERSIONS: [&str; 3] = ["TLSv1_2", "TLSv1_3", "none"];
/// Values of the `outcome` label of `logins_total`.
pub const LOGIN_OUTCOMES: [&str; 3] = ["ok", "fail", "refused"];
/// Values of the `side` label of `backend_errors_total`: the operation that failed.
pub const BACKEND_ERROR_SIDES: [&str; 3] = ["connect", "read", "write"];
/// Values of the `kind` label of `backend_errors_total`.
pub const BACKEND_ERROR_KINDS: [&str; 7] = [
    "timeout", "refused", "dns", "tls", "protocol", "io", "closed",
];
/// Values of the `direction` label of `bytes_total`.
pub const BYTE_DIRECTIONS: [&str; 2] = ["client_to_backend", "backend_to_client"];
/// Values of the `verdict` label of `messages_scanned_total`.
pub const SCAN_VERDICTS: [&str; 5] = ["clean", "infected", "rule", "error", "oversize"];
/// Values of the `engine` label of `scan_seconds`.
pub const SCAN_ENGINES: [&str; 2] = ["clamd", "rules"];
/// Values of the `result` label of `scan_cache_total`.
pub const CACHE_RESULTS: [&str; 2] = ["hit", "miss"];
/// Values of the `outcome` label of `quarantine_writes_total` and `config_reloads_total`.
pub const WRITE_OUTCOMES: [&str; 2] = ["ok", "error"];
/// Values of the `cause` label of `policy_actions_total`.
pub const POLICY_CAUSES: [&str; 4] = ["error", "oversize", "infected", "rule"];
/// Values of the `action` label of `policy_actions_total`.
pub const POLICY_ACTIONS: [&str; 6] = ["tempfail", "pass", "block", "strip", "tag", "log"];
/// Values of the `limit` label of `limit_rejections_total`.
pub const LIMITS: [&str; 10] = [
    "max_connections",
    "per_ip_connections",
    "auth_penalty",
    "max_errors",
    "prelogin_timeout",
    "idle_timeout",
    "line_length",
    "literal_size",
    "pipeline_depth",
    "scan_concurrency",
];
/// Values of the `end` label of `sessions_total`.
pub const SESSION_ENDS: [&str; 6] = [
    "logout",
    "client_closed",
    "backend_closed",
    "error",
    "shutdown",
    "timeout",
];

/// Maps a negotiated rustls protocol version to the `version` label of `tls_handshakes_total`.
pub fn tls_version_label(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1_2",
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1_3",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_version_labels_are_from_the_fixed_set() {
        use rustls::ProtocolVersion;
        assert_eq!(tls_version_label(Some(ProtocolVersion::TLSv1_3)), "TLSv1_3");
        assert_eq!(tls_version_label(Some(ProtocolVersion::TLSv1_2)), "TLSv1_2");
        assert_eq!(tls_version_label(Some(ProtocolVersion::TLSv1_1)), "none");
        assert_eq!(tls_version_label(None), "none");
        for label in [Some(ProtocolVersion::TLSv1_3), None].map(tls_version_label) {
            assert!(TLS_VERSIONS.contains(&label));
        }
    }
}
