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
/// The `outcome` label of `logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The backend accepted the proxy's login.
    Ok,
    /// The backend refused it.
    Fail,
    /// The proxy refused it by policy (TLS required), without asking the backend.
    Refused,
}

impl LoginOutcome {
    /// Every value, for priming the series.
    pub const ALL: [LoginOutcome; 3] =
        [LoginOutcome::Ok, LoginOutcome::Fail, LoginOutcome::Refused];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::Fail => "fail",
            LoginOutcome::Refused => "refused",
        }
    }
}

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
/// The `limit` label of `limit_rejections_total`: which bound a peer hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections` in total.
    MaxConnections,
    /// `max_connections_per_ip`.
    PerIpConnections,
    /// A login delayed by the auth-failure penalty.
    AuthPenalty,
    /// `max_errors` protocol errors in one session.
    MaxErrors,
    /// No login within `prelogin_timeout`.
    PreloginTimeout,
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// A line over `max_line`.
    LineLength,
    /// A literal or command over its size limit.
    LiteralSize,
    /// A backend response over its size limit.
    ResponseSize,
    /// Parentheses/brackets nested deeper than `max_nesting`.
    Nesting,
    /// Bytes no grammar allows (NUL outside literals, ...).
    Syntax,
    /// Too many pipelined commands.
    PipelineDepth,
    /// A scan waited for one of the `max_scans` permits.
    ScanConcurrency,
    /// A PROXY protocol header that was missing, malformed or from an untrusted peer.
    ProxyHeader,
}

impl Limit {
    /// Every value, for priming the series.
    pub const ALL: [Limit; 14] = [
        Limit::MaxConnections,
        Limit::PerIpConnections,
        Limit::AuthPenalty,
        Limit::MaxErrors,
        Limit::PreloginTimeout,
        Limit::IdleTimeout,
        Limit::LineLength,
        Limit::LiteralSize,
        Limit::ResponseSize,
        Limit::Nesting,
        Limit::Syntax,
        Limit::PipelineDepth,
        Limit::ScanConcurrency,
        Limit::ProxyHeader,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::PerIpConnections => "per_ip_connections",
            Limit::AuthPenalty => "auth_penalty",
            Limit::MaxErrors => "max_errors",
            Limit::PreloginTimeout => "prelogin_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::LineLength => "line_length",
            Limit::LiteralSize => "literal_size",
            Limit::ResponseSize => "response_size",
            Limit::Nesting => "nesting",
            Limit::Syntax => "syntax",
            Limit::PipelineDepth => "pipeline_depth",
            Limit::ScanConcurrency => "scan_concurrency",
            Limit::ProxyHeader => "proxy_header",
        }
    }
}

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
