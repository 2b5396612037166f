//! The client's address travels end to end: a PROXY header from a trusted load balancer sets
//! it, and each `forward_client_ip` mode hands it to a real Dovecot, which logs it as `rip=`.

mod support;

use std::time::Duration;

use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::{behind_load_balancer as start_proxy, connect_as};

fn wait_for_rip(dovecot: &Dovecot, ip: &str) {
    dovecot.wait_log(&format!("rip={ip}"), 1, Duration::from_secs(10));
}

#[test]
fn imap_id_carries_the_proxied_client_address() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        login_trusted_networks: Some("127.0.0.0/8".into()),
        ..DovecotOptions::default()
    });
    let proxy = start_proxy(
        &dovecot,
        "imap",
        &format!("127.0.0.1:{}", dovecot.imap_port),
        "id",
    );
    let mut client = connect_as(proxy.port(0), "198.51.100.7", &dovecot.ca);
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a OK"), "{status}");
    // The client's own ID command still passes through.
    let (untagged, status) = client.imap("b", "ID (\"name\" \"test\")");
    assert!(
        status.starts_with("b OK") && untagged[0].text().starts_with("* ID"),
        "{status}"
    );
    wait_for_rip(&dovecot, "198.51.100.7");
}

#[test]
fn pop3_xclient_carries_the_proxied_client_address() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        login_trusted_networks: Some("127.0.0.0/8".into()),
        ..DovecotOptions::default()
    });
    let proxy = start_proxy(
        &dovecot,
        "pop3",
        &format!("127.0.0.1:{}", dovecot.pop3_port),
        "xclient",
    );
    let mut client = connect_as(proxy.port(0), "198.51.100.8", &dovecot.ca);
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    wait_for_rip(&dovecot, "198.51.100.8");
}

#[test]
fn proxy_v2_to_the_backend_carries_the_proxied_client_address() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        haproxy: true,
        ..DovecotOptions::default()
    });
    let imap = dovecot.imap_haproxy_port.expect("haproxy port");
    let imap_proxy = start_proxy(&dovecot, "imap", &format!("127.0.0.1:{imap}"), "proxy-v2");
    let mut client = connect_as(imap_proxy.port(0), "203.0.113.9", &dovecot.ca);
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a OK"), "{status}");
    wait_for_rip(&dovecot, "203.0.113.9");
    let pop3 = dovecot.pop3_haproxy_port.expect("haproxy port");
    let proxy = start_proxy(&dovecot, "pop3", &format!("127.0.0.1:{pop3}"), "proxy-v1");
    let mut client = connect_as(proxy.port(0), "203.0.113.10", &dovecot.ca);
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    wait_for_rip(&dovecot, "203.0.113.10");
}
