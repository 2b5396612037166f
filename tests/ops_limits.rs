//! Connection caps in the accept path: `max_connections` over all listeners, refusal lines for
//! IMAP and POP3 on plaintext-first listeners, a silent close on implicit-TLS listeners, and the
//! slot coming back when a session ends. (The per-address cap behind a PROXY header is in
//! `ops_proxy.rs`; the auth penalty table is unit-tested in `src/limits.rs`.)

mod support;

use std::time::{Duration, Instant};

use support::dovecot::Dovecot;
use support::ops::{connect_with, empty_rules, first_line};
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};

fn rejections(limit: &str) -> u64 {
    portcullis::metrics::metrics()
        .limit_rejections
        .with_label_values(&[limit])
        .get()
}

#[test]
fn max_connections_refuses_with_a_protocol_line_and_frees_slots() {
    let dovecot = Dovecot::start();
    let (_rules, scan) = empty_rules();
    let config = "[limits]\nmax_connections = 2\n\n".to_string()
        + &scan
        + &tls_section(&dovecot)
        + &listener("imap", "imap", "none", "dovecot")
        + &listener("pop3", "pop3", "none", "dovecot")
        + &listener("imaps", "imap", "implicit", "dovecot")
        + &dovecot_backend("dovecot", &dovecot, "imap", "none");
    let proxy = TestProxy::start(&config);
    let before = rejections("max_connections");

    let mut first = connect_with(proxy.port(0), b"");
    assert!(first_line(&mut first).starts_with("* OK"));
    let mut second = connect_with(proxy.port(0), b"");
    assert!(first_line(&mut second).starts_with("* OK"));
    let mut imap = connect_with(proxy.port(0), b"");
    assert_eq!(
        first_line(&mut imap),
        "* BYE [UNAVAILABLE] too many connections"
    );
    let mut pop3 = connect_with(proxy.port(1), b"");
    assert_eq!(
        first_line(&mut pop3),
        "-ERR [SYS/TEMP] too many connections"
    );
    // Implicit TLS: closed before the handshake, no bytes at all.
    let mut implicit = connect_with(proxy.port(2), b"\x16\x03\x01\x00\x05hello");
    assert_eq!(first_line(&mut implicit), "");
    assert!(rejections("max_connections") >= before + 3);
    let active = portcullis::metrics::metrics()
        .connections_active
        .with_label_values(&["imap", "imap"])
        .get();
    assert_eq!(active, 2, "refused connections must not count as active");

    first.shutdown(std::net::Shutdown::Both).unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_with(proxy.port(0), b"");
        if first_line(&mut again).starts_with("* OK") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released");
        std::thread::sleep(Duration::from_millis(100));
    }
}
