//! SIGHUP on a real `portcullis serve` process: a new certificate is served to new connections
//! while an IMAP IDLE session (through portcullis to a real Dovecot) survives; a broken
//! configuration or certificate on SIGHUP is rejected and the old certificate stays in force.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use support::dovecot::Dovecot;
use support::ops::{presented_leaf, Leaf, NamedCa};
use support::process::KilledOnDrop;
use support::raw::LineClient;
use support::{free_port, wait_for_port};

/// A `portcullis serve` child process, killed when dropped.
struct Portcullis {
    child: KilledOnDrop,
    log: PathBuf,
    port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Portcullis {
    /// Writes `first` as the served certificate and starts the binary on a free port.
    fn start(dovecot: &Dovecot, first: &Leaf) -> Portcullis {
        let mut dir = tempfile::Builder::new()
            .prefix("pc-reload-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("rules")).unwrap();
        install(first, dir.path());
        let config = dir.path().join("portcullis.toml");
        let log = dir.path().join("portcullis.log");
        // The port is picked free and bound later by the binary: another process may take it
        // in between. Ready means "our child logged that it listens"; a lost race (child exits
        // with the bind error) is retried on a new port.
        for attempt in 1..=5 {
            let port = free_port();
            fs::write(&config, config_text(dir.path(), port, dovecot.imap_port)).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn portcullis");
            let mut proc = Portcullis {
                child: KilledOnDrop(child),
                log: log.clone(),
                port,
                config: config.clone(),
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let address = format!("127.0.0.1:{port}");
                let listening = proc
                    .log()
                    .lines()
                    .any(|line| line.contains("listening") && line.contains(&address));
                if listening && wait_for_port(port, Duration::from_secs(5)) {
                    return proc;
                }
                if let Ok(Some(status)) = proc.child.try_wait() {
                    let text = proc.log();
                    assert!(
                        text.contains("in use") && attempt < 5,
                        "portcullis exited with {status}:\n{text}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "portcullis did not listen:\n{}",
                    proc.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            dir = std::mem::replace(&mut proc.dir, tempfile::tempdir().unwrap());
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hangup(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// Waits until `needle` occurs `count` times in the log.
    fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn install(leaf: &Leaf, dir: &Path) {
    fs::copy(&leaf.cert, dir.join("cert.pem")).unwrap();
    fs::copy(&leaf.key, dir.join("key.pem")).unwrap();
}

fn config_text(dir: &Path, port: u16, backend_port: u16) -> String {
    let d = dir.display();
    format!(
        "[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n\n[scan]\nrules_dir = \"{d}/rules\"\n\n\
         [[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:{port}\"\ntls = \"implicit\"\nbackend = \"dovecot\"\n\n\
         [[backend]]\nname = \"dovecot\"\naddress = \"127.0.0.1:{backend_port}\"\ntls = \"none\"\n"
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn tls_client(port: u16, config: Arc<rustls::ClientConfig>) -> LineClient<Tls> {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    LineClient::new(rustls::StreamOwned::new(conn, tcp))
}

#[test]
fn sighup_swaps_the_certificate_while_an_idle_session_survives() {
    let dovecot = Dovecot::start();
    let ca = NamedCa::new();
    let first = ca.leaf("first", &["localhost"]);
    let second = ca.leaf("second", &["localhost"]);
    let proxy = Portcullis::start(&dovecot, &first);

    let mut idle = tls_client(proxy.port, ca.client_config());
    assert!(idle.read_line().starts_with("* OK"));
    let login = format!("LOGIN {} {}", dovecot.user(), dovecot.password());
    let (_, status) = idle.imap("a", &login);
    assert!(status.starts_with("a OK"), "{status}");
    let (_, status) = idle.imap("b", "SELECT INBOX");
    assert!(status.starts_with("b OK"), "{status}");
    idle.send_line("c IDLE");
    assert!(idle.read_line().starts_with("+ "), "IDLE not accepted");

    install(&second, proxy.dir.path());
    proxy.hangup();
    proxy.wait_log("configuration reloaded", 1);
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(proxy.port, "localhost", client),
        Ok(second.der)
    );

    idle.send_line("DONE");
    assert!(
        idle.read_line().starts_with("c OK"),
        "IDLE session did not survive"
    );
    let (_, status) = idle.imap("d", "NOOP");
    assert!(status.starts_with("d OK"), "{status}");
    let (_, status) = idle.imap("e", "LOGOUT");
    assert!(status.starts_with("e OK"), "{status}");
}

#[test]
fn broken_configuration_or_certificate_on_sighup_keeps_the_old_certificate() {
    let dovecot = Dovecot::start();
    let ca = NamedCa::new();
    let first = ca.leaf("first", &["localhost"]);
    let second = ca.leaf("second", &["localhost"]);
    let proxy = Portcullis::start(&dovecot, &first);
    let good = fs::read_to_string(&proxy.config).unwrap();

    fs::write(&proxy.config, good.replace("[scan]", "[scan\n")).unwrap();
    proxy.hangup();
    proxy.wait_log("REJECTED", 1);
    assert!(
        proxy.log().contains("portcullis.toml"),
        "error does not name the file"
    );
    let client = ca.client_config();
    assert_eq!(
        presented_leaf(proxy.port, "localhost", client.clone()),
        Ok(first.der.clone())
    );

    // A new certificate with the old key: rejected as a mismatch, old pair stays.
    fs::write(&proxy.config, &good).unwrap();
    fs::copy(&second.cert, proxy.dir.path().join("cert.pem")).unwrap();
    proxy.hangup();
    proxy.wait_log("REJECTED", 2);
    let log = proxy.log();
    let rejected = log
        .lines()
        .filter(|l| l.contains("REJECTED"))
        .nth(1)
        .unwrap();
    assert!(rejected.contains("does not match"), "{rejected}");
    assert_eq!(
        presented_leaf(proxy.port, "localhost", client.clone()),
        Ok(first.der)
    );

    // Fixing the key makes the next SIGHUP succeed.
    fs::copy(&second.key, proxy.dir.path().join("key.pem")).unwrap();
    proxy.hangup();
    proxy.wait_log("configuration reloaded", 1);
    assert_eq!(
        presented_leaf(proxy.port, "localhost", client),
        Ok(second.der)
    );
}
