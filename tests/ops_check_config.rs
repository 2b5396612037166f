//! `portcullis check-config` on the operations keys: SNI certificates with expiry and name
//! checks, rule files compiled, trusted-proxy CIDRs validated.

mod support;

use std::fs;
use std::process::Command;

use support::ops::{sni_section, tls_section, NamedCa};

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn rest(rules: &std::path::Path, trusted: &str) -> String {
    format!(
        "[scan]\nrules_dir = {:?}\n\n[[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\nproxy_protocol = true\ntrusted_proxies = [{trusted:?}]\n\n\
         [[backend]]\nname = \"b\"\naddress = \"127.0.0.1:143\"\ntls = \"none\"\nforward_client_ip = \"proxy-v2\"\n",
        rules.display().to_string()
    )
}

#[test]
fn sni_certificates_are_checked_with_expiry_and_name_warnings() {
    let ca = NamedCa::new();
    let default = ca.leaf("default", &["localhost"]);
    let old = ca.expired_leaf("old", &["old.example.org"]);
    let mail = ca.leaf("mail", &["mail.example.org"]);
    let rules = tempfile::tempdir().unwrap();
    // An expired certificate fails the check unless allow_expired (tests/ops_startup.rs);
    // here it is allowed, so it is a warning.
    let config = tls_section(&default, "allow_expired = true")
        + &sni_section(&["old.example.org"], &old)
        + &sni_section(&["mail.example.org", "imap.example.org"], &mail)
        + &rest(rules.path(), "10.0.0.0/8");
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("tls.sni[0] (old.example.org)") && out.contains("EXPIRED"),
        "{out}"
    );
    assert!(out.contains("does not cover \"imap.example.org\""), "{out}");
    assert!(
        out.contains("PROXY protocol required from 10.0.0.0/8"),
        "{out}"
    );
    assert!(out.contains("0 rule(s) compiled"), "{out}");
    assert!(out.contains("forward_client_ip=proxy-v2"), "{out}");

    // An SNI key that does not match its certificate fails the check.
    let broken = config.replace(
        &format!("{:?}", mail.key.display().to_string()),
        &format!("{:?}", default.key.display().to_string()),
    );
    let (ok, out) = check(&broken);
    assert!(
        !ok && out.contains("tls.sni[1]") && out.contains("does not match"),
        "{out}"
    );
}

#[test]
fn bad_rules_and_bad_cidrs_fail_the_check() {
    let ca = NamedCa::new();
    let default = ca.leaf("default", &["localhost"]);
    let rules = tempfile::tempdir().unwrap();
    fs::write(rules.path().join("bad.toml"), "[[rule]]\nnot toml at all").unwrap();
    let (ok, out) = check(&(tls_section(&default, "") + &rest(rules.path(), "10.0.0.0/8")));
    assert!(!ok && out.contains("scan rules:"), "{out}");

    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = check(&(tls_section(&default, "") + &rest(empty.path(), "10.0.0.0/33")));
    assert!(!ok && out.contains("10.0.0.0/33"), "{out}");
}
