//! Readiness that tells the truth and backend trust for legacy servers, against a real Dovecot
//! presenting the certificate under test: `/readyz`, `portcullis_backend_ready` and
//! `check-config --probe` report a CA:TRUE self-signed backend as not ready with the pin to set,
//! then ready with `pin_sha256` or with the certificate as `ca`; a wrong TLS mode, an expired
//! or wrongly named certificate and an unusable quarantine directory are named in words; a
//! session through the proxy works with `pin_sha256`.

mod support;

use support::dovecot::Dovecot;
use support::proxy::{listener, tls_section, TestProxy};
use support::raw::connect_tls;
use support::readiness::{backend, check_config_probe, BackendCert, Kind, ReadyEndpoint, ScanDirs};

/// One implicit-TLS IMAP listener per `(name)` backend, plus `[tls]` and `[scan]`.
fn config(dovecot: &Dovecot, scan: &str, backends: &[(&str, String)]) -> String {
    let mut text = tls_section(dovecot) + scan;
    for (name, section) in backends {
        text += &listener(&format!("l-{name}"), "imap", "implicit", name);
        text += section;
    }
    text
}

#[test]
fn ca_true_self_signed_backend_is_ready_only_when_pinned_or_given_as_ca() {
    let cert = BackendCert::new(Kind::SelfSignedCaTrue);
    let dovecot = cert.dovecot();
    let dirs = ScanDirs::new();
    let scan = dirs.section(None);
    let port = dovecot.imaps_port;
    let pin_hint = format!("pin_sha256 = [\"{}\"]", cert.sha256);

    // Trusting the system roots: every session would fail, so not ready, with the pin.
    let untrusted = config(
        &dovecot,
        &scan,
        &[(
            "selfsigned-none",
            backend("selfsigned-none", port, "implicit", ""),
        )],
    );
    let endpoint = ReadyEndpoint::start(&untrusted);
    let (status, body) = endpoint.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("backend selfsigned-none: error (backend selfsigned-none TLS failed: certificate is self-signed and CA:TRUE: give it as `ca`, or set ")
            && body.contains(&pin_hint),
        "{body}"
    );
    assert!(
        !body.contains("CaUsedAsEndEntity") && !body.contains("OtherError"),
        "{body}"
    );
    assert!(body.contains("quarantine: ok ("), "{body}");
    assert_eq!(
        endpoint.backend_ready("selfsigned-none").as_deref(),
        Some("0")
    );
    drop(endpoint);
    let (ok, out) = check_config_probe(&untrusted);
    assert!(!ok, "{out}");
    assert!(
        out.contains("probe backend selfsigned-none: FAILED: backend selfsigned-none TLS failed: certificate is self-signed and CA:TRUE")
            && out.contains(&pin_hint)
            && out.contains("probe quarantine: ok")
            && out.contains("probe FAILED"),
        "{out}"
    );

    // The hash printed above, pasted into the configuration (uppercase with colons is fine).
    let colons: Vec<String> = cert
        .sha256
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect();
    let pinned = config(
        &dovecot,
        &scan,
        &[(
            "selfsigned-pin",
            backend(
                "selfsigned-pin",
                port,
                "implicit",
                &format!("pin_sha256 = [{:?}]", colons.join(":")),
            ),
        )],
    );
    let endpoint = ReadyEndpoint::start(&pinned);
    let (status, body) = endpoint.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("backend selfsigned-pin: ok (imap: greeting \"* OK")
            && body.contains(&format!(
                "certificate sha256 {} trusted by pin_sha256",
                cert.sha256
            )),
        "{body}"
    );
    assert_eq!(
        endpoint.backend_ready("selfsigned-pin").as_deref(),
        Some("1")
    );
    drop(endpoint);
    let (ok, out) = check_config_probe(&pinned);
    assert!(
        ok && out.contains("probe backend selfsigned-pin: ok") && out.contains("probe OK"),
        "{out}"
    );

    // The certificate itself as `ca`: its own trust anchor although CA:TRUE.
    let as_ca = config(
        &dovecot,
        &scan,
        &[(
            "selfsigned-ca",
            backend(
                "selfsigned-ca",
                port,
                "implicit",
                &format!("ca = {:?}", cert.cert.display().to_string()),
            ),
        )],
    );
    let endpoint = ReadyEndpoint::start(&as_ca);
    let (status, body) = endpoint.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("trusted by ca"), "{body}");
    assert_eq!(
        endpoint.backend_ready("selfsigned-ca").as_deref(),
        Some("1")
    );
    drop(endpoint);
    let (ok, out) = check_config_probe(&as_ca);
    assert!(ok, "{out}");

    // STARTTLS on the plain port verifies the same way.
    let starttls = config(
        &dovecot,
        &scan,
        &[(
            "selfsigned-stls",
            backend(
                "selfsigned-stls",
                dovecot.imap_port,
                "starttls",
                &format!("ca = {:?}", cert.cert.display().to_string()),
            ),
        )],
    );
    let (ok, out) = check_config_probe(&starttls);
    assert!(ok && out.contains("over STARTTLS"), "{out}");
}

#[test]
fn session_through_the_proxy_works_with_pin_against_a_ca_true_backend() {
    let cert = BackendCert::new(Kind::SelfSignedCaTrue);
    let dovecot = cert.dovecot();
    let dirs = ScanDirs::new();
    let scan = dirs.section(None);
    let port = dovecot.imaps_port;

    // Without trust the client is told the backend failed verification.
    let proxy = TestProxy::start(&config(
        &dovecot,
        &scan,
        &[("untrusted", backend("untrusted", port, "implicit", ""))],
    ));
    let mut client = connect_tls(proxy.port(0), &dovecot.ca);
    let greeting = client.read_line();
    assert!(greeting.contains("failed TLS verification"), "{greeting}");
    drop(proxy);

    let pin = format!("pin_sha256 = [\"{}\"]", cert.sha256);
    let proxy = TestProxy::start(&config(
        &dovecot,
        &scan,
        &[("pinned", backend("pinned", port, "implicit", &pin))],
    ));
    let mut client = connect_tls(proxy.port(0), &dovecot.ca);
    let greeting = client.read_line();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a OK"), "{status}");
    let (_, status) = client.imap("b", "SELECT INBOX");
    assert!(status.starts_with("b OK"), "{status}");
    let (_, status) = client.imap("c", "LOGOUT");
    assert!(status.starts_with("c OK"), "{status}");
}

#[test]
fn wrong_tls_mode_is_named_in_readyz_and_probe() {
    let dovecot = Dovecot::start();
    let dirs = ScanDirs::new();
    let ca = format!("ca = {:?}", dovecot.ca.ca_pem_path().display().to_string());
    let text = config(
        &dovecot,
        &dirs.section(None),
        &[
            (
                "implicit-on-plain",
                backend("implicit-on-plain", dovecot.imap_port, "implicit", &ca),
            ),
            (
                "starttls-on-implicit",
                backend("starttls-on-implicit", dovecot.imaps_port, "starttls", &ca),
            ),
            (
                "right",
                backend("right", dovecot.imaps_port, "implicit", &ca),
            ),
        ],
    );
    let endpoint = ReadyEndpoint::start(&text);
    let (status, body) = endpoint.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("backend implicit-on-plain: error (backend implicit-on-plain TLS failed: backend did not speak TLS on connect")
            && body.contains("is `tls = \"starttls\"`"),
        "{body}"
    );
    assert!(
        body.contains("backend starttls-on-implicit: error (backend starttls-on-implicit: no greeting arrived within 2s: a server that waits silently usually expects TLS from the first byte (RFC 8314): is `tls = \"implicit\"` meant"),
        "{body}"
    );
    assert!(
        !body.contains("InvalidContentType") && !body.contains("corrupt message"),
        "{body}"
    );
    assert!(body.contains("backend right: ok ("), "{body}");
    assert_eq!(
        endpoint.backend_ready("implicit-on-plain").as_deref(),
        Some("0")
    );
    assert_eq!(
        endpoint.backend_ready("starttls-on-implicit").as_deref(),
        Some("0")
    );
    assert_eq!(endpoint.backend_ready("right").as_deref(), Some("1"));
    drop(endpoint);

    let (ok, out) = check_config_probe(&text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("probe backend implicit-on-plain: FAILED: backend implicit-on-plain TLS failed: backend did not speak TLS on connect")
            && out.contains("probe backend starttls-on-implicit: FAILED: backend starttls-on-implicit: no greeting arrived within 2s")
            && out.contains("probe backend right: ok"),
        "{out}"
    );
}

#[test]
fn expired_and_wrongly_named_backend_certificates_are_explained() {
    let expired = BackendCert::new(Kind::Expired);
    let expired_dovecot = expired.dovecot();
    let wrong = BackendCert::new(Kind::Names(&["mail.example.org"]));
    let wrong_dovecot = wrong.dovecot();
    let dirs = ScanDirs::new();
    let ca = |cert: &BackendCert| format!("ca = {:?}", cert.ca.display().to_string());
    let text = config(
        &expired_dovecot,
        &dirs.section(None),
        &[
            (
                "expired",
                backend(
                    "expired",
                    expired_dovecot.imaps_port,
                    "implicit",
                    &ca(&expired),
                ),
            ),
            (
                "wrong-name",
                backend(
                    "wrong-name",
                    wrong_dovecot.imaps_port,
                    "implicit",
                    &ca(&wrong),
                ),
            ),
        ],
    );
    let (ok, out) = check_config_probe(&text);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "probe backend expired: FAILED: backend expired TLS failed: certificate expired on "
        ) && out.contains("2021")
            && out.contains(&format!("sha256 {}", expired.sha256)),
        "{out}"
    );
    assert!(
        out.contains("probe backend wrong-name: FAILED: backend wrong-name TLS failed: name mismatch: certificate is for mail.example.org, `server_name` is localhost")
            && out.contains(&format!("sha256 {}", wrong.sha256)),
        "{out}"
    );
}

#[test]
fn unwritable_quarantine_dir_is_not_ready() {
    let dovecot = Dovecot::start();
    let dirs = ScanDirs::new();
    // Tests may run as root, so permissions would not stop a write: a path below a regular
    // file can never be created.
    let blocked = dirs.regular_file().join("quarantine");
    let text = config(
        &dovecot,
        &dirs.section(Some(&blocked)),
        &[("plain", backend("plain", dovecot.imap_port, "none", ""))],
    );
    let endpoint = ReadyEndpoint::start(&text);
    let (status, body) = endpoint.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("backend plain: ok (imap: greeting \"* OK"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "quarantine: error (cannot write to quarantine_dir {}",
            blocked.display()
        )),
        "{body}"
    );
    assert_eq!(endpoint.backend_ready("plain").as_deref(), Some("1"));
    drop(endpoint);
    let (ok, out) = check_config_probe(&text);
    assert!(
        !ok && out.contains("probe quarantine: FAILED: cannot write to quarantine_dir"),
        "{out}"
    );
}
