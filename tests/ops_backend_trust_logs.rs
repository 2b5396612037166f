//! Backend TLS failures in the logs: a session to a CA:TRUE self-signed backend and a readiness
//! probe of it log the explanation in words with the pin to set; rustls' own error codes appear
//! only at debug level.

mod support;

use support::proxy::{listener, tls_section, TestProxy};
use support::raw::connect_tls;
use support::readiness::{backend, BackendCert, Kind, ReadyEndpoint, ScanDirs};

#[test]
fn tls_failures_are_logged_in_words_and_library_codes_only_at_debug() {
    let captured = support::logs::capture(tracing::Level::DEBUG);
    let cert = BackendCert::new(Kind::SelfSignedCaTrue);
    let dovecot = cert.dovecot();
    let dirs = ScanDirs::new();
    let config = tls_section(&dovecot)
        + &dirs.section(None)
        + &listener("imaps", "imap", "implicit", "logged")
        + &backend("logged", dovecot.imaps_port, "implicit", "");

    let proxy = TestProxy::start(&config);
    let mut client = connect_tls(proxy.port(0), &dovecot.ca);
    assert!(client.read_line().contains("failed TLS verification"));
    drop(client);
    drop(proxy);
    let endpoint = ReadyEndpoint::start(&config);
    assert_eq!(endpoint.get("/readyz").0, 503);
    drop(endpoint);

    let log = captured.text();
    let explained = format!(
        "backend logged TLS failed: certificate is self-signed and CA:TRUE: give it as `ca`, or set `pin_sha256 = [\"{}\"]`",
        cert.sha256
    );
    let session_line = log
        .lines()
        .find(|line| line.contains("backend connection failed"))
        .unwrap_or_else(|| panic!("no session failure logged:\n{log}"));
    assert!(
        session_line.contains(" WARN ") && session_line.contains(&explained),
        "{session_line}"
    );
    let readiness_line = log
        .lines()
        .find(|line| line.contains("readiness check failed"))
        .unwrap_or_else(|| panic!("no readiness failure logged:\n{log}"));
    assert!(readiness_line.contains(&explained), "{readiness_line}");
    for line in log
        .lines()
        .filter(|line| line.contains("CaUsedAsEndEntity"))
    {
        assert!(
            line.contains("DEBUG"),
            "library code above debug level: {line}"
        );
    }
    assert!(
        log.lines()
            .any(|line| line.contains("DEBUG") && line.contains("CaUsedAsEndEntity")),
        "the library detail stays available at debug level:\n{log}"
    );
}
