//! The client's address travels end to end: a PROXY header from a trusted load balancer sets
//! it, and each `forward_client_ip` mode hands it to a real Dovecot, which logs it as `rip=`.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::{backend_at, TestProxy};
use support::raw::{self, LineClient};

fn wait_for_rip(dovecot: &Dovecot, ip: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dovecot.log_contents().contains(&format!("rip={ip}")) {
        assert!(
            Instant::now() < deadline,
            "Dovecot did not log rip={ip}:\n{}",
            dovecot.log_contents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A proxy whose listener trusts PROXY headers from loopback, in front of `address`.
fn start_proxy(dovecot: &Dovecot, protocol: &str, address: &str, forward: &str) -> TestProxy {
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n\n[[listener]]\nname = \"lb\"\nprotocol = {protocol:?}\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n",
        dovecot.ca.cert_path(),
        dovecot.ca.key_path()
    ) + &backend_at("b", address, "none", &dovecot.ca.ca_pem_path())
        + &format!("forward_client_ip = {forward:?}\n");
    TestProxy::start(&config)
}

/// Connects through a "load balancer" that announces `client` with a PROXY v1 header.
fn connect_as(port: u16, client: &str, dovecot: &Dovecot) -> LineClient<raw::TlsStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 993\r\n");
    tcp.write_all(header.as_bytes()).expect("header");
    let mut client = LineClient::new(raw::tls_over(tcp, &dovecot.ca));
    assert!(!client.read_line().is_empty());
    client
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
    let mut client = connect_as(proxy.port(0), "198.51.100.7", &dovecot);
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
    let mut client = connect_as(proxy.port(0), "198.51.100.8", &dovecot);
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
    let mut client = connect_as(imap_proxy.port(0), "203.0.113.9", &dovecot);
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a OK"), "{status}");
    wait_for_rip(&dovecot, "203.0.113.9");
    let pop3 = dovecot.pop3_haproxy_port.expect("haproxy port");
    let proxy = start_proxy(&dovecot, "pop3", &format!("127.0.0.1:{pop3}"), "proxy-v1");
    let mut client = connect_as(proxy.port(0), "203.0.113.10", &dovecot);
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    wait_for_rip(&dovecot, "203.0.113.10");
}
