//! The scan pipeline against a real clamd (started here on an ephemeral loopback port with a
//! one-line EICAR signature), plus fake TCP servers for timeout and version-change behaviour.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis::scan::config::HumanDuration;
use portcullis::scan::{
    Cached, Disposition, MessageRef, OnError, Protocol, ScanConfig, ScanErrorCause, Scanner,
    Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::free_port;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_B64: &str =
    "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=";

/// A clamd child process with its own config and database; killed on drop.
struct Clamd {
    child: Child,
    port: u16,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Clamd {
    fn start(stream_max_length: Option<&str>) -> Clamd {
        let mut dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("test.ndb"),
            format!("Test.EICAR:0:*:{}\n", hex::encode(EICAR)),
        )
        .unwrap();
        // The port is picked free and bound later by clamd: a lost race (clamd exits) is
        // retried on a new port.
        for attempt in 1.. {
            let port = free_port();
            let socket = dir.path().join("clamd.sock");
            let mut conf = format!(
                "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLocalSocket {}\nDatabaseDirectory {}\n\
                 LogFile {}\nScanMail yes\nScanArchive yes\nSelfCheck 0\nBytecode no\nUser root\n",
                socket.display(),
                db.display(),
                dir.path().join("clamd.log").display()
            );
            if let Some(limit) = stream_max_length {
                conf.push_str(&format!("StreamMaxLength {limit}\n"));
            }
            let conf_path = dir.path().join("clamd.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let child = Command::new("/usr/sbin/clamd")
                .arg("-c")
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start clamd");
            let mut clamd = Clamd {
                child,
                port,
                socket,
                dir,
            };
            match clamd.wait_for_pong() {
                Ok(()) => return clamd,
                Err(log) if attempt < 5 => {
                    let _ = clamd.child.kill();
                    let _ = clamd.child.wait();
                    eprintln!("clamd start attempt {attempt} failed, retrying:\n{log}");
                    dir = std::mem::replace(&mut clamd.dir, tempfile::tempdir().unwrap());
                }
                Err(log) => panic!("clamd did not answer PING; log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Waits for PONG from our child; `Err(log)` if it exits (e.g. its port was taken) or
    /// stays silent for 30 s.
    fn wait_for_pong(&mut self) -> Result<(), String> {
        let log = |dir: &tempfile::TempDir| {
            std::fs::read_to_string(dir.path().join("clamd.log")).unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("clamd exited with {status}\n{}", log(&self.dir)));
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = Vec::new();
                if stream.write_all(b"zPING\0").is_ok()
                    && stream.read_to_end(&mut reply).is_ok()
                    && reply == b"PONG\0"
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no PONG within 30 s\n{}", log(&self.dir)))
    }

    fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    _dir: tempfile::TempDir,
    cfg: ScanConfig,
}

fn env(endpoints: Vec<String>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let cfg = ScanConfig {
        clamd: endpoints,
        rules_dir: Some(rules),
        quarantine_dir: dir.path().join("quarantine"),
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        timeout: HumanDuration(Duration::from_secs(10)),
        ..ScanConfig::default()
    };
    Env { _dir: dir, cfg }
}

fn msg(uid: u32) -> MessageRef {
    MessageRef {
        client_addr: "127.0.0.1:40000".parse().unwrap(),
        user: Some("alice".into()),
        protocol: Protocol::Imap,
        mailbox: Some("INBOX".into()),
        uidvalidity: Some(9),
        uid: Some(uid),
        msgno: Some(uid),
        backend: None,
    }
}

fn eicar_attachment() -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: report\r\nMessage-ID: <e@x>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n\
         Content-Type: application/octet-stream; name=\"eicar.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{EICAR_B64}\r\n--b--\r\n"
    )
    .into_bytes()
}

const CLEAN: &[u8] =
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nJust text.\r\n";

fn assert_infected(verdict: &Verdict) {
    match verdict {
        Verdict::Infected { engine, signature } => {
            assert_eq!(engine, "clamd");
            assert!(signature.starts_with("Test.EICAR"), "{signature}");
        }
        other => panic!("expected infected, got {other:?}"),
    }
}

#[tokio::test]
async fn eicar_found_and_clean_ok_over_tcp_and_unix() {
    let clamd = Clamd::start(None);
    let unix = format!("unix:{}", clamd.socket.display());
    for endpoint in [clamd.tcp(), unix] {
        let e = env(vec![endpoint]);
        let scanner = Scanner::new(&e.cfg).await.unwrap();
        scanner.ping().await.unwrap();
        assert!(scanner.clamd_version().unwrap().starts_with("ClamAV "));
        assert_eq!(
            scanner.verdict(Bytes::from_static(CLEAN)).await,
            Verdict::Clean
        );
        let mut raw = b"Subject: raw\r\n\r\n".to_vec();
        raw.extend_from_slice(EICAR);
        assert_infected(&scanner.verdict(Bytes::from(raw.clone())).await);
        // inside a base64 MIME attachment (clamd decodes mail)
        let attached = Bytes::from(eicar_attachment());
        let disposition = scanner.process(attached.clone(), &msg(1)).await;
        let Disposition::Replace {
            bytes,
            quarantine_id,
            verdict,
        } = &disposition
        else {
            panic!("{disposition:?}")
        };
        assert_infected(verdict);
        assert!(!String::from_utf8_lossy(bytes).contains(EICAR_B64));
        assert_eq!(
            std::fs::read(e.cfg.quarantine_dir.join(format!("{quarantine_id}.eml"))).unwrap(),
            attached.as_ref()
        );
        assert_eq!(
            scanner.cached(&msg(1)).await,
            Some(Cached::Serve(disposition.clone()))
        );
        let clean = scanner.process(Bytes::from_static(CLEAN), &msg(2)).await;
        assert_eq!(
            clean,
            Disposition::Deliver {
                bytes: Bytes::from_static(CLEAN),
                modified: false,
                verdict: Verdict::Clean
            }
        );
    }
}

#[tokio::test]
async fn stream_max_length_exceeded_is_error_never_clean() {
    let clamd = Clamd::start(Some("1K"));
    let mut e = env(vec![clamd.tcp()]);
    e.cfg.chunk_size = portcullis::scan::config::ByteSize(512);
    let scanner = Scanner::new(&e.cfg).await.unwrap();
    assert_eq!(
        scanner.verdict(Bytes::from_static(CLEAN)).await,
        Verdict::Clean
    );
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"clean text line\r\n".as_slice(), 4000).flatten());
    let verdict = scanner.verdict(Bytes::from(big.clone())).await;
    assert!(matches!(verdict, Verdict::Error { .. }), "{verdict:?}");
    // on_error = tempfail (default): nothing is delivered
    let disposition = scanner.process(Bytes::from(big), &msg(3)).await;
    assert!(
        matches!(disposition, Disposition::TempFail { .. }),
        "{disposition:?}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_fails_over_to_the_second() {
    let clamd = Clamd::start(None);
    let closed = support::ports::ClosedPort::new();
    let dead = format!("tcp://127.0.0.1:{}", closed.port());
    let e = env(vec![
        dead.clone(),
        "unix:/nonexistent/clamd.sock".into(),
        clamd.tcp(),
    ]);
    let scanner = Scanner::new(&e.cfg).await.unwrap();
    scanner.ping().await.unwrap();
    assert_infected(&scanner.verdict(Bytes::from(eicar_attachment())).await);
    assert_eq!(
        scanner.verdict(Bytes::from_static(CLEAN)).await,
        Verdict::Clean
    );
    let only_dead = env(vec![dead]);
    let scanner = Scanner::new(&only_dead.cfg).await.unwrap();
    assert!(scanner.ping().await.is_err());
    assert_eq!(
        scanner.verdict(Bytes::from_static(CLEAN)).await,
        Verdict::Error {
            cause: ScanErrorCause::ScannerUnavailable
        }
    );
}

/// A TCP server that accepts connections, reads everything and never answers.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let drain = tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        std::future::pending::<()>().await;
                    }
                }
            });
            held.push(drain);
        }
    });
    (port, task)
}

#[tokio::test]
async fn silent_server_times_out() {
    let (port, server) = silent_server().await;
    let mut e = env(vec![format!("tcp://127.0.0.1:{port}")]);
    e.cfg.timeout = HumanDuration(Duration::from_millis(500));
    let started = Instant::now();
    let scanner = Scanner::new(&e.cfg).await.unwrap();
    assert_eq!(
        scanner.verdict(Bytes::from_static(CLEAN)).await,
        Verdict::Error {
            cause: ScanErrorCause::Timeout
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    e.cfg.on_error = OnError::Pass;
    let scanner = Scanner::new(&e.cfg).await.unwrap();
    let d = scanner.process(Bytes::from_static(CLEAN), &msg(4)).await;
    assert!(
        matches!(
            d,
            Disposition::Deliver {
                modified: false,
                verdict: Verdict::Error {
                    cause: ScanErrorCause::Timeout
                },
                ..
            }
        ),
        "{d:?}"
    );
    server.abort();
}

/// A fake clamd: INSTREAM → `stream: OK`, VERSION → a version that changes after `flip` is set.
async fn fake_clamd(flip: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let flip = flip.clone();
            tokio::spawn(async move {
                let mut command = [0u8; 9];
                if socket.read_exact(&mut command).await.is_err() {
                    return;
                }
                let reply: Vec<u8> = if &command == b"zINSTREAM" {
                    let _ = socket.read_u8().await; // NUL
                    loop {
                        let Ok(len) = socket.read_u32().await else {
                            return;
                        };
                        if len == 0 {
                            break;
                        }
                        let mut chunk = vec![0u8; len as usize];
                        if socket.read_exact(&mut chunk).await.is_err() {
                            return;
                        }
                    }
                    b"stream: OK\0".to_vec()
                } else {
                    let db = if flip.load(std::sync::atomic::Ordering::SeqCst) {
                        2
                    } else {
                        1
                    };
                    format!("ClamAV 1.4.6/{db}/Sat Nov 28 00:00:00 2026\0").into_bytes()
                };
                let _ = socket.write_all(&reply).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn signature_version_change_flushes_caches() {
    let flip = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = fake_clamd(flip.clone()).await;
    let e = env(vec![format!("tcp://127.0.0.1:{port}")]);
    let scanner = Scanner::new(&e.cfg).await.unwrap();
    assert!(scanner.clamd_version().unwrap().contains("/1/"));
    assert!(matches!(
        scanner.process(Bytes::from_static(CLEAN), &msg(5)).await,
        Disposition::Deliver { .. }
    ));
    assert_eq!(scanner.cached(&msg(5)).await, Some(Cached::Clean));
    scanner.check_version().await; // unchanged: cache kept
    assert_eq!(scanner.cached(&msg(5)).await, Some(Cached::Clean));
    flip.store(true, std::sync::atomic::Ordering::SeqCst);
    scanner.check_version().await;
    assert!(scanner.clamd_version().unwrap().contains("/2/"));
    assert_eq!(scanner.cached(&msg(5)).await, None);
}

#[tokio::test]
async fn cli_against_real_clamd() {
    let clamd = Clamd::start(None);
    let e = env(vec![clamd.tcp()]);
    let file = e.cfg.quarantine_dir.with_file_name("eicar.eml");
    std::fs::write(&file, eicar_attachment()).unwrap();
    let mut out = Vec::new();
    let code =
        portcullis::scan::cli::run_scan_command(&e.cfg, std::slice::from_ref(&file), &mut out)
            .await
            .unwrap();
    assert_eq!(code, 1);
    let line = String::from_utf8(out).unwrap();
    assert!(
        line.starts_with(&format!("{}\tinfected\tTest.EICAR", file.display())),
        "{line}"
    );
}
