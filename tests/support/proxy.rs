//! Runs portcullis in-process for a test: its own tokio runtime on a background thread, listeners
//! on ephemeral loopback ports, configuration written as TOML like an administrator would.

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;

use portcullis::config::Config;
use tokio_util::sync::CancellationToken;

use super::certs::TestCa;
use super::dovecot::Dovecot;
use super::raw::{connect_tls, LineClient, TlsStream};

/// Listener TLS modes, as spelled in the configuration.
pub const LISTENER_MODES: [&str; 3] = ["implicit", "starttls", "none"];
/// Backend TLS modes, as spelled in the configuration.
pub const BACKEND_MODES: [&str; 3] = ["none", "starttls", "implicit"];

/// A running proxy; dropping it shuts it down.
pub struct TestProxy {
    /// Bound listener addresses, in configuration order.
    pub addrs: Vec<SocketAddr>,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Parses `toml` (which must validate) and starts serving it.
    pub fn start(toml: &str) -> TestProxy {
        let config =
            Config::parse(toml).unwrap_or_else(|e| panic!("test config invalid: {e}\n{toml}"));
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = portcullis::server::Server::bind(&config)
                    .await
                    .expect("bind");
                sender
                    .send((server.local_addrs(), server.shutdown_token()))
                    .expect("send addrs");
                server.run().await;
            });
        });
        let (addrs, shutdown) = receiver.recv().expect("proxy started");
        TestProxy {
            addrs,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Port of the `index`-th listener.
    pub fn port(&self, index: usize) -> u16 {
        self.addrs[index].port()
    }

    /// Starts graceful shutdown (as SIGTERM would).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `[tls]` using the test CA's leaf certificate (valid for `localhost` and 127.0.0.1).
pub fn tls_section(dovecot: &Dovecot) -> String {
    tls_section_for(&dovecot.ca)
}

/// `[tls]` presenting `ca`'s leaf certificate.
pub fn tls_section_for(ca: &TestCa) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n\n",
        ca.cert_path().display().to_string(),
        ca.key_path().display().to_string()
    )
}

/// A proxy with one implicit-TLS IMAP listener in front of a fake backend on `port` reached in
/// `backend_tls` mode; `extra` is inserted before the listener (e.g. a `[scan]` section).
pub fn imap_to_fake(ca: &TestCa, port: u16, backend_tls: &str, extra: &str) -> TestProxy {
    let config = tls_section_for(ca)
        + extra
        + &listener("imaps", "imap", "implicit", "fake")
        + &backend_at(
            "fake",
            &format!("127.0.0.1:{port}"),
            backend_tls,
            &ca.ca_pem_path(),
        );
    TestProxy::start(&config)
}

/// A direct IMAPS session to Dovecot, logged in as the default user, INBOX examined: the
/// reference the proxied bytes are compared with.
pub fn direct_imap(dovecot: &Dovecot) -> LineClient<TlsStream> {
    let mut direct = connect_tls(dovecot.imaps_port, &dovecot.ca);
    direct.read_line();
    let (_, status) = direct.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l OK"), "direct login: {status}");
    let (_, status) = direct.imap("s", "EXAMINE INBOX");
    assert!(status.starts_with("s OK"), "direct EXAMINE: {status}");
    direct
}

/// A `[[listener]]` on an ephemeral loopback port.
pub fn listener(name: &str, protocol: &str, tls: &str, backend: &str) -> String {
    format!(
        "[[listener]]\nname = {name:?}\nprotocol = {protocol:?}\nbind = \"127.0.0.1:0\"\ntls = {tls:?}\nbackend = {backend:?}\n\n"
    )
}

/// A `[[backend]]` pointing at the right Dovecot port for `protocol` and `tls` mode.
pub fn dovecot_backend(name: &str, dovecot: &Dovecot, protocol: &str, tls: &str) -> String {
    let port = match (protocol, tls) {
        ("imap", "implicit") => dovecot.imaps_port,
        ("imap", _) => dovecot.imap_port,
        ("pop3", "implicit") => dovecot.pop3s_port,
        _ => dovecot.pop3_port,
    };
    backend_at(
        name,
        &format!("127.0.0.1:{port}"),
        tls,
        &dovecot.ca.ca_pem_path(),
    )
}

/// A `[[backend]]` at `address` trusting `ca` for the name `localhost`.
pub fn backend_at(name: &str, address: &str, tls: &str, ca: &Path) -> String {
    format!(
        "[[backend]]\nname = {name:?}\naddress = {address:?}\ntls = {tls:?}\nca = {:?}\nserver_name = \"localhost\"\nconnect_timeout = \"5s\"\n\n",
        ca.display().to_string()
    )
}

/// A proxy whose single implicit-TLS listener requires a PROXY header from a trusted loopback
/// "load balancer", in front of the plaintext backend `address`, handing the client address on
/// with `forward_client_ip = forward` (`none`, `id`, `xclient`, `proxy-v1`, `proxy-v2`).
pub fn behind_load_balancer(
    dovecot: &Dovecot,
    protocol: &str,
    address: &str,
    forward: &str,
) -> TestProxy {
    let config = tls_section(dovecot)
        + &format!(
            "[[listener]]\nname = \"lb\"\nprotocol = {protocol:?}\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n"
        )
        + &backend_at("b", address, "none", &dovecot.ca.ca_pem_path())
        + &format!("forward_client_ip = {forward:?}\n");
    TestProxy::start(&config)
}

/// Connects to a [`behind_load_balancer`] listener as `client` (announced in a PROXY v1
/// header), does TLS and reads the greeting (asserted non-empty).
pub fn connect_as(port: u16, client: &str, ca: &TestCa) -> LineClient<TlsStream> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    tcp.set_read_timeout(Some(super::raw::IO_TIMEOUT))
        .expect("timeout");
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 993\r\n");
    std::io::Write::write_all(&mut tcp, header.as_bytes()).expect("header");
    let mut client = LineClient::new(super::raw::tls_over(tcp, ca));
    assert!(!client.read_line().is_empty(), "no greeting");
    client
}
