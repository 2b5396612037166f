//! Readiness from the outside: the monitoring endpoint (`/readyz`, `/metrics`) of a
//! configuration served in-process, backend certificates made with rcgen for Dovecot's
//! `ssl_cert`, and `portcullis check-config --probe` run as the binary.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis::config::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_util::sync::CancellationToken;

use super::dovecot::{Dovecot, DovecotOptions};
use super::process::make_traversable;

/// `/readyz` and `/metrics` for a configuration, served in-process on 127.0.0.1.
pub struct ReadyEndpoint {
    /// Where the endpoint listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl ReadyEndpoint {
    /// Parses `toml`, starts its scanner and readiness checks and serves them.
    pub fn start(toml: &str) -> ReadyEndpoint {
        let config = Config::parse(toml).unwrap_or_else(|e| panic!("config invalid: {e}\n{toml}"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let scanner = portcullis::scan::Scanner::new(&config.scan)
                    .await
                    .expect("scanner");
                let readiness =
                    portcullis::health::Readiness::new(&config, Arc::new(scanner)).log_changes();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                sender
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                let shutdown = async move { stopped.cancelled().await };
                portcullis::metrics::serve_listener(listener, Arc::new(readiness), shutdown)
                    .await
                    .expect("serve");
            });
        });
        let addr = receiver.recv().expect("endpoint started");
        ReadyEndpoint {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("request");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, body.to_string())
    }

    /// The value of `portcullis_backend_ready{backend="name"}` in `/metrics`, if present.
    pub fn backend_ready(&self, name: &str) -> Option<String> {
        let series = format!("portcullis_backend_ready{{backend=\"{name}\"}} ");
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|line| line.strip_prefix(&series).map(str::to_string))
    }
}

impl Drop for ReadyEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `portcullis check-config --probe` on `toml`: (exit success, stdout + stderr).
pub fn check_config_probe(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.toml");
    fs::write(&path, toml).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .arg("--probe")
        .output()
        .expect("run portcullis");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A backend certificate and key as PEM files, with the certificate's DER and SHA-256.
pub struct BackendCert {
    /// Certificate PEM path (also usable as `ca`).
    pub cert: PathBuf,
    /// Key PEM path.
    pub key: PathBuf,
    /// PEM of the issuing CA when there is one (else the certificate itself).
    pub ca: PathBuf,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// How to make a [`BackendCert`].
pub enum Kind {
    /// Self-signed with `CA:TRUE`, like `openssl req -x509`.
    SelfSignedCaTrue,
    /// Issued by a fresh CA, expired during 2020.
    Expired,
    /// Issued by a fresh CA, for these names only.
    Names(&'static [&'static str]),
}

impl BackendCert {
    /// Generates a certificate for `localhost`/`127.0.0.1` (or the given names).
    pub fn new(kind: Kind) -> BackendCert {
        let dir = tempfile::Builder::new()
            .prefix("pc-backend-cert-")
            .tempdir()
            .expect("tempdir");
        make_traversable(dir.path());
        let key = KeyPair::generate().expect("key");
        let names = match kind {
            Kind::Names(names) => names.iter().map(|n| n.to_string()).collect(),
            _ => vec!["localhost".to_string(), "127.0.0.1".to_string()],
        };
        let mut params = CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "legacy backend");
        let (cert, ca_pem) = match kind {
            Kind::SelfSignedCaTrue => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                let cert = params.self_signed(&key).expect("self-sign");
                let pem = cert.pem();
                (cert, pem)
            }
            Kind::Expired | Kind::Names(_) => {
                if matches!(kind, Kind::Expired) {
                    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
                }
                let ca_key = KeyPair::generate().expect("CA key");
                let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA");
                ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                ca_params
                    .distinguished_name
                    .push(DnType::CommonName, "legacy test CA");
                let ca_cert = ca_params.self_signed(&ca_key).expect("CA self-sign");
                let issuer = Issuer::new(ca_params, ca_key);
                (
                    params.signed_by(&key, &issuer).expect("sign"),
                    ca_cert.pem(),
                )
            }
        };
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.path().join(name);
            fs::write(&path, text).expect("write PEM");
            path
        };
        let der = cert.der().to_vec();
        BackendCert {
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            ca: write("ca.pem", &ca_pem),
            sha256: sha256_hex(&der),
            der,
            _dir: dir,
        }
    }

    /// Starts a Dovecot whose TLS listeners present this certificate.
    pub fn dovecot(&self) -> Dovecot {
        Dovecot::start_with(DovecotOptions {
            extra_config: vec![
                format!("ssl_cert = <{}", self.cert.display()),
                format!("ssl_key = <{}", self.key.display()),
            ],
            ..DovecotOptions::default()
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Rules and quarantine directories for a test configuration.
pub struct ScanDirs {
    dir: tempfile::TempDir,
}

impl ScanDirs {
    /// Fresh empty directories.
    pub fn new() -> ScanDirs {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("rules")).expect("rules dir");
        ScanDirs { dir }
    }

    /// `[scan]` with the empty rules dir and `quarantine` (default: a fresh directory).
    pub fn section(&self, quarantine: Option<&Path>) -> String {
        let default = self.dir.path().join("quarantine");
        format!(
            "[scan]\nrules_dir = {:?}\nquarantine_dir = {:?}\n\n",
            self.dir.path().join("rules").display().to_string(),
            quarantine.unwrap_or(&default).display().to_string()
        )
    }

    /// A regular file: a quarantine "directory" below it can never be created.
    pub fn regular_file(&self) -> PathBuf {
        let path = self.dir.path().join("not-a-directory");
        fs::write(&path, b"a regular file").expect("write file");
        path
    }
}

impl Default for ScanDirs {
    fn default() -> Self {
        ScanDirs::new()
    }
}

/// A `[[backend]]` on 127.0.0.1:`port` for `localhost`, with a 2 s connect timeout and `extra`
/// lines (`ca = …`, `pin_sha256 = […]`).
pub fn backend(name: &str, port: u16, tls: &str, extra: &str) -> String {
    format!(
        "[[backend]]\nname = {name:?}\naddress = \"127.0.0.1:{port}\"\ntls = {tls:?}\nserver_name = \"localhost\"\nconnect_timeout = \"2s\"\n{extra}\n\n"
    )
}
