//! Configuration: the TOML file an administrator writes, parsed with serde and validated with
//! messages that name the offending key (`listener[1].backend: ...`).
//!
//! Every section has safe defaults; see README.md ("Configuration reference") for each key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::proxy_protocol::Cidr;
pub use cluster::ClusterConfig;
pub use limits::LimitsConfig;
pub use pin::{PinError, Sha256Pin};
pub use router::{RouterConfig, RouterKind, RuleConfig};

mod cluster;
mod limits;
mod paths;
mod pin;
mod router;

pub use paths::base_dir;

/// Errors while loading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// serde/toml's description, which names the key and line.
        message: String,
    },
    /// A value parsed but makes no sense; `key` names it.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `listener[0].bind`.
        key: String,
        /// Why it is wrong.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server certificate; absent means an in-memory self-signed certificate (for trying it out).
    pub tls: Option<TlsConfig>,
    /// Client-facing listeners (`[[listener]]`).
    #[serde(rename = "listener", default)]
    pub listeners: Vec<ListenerConfig>,
    /// Legacy servers portcullis relays to (`[[backend]]`).
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendConfig>,
    /// Per-login backend selection for listeners with `router = …` (`[[router]]`).
    #[serde(rename = "router", default)]
    pub routers: Vec<RouterConfig>,
    /// Protocol and resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The scan pipeline (`[scan]`); absent means rules plus the built-in EICAR check.
    #[serde(default)]
    pub scan: crate::scan::ScanConfig,
    /// Metrics and health endpoints (`[metrics]`); absent means none.
    pub metrics: Option<MetricsConfig>,
    /// The store replicas share state in (`[cluster]`); absent means each replica alone.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Graceful shutdown deadline for in-flight commands.
    #[serde(
        default = "default_shutdown_grace",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub shutdown_grace: Duration,
}

/// `[metrics]`: where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint, e.g. `127.0.0.1:9925`.
    pub bind: SocketAddr,
}

/// `[tls]`: the certificate presented to clients.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first: the default certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Refuse the handshake when the client asks (SNI, RFC 6066 §3) for a name that neither a
    /// `[[tls.sni]]` entry nor the default certificate covers. Clients sending no name get the
    /// default certificate.
    #[serde(default)]
    pub strict_sni: bool,
    /// Serve certificates past their notAfter time (with a warning) instead of refusing to
    /// start or reload; `check-config` then warns instead of failing.
    #[serde(default)]
    pub allow_expired: bool,
    /// Further certificates chosen by the name the client asks for (`[[tls.sni]]`).
    #[serde(default)]
    pub sni: Vec<SniConfig>,
}

/// `[[tls.sni]]`: a certificate served for some names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SniConfig {
    /// DNS names (`mail.example.org`, or `*.example.org` for one label).
    pub names: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// How a backend learns the client's address (`forward_client_ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardClientIp {
    /// Not at all: the backend sees portcullis's address.
    #[default]
    None,
    /// IMAP `ID ("x-originating-ip" ...)` before login (RFC 2971; Dovecot honours it from
    /// `login_trusted_networks`).
    Id,
    /// POP3 `XCLIENT ADDR=... PORT=...` before login.
    Xclient,
    /// A PROXY protocol v1 header as the first bytes of the backend connection.
    ProxyV1,
    /// A PROXY protocol v2 header as the first bytes of the backend connection.
    ProxyV2,
}

impl ForwardClientIp {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardClientIp::None => "none",
            ForwardClientIp::Id => "id",
            ForwardClientIp::Xclient => "xclient",
            ForwardClientIp::ProxyV1 => "proxy-v1",
            ForwardClientIp::ProxyV2 => "proxy-v2",
        }
    }
}

/// Application protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1/IMAP4rev2 (RFC 3501 / RFC 9051).
    Imap,
    /// POP3 (RFC 1939).
    Pop3,
}

impl Protocol {
    /// Lower-case name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

/// How a listener secures client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// TLS from the first byte (RFC 8314): ports 993/995.
    Implicit,
    /// Plaintext greeting, upgraded by STARTTLS/STLS (RFC 2595).
    Starttls,
    /// Plaintext only (for a trusted network or a TLS-terminating load balancer).
    None,
}

/// How portcullis reaches a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTls {
    /// Plaintext: credentials cross the wire in clear (only if the admin chose this).
    None,
    /// Plaintext connect, then STARTTLS/STLS before anything else.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// `[[listener]]`: one client-facing socket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// `imap` or `pop3`.
    pub protocol: Protocol,
    /// Address to bind, e.g. `0.0.0.0:993`.
    pub bind: SocketAddr,
    /// `implicit`, `starttls` or `none`.
    pub tls: ListenerTls,
    /// Refuse logins before TLS (default true on `starttls` listeners).
    pub require_tls: Option<bool>,
    /// Name of the `[[backend]]` to relay to (exactly one of `backend` and `router`).
    pub backend: Option<String>,
    /// Name of the `[[router]]` choosing a backend per login (exactly one of `backend` and
    /// `router`).
    pub router: Option<String>,
    /// Expect a PROXY protocol (v1 or v2) header on every connection, from `trusted_proxies`.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Addresses (CIDR blocks) allowed to send PROXY headers.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
}

impl ListenerConfig {
    /// Whether logins must wait for TLS on this listener.
    pub fn requires_tls(&self) -> bool {
        match self.tls {
            ListenerTls::Implicit => true,
            ListenerTls::Starttls => self.require_tls.unwrap_or(true),
            ListenerTls::None => false,
        }
    }
}

/// `[[backend]]`: one legacy server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Unique name referenced by listeners.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `none`, `starttls` or `implicit`.
    pub tls: BackendTls,
    /// PEM file of trusted CA certificates; default: the system's roots. A certificate the
    /// backend presents that is byte-identical to one in this file is trusted as itself.
    pub ca: Option<PathBuf>,
    /// SHA-256 of the backend's certificate or of its SubjectPublicKeyInfo: when set, the
    /// certificate is trusted iff one of these matches (instead of `ca`).
    #[serde(default)]
    pub pin_sha256: Vec<Sha256Pin>,
    /// Name to verify in the backend's certificate; default: host part of `address`.
    pub server_name: Option<String>,
    /// Verify the backend certificate (default true).
    #[serde(default = "yes")]
    pub verify: bool,
    /// TCP connect plus TLS/STARTTLS setup deadline.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub connect_timeout: Duration,
    /// How the client's address is passed on: `none`, `id`, `xclient`, `proxy-v1`, `proxy-v2`.
    #[serde(default)]
    pub forward_client_ip: ForwardClientIp,
}

impl BackendConfig {
    /// Host part of `address` (brackets of an IPv6 literal removed).
    pub fn host(&self) -> &str {
        let host = match self.address.rfind(':') {
            Some(i) => &self.address[..i],
            None => &self.address,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The name to check in the backend certificate.
    pub fn tls_server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| self.host())
    }
}

fn yes() -> bool {
    true
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// Serializes a duration in the humantime syntax [`duration`] reads (`"10s"`, `"1h 30m"`).
pub fn humantime_duration<S: Serializer>(
    value: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Deserializes a humantime duration such as `"30s"` or `"10m"`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads, parses and validates `path`; relative paths in it are made relative to its
    /// directory (see [`Config::resolve_paths`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        config.resolve_paths(&base_dir(path));
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-references and values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::invalid(
                "listener",
                "at least one [[listener]] is required",
            ));
        }
        let mut names = HashSet::new();
        for (i, backend) in self.backends.iter().enumerate() {
            let key = format!("backend[{i}]");
            if !names.insert(backend.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "duplicate backend name",
                ));
            }
            if !backend.address.contains(':') {
                return Err(ConfigError::invalid(
                    format!("{key}.address"),
                    format!("{:?} must be host:port", backend.address),
                ));
            }
            pin::validate_backend_trust(&key, backend)?;
        }
        let mut listener_names = HashSet::new();
        let mut binds = HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            let key = format!("listener[{i}]");
            if !listener_names.insert(listener.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "duplicate listener name",
                ));
            }
            if listener.bind.port() != 0 && !binds.insert(listener.bind) {
                return Err(ConfigError::invalid(
                    format!("{key}.bind"),
                    "address already used by another listener",
                ));
            }
            match (&listener.backend, &listener.router) {
                (Some(backend), None) if !names.contains(backend.as_str()) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.backend"),
                        format!("no [[backend]] named {backend:?}"),
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(ConfigError::invalid(
                        format!("{key}.backend"),
                        "exactly one of backend and router is required",
                    ));
                }
            }
            if listener.proxy_protocol && listener.trusted_proxies.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.trusted_proxies"),
                    "proxy_protocol = true needs at least one trusted proxy address",
                ));
            }
            if listener.tls == ListenerTls::None && listener.require_tls == Some(true) {
                return Err(ConfigError::invalid(
                    format!("{key}.require_tls"),
                    "cannot be true on a listener with tls = \"none\"",
                ));
            }
        }
        self.validate_forwarding()?;
        self.validate_routers()?;
        self.validate_sni()?;
        self.limits.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        self.scan
            .validate()
            .map_err(|e| ConfigError::invalid(format!("scan.{}", e.key), e.problem))
    }

    /// `id` only makes sense for IMAP listeners and `xclient` only for POP3 ones.
    fn validate_forwarding(&self) -> Result<(), ConfigError> {
        for (i, listener) in self.listeners.iter().enumerate() {
            if let Some(backend) = &listener.backend {
                let key = format!("listener[{i}].backend");
                self.check_protocol(&key, backend, listener.protocol)?;
            }
        }
        Ok(())
    }

    fn validate_sni(&self) -> Result<(), ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        for (i, sni) in tls.sni.iter().enumerate() {
            if sni.names.is_empty() {
                return Err(ConfigError::invalid(
                    format!("tls.sni[{i}].names"),
                    "at least one name is required",
                ));
            }
            if let Some(bad) = sni.names.iter().find(|n| !valid_sni_name(n)) {
                return Err(ConfigError::invalid(
                    format!("tls.sni[{i}].names"),
                    format!("{bad:?} is not a DNS name (a leading \"*.\" is allowed)"),
                ));
            }
        }
        Ok(())
    }

    /// The backend a listener relays to (validated to exist).
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

fn valid_sni_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests;
