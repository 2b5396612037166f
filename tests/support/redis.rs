//! A private `redis-server` (Debian's; Valkey speaks the same protocol) per test: own temp
//! directory, config on the command line, TCP on an ephemeral 127.0.0.1 port, nothing saved to
//! disk. Stopping and restarting it on the same port lets tests kill the store mid-session.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;
use super::process::{file_tail, stop_group, Watchdog};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 5;

/// A running redis-server; dropping it stops the daemon and deletes its directory.
pub struct Redis {
    /// The TCP port (on 127.0.0.1).
    pub port: u16,
    /// TLS on `port` (`rediss://`) with these files, instead of plain TCP.
    tls: Option<TlsFiles>,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    dir: tempfile::TempDir,
}

/// The certificate, key and CA a TLS redis-server uses.
#[derive(Clone)]
pub struct TlsFiles {
    /// Server certificate (valid for 127.0.0.1).
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
    /// The CA that signed it.
    pub ca: std::path::PathBuf,
}

impl Redis {
    /// Starts redis-server; panics (with its log tail) when it does not answer PING in 15 s.
    pub fn start() -> Redis {
        Redis::start_with(None)
    }

    /// Starts redis-server speaking TLS only (`rediss://`) with `tls`.
    pub fn start_tls(tls: TlsFiles) -> Redis {
        Redis::start_with(Some(tls))
    }

    fn start_with(tls: Option<TlsFiles>) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("pc-redis-")
            .tempdir()
            .expect("tempdir");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let mut child = spawn(dir.path(), port, tls.as_ref());
            match wait_ready(&mut child, dir.path()) {
                Ok(()) => {
                    return Redis {
                        port,
                        tls,
                        watchdog: Some(Watchdog::guard(child.id(), dir.path())),
                        child: Some(child),
                        dir,
                    }
                }
                Err(reason) => {
                    stop_group(&mut child, Duration::from_secs(3));
                    let log = file_tail(&dir.path().join("redis.log"), 30);
                    if log.contains("in use") && attempt < START_ATTEMPTS {
                        continue;
                    }
                    panic!("redis-server did not start ({reason}); log tail:\n{log}");
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// `unix://…/redis.sock`: the same server on its Unix socket.
    pub fn unix_url(&self) -> String {
        format!("unix://{}", self.dir.path().join("redis.sock").display())
    }

    /// Stops the server (SIGKILL: like a crash); the port stops answering. Idempotent.
    pub fn kill(&mut self) {
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::ZERO);
        }
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut child = spawn(self.dir.path(), self.port, self.tls.as_ref());
            match wait_ready(&mut child, self.dir.path()) {
                Ok(()) => {
                    self.watchdog = Some(Watchdog::guard(child.id(), self.dir.path()));
                    self.child = Some(child);
                    return;
                }
                Err(reason) => {
                    stop_group(&mut child, Duration::from_secs(1));
                    assert!(
                        Instant::now() < deadline,
                        "redis-server did not restart: {reason}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// A synchronous connection for assertions (over the Unix socket, whatever the TCP side
    /// speaks).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.unix_url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis-server")
    }

    /// Keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// `MEMORY USAGE key` in octets.
    pub fn memory_usage(&self, key: &str) -> Option<u64> {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query(&mut self.connection())
            .expect("MEMORY USAGE")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &Path, port: u16, tls: Option<&TlsFiles>) -> Child {
    let mut command = Command::new("redis-server");
    match tls {
        None => command.args(["--port", &port.to_string()]),
        Some(tls) => command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args(["--tls-auth-clients", "no"]),
    };
    command
        .args(["--bind", "127.0.0.1"])
        .arg("--unixsocket")
        .arg(dir.join("redis.sock"))
        .args(["--unixsocketperm", "700"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "no", "--dir"])
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn redis-server (see scripts/install-test-deps.sh)")
}

/// Waits for PONG on the Unix socket.
fn wait_ready(child: &mut Child, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("unix://{}", dir.join("redis.sock").display());
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited with {status}"));
        }
        let pong = redis::Client::open(url.as_str())
            .ok()
            .and_then(|c| {
                c.get_connection_with_timeout(Duration::from_millis(200))
                    .ok()
            })
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok());
        if pong.as_deref() == Some("PONG") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no PONG on {url} within {START_TIMEOUT:?}"))
}
