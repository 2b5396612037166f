//! SNI certificate selection (default, named, wildcard, strict) and live certificate reload
//! through the library API (`portcullis::reload`), without signals.

mod support;

use support::ops::{
    empty_rules, presented_leaf, sni_section, tls_section, NamedCa, ReloadableProxy,
};

/// Listener 0: implicit-TLS IMAP to a backend that is never reached by these tests.
fn listeners() -> String {
    "[[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\n\n\
     [[backend]]\nname = \"b\"\naddress = \"127.0.0.1:9\"\ntls = \"none\"\nconnect_timeout = \"1s\"\n\n"
        .to_string()
}

#[test]
fn default_named_and_wildcard_certificates_are_chosen_by_sni() {
    let ca = NamedCa::new();
    let default = ca.leaf("default", &["localhost"]);
    let mail = ca.leaf("mail", &["mail.example.org"]);
    let wild = ca.leaf("wild", &["*.example.com"]);
    let (_rules, scan) = empty_rules();
    let config = tls_section(&default, "")
        + &sni_section(&["mail.example.org"], &mail)
        + &sni_section(&["*.example.com"], &wild)
        + &scan
        + &listeners();
    let proxy = ReloadableProxy::start(&config);
    let port = proxy.port(0);
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(port, "mail.example.org", client.clone()),
        Ok(mail.der)
    );
    assert_eq!(
        presented_leaf(port, "imap.example.com", client.clone()),
        Ok(wild.der)
    );
    assert_eq!(
        presented_leaf(port, "localhost", client.clone()),
        Ok(default.der.clone())
    );
    // The server counts a handshake once it has the client's Finished, which can be after the
    // client already saw the certificate: wait for the count instead of reading it at once.
    let counted = || {
        portcullis::metrics::metrics()
            .tls_handshakes
            .with_label_values(&["imaps", "ok", "ok", "TLSv1_3"])
            .get()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counted() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        counted() >= 3,
        "successful handshakes not counted: {}",
        counted()
    );
    // Not strict: an unknown name gets the default certificate (and so fails verification).
    let unknown = presented_leaf(port, "other.example.net", client);
    assert!(
        unknown.is_err_and(|e| e.contains("certificate")),
        "unknown name was accepted"
    );
}

#[test]
fn strict_sni_refuses_unknown_names_but_serves_known_ones() {
    let ca = NamedCa::new();
    let default = ca.leaf("default", &["localhost"]);
    let mail = ca.leaf("mail", &["mail.example.org"]);
    let (_rules, scan) = empty_rules();
    let config = tls_section(&default, "strict_sni = true")
        + &sni_section(&["mail.example.org"], &mail)
        + &scan
        + &listeners();
    let proxy = ReloadableProxy::start(&config);
    let port = proxy.port(0);
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(port, "mail.example.org", client.clone()),
        Ok(mail.der)
    );
    assert_eq!(
        presented_leaf(port, "localhost", client.clone()),
        Ok(default.der)
    );
    let refused = presented_leaf(port, "other.example.net", client).unwrap_err();
    assert!(
        refused.contains("alert") || refused.contains("reset") || refused.contains("closed"),
        "expected a refused handshake, got: {refused}"
    );
    let metrics = portcullis::metrics::render();
    assert!(
        metrics.contains(
            "portcullis_tls_handshakes_total{listener=\"imaps\",outcome=\"error\",reason=\"certificate\",version=\"none\"}"
        ),
        "refused handshake not counted"
    );
}

#[test]
fn reload_swaps_certificates_for_new_connections_and_rejects_broken_ones() {
    let ca = NamedCa::new();
    let first = ca.leaf("first", &["localhost"]);
    let second = ca.leaf("second", &["localhost"]);
    let mail = ca.leaf("mail", &["mail.example.org"]);
    let (_rules, scan) = empty_rules();
    let original = tls_section(&first, "") + &scan + &listeners();
    let proxy = ReloadableProxy::start(&original);
    let port = proxy.port(0);
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(port, "localhost", client.clone()),
        Ok(first.der.clone())
    );

    let updated = tls_section(&second, "strict_sni = true")
        + &sni_section(&["mail.example.org"], &mail)
        + &scan
        + &listeners();
    let new = portcullis::config::Config::parse(&updated).unwrap();
    let report = portcullis::reload::apply(&proxy.handles, &proxy.config, &new).unwrap();
    assert_eq!(report.sni_entries, 1);
    assert!(report.needs_restart.is_empty(), "{report:?}");
    assert_eq!(
        presented_leaf(port, "localhost", client.clone()),
        Ok(second.der.clone())
    );
    assert_eq!(
        presented_leaf(port, "mail.example.org", client.clone()),
        Ok(mail.der.clone())
    );
    assert!(presented_leaf(port, "other.example.net", client.clone()).is_err());

    // A key that does not belong to the certificate: rejected, the second set stays.
    let broken = updated.replace(
        &format!("{:?}", second.key.display().to_string()),
        &format!("{:?}", mail.key.display().to_string()),
    );
    let new = portcullis::config::Config::parse(&broken).unwrap();
    let error = portcullis::reload::apply(&proxy.handles, &proxy.config, &new).unwrap_err();
    assert!(error.to_string().contains("does not match"), "{error}");
    assert_eq!(
        presented_leaf(port, "localhost", client.clone()),
        Ok(second.der)
    );

    // A listener change is applied for certificates but reported as needing a restart.
    let moved = tls_section(&first, "")
        + &scan
        + &listeners().replace("connect_timeout = \"1s\"", "connect_timeout = \"2s\"");
    let new = portcullis::config::Config::parse(&moved).unwrap();
    let report = portcullis::reload::apply(&proxy.handles, &proxy.config, &new).unwrap();
    assert_eq!(report.needs_restart, vec!["backend".to_string()]);
    assert_eq!(presented_leaf(port, "localhost", client), Ok(first.der));
}

#[test]
fn reload_with_broken_rules_changes_nothing() {
    let ca = NamedCa::new();
    let first = ca.leaf("first", &["localhost"]);
    let second = ca.leaf("second", &["localhost"]);
    let (rules, scan) = empty_rules();
    let proxy = ReloadableProxy::start(&(tls_section(&first, "") + &scan + &listeners()));
    std::fs::write(
        rules.path().join("bad.toml"),
        "[[rule]]\nname = \"x\"\nthis is not toml",
    )
    .unwrap();
    let new = portcullis::config::Config::parse(&(tls_section(&second, "") + &scan + &listeners()))
        .unwrap();
    let error = portcullis::reload::apply(&proxy.handles, &proxy.config, &new).unwrap_err();
    assert!(error.to_string().starts_with("scan rules:"), "{error}");
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(proxy.port(0), "localhost", client),
        Ok(first.der)
    );
}
