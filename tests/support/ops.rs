//! Helpers for the operations tests (`tests/ops_*.rs`): certificates for arbitrary names, a TLS
//! probe that reports which certificate a server presented, an in-process proxy that exposes its
//! reload handles, and PROXY-protocol clients.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis::config::Config;
use portcullis::reload::ReloadHandles;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

/// A CA that signs leaves for any names; PEM files go into its temp dir.
pub struct NamedCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// Directory holding the written files.
    pub dir: tempfile::TempDir,
}

/// Paths and DER of one generated leaf.
pub struct Leaf {
    /// PEM certificate path.
    pub cert: PathBuf,
    /// PEM key path.
    pub key: PathBuf,
    /// The certificate, to compare with what a server presented.
    pub der: CertificateDer<'static>,
}

impl NamedCa {
    /// A fresh CA.
    pub fn new() -> NamedCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "portcullis ops test CA");
        let cert = params.self_signed(&key).expect("self-sign");
        let dir = tempfile::Builder::new()
            .prefix("pc-ops-ca-")
            .tempdir()
            .expect("tempdir");
        NamedCa {
            issuer: Issuer::new(params, key),
            ca_der: cert.der().clone(),
            dir,
        }
    }

    /// Signs a leaf for `names` and writes `<file>.pem` / `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.sign(file, CertificateParams::new(names).expect("leaf params"))
    }

    /// Like [`NamedCa::leaf`], but valid only during 2020.
    pub fn expired_leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(file, params)
    }

    /// Like [`NamedCa::leaf`], but expiring at midnight UTC `days` days from today.
    pub fn leaf_expiring_in_days(&self, file: &str, names: &[&str], days: u64) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let (y, m, d) = civil_from_days(now / 86_400 + days);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        self.sign(file, params)
    }

    fn sign(&self, file: &str, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
            der: cert.der().clone(),
        };
        fs::write(&leaf.cert, cert.pem()).expect("write cert");
        fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    /// A client configuration trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (i32, u8, u8) {
    let z = i64::try_from(days).expect("days") + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).expect("year"),
        u8::try_from(month).expect("month"),
        u8::try_from(day).expect("day"),
    )
}

impl Default for NamedCa {
    fn default() -> Self {
        NamedCa::new()
    }
}

/// Handshakes with 127.0.0.1:`port` asking for `server_name` (SNI) and returns the leaf the
/// server presented, or the handshake error.
pub fn presented_leaf(
    port: u16,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<CertificateDer<'static>, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    conn.peer_certificates()
        .and_then(|certs| certs.first().cloned())
        .map(|c| c.into_owned())
        .ok_or_else(|| "no certificate".to_string())
}

/// A proxy running in-process whose reload handles the test can use.
pub struct ReloadableProxy {
    /// Bound listener addresses.
    pub addrs: Vec<SocketAddr>,
    /// What [`portcullis::reload::apply`] needs.
    pub handles: ReloadHandles,
    /// The configuration it started with.
    pub config: Config,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl ReloadableProxy {
    /// Parses `toml` and serves it on a background runtime.
    pub fn start(toml: &str) -> ReloadableProxy {
        let config = Config::parse(toml).unwrap_or_else(|e| panic!("config invalid: {e}\n{toml}"));
        let for_thread = config.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = portcullis::server::Server::bind(&for_thread)
                    .await
                    .expect("bind");
                let started = (
                    server.local_addrs(),
                    server.reload_handles(),
                    server.shutdown_token(),
                );
                sender.send(started).expect("send");
                server.run().await;
            });
        });
        let (addrs, handles, shutdown) = receiver.recv().expect("proxy started");
        ReloadableProxy {
            addrs,
            handles,
            config,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Port of the `index`-th listener.
    pub fn port(&self, index: usize) -> u16 {
        self.addrs[index].port()
    }
}

impl Drop for ReloadableProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An empty rules directory and a `[scan]` section pointing at it.
pub fn empty_rules() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("rules dir");
    let section = format!(
        "[scan]\nrules_dir = {:?}\n\n",
        dir.path().display().to_string()
    );
    (dir, section)
}

/// `[tls]` with a default certificate (and optional extra lines, e.g. `strict_sni = true`).
pub fn tls_section(leaf: &Leaf, extra: &str) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{extra}\n",
        path_str(&leaf.cert),
        path_str(&leaf.key)
    )
}

/// One `[[tls.sni]]` entry.
pub fn sni_section(names: &[&str], leaf: &Leaf) -> String {
    format!(
        "[[tls.sni]]\nnames = {names:?}\ncert = {:?}\nkey = {:?}\n\n",
        path_str(&leaf.cert),
        path_str(&leaf.key)
    )
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// Connects to 127.0.0.1:`port`, sends `prefix` (a PROXY header, or anything) and returns the
/// stream.
pub fn connect_with(port: u16, prefix: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    tcp.write_all(prefix).expect("write prefix");
    tcp
}

/// Reads one line (up to LF) or whatever arrives before EOF; empty means closed at once.
pub fn first_line(tcp: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = tcp.read(&mut byte) {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}
