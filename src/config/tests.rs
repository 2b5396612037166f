//! Unit tests of configuration parsing and validation.

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

#[test]
fn operations_keys_parse_with_defaults() {
    let config = Config::parse(GOOD).unwrap();
    assert!(!config.listeners[0].proxy_protocol);
    assert_eq!(config.backends[0].forward_client_ip, ForwardClientIp::None);
    assert_eq!(config.limits.max_errors, 10);
    assert_eq!(config.limits.auth_penalty_max, Duration::from_secs(15));
    let text = GOOD
        .replacen(
            "backend = \"legacy\"",
            "backend = \"legacy\"\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
            1,
        )
        .replace("tls = \"starttls\"\n\"", "")
        + "forward_client_ip = \"proxy-v2\"\n[limits]\nmax_connections_per_ip = 3\n\
           [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nstrict_sni = true\n\
           [[tls.sni]]\nnames = [\"mail.example.org\", \"*.example.com\"]\ncert = \"m.pem\"\nkey = \"m.key\"\n";
    let config = Config::parse(&text).unwrap();
    assert_eq!(config.listeners[0].trusted_proxies.len(), 2);
    assert_eq!(
        config.backends[0].forward_client_ip,
        ForwardClientIp::ProxyV2
    );
    assert_eq!(config.limits.max_connections_per_ip, 3);
    let tls = config.tls.unwrap();
    assert!(tls.strict_sni);
    assert_eq!(tls.sni[0].names[1], "*.example.com");
}

#[test]
fn bad_operations_keys_are_named() {
    let cases = [
        (
            GOOD.replacen("backend = \"legacy\"", "backend = \"legacy\"\nproxy_protocol = true", 1),
            "listener[0].trusted_proxies",
        ),
        (
            GOOD.replacen(
                "backend = \"legacy\"",
                "backend = \"legacy\"\ntrusted_proxies = [\"10.0.0.1/8\"]",
                1,
            ),
            "10.0.0.1/8",
        ),
        (
            GOOD.to_string() + "forward_client_ip = \"xclient\"\n",
            "listener[0].backend",
        ),
        (
            GOOD.to_string() + "[limits]\nmax_connections = 0\n",
            "limits.max_connections",
        ),
        (
            GOOD.to_string()
                + "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = [\"bad name\"]\ncert = \"c\"\nkey = \"k\"\n",
            "tls.sni[0].names",
        ),
    ];
    for (text, expected) in cases {
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

#[test]
fn the_memory_budget_is_a_size_with_bounds() {
    let config = Config::parse(GOOD).unwrap();
    assert_eq!(config.limits.memory.0, 1 << 30, "default 1 GiB");
    assert_eq!(config.limits.memory_wait, Duration::from_secs(60));
    let text = format!("[limits]\nmemory = \"24MiB\"\nmemory_wait = \"5s\"\n{GOOD}");
    let config = Config::parse(&text).unwrap();
    assert_eq!(config.limits.memory.0, 24 << 20);
    assert_eq!(config.limits.memory_wait, Duration::from_secs(5));
    let plain = format!("[limits]\nmemory = 2097152\n{GOOD}");
    assert_eq!(Config::parse(&plain).unwrap().limits.memory.0, 2 << 20);
    for bad in [
        "memory = \"512KiB\"",
        "memory = \"5000GiB\"",
        "memory_wait = \"0s\"",
    ] {
        let text = format!("[limits]\n{bad}\n{GOOD}");
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("limits.memory"), "{bad}: {error}");
    }
}
