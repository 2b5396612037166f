//! The proxies under test and how each is started in front of the fake backend: portcullis
//! (any executable: the current build, an older commit, an allocator variant), nginx's mail
//! module and stunnel, each with an implicit-TLS IMAP listener on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::certs::Leaf;
use super::procfs::{free_port, portcullis_serve, wait_for_port, Server};

/// A proxy implementation.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A portcullis executable (`serve --config`), built-in scanning (no clamd).
    Portcullis(PathBuf),
    /// nginx with the mail module and an `auth_http` service.
    Nginx(PathBuf),
    /// stunnel (TLS in, plaintext out; no IMAP awareness).
    Stunnel(PathBuf),
}

/// A proxy to measure: its label and kind.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Column label.
    pub label: String,
    /// How to start it.
    pub kind: Kind,
}

impl Subject {
    /// A one-line description of the limits that bound a stalled reader's memory.
    pub fn buffer_limits(&self) -> String {
        match self.kind {
            Kind::Portcullis(_) => format!(
                "portcullis: limits.memory {} (SCALE_MEMORY), limits.max_backend_literal 256 MiB \
                 per literal, scan.max_size 25 MiB, scan.cache_bytes 256 MiB, limits.max_scans \
                 4 x cores",
                memory().unwrap_or_else(|| "default 1GiB".into())
            ),
            Kind::Nginx(_) => {
                "nginx: mail proxy_buffer 16k per direction (set in the config)".into()
            }
            Kind::Stunnel(_) => {
                "stunnel: fixed per-connection buffers (BUFFSIZE, 18 KiB each way)".into()
            }
        }
    }
}

/// `SCALE_MEMORY`: portcullis's `[limits] memory` (e.g. `64MiB`), if set.
fn memory() -> Option<String> {
    std::env::var("SCALE_MEMORY")
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// Ports and addresses a proxy is started with.
pub struct Wiring {
    /// The fake IMAP backend.
    pub backend_port: u16,
    /// nginx's auth_http service.
    pub auth_port: u16,
    /// The repository's rules directory (portcullis's `scan.rules_dir`).
    pub rules_dir: PathBuf,
    /// File descriptors each proxy may hold (nginx's worker settings).
    pub max_files: u64,
}

/// A running proxy: the process, its listener port and its private directory.
pub struct Running {
    /// The process (group).
    pub server: Server,
    /// Its implicit-TLS IMAP listener.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `subject` presenting `leaf`, in front of the backend in `wiring`.
pub fn start(subject: &Subject, leaf: &Leaf, wiring: &Wiring) -> Running {
    let dir = tempfile::Builder::new()
        .prefix("pc-scale-")
        .tempdir()
        .expect("proxy temp dir");
    let port = free_port();
    let log = dir.path().join("proxy.log");
    let mut server = match &subject.kind {
        Kind::Portcullis(bin) => portcullis(bin, dir.path(), port, leaf, wiring, &log),
        Kind::Nginx(bin) => nginx(bin, dir.path(), port, leaf, wiring, &log),
        Kind::Stunnel(bin) => stunnel(bin, dir.path(), port, leaf, wiring, &log),
    };
    wait_for_port(&mut server, &log, port, Duration::from_secs(20));
    Running {
        server,
        port,
        log,
        _dir: dir,
    }
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn portcullis(
    bin: &Path,
    dir: &Path,
    port: u16,
    leaf: &Leaf,
    wiring: &Wiring,
    log: &Path,
) -> Server {
    let quarantine = dir.join("quarantine");
    std::fs::create_dir_all(&quarantine).expect("create the quarantine dir");
    let config = format!(
        "[tls]\ncert = {cert}\nkey = {key}\n\n\
         [limits]\nmax_connections = 1000000\nmax_connections_per_ip = 1000000\n{memory}\n\
         [scan]\nquarantine_dir = {quarantine}\nrules_dir = {rules}\n\n\
         [[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:{port}\"\n\
         tls = \"implicit\"\nbackend = \"fake\"\n\n\
         [[backend]]\nname = \"fake\"\naddress = \"127.0.0.1:{backend}\"\ntls = \"none\"\n\
         connect_timeout = \"10s\"\n",
        cert = quoted(&leaf.cert),
        key = quoted(&leaf.key),
        quarantine = quoted(&quarantine),
        rules = quoted(&wiring.rules_dir),
        backend = wiring.backend_port,
        memory = memory().map_or(String::new(), |m| format!("memory = {m:?}\n")),
    );
    Server::spawn("portcullis", portcullis_serve(bin, dir, &config), log)
}

fn nginx(bin: &Path, dir: &Path, port: u16, leaf: &Leaf, wiring: &Wiring, log: &Path) -> Server {
    let module = ["/usr/lib/nginx/modules/ngx_mail_module.so"]
        .into_iter()
        .find(|m| Path::new(m).exists())
        .map(|m| format!("load_module {m};\n"))
        .unwrap_or_default();
    let config = format!(
        "{module}daemon off;\nmaster_process on;\nworker_processes auto;\n\
         worker_rlimit_nofile {files};\npid {pid};\nerror_log {errors} warn;\n\
         events {{ worker_connections {files}; }}\n\
         mail {{\n  server_name localhost;\n  auth_http 127.0.0.1:{auth}/auth;\n\
         proxy_buffer 16k;\n  imap_capabilities \"IMAP4rev1\" \"LITERAL+\";\n\
         ssl_certificate {cert};\n  ssl_certificate_key {key};\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache off;\n  ssl_session_tickets off;\n\
         server {{ listen 127.0.0.1:{port} ssl; protocol imap; }}\n}}\n",
        files = wiring.max_files,
        pid = quoted(&dir.join("nginx.pid")),
        errors = quoted(&dir.join("error.log")),
        auth = wiring.auth_port,
        cert = quoted(&leaf.cert),
        key = quoted(&leaf.key),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("write the nginx config");
    let mut command = Command::new(bin);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path);
    Server::spawn("nginx", command, log)
}

fn stunnel(bin: &Path, dir: &Path, port: u16, leaf: &Leaf, wiring: &Wiring, log: &Path) -> Server {
    let config = format!(
        "foreground = yes\npid =\ndebug = 4\n\n[imaps]\naccept = 127.0.0.1:{port}\n\
         connect = 127.0.0.1:{backend}\ncert = {cert}\nkey = {key}\n\
         sslVersionMin = TLSv1.2\noptions = NO_TICKET\nsessionCacheSize = 1\n",
        backend = wiring.backend_port,
        cert = leaf.cert.display(),
        key = leaf.key.display(),
    );
    let path = dir.join("stunnel.conf");
    std::fs::write(&path, config).expect("write the stunnel config");
    let mut command = Command::new(bin);
    command.arg(&path);
    Server::spawn("stunnel", command, log)
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
