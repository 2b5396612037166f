//! Scaffolding shared by the scanning tests (`tests/imap_scan.rs`, `tests/imap_scan_append.rs`,
//! `tests/imap_append_remembered.rs`,
//! `tests/pop3_scan.rs`, `tests/scan_notice.rs`, `tests/verdict_items.rs`): the `[scan]` section,
//! proxies in front of the test Dovecot, logged-in IMAP and POP3 clients, FETCH and RETR/TOP
//! helpers, and a look into the quarantine directory.

use std::path::Path;

use super::clamd::Clamd;
use super::dovecot::Dovecot;
use super::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use super::raw::{self, LineClient, TlsStream};

/// A TLS client session (to the proxy or directly to Dovecot).
pub type Client = LineClient<TlsStream>;

/// `clamd`'s TCP endpoint as a quoted TOML string, ready for [`scan_section`].
pub fn clamd_endpoint(clamd: &Clamd) -> String {
    format!("{:?}", clamd.tcp_addr())
}

/// A `[scan]` section with a 5 s timeout.
///
/// `clamd_endpoints` is the inside of the `clamd = [...]` array, already quoted (empty for no
/// scanner, e.g. rules only); `rules_dir`, if any, becomes `rules_dir = "..."`; `extra` holds
/// further `key = value` lines (may be empty) placed last.
pub fn scan_section(
    clamd_endpoints: &str,
    quarantine: &Path,
    rules_dir: Option<&str>,
    extra: &str,
) -> String {
    let rules = rules_dir
        .map(|dir| format!("rules_dir = {dir:?}\n"))
        .unwrap_or_default();
    format!(
        "[scan]\nclamd = [{clamd_endpoints}]\ntimeout = \"5s\"\nquarantine_dir = {:?}\n{rules}{extra}\n",
        quarantine.display().to_string()
    )
}

/// The configuration of an IMAP-only proxy: `[tls]`, `scan` (a `[scan]` section or empty), one
/// implicit-TLS listener `imaps` in front of the Dovecot backend `dovecot` (plain IMAP).
pub fn imap_config(dovecot: &Dovecot, scan: &str) -> String {
    tls_section(dovecot)
        + scan
        + &listener("imaps", "imap", "implicit", "dovecot")
        + &dovecot_backend("dovecot", dovecot, "imap", "none")
}

/// Starts the IMAP-only proxy of [`imap_config`]: `port(0)` is the IMAPS listener.
pub fn start_imap(dovecot: &Dovecot, scan: &str) -> TestProxy {
    TestProxy::start(&imap_config(dovecot, scan))
}

/// Starts a proxy with `[tls]`, `scan` and, for each protocol of `protocols` (`"imap"` or
/// `"pop3"`) in order, an implicit-TLS listener `{protocol}s` in front of a Dovecot backend named
/// `protocol` (plain): `port(i)` is the listener for `protocols[i]`.
pub fn start_proxy(dovecot: &Dovecot, scan: &str, protocols: &[&str]) -> TestProxy {
    let mut config = tls_section(dovecot) + scan;
    for protocol in protocols {
        config += &listener(&format!("{protocol}s"), protocol, "implicit", protocol);
    }
    for protocol in protocols {
        config += &dovecot_backend(protocol, dovecot, protocol, "none");
    }
    TestProxy::start(&config)
}

/// An IMAPS session on `port` logged in as the default user, INBOX opened with `open`
/// (`"SELECT"` or `"EXAMINE"`); both steps must answer OK.
pub fn imap_login(port: u16, dovecot: &Dovecot, open: &str) -> Client {
    let mut client = raw::connect_tls(port, &dovecot.ca);
    client.read_line();
    let (_, status) = client.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l OK"), "{status}");
    let (_, status) = client.imap("s", &format!("{open} INBOX"));
    assert!(status.starts_with("s OK"), "{status}");
    client
}

/// Sends `command` with tag `f` and returns (every byte received for it before the tagged line,
/// its literals in order, the tagged status line).
pub fn fetch(client: &mut Client, command: &str) -> (Vec<u8>, Vec<Vec<u8>>, String) {
    let (responses, status) = client.imap("f", command);
    let raw = responses.iter().flat_map(|r| r.raw.clone()).collect();
    let literals = responses.iter().flat_map(|r| r.literals.clone()).collect();
    (raw, literals, status)
}

/// A POP3S session on `port` logged in (USER/PASS) as the default user; greeting and both
/// commands must answer `+OK`.
pub fn pop3_login(port: u16, dovecot: &Dovecot) -> Client {
    let mut client = raw::connect_tls(port, &dovecot.ca);
    assert!(client.read_line().starts_with("+OK"));
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    client
}

/// A POP3 `RETR` or `TOP` `command`: (status line, unstuffed body if `+OK`, else empty).
pub fn retrieve(client: &mut Client, command: &str) -> (String, Vec<u8>) {
    let status = client.pop3(command);
    let body = if status.starts_with("+OK") {
        client.read_pop3_multiline()
    } else {
        Vec::new()
    };
    (status, body)
}

/// Whether `needle` (non-empty) occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The messages in the quarantine directory `dir` (its `*.eml` files), in directory order.
pub fn quarantined(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("quarantine dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect()
}

/// A proxy scanning with a real clamd and `scan_append = true` in front of the test Dovecot,
/// with a client logged in and INBOX selected.
pub struct AppendScanning {
    /// The backend.
    pub dovecot: Dovecot,
    /// The scanner (kept alive).
    pub clamd: Clamd,
    /// The quarantine directory (kept alive).
    pub dir: tempfile::TempDir,
    /// The proxy.
    pub proxy: TestProxy,
    /// The logged-in client.
    pub client: Client,
}

impl AppendScanning {
    /// Starts Dovecot, clamd and the proxy, and logs a client in.
    pub fn start() -> AppendScanning {
        let dovecot = Dovecot::start();
        let clamd = Clamd::start();
        let dir = tempfile::tempdir().expect("dir");
        let scan = scan_section(
            &clamd_endpoint(&clamd),
            dir.path(),
            Some("rules"),
            "scan_append = true",
        );
        let proxy = start_imap(&dovecot, &scan);
        let client = imap_login(proxy.port(0), &dovecot, "SELECT");
        AppendScanning {
            dovecot,
            clamd,
            dir,
            proxy,
            client,
        }
    }
}

/// `APPEND INBOX` of `message` with tag `tag` (a synchronizing literal waits for the `+`);
/// returns the tagged answer.
pub fn append(client: &mut Client, tag: &str, message: &[u8], synchronizing: bool) -> String {
    if synchronizing {
        client.send_line(&format!("{tag} APPEND INBOX {{{}}}", message.len()));
        let continuation = client.read_line();
        assert!(continuation.starts_with('+'), "{continuation}");
        client.send_raw(message);
        client.send_raw(b"\r\n");
    } else {
        let mut command = format!("{tag} APPEND INBOX {{{}+}}\r\n", message.len()).into_bytes();
        command.extend_from_slice(message);
        command.extend_from_slice(b"\r\n");
        client.send_raw(&command);
    }
    loop {
        let line = client.read_line();
        if line.starts_with(&format!("{tag} ")) {
            return line;
        }
    }
}
