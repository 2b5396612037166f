//! `portcullis check-config --print`: the effective configuration as TOML — every default
//! filled in, relative paths resolved, secrets redacted — which reads back as the same
//! configuration.
//!
//! Keys left out mean "not set" and have no TOML spelling: `[tls]` (self-signed certificate),
//! `[metrics]`, `backend.ca` (system roots), `scan.rules_dir` (built-in rules) and
//! `scan.notice` (built-in text); the header comment lists which of them apply.

use crate::config::Config;

/// Key names whose values are redacted wherever they appear (case-insensitive substrings).
const SECRET_KEYS: &[&str] = &["password", "secret", "token", "passphrase", "credential"];

/// What replaces a secret value.
pub const REDACTED: &str = "<redacted>";

/// Errors rendering the configuration.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// The configuration could not be turned into TOML (a bug: every key has a spelling).
    #[error("rendering the configuration as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// The configuration as the running process would use it: optional settings that have a
/// default are filled in with it.
fn effective(config: &Config) -> Config {
    let mut config = config.clone();
    for listener in &mut config.listeners {
        listener.require_tls = Some(listener.requires_tls());
    }
    for backend in &mut config.backends {
        backend.server_name = Some(backend.tls_server_name().to_string());
    }
    if let Some(cluster) = &mut config.cluster {
        // The store URL may carry a password (`redis://user:password@host`).
        cluster.redis = cluster.redacted();
    }
    config
}

/// Replaces the value of every key that names a secret, at any depth.
fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        let lower = key.to_ascii_lowercase();
        if SECRET_KEYS.iter().any(|secret| lower.contains(secret)) {
            *value = toml::Value::String(REDACTED.to_string());
            continue;
        }
        match value {
            // A router's extra request headers carry shared secrets under any name.
            toml::Value::Table(inner) if lower == "headers" => {
                for (_, header) in inner.iter_mut() {
                    *header = toml::Value::String(REDACTED.to_string());
                }
            }
            toml::Value::Table(inner) => redact(inner),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        redact(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Comment lines saying which unset keys mean a built-in default.
fn header(config: &Config, source: &str) -> String {
    let mut lines = vec![
        format!("# Effective configuration of {source}"),
        "# (defaults filled in, paths resolved, secrets redacted).".to_string(),
    ];
    if config.tls.is_none() {
        lines.push("# [tls] not set: an in-memory self-signed certificate is served.".into());
    }
    if config.metrics.is_none() {
        lines.push("# [metrics] not set: no metrics or health endpoint.".into());
    }
    if config.scan.rules_dir.is_none() {
        lines.push("# scan.rules_dir not set: the built-in rules are used.".into());
    }
    if config.scan.notice.is_none() {
        lines.push("# scan.notice not set: the built-in notice text is used.".into());
    }
    for backend in config.backends.iter().filter(|b| b.ca.is_none()) {
        lines.push(format!(
            "# backend {:?}: ca not set: the system's root certificates are trusted.",
            backend.name
        ));
    }
    lines.join("\n") + "\n\n"
}

/// Renders `config` (loaded from `source`, named in the header) as TOML.
pub fn render(config: &Config, source: &str) -> Result<String, PrintError> {
    let effective = effective(config);
    let mut table = toml::Table::try_from(&effective)?;
    redact(&mut table);
    Ok(header(&effective, source) + &toml::to_string(&table)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[[listener]]\nname = \"l\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"starttls\"\nbackend = \"b\"\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         [[backend]]\nname = \"b\"\naddress = \"mail.example.org:143\"\ntls = \"none\"\n";

    #[test]
    fn printed_configuration_reads_back_identically_with_defaults_filled_in() {
        let config = Config::parse(CONFIG).unwrap();
        let text = render(&config, "test.toml").unwrap();
        assert!(text.contains("require_tls = true"), "{text}");
        assert!(
            text.contains("server_name = \"mail.example.org\""),
            "{text}"
        );
        assert!(text.contains("shutdown_grace = \"10s\""), "{text}");
        assert!(
            text.contains("[limits]") && text.contains("idle_timeout = \"31m\""),
            "{text}"
        );
        assert!(
            text.contains("memory = 1073741824") && text.contains("memory_wait = \"1m\""),
            "the memory budget is printed: {text}"
        );
        assert!(text.contains("built-in rules"), "{text}");
        let again = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(render(&again, "test.toml").unwrap(), text);
        assert_eq!(format!("{:?}", effective(&config)), format!("{again:?}"));
    }

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let mut table: toml::Table = toml::from_str(
            "password = \"x\"\n[a]\nclient_secret = \"y\"\n[[b]]\nToken = \"z\"\nname = \"n\"\n",
        )
        .unwrap();
        redact(&mut table);
        let text = toml::to_string(&table).unwrap();
        assert!(!text.contains('x') || !text.contains("\"x\""), "{text}");
        assert!(!text.contains("\"y\"") && !text.contains("\"z\""), "{text}");
        assert!(text.contains("name = \"n\""), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 3, "{text}");
    }
}
