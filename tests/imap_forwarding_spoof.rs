//! A client cannot choose the address Dovecot believes: Dovecot honours `ID
//! ("x-originating-ip" …)` from `login_trusted_networks` — which covers the proxy — so a client's
//! own ID fields, before or after login and in any spelling, must never make Dovecot log the
//! spoofed `rip=`. The proxy's own forwarding (`forward_client_ip = "id"`) still sets it.

mod support;

use std::time::Duration;

use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::TestProxy;
use support::proxy::{behind_load_balancer, connect_as, dovecot_backend, listener, tls_section};
use support::raw::{self, LineClient, TlsStream};

const SPOOFED: &str = "203.0.113.9";
const LOGIN_LINE: &str = "Login: user=<alice>";

/// The spellings of the spoofing ID a client may try (quoted, atom-cased, literal).
fn spoofing_ids() -> Vec<String> {
    vec![
        format!("ID (\"x-originating-ip\" \"{SPOOFED}\")"),
        format!("ID (\"X-Originating-IP\" \"{SPOOFED}\" \"x-originating-port\" \"4444\")"),
        format!("ID (\"x-originating-ip\" {{{}+}}\r\n{SPOOFED})", SPOOFED.len()),
        format!("ID (\"name\" \"evil\" \"x-originating-ip\" \"{SPOOFED}\" \"x-connected-ip\" \"{SPOOFED}\")"),
    ]
}

fn trusting_dovecot() -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        login_trusted_networks: Some("127.0.0.0/8".into()),
        ..DovecotOptions::default()
    })
}

/// One session: every spoofing ID before login, LOGIN, every spoofing ID again, LOGOUT. Returns
/// Dovecot's `Login:` log line for it (waited for, not slept for).
fn spoofing_session(mut client: LineClient<TlsStream>, dovecot: &Dovecot, n: usize) -> String {
    for (i, id) in spoofing_ids().iter().enumerate() {
        let (_, status) = client.imap(&format!("p{i}"), id);
        assert!(!status.is_empty());
    }
    let (_, status) = client.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l OK"), "{status}");
    for (i, id) in spoofing_ids().iter().enumerate() {
        let (_, status) = client.imap(&format!("q{i}"), id);
        assert!(!status.is_empty());
    }
    let (_, status) = client.imap("z", "LOGOUT");
    assert!(status.starts_with("z OK"), "{status}");
    let log = dovecot.wait_log(LOGIN_LINE, n, Duration::from_secs(10));
    log.lines()
        .filter(|line| line.contains(LOGIN_LINE))
        .nth(n - 1)
        .expect("login line")
        .to_string()
}

fn assert_not_spoofed(dovecot: &Dovecot, login: &str) {
    assert!(
        !login.contains(&format!("rip={SPOOFED}")),
        "the client chose its address: {login}"
    );
    assert!(
        !dovecot.log_contents().contains(&format!("rip={SPOOFED}")),
        "Dovecot logged the spoofed address:\n{}",
        dovecot.log_contents()
    );
}

#[test]
fn client_id_cannot_set_the_address_without_forwarding() {
    let dovecot = trusting_dovecot();
    let proxy = TestProxy::start(
        &(tls_section(&dovecot)
            + &listener("imaps", "imap", "implicit", "dovecot")
            + &dovecot_backend("dovecot", &dovecot, "imap", "none")),
    );
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    assert!(client.read_line().starts_with("* OK"));
    let login = spoofing_session(client, &dovecot, 1);
    assert_not_spoofed(&dovecot, &login);
    assert!(login.contains("rip=127.0.0.1"), "{login}");
}

#[test]
fn client_id_cannot_override_the_forwarded_address() {
    let dovecot = trusting_dovecot();
    let proxy = behind_load_balancer(
        &dovecot,
        "imap",
        &format!("127.0.0.1:{}", dovecot.imap_port),
        "id",
    );
    let client = connect_as(proxy.port(0), "198.51.100.20", &dovecot.ca);
    let login = spoofing_session(client, &dovecot, 1);
    assert_not_spoofed(&dovecot, &login);
    assert!(
        login.contains("rip=198.51.100.20"),
        "the proxy's own forwarding did not set the address: {login}"
    );
}
