//! `[cluster]`: the shared store (Valkey or Redis) that replicas use to share verdicts, message
//! identities, releases and auth-failure counts; see [`crate::cluster`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, humantime_duration, ConfigError};

/// `[cluster]`: where the shared store is and how long portcullis waits for it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path/to.sock`
    /// (`valkey://`, `valkeys://` and `redis+unix://` work too).
    pub redis: String,
    /// PEM file of CA certificates trusted for `rediss://` (default: the system's roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for `rediss://` with mutual TLS (needs `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// First part of every key (`<prefix>:v1:…`); lets several deployments share one store.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Longest one store call may take before portcullis goes on without it.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub timeout: Duration,
    /// After a failed call the store is left alone this long (calls go local at once).
    #[serde(
        default = "default_retry_after",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub retry_after: Duration,
    /// How long a shared verdict and a message identity are kept.
    #[serde(
        default = "default_verdict_ttl",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub verdict_ttl: Duration,
    /// How long a release is kept in the store (the quarantine's `released/` marker stays the
    /// lasting record).
    #[serde(
        default = "default_release_ttl",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub release_ttl: Duration,
    /// How long a replica scanning a message holds its lock; others wait at most this long for
    /// its verdict, then scan themselves (a crashed holder never blocks anyone longer).
    #[serde(
        default = "default_lock_ttl",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub lock_ttl: Duration,
    /// Largest delivered replacement or modified message stored beside a verdict, in octets;
    /// larger ones are rebuilt locally from the verdict (notices are deterministic).
    #[serde(default = "default_max_value")]
    pub max_value: usize,
}

fn default_prefix() -> String {
    "portcullis".into()
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}

fn default_verdict_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_release_ttl() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn default_lock_ttl() -> Duration {
    Duration::from_secs(30)
}

fn default_max_value() -> usize {
    64 << 10
}

/// Largest accepted `max_value` (a stored value must stay far below Redis' 512 MB limit and
/// within what one fetch may buffer).
pub const MAX_VALUE_LIMIT: usize = 16 << 20;

impl ClusterConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let scheme = self.redis.split("://").next().unwrap_or_default();
        let schemes = [
            "redis",
            "rediss",
            "valkey",
            "valkeys",
            "unix",
            "redis+unix",
            "valkey+unix",
        ];
        if !self.redis.contains("://") || !schemes.contains(&scheme) {
            return Err(ConfigError::invalid(
                "cluster.redis",
                format!(
                    "{:?} must be a redis://, rediss:// or unix:// URL",
                    self.redis
                ),
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(|c: char| c.is_whitespace()) {
            return Err(ConfigError::invalid(
                "cluster.prefix",
                "must be non-empty without spaces",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ConfigError::invalid(
                "cluster.client_cert",
                "client_cert and client_key go together",
            ));
        }
        for (key, value) in [
            ("timeout", self.timeout),
            ("verdict_ttl", self.verdict_ttl),
            ("release_ttl", self.release_ttl),
            ("lock_ttl", self.lock_ttl),
        ] {
            if value < Duration::from_millis(1) {
                return Err(ConfigError::invalid(
                    format!("cluster.{key}"),
                    "must be at least 1ms",
                ));
            }
        }
        if self.max_value > MAX_VALUE_LIMIT {
            return Err(ConfigError::invalid(
                "cluster.max_value",
                format!("must be at most {MAX_VALUE_LIMIT}"),
            ));
        }
        Ok(())
    }

    /// The store's address without credentials (for logs and `/readyz`).
    pub fn redacted(&self) -> String {
        match (self.redis.find("://"), self.redis.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &self.redis[..scheme], &self.redis[at + 1..])
            }
            _ => self.redis.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<ClusterConfig, String> {
        let cfg: ClusterConfig =
            toml::from_str(&format!("redis = \"redis://127.0.0.1:6379/0\"\n{extra}"))
                .map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn defaults_and_validation() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.prefix, "portcullis");
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!(cfg.max_value, 64 << 10);
        assert!(parse("client_cert = \"/c.pem\"")
            .unwrap_err()
            .contains("client_key"));
        assert!(parse("timeout = \"0s\"")
            .unwrap_err()
            .contains("cluster.timeout"));
        let bad: ClusterConfig = toml::from_str("redis = \"http://x\"").unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster.redis"));
    }

    #[test]
    fn redacts_credentials() {
        let mut cfg = parse("").unwrap();
        cfg.redis = "rediss://user:secret@store:6380/1".into();
        assert_eq!(cfg.redacted(), "rediss://***@store:6380/1");
        cfg.redis = "unix:///run/valkey.sock".into();
        assert_eq!(cfg.redacted(), "unix:///run/valkey.sock");
    }
}
