//! Per-session abuse limits against a real Dovecot: the auth-failure penalty grows per client
//! address, `max_errors` closes a connection that keeps sending bad commands.

mod support;

use std::time::{Duration, Instant};

use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use support::raw;

fn start(dovecot: &Dovecot, limits: &str) -> TestProxy {
    let config = tls_section(dovecot)
        + &listener("imaps", "imap", "implicit", "d")
        + &listener("pop3s", "pop3", "implicit", "p")
        + &dovecot_backend("d", dovecot, "imap", "none")
        + &dovecot_backend("p", dovecot, "pop3", "none")
        + "[limits]\n"
        + limits;
    TestProxy::start(&config)
}

#[test]
fn auth_failures_make_later_logins_wait_longer() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        extra_config: vec!["auth_failure_delay = 0".into()],
        ..DovecotOptions::default()
    });
    let proxy = start(
        &dovecot,
        "auth_penalty_initial = \"2s\"\nauth_penalty_max = \"4s\"\n",
    );
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    client.read_line();
    let mut timings = Vec::new();
    for attempt in 0..3 {
        let started = Instant::now();
        let (_, status) = client.imap(
            &format!("a{attempt}"),
            &format!("LOGIN {} wrong", dovecot.user()),
        );
        timings.push(started.elapsed());
        assert!(status.contains("NO"), "{status}");
        // The proxy records the failure on a spawned task after relaying the NO; there is no
        // event to wait for, so give that task a moment (penalty bounds have 0.5 s slack).
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        timings[0] < Duration::from_millis(1500),
        "first attempt delayed: {timings:?}"
    );
    assert!(
        timings[2] >= Duration::from_millis(3900),
        "penalty did not grow: {timings:?}"
    );
    // The penalty is per address and applies to POP3 too; success clears it.
    let mut pop3 = raw::connect_tls(proxy.port(1), &dovecot.ca);
    pop3.read_line();
    pop3.pop3(&format!("USER {}", dovecot.user()));
    let started = Instant::now();
    assert!(pop3
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    assert!(
        started.elapsed() >= Duration::from_millis(3900),
        "POP3 login not delayed"
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (_, status) = client.imap(
        "ok",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("ok OK"), "{status}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "penalty not cleared by success"
    );
}

#[test]
fn max_errors_closes_imap_and_pop3_connections() {
    let dovecot = Dovecot::start();
    let proxy = start(&dovecot, "max_errors = 3\n");
    let before = max_errors_count(&portcullis::metrics::render());
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    client.read_line();
    // After login: Dovecot's own pre-login limit (3 bad commands) would otherwise act first.
    let (_, status) = client.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l OK"), "{status}");
    for attempt in 0..2 {
        let (_, status) = client.imap(&format!("x{attempt}"), "BOGUS");
        assert!(status.contains("BAD"), "{status}");
    }
    client.send_line("x2 BOGUS");
    let third = client.read_line();
    assert!(third.contains("BAD"), "{third}");
    let bye = client.read_line();
    assert!(bye.starts_with("* BYE") && bye.contains("errors"), "{bye}");
    pop3_max_errors(&proxy, &dovecot);
    let after = portcullis::metrics::render();
    assert_eq!(max_errors_count(&after) - before, 2, "both closes counted");
}

fn max_errors_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_limit_rejections_total{limit=\"max_errors\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The same limit on POP3: `-ERR` answers to non-login commands.
fn pop3_max_errors(proxy: &TestProxy, dovecot: &Dovecot) {
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    for n in 0..3 {
        let reply = client.pop3(&format!("RETR {}", 100 + n));
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
    let bye = client.read_line();
    assert!(
        bye.starts_with("-ERR [SYS/PERM]") && bye.contains("errors"),
        "{bye}"
    );
}
