//! Helpers shared by the POP3 integration tests: run portcullis in-process in front of a real
//! Dovecot (or a fake backend), and blocking POP3 clients for every listener mode.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::support::certs::TestCa;
use crate::support::dovecot::Dovecot;
use crate::support::proxy;
use crate::support::raw::{connect, connect_tls, tls_over, LineClient};

/// A stream that is plain TCP or TLS.
pub trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A blocking POP3 client over either kind of stream.
pub type Client = LineClient<Box<dyn Duplex>>;

#[allow(unused_imports)]
pub use crate::support::proxy::{TestProxy, BACKEND_MODES, LISTENER_MODES};

/// A configuration with the test CA's certificate, one POP3 listener in `listener` mode and the
/// backend at `backend_address` in `backend` mode, plus `limits` lines for `[limits]`.
pub fn config_text(
    ca: &TestCa,
    listener: &str,
    backend: &str,
    backend_address: &str,
    limits: &str,
) -> String {
    format!(
        "shutdown_grace = \"2s\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\n{listener}{backend}[limits]\n{limits}\n",
        cert = ca.cert_path(),
        key = ca.key_path(),
        listener = proxy::listener("pop3", "pop3", listener, "legacy"),
        backend = proxy::backend_at("legacy", backend_address, backend, &ca.ca_pem_path()),
    )
}

/// The Dovecot address for a backend mode.
pub fn dovecot_address(dovecot: &Dovecot, backend: &str) -> String {
    let port = if backend == "implicit" {
        dovecot.pop3s_port
    } else {
        dovecot.pop3_port
    };
    format!("127.0.0.1:{port}")
}

/// portcullis in `listener` mode in front of `dovecot` in `backend` mode.
pub fn proxy_for(dovecot: &Dovecot, listener: &str, backend: &str, limits: &str) -> TestProxy {
    let address = dovecot_address(dovecot, backend);
    TestProxy::start(&config_text(
        &dovecot.ca,
        listener,
        backend,
        &address,
        limits,
    ))
}

/// Connects in `listener` mode (STLS done for `starttls`); returns the client and the greeting.
pub fn connect_mode(port: u16, listener: &str, ca: &TestCa) -> (Client, String) {
    match listener {
        "implicit" => {
            let mut client = connect_tls(port, ca);
            let greeting = client.read_line();
            let stream: Box<dyn Duplex> = Box::new(client.into_inner());
            (LineClient::new(stream), greeting)
        }
        "starttls" => {
            let mut client = connect(port);
            let greeting = client.read_line();
            let reply = client.pop3("STLS");
            assert!(reply.starts_with("+OK"), "{reply}");
            let stream: Box<dyn Duplex> = Box::new(tls_over(client.into_inner(), ca));
            (LineClient::new(stream), greeting)
        }
        _ => plain(port),
    }
}

/// A plaintext connection; returns the client and the greeting.
pub fn plain(port: u16) -> (Client, String) {
    let mut client = connect(port);
    let greeting = client.read_line();
    let stream: Box<dyn Duplex> = Box::new(client.into_inner());
    (LineClient::new(stream), greeting)
}

/// Reads a multi-line response body exactly as sent (still dot-stuffed), terminator included.
pub fn read_multiline_raw<S: Read + Write>(client: &mut LineClient<S>) -> Vec<u8> {
    let mut raw = Vec::new();
    loop {
        let line = client.read_raw_line();
        raw.extend_from_slice(&line);
        if line == b".\r\n" {
            return raw;
        }
    }
}

/// Sends `command`, expects `+OK`, returns status line and the raw multi-line body.
pub fn multiline<S: Read + Write>(client: &mut LineClient<S>, command: &str) -> (String, Vec<u8>) {
    let status = client.pop3(command);
    assert!(status.starts_with("+OK"), "{command}: {status}");
    (status, read_multiline_raw(client))
}

/// USER/PASS login.
pub fn login<S: Read + Write>(client: &mut LineClient<S>, user: &str, password: &str) {
    let reply = client.pop3(&format!("USER {user}"));
    assert!(reply.starts_with("+OK"), "USER: {reply}");
    let reply = client.pop3(&format!("PASS {password}"));
    assert!(reply.starts_with("+OK"), "PASS: {reply}");
}

/// The hex MD5 of `text` (via coreutils `md5sum`), for APOP.
pub fn md5_hex(text: &str) -> String {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&output.stdout)[..32].to_string()
}

/// The `<...>` APOP timestamp of a greeting.
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = greeting[start..].find('>')? + start + 1;
    Some(&greeting[start..end])
}

/// RSS of this test process in KiB (the proxy runs in-process).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A raw TCP stream to the proxy (for byte-level abuse).
pub fn raw_tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Whether a file exists (for client tools).
pub fn exists(path: &str) -> bool {
    Path::new(path).exists()
}
