//! `[[router]]`: how a listener that names a router instead of a single backend picks the
//! backend for each login (data and validation only; the runtime is [`crate::routing`]).
//!
//! Two kinds: `static` (ordered `[[router.rule]]`s, an optional map file, an optional default)
//! and `http` (nginx's `auth_http` protocol against an external service).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, humantime_duration, Config, ConfigError, ForwardClientIp, Protocol};

/// Which kind of router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// Rules, map file and default from the configuration.
    Static,
    /// An nginx-compatible `auth_http` service.
    Http,
}

impl RouterKind {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterKind::Static => "static",
            RouterKind::Http => "http",
        }
    }
}

/// `[[router]]`: one router, referenced by listeners as `router = "name"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Unique name, referenced by listeners; the `router` metric label.
    pub name: String,
    /// `static` or `http`.
    pub kind: RouterKind,
    /// Static: backend for logins no rule or map entry matches; without it they are refused.
    pub default: Option<String>,
    /// Static: a file of `user backend` / `@domain backend` lines, reloaded on SIGHUP.
    pub map_file: Option<PathBuf>,
    /// Static: rules tried in order before the map file (`[[router.rule]]`).
    #[serde(rename = "rule", default)]
    pub rules: Vec<RuleConfig>,
    /// Http: the `auth_http` URL (`http://host:port/path`).
    pub url: Option<String>,
    /// Http: connect + request + answer deadline.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub timeout: Duration,
    /// Http: how long an `OK` answer is reused for the same protocol, user and password
    /// (`0s`: not cached).
    #[serde(
        default = "default_cache_ttl",
        deserialize_with = "duration",
        serialize_with = "humantime_duration"
    )]
    pub cache_ttl: Duration,
    /// Http: most cached answers.
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// Http: the backends the service may name (default: every `[[backend]]`).
    pub backends: Option<Vec<String>>,
    /// Http: extra request headers (nginx `auth_http_header`), e.g. a shared secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[[router.rule]]`: one static rule; exactly one of `user`, `domain`, `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// This login name exactly (ASCII case-insensitive).
    pub user: Option<String>,
    /// Login names ending in `@domain` (ASCII case-insensitive).
    pub domain: Option<String>,
    /// Login names this regular expression matches (as written; `(?i)` for case-insensitive).
    pub regex: Option<String>,
    /// The `[[backend]]` such logins go to.
    pub backend: String,
    /// With `regex`: the login name sent to the backend, with `$1`/`${name}` captures.
    pub rewrite: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_cache_size() -> u64 {
    10_000
}

/// Most extra headers an http router may send.
const MAX_HEADERS: usize = 32;

impl Config {
    /// The router named `name`.
    pub fn router(&self, name: &str) -> Option<&RouterConfig> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// Whether sessions of `listener` may end up on `backend`: its own backend, or one its
    /// router can name (a map file or an `http` router without a `backends` list: any).
    pub fn listener_may_use(&self, listener: &super::ListenerConfig, backend: &str) -> bool {
        if listener.backend.as_deref() == Some(backend) {
            return true;
        }
        let Some(router) = listener
            .router
            .as_deref()
            .and_then(|name| self.router(name))
        else {
            return false;
        };
        match router.kind {
            RouterKind::Static => {
                router.map_file.is_some()
                    || router.default.as_deref() == Some(backend)
                    || router.rules.iter().any(|rule| rule.backend == backend)
            }
            RouterKind::Http => router
                .backends
                .as_ref()
                .is_none_or(|names| names.iter().any(|name| name == backend)),
        }
    }

    /// Routers: unique names, complete and consistent settings per kind, and every backend
    /// they name declared and usable by the protocol of each listener using them.
    pub(super) fn validate_routers(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (i, router) in self.routers.iter().enumerate() {
            let key = format!("router[{i}]");
            if !names.insert(router.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "duplicate router name",
                ));
            }
            match router.kind {
                RouterKind::Static => self.validate_static(&key, router)?,
                RouterKind::Http => self.validate_http(&key, router)?,
            }
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            let Some(name) = &listener.router else {
                continue;
            };
            let router = self.router(name).ok_or_else(|| {
                ConfigError::invalid(
                    format!("listener[{i}].router"),
                    format!("no [[router]] named {name:?}"),
                )
            })?;
            for backend in self.router_backends(router) {
                self.check_protocol(&format!("listener[{i}].router"), backend, listener.protocol)?;
            }
        }
        Ok(())
    }

    /// Every backend a router may send a login to.
    pub fn router_backends<'a>(&'a self, router: &'a RouterConfig) -> Vec<&'a str> {
        match router.kind {
            RouterKind::Static => router
                .rules
                .iter()
                .map(|r| r.backend.as_str())
                .chain(router.default.as_deref())
                .collect(),
            RouterKind::Http => match &router.backends {
                Some(list) => list.iter().map(String::as_str).collect(),
                None => self.backends.iter().map(|b| b.name.as_str()).collect(),
            },
        }
    }

    /// A backend whose `forward_client_ip` the protocol cannot use is refused.
    pub(super) fn check_protocol(
        &self,
        key: &str,
        backend: &str,
        protocol: Protocol,
    ) -> Result<(), ConfigError> {
        let Some(config) = self.backend(backend) else {
            return Err(ConfigError::invalid(
                key,
                format!("no [[backend]] named {backend:?}"),
            ));
        };
        let wrong = match config.forward_client_ip {
            ForwardClientIp::Id => protocol != Protocol::Imap,
            ForwardClientIp::Xclient => protocol != Protocol::Pop3,
            _ => false,
        };
        if wrong {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "backend {:?} has forward_client_ip = {:?}, which {} cannot use",
                    config.name,
                    config.forward_client_ip.as_str(),
                    protocol.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn validate_static(&self, key: &str, router: &RouterConfig) -> Result<(), ConfigError> {
        if router.url.is_some() || router.backends.is_some() || !router.headers.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "url, backends and headers belong to kind = \"http\"",
            ));
        }
        if let Some(default) = &router.default {
            self.require_backend(&format!("{key}.default"), default)?;
        }
        for (j, rule) in router.rules.iter().enumerate() {
            let rule_key = format!("{key}.rule[{j}]");
            let set = [&rule.user, &rule.domain, &rule.regex]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if set != 1 {
                return Err(ConfigError::invalid(
                    rule_key,
                    "exactly one of user, domain, regex is required",
                ));
            }
            if let Some(pattern) = &rule.regex {
                regex::Regex::new(pattern).map_err(|e| {
                    ConfigError::invalid(format!("{rule_key}.regex"), e.to_string())
                })?;
            } else if rule.rewrite.is_some() {
                return Err(ConfigError::invalid(
                    format!("{rule_key}.rewrite"),
                    "rewrite needs a regex rule (it expands its captures)",
                ));
            }
            self.require_backend(&format!("{rule_key}.backend"), &rule.backend)?;
        }
        Ok(())
    }

    fn validate_http(&self, key: &str, router: &RouterConfig) -> Result<(), ConfigError> {
        if router.default.is_some() || router.map_file.is_some() || !router.rules.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "default, map_file and rules belong to kind = \"static\"",
            ));
        }
        let Some(url) = &router.url else {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                "kind = \"http\" needs a url",
            ));
        };
        crate::routing::HttpUrl::parse(url)
            .map_err(|e| ConfigError::invalid(format!("{key}.url"), e.to_string()))?;
        if router.timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{key}.timeout"),
                "must be more than 0s",
            ));
        }
        if router.headers.len() > MAX_HEADERS {
            return Err(ConfigError::invalid(
                format!("{key}.headers"),
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &router.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token || value.bytes().any(|b| b.is_ascii_control()) {
                return Err(ConfigError::invalid(
                    format!("{key}.headers"),
                    format!("{name:?} is not a usable header name and value"),
                ));
            }
        }
        for backend in router.backends.iter().flatten() {
            self.require_backend(&format!("{key}.backends"), backend)?;
        }
        Ok(())
    }

    fn require_backend(&self, key: &str, name: &str) -> Result<(), ConfigError> {
        match self.backend(name) {
            Some(_) => Ok(()),
            None => Err(ConfigError::invalid(
                key,
                format!("no [[backend]] named {name:?}"),
            )),
        }
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
