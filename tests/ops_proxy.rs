//! PROXY protocol in (v1 and v2 from trusted addresses honoured, untrusted / missing /
//! malformed / late headers refused and counted) and out (`forward_client_ip = "proxy-v1"` /
//! `"proxy-v2"` to a real Dovecot listener with `haproxy = yes`, which logs the forwarded
//! address as `rip=`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis::proxy_protocol::{encode, Version};
use support::dovecot::{Dovecot, DovecotOptions};
use support::ops::{connect_with, empty_rules, first_line};
use support::proxy::{dovecot_backend, TestProxy};

const LOCAL: &str = "192.0.2.1:143";

fn header(version: Version, client: &str) -> Vec<u8> {
    encode(version, client.parse().unwrap(), LOCAL.parse().unwrap())
}

fn proxy_listener(name: &str, trusted: &str) -> String {
    format!(
        "[[listener]]\nname = {name:?}\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\nbackend = \"dovecot\"\nproxy_protocol = true\ntrusted_proxies = [{trusted:?}]\n\n"
    )
}

/// Listener 0 trusts 127.0.0.1, listener 1 trusts only 10.0.0.0/8; one connection per address.
fn start(dovecot: &Dovecot) -> (TestProxy, tempfile::TempDir) {
    let (rules, scan) = empty_rules();
    let config = "[limits]\nmax_connections_per_ip = 1\nproxy_header_timeout = \"1s\"\n\n"
        .to_string()
        + &scan
        + &proxy_listener("pp", "127.0.0.1/32")
        + &proxy_listener("pp-untrusted", "10.0.0.0/8")
        + &dovecot_backend("dovecot", dovecot, "imap", "none");
    (TestProxy::start(&config), rules)
}

fn rejections(limit: &str) -> u64 {
    portcullis::metrics::metrics()
        .limit_rejections
        .with_label_values(&[limit])
        .get()
}

#[test]
fn trusted_v1_and_v2_headers_set_the_client_address_used_by_the_per_ip_cap() {
    let dovecot = Dovecot::start();
    let (proxy, _rules) = start(&dovecot);
    let port = proxy.port(0);
    let before = rejections("per_ip_connections");

    let mut first = connect_with(port, &header(Version::V1, "10.9.9.9:1111"));
    assert!(
        first_line(&mut first).starts_with("* OK"),
        "v1 client not served"
    );
    // Same announced client over v2: over its cap of one, although the socket peer
    // (127.0.0.1) is the same for every connection here.
    let mut second = connect_with(port, &header(Version::V2, "10.9.9.9:2222"));
    assert_eq!(
        first_line(&mut second),
        "* BYE [UNAVAILABLE] too many connections"
    );
    let mut other = connect_with(port, &header(Version::V2, "[2001:db8::9]:3333"));
    assert!(
        first_line(&mut other).starts_with("* OK"),
        "v2 client not served"
    );
    assert!(rejections("per_ip_connections") > before);

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_with(port, &header(Version::V1, "10.9.9.9:4444"));
        let line = first_line(&mut again);
        if line.starts_with("* OK") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn untrusted_missing_malformed_and_late_headers_are_refused_and_counted() {
    let dovecot = Dovecot::start();
    let (proxy, _rules) = start(&dovecot);
    let before = rejections("proxy_header");
    let valid = header(Version::V2, "10.1.1.1:1000");
    let cases: [(u16, &[u8]); 4] = [
        (proxy.port(1), &valid),
        (proxy.port(0), b"a1 CAPABILITY\r\n"),
        (proxy.port(0), b"PROXY TCP4 10.1.1.1 nonsense\r\n"),
        (proxy.port(0), b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff"),
    ];
    for (port, prefix) in cases {
        let mut tcp = connect_with(port, prefix);
        assert_eq!(first_line(&mut tcp), "", "served after {prefix:?}");
    }
    let started = Instant::now();
    let mut silent = connect_with(proxy.port(0), b"");
    assert_eq!(first_line(&mut silent), "");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "header timeout not applied"
    );
    assert!(rejections("proxy_header") >= before + 5);
    assert!(
        !dovecot.log_contents().contains("10.1.1.1"),
        "a refused connection reached the backend"
    );
}

async fn login_via_connector(dovecot: &Dovecot, mode: &str, client: SocketAddr) -> String {
    let port = dovecot.imap_haproxy_port.expect("haproxy listener");
    let config = format!(
        "[[listener]]\nname = \"x\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\nbackend = \"d\"\n\n\
         [[backend]]\nname = \"d\"\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\nforward_client_ip = {mode:?}\n"
    );
    let config = portcullis::config::Config::parse(&config).unwrap();
    let target = portcullis::backend::BackendTarget::new(
        &config.backends[0],
        portcullis::config::Protocol::Imap,
    )
    .unwrap();
    let local: SocketAddr = "127.0.0.1:143".parse().unwrap();
    let mut conn = target
        .connect_for::<portcullis::imap::command::ImapDialect>(Some((client, local)))
        .await
        .expect("connect through haproxy listener");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let login = format!("a LOGIN {} {}\r\n", dovecot.user(), dovecot.password());
    conn.stream.write_all(login.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 4096];
    let n = conn.stream.read(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

#[test]
fn proxy_v1_and_v2_headers_to_the_backend_carry_the_client_address() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        haproxy: true,
        ..DovecotOptions::default()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (mode, client) in [
        ("proxy-v1", "203.0.113.41:50001"),
        ("proxy-v2", "203.0.113.42:50002"),
    ] {
        let reply = runtime.block_on(login_via_connector(&dovecot, mode, client.parse().unwrap()));
        assert!(reply.contains("a OK"), "{mode}: {reply}");
        let ip = client.split(':').next().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dovecot.log_contents().contains(&format!("rip={ip}")) {
            assert!(
                Instant::now() < deadline,
                "{mode}: Dovecot did not log rip={ip}:\n{}",
                dovecot.log_contents()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let metrics = portcullis::metrics::render();
    assert!(metrics.contains("portcullis_backend_connect_seconds_count{backend=\"d\"} 2"));
}
