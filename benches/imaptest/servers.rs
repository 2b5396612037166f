//! The two proxies the imaptest bench puts in front of its Dovecot, each a child process so that
//! its CPU time comes from `/proc/<pid>/stat`: portcullis (this build's executable, implicit-TLS
//! listener, `[scan]` with clamd or the built-in check only) and stunnel (configured as in
//! `benches/scale/proxies.rs`). Both present the test CA's leaf certificate and connect to
//! Dovecot's plaintext IMAP port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procfs::{free_port, portcullis_serve, wait_for_port, Server};
use crate::support::dovecot::Dovecot;

/// A running proxy: the process, its implicit-TLS IMAP port and its private directory.
pub struct Proxy {
    /// The process (group).
    pub server: Server,
    /// The implicit-TLS IMAP listener.
    pub port: u16,
    /// stdout + stderr of the process.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// User + system CPU seconds used so far by the process tree.
    pub fn cpu_secs(&self) -> f64 {
        self.server.usage().cpu_secs
    }

    /// Panics with the log tail if the process died.
    pub fn check_alive(&mut self) {
        self.server.check_alive(&self.log);
    }
}

fn private_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("proxy temp dir")
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Starts `bin serve` with an implicit-TLS listener in front of Dovecot's plaintext IMAP port.
/// `clamd` is the scanner's `host:port`, or `None` for the built-in check (EICAR + the
/// repository's rules) only.
pub fn portcullis(bin: &Path, dovecot: &Dovecot, clamd: Option<&str>) -> Proxy {
    let dir = private_dir("pc-imaptest-portcullis-");
    let quarantine = dir.path().join("quarantine");
    std::fs::create_dir_all(&quarantine).expect("create the quarantine dir");
    let rules = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"));
    let mut scanners = clamd
        .map(|c| format!("clamd = [{c:?}]\n"))
        .unwrap_or_default();
    // IMAPTEST_SCAN_APPEND=1: uploads are scanned too (and their verdicts remembered under
    // their APPENDUID, so the mix's metadata FETCH finds them cached).
    if std::env::var_os("IMAPTEST_SCAN_APPEND").is_some_and(|v| v != "0") {
        scanners.push_str("scan_append = true\n");
    }
    let port = free_port();
    let config = format!(
        "[tls]\ncert = {cert}\nkey = {key}\n\n\
         [limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n\n\
         [scan]\n{scanners}quarantine_dir = {quarantine}\nrules_dir = {rules}\n\n\
         [[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:{port}\"\n\
         tls = \"implicit\"\nbackend = \"dovecot\"\n\n\
         [[backend]]\nname = \"dovecot\"\naddress = \"127.0.0.1:{backend}\"\ntls = \"none\"\n\
         connect_timeout = \"10s\"\n",
        cert = quoted(&dovecot.ca.cert_path()),
        key = quoted(&dovecot.ca.key_path()),
        quarantine = quoted(&quarantine),
        rules = quoted(rules),
        backend = dovecot.imap_port,
    );
    let command = portcullis_serve(bin, dir.path(), &config);
    spawn("portcullis", command, dir, port)
}

/// Starts stunnel (TLS in, plaintext out) in front of Dovecot's plaintext IMAP port, or `None`
/// when no stunnel executable is on `PATH`.
pub fn stunnel(dovecot: &Dovecot) -> Option<Proxy> {
    let bin = which(&["stunnel4", "stunnel"])?;
    let dir = private_dir("pc-imaptest-stunnel-");
    let port = free_port();
    let config = format!(
        "foreground = yes\npid =\ndebug = 4\n\n[imaps]\naccept = 127.0.0.1:{port}\n\
         connect = 127.0.0.1:{backend}\ncert = {cert}\nkey = {key}\n\
         sslVersionMin = TLSv1.2\noptions = NO_TICKET\nsessionCacheSize = 1\n",
        backend = dovecot.imap_port,
        cert = dovecot.ca.cert_path().display(),
        key = dovecot.ca.key_path().display(),
    );
    let path = dir.path().join("stunnel.conf");
    std::fs::write(&path, config).expect("write the stunnel config");
    let mut command = Command::new(bin);
    command.arg(&path);
    Some(spawn("stunnel", command, dir, port))
}

fn spawn(name: &str, command: Command, dir: tempfile::TempDir, port: u16) -> Proxy {
    let log = dir.path().join(format!("{name}.log"));
    let mut server = Server::spawn(name, command, &log);
    wait_for_port(&mut server, &log, port, Duration::from_secs(20));
    Proxy {
        server,
        port,
        log,
        _dir: dir,
    }
}

/// The first of `names` found on `PATH`.
pub fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
