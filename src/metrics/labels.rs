//! The fixed label values of the metric families in [`super::Metrics`].
//!
//! Keeping every non-configured label value in a closed enum bounds the number of time series:
//! callers pick a variant instead of formatting error text into a label, and the string is only
//! produced by `as_str()` at the Prometheus boundary. Each enum's `ALL` lists every value in
//! priming order.

/// Declares a label enum with `ALL` (every value, for priming the series) and `as_str()`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, for priming the series.
            pub const ALL: [$name; [$($value),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $value, )+
                }
            }
        }
    };
}

/// The `protocol` label (`connections_*`, `logins_total`, `sessions_total`,
/// `keepalives_sent_total`, `messages_scanned_total`): the listener's configured protocol.
pub use crate::config::Protocol;

impl Protocol {
    /// Every value, for priming the series.
    pub const ALL: [Protocol; 2] = [Protocol::Imap, Protocol::Pop3];
}

impl From<crate::scan::Protocol> for Protocol {
    fn from(protocol: crate::scan::Protocol) -> Self {
        match protocol {
            crate::scan::Protocol::Imap => Protocol::Imap,
            crate::scan::Protocol::Pop3 => Protocol::Pop3,
        }
    }
}

label_enum! {
    /// The `outcome` label of `tls_handshakes_total`.
    pub enum TlsOutcome {
        /// The handshake completed.
        Ok => "ok",
        /// It failed; the `reason` label says why.
        Error => "error",
    }
}

label_enum! {
    /// The `reason` label of `tls_handshakes_total`.
    pub enum TlsReason {
        /// The handshake completed.
        Ok => "ok",
        /// No ALPN protocol in common.
        Alpn => "alpn",
        /// The peer violated or did not support the TLS protocol.
        Protocol => "protocol",
        /// A client certificate was missing or invalid.
        Certificate => "certificate",
        /// The peer closed or reset the connection.
        Eof => "eof",
        /// The handshake did not finish in time.
        Timeout => "timeout",
        /// Anything else.
        Other => "other",
    }
}

label_enum! {
    /// The `version` label of `tls_handshakes_total`.
    pub enum TlsVersion {
        /// TLS 1.2.
        Tls12 => "TLSv1_2",
        /// TLS 1.3.
        Tls13 => "TLSv1_3",
        /// No (or another) version negotiated, e.g. a failed handshake.
        None => "none",
    }
}

impl TlsVersion {
    /// Maps a negotiated rustls protocol version to its label.
    pub fn of(version: Option<rustls::ProtocolVersion>) -> TlsVersion {
        match version {
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
            Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::Tls13,
            _ => TlsVersion::None,
        }
    }
}

label_enum! {
    /// The `outcome` label of `logins_total`.
    pub enum LoginOutcome {
        /// The backend accepted the proxy's login.
        Ok => "ok",
        /// The backend refused it.
        Fail => "fail",
        /// The proxy refused it by policy (TLS required), without asking the backend.
        Refused => "refused",
    }
}

label_enum! {
    /// The `side` label of `backend_errors_total`: the operation that failed.
    pub enum BackendErrorSide {
        /// Establishing the connection (TCP, TLS, greeting, STARTTLS).
        Connect => "connect",
        /// Reading from an established connection.
        Read => "read",
        /// Writing to an established connection.
        Write => "write",
    }
}

label_enum! {
    /// The `kind` label of `backend_errors_total`.
    pub enum BackendErrorKind {
        /// The operation timed out.
        Timeout => "timeout",
        /// The connection was refused.
        Refused => "refused",
        /// The host name did not resolve.
        Dns => "dns",
        /// TLS failed (handshake or verification).
        Tls => "tls",
        /// The backend spoke something unexpected.
        Protocol => "protocol",
        /// Another I/O error.
        Io => "io",
        /// The backend closed the connection.
        Closed => "closed",
    }
}

label_enum! {
    /// The `direction` label of `bytes_total`.
    pub enum ByteDirection {
        /// Octets relayed client → backend.
        ClientToBackend => "client_to_backend",
        /// Octets relayed backend → client.
        BackendToClient => "backend_to_client",
    }
}

label_enum! {
    /// The `verdict` label of `messages_scanned_total`.
    pub enum ScanVerdict {
        /// Nothing found.
        Clean => "clean",
        /// The engine found malware.
        Infected => "infected",
        /// A local rule matched.
        Rule => "rule",
        /// The scan failed.
        Error => "error",
        /// Too large to scan.
        Oversize => "oversize",
    }
}

label_enum! {
    /// The `engine` label of `scan_seconds`.
    pub enum ScanEngine {
        /// The clamd daemon.
        Clamd => "clamd",
        /// The local rules.
        Rules => "rules",
    }
}

label_enum! {
    /// The `result` label of `scan_cache_total`.
    pub enum CacheResult {
        /// The verdict was cached.
        Hit => "hit",
        /// It was not.
        Miss => "miss",
    }
}

impl CacheResult {
    /// `Hit` when `hit`, else `Miss`.
    pub fn of(hit: bool) -> CacheResult {
        if hit {
            CacheResult::Hit
        } else {
            CacheResult::Miss
        }
    }
}

label_enum! {
    /// The `op` label of `cluster_errors_total`: which shared-store call failed.
    pub enum ClusterOp {
        /// Reading verdicts, message identities, releases, counts.
        Get => "get",
        /// Writing verdicts, message identities, releases; deleting locks and counts.
        Set => "set",
        /// Taking a scan lock.
        Lock => "lock",
        /// Counting a failed login.
        Incr => "incr",
        /// The readiness probe.
        Ping => "ping",
    }
}

label_enum! {
    /// The `outcome` label of `quarantine_writes_total` and `config_reloads_total`.
    pub enum WriteOutcome {
        /// It succeeded.
        Ok => "ok",
        /// It failed.
        Error => "error",
    }
}

impl WriteOutcome {
    /// `Ok` when `ok`, else `Error`.
    pub fn of(ok: bool) -> WriteOutcome {
        if ok {
            WriteOutcome::Ok
        } else {
            WriteOutcome::Error
        }
    }
}

label_enum! {
    /// The `cause` label of `policy_actions_total`: why a message was not plainly clean.
    pub enum PolicyCause {
        /// The scan failed.
        Error => "error",
        /// Too large to scan.
        Oversize => "oversize",
        /// The engine found malware.
        Infected => "infected",
        /// A local rule matched.
        Rule => "rule",
    }
}

label_enum! {
    /// The `action` label of `policy_actions_total`: what the proxy did with the message.
    pub enum PolicyActionLabel {
        /// A temporary failure was returned.
        Tempfail => "tempfail",
        /// The original was delivered unchanged.
        Pass => "pass",
        /// A replacement was delivered.
        Block => "block",
        /// Parts were stripped.
        Strip => "strip",
        /// A marker was added.
        Tag => "tag",
        /// Only logged.
        Log => "log",
    }
}

label_enum! {
    /// The `limit` label of `limit_rejections_total`: which bound a peer hit.
    pub enum Limit {
        /// `max_connections` in total.
        MaxConnections => "max_connections",
        /// `max_connections_per_ip`.
        PerIpConnections => "per_ip_connections",
        /// A login delayed by the auth-failure penalty.
        AuthPenalty => "auth_penalty",
        /// `max_errors` protocol errors in one session.
        MaxErrors => "max_errors",
        /// No login within `prelogin_timeout`.
        PreloginTimeout => "prelogin_timeout",
        /// Idle longer than `idle_timeout`.
        IdleTimeout => "idle_timeout",
        /// A line over `max_line`.
        LineLength => "line_length",
        /// A literal or command over its size limit.
        LiteralSize => "literal_size",
        /// A backend response over its size limit.
        ResponseSize => "response_size",
        /// Parentheses/brackets nested deeper than `max_nesting`.
        Nesting => "nesting",
        /// Bytes no grammar allows (NUL outside literals, ...).
        Syntax => "syntax",
        /// Too many pipelined commands.
        PipelineDepth => "pipeline_depth",
        /// A scan waited for one of the `max_scans` permits.
        ScanConcurrency => "scan_concurrency",
        /// A session waited `memory_wait` for the memory budget and was ended.
        Memory => "memory",
        /// A PROXY protocol header that was missing, malformed or from an untrusted peer.
        ProxyHeader => "proxy_header",
    }
}

label_enum! {
    /// The `end` label of `sessions_total`: how a session ended.
    pub enum SessionEndLabel {
        /// The client logged out.
        Logout => "logout",
        /// The client closed the connection.
        ClientClosed => "client_closed",
        /// The backend closed the connection.
        BackendClosed => "backend_closed",
        /// An error on either side.
        Error => "error",
        /// The proxy shut down.
        Shutdown => "shutdown",
        /// A timeout.
        Timeout => "timeout",
    }
}

label_enum! {
    /// The `outcome` label of `route_decisions_total`: what a router answered for a login.
    pub enum RouteOutcome {
        /// A backend was chosen.
        Routed => "routed",
        /// A backend was chosen from the http router's cache.
        Cached => "cached",
        /// No rule, map entry or default matched (refused as a failed login).
        NoRoute => "no_route",
        /// The auth service refused the login.
        Rejected => "rejected",
        /// The auth service was down, slow or answered nonsense.
        Unavailable => "unavailable",
        /// The auth service named a server that is not a declared backend.
        Undeclared => "undeclared",
    }
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;
