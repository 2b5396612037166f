//! Configuration: the TOML file an administrator writes, parsed with serde and validated with
//! messages that name the offending key (`listener[1].backend: ...`).
//!
//! Every section has safe defaults; see README.md ("Configuration reference") for each key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

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
#[derive(Debug, Clone, Deserialize)]
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
    /// Protocol and resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The scan pipeline (`[scan]`); absent means rules plus the built-in EICAR check.
    #[serde(default)]
    pub scan: crate::scan::ScanConfig,
    /// Metrics and health endpoints (`[metrics]`); absent means none.
    pub metrics: Option<MetricsConfig>,
    /// Graceful shutdown deadline for in-flight commands.
    #[serde(default = "default_shutdown_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

/// `[metrics]`: where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint, e.g. `127.0.0.1:9925`.
    pub bind: SocketAddr,
}

/// `[tls]`: the certificate presented to clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Application protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
    /// Name of the `[[backend]]` to relay to.
    pub backend: String,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Unique name referenced by listeners.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `none`, `starttls` or `implicit`.
    pub tls: BackendTls,
    /// PEM file of trusted CA certificates; default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Name to verify in the backend's certificate; default: host part of `address`.
    pub server_name: Option<String>,
    /// Verify the backend certificate (default true).
    #[serde(default = "yes")]
    pub verify: bool,
    /// TCP connect plus TLS/STARTTLS setup deadline.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
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

/// `[limits]`: hard bounds on what a peer can make portcullis buffer or do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest command or response line, in octets (without literals).
    pub max_line: usize,
    /// Largest literal a client may send (APPEND etc.); larger synchronizing literals get `NO [TOOBIG]`.
    pub max_client_literal: u64,
    /// Largest literal a backend may send (message bodies).
    pub max_backend_literal: u64,
    /// Deepest parenthesis nesting accepted in one command/response.
    pub max_nesting: usize,
    /// Longest a connection may stay unauthenticated.
    #[serde(deserialize_with = "duration")]
    pub prelogin_timeout: Duration,
    /// Longest an authenticated connection may stay silent (IMAP IDLE needs ≥ 30 min, RFC 9051).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// POP3 pipeline depth (commands awaiting responses).
    pub max_pipeline: usize,
    /// Slack over the 255-octet POP3 command limit of RFC 2449.
    pub pop3_command_margin: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_line: 64 * 1024,
            max_client_literal: 64 * 1024 * 1024,
            max_backend_literal: 256 * 1024 * 1024,
            max_nesting: 64,
            prelogin_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(31 * 60),
            max_pipeline: 128,
            pop3_command_margin: 257,
        }
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

/// Deserializes a humantime duration such as `"30s"` or `"10m"`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
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
            if !names.contains(listener.backend.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.backend"),
                    format!("no [[backend]] named {:?}", listener.backend),
                ));
            }
            if listener.tls == ListenerTls::None && listener.require_tls == Some(true) {
                return Err(ConfigError::invalid(
                    format!("{key}.require_tls"),
                    "cannot be true on a listener with tls = \"none\"",
                ));
            }
        }
        self.limits.validate()?;
        self.scan
            .validate()
            .map_err(|e| ConfigError::invalid(format!("scan.{}", e.key), e.problem))
    }

    /// The backend a listener relays to (validated to exist).
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_line < 1024 {
            return Err(ConfigError::invalid(
                "limits.max_line",
                "must be at least 1024",
            ));
        }
        if self.max_nesting == 0 {
            return Err(ConfigError::invalid(
                "limits.max_nesting",
                "must be at least 1",
            ));
        }
        if self.max_pipeline == 0 {
            return Err(ConfigError::invalid(
                "limits.max_pipeline",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:993"
tls = "implicit"
backend = "legacy"

[[listener]]
name = "imap"
protocol = "imap"
bind = "127.0.0.1:143"
tls = "starttls"
backend = "legacy"

[[backend]]
name = "legacy"
address = "mail.internal:143"
tls = "starttls"
"#;

    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.listeners.len(), 2);
        assert!(config.listeners[1].requires_tls());
        let backend = &config.backends[0];
        assert!(backend.verify);
        assert_eq!(backend.tls_server_name(), "mail.internal");
        assert_eq!(backend.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn unknown_backend_is_named() {
        let text = GOOD.replace(
            "backend = \"legacy\"\n\n[[listener]]",
            "backend = \"nope\"\n\n[[listener]]",
        );
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("listener[0].backend:"), "{error}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD
            .replace("tls = \"starttls\"\n\"", "")
            .replace("verify", "x")
            + "\nbogus = 1\n";
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(error.contains("bogus"), "{error}");
    }

    #[test]
    fn require_tls_on_plain_listener_is_rejected() {
        let text = GOOD.replace("tls = \"implicit\"", "tls = \"none\"\nrequire_tls = true");
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("listener[0].require_tls"), "{error}");
    }

    #[test]
    fn ipv6_host_is_unbracketed() {
        let text = GOOD.replace("mail.internal:143", "[::1]:143");
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.backends[0].host(), "::1");
    }
}
