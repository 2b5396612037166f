//! A private clamd per test: own database directory with two tiny signature files, config, log,
//! TCP socket on an ephemeral 127.0.0.1 port and a Unix socket in its temp dir.
//!
//! Signatures (clamd cannot start with an empty database and cannot download one here):
//! `Test.EICAR` — a body signature (`.ndb`) for the 68-byte EICAR string, found anywhere, including
//! inside decoded MIME parts and archives (`ScanMail yes`, `ScanArchive yes`);
//! `Test.ClamAV-Test-File` — an MD5 signature (`.hdb`) of `clamav-testfiles/clam.exe`, which makes
//! every sample of that package (packed, archived, embedded) detectable.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::corpus::EICAR;
use super::ports::free_port;
use super::process::{file_tail, make_traversable, stop_group, Watchdog};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
/// The sample whose MD5 the `.hdb` signature carries.
pub const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";
/// Directory of the `clamav-testfiles` package.
pub const TESTFILES_DIR: &str = "/usr/share/clamav-testfiles";

/// Knobs for [`Clamd::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClamdOptions {
    /// `StreamMaxLength` (e.g. `"1M"`); clamd's default is 25M. Beyond it clamd answers
    /// `INSTREAM size limit exceeded. ERROR`.
    pub stream_max_length: Option<String>,
    /// `MaxThreads` (clamd's default is 10).
    pub max_threads: Option<u32>,
    /// `DisableCache yes`: rescans identical content instead of answering from the hash cache.
    pub disable_cache: bool,
    /// `AlertExceedsMax yes`: content beyond a scan limit is reported as
    /// `Heuristics.Limits.Exceeded.* FOUND` instead of passing as `OK`.
    pub alert_exceeds_max: bool,
    /// Raw lines appended to `clamd.conf`.
    pub extra_config: Vec<String>,
}

/// A running clamd; dropping it stops the daemon and deletes its directory.
pub struct Clamd {
    /// The TCP port (on 127.0.0.1).
    pub port: u16,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    dir: tempfile::TempDir,
}

impl Clamd {
    /// Starts clamd with [`ClamdOptions::default`].
    pub fn start() -> Clamd {
        Clamd::start_with(ClamdOptions::default())
    }

    /// Starts clamd with `options`; panics (with the log tail) without a PONG within 30 s.
    pub fn start_with(options: ClamdOptions) -> Clamd {
        let dir = tempfile::Builder::new()
            .prefix("pc-clamd-")
            .tempdir()
            .expect("tempdir");
        make_traversable(dir.path());
        write_signatures(&dir.path().join("db"));
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let config = render_config(dir.path(), port, &options);
            fs::write(dir.path().join("clamd.conf"), config).expect("write clamd.conf");
            let mut child = spawn(dir.path());
            match wait_ready(&mut child, dir.path(), port) {
                Ok(()) => {
                    return Clamd {
                        port,
                        watchdog: Some(Watchdog::guard(child.id(), dir.path())),
                        child: Some(child),
                        dir,
                    }
                }
                Err(reason) => {
                    stop_group(&mut child, Duration::from_secs(3));
                    let log = startup_log(dir.path());
                    if log.contains("in use") && attempt < START_ATTEMPTS {
                        continue;
                    }
                    panic!("clamd did not start ({reason}); log tail:\n{log}");
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The TCP address as a URL, `tcp://127.0.0.1:PORT`.
    pub fn tcp_addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The TCP address as `127.0.0.1:PORT` (for `clamav_client::tokio::Tcp`).
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Unix socket path.
    pub fn unix_path(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    /// Stops clamd (SIGTERM, then SIGKILL); both sockets stop answering. Idempotent.
    pub fn stop(&mut self) {
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::from_secs(5));
        }
        let _ = fs::remove_file(self.unix_path());
    }

    /// Whether clamd is currently started by this handle.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops (if running) and starts clamd again on the same port and socket path.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = spawn(self.dir.path());
        if let Err(reason) = wait_ready(&mut child, self.dir.path(), self.port) {
            stop_group(&mut child, Duration::from_secs(3));
            panic!(
                "clamd did not restart ({reason}); log tail:\n{}",
                startup_log(self.dir.path())
            );
        }
        self.watchdog = Some(Watchdog::guard(child.id(), self.dir.path()));
        self.child = Some(child);
    }

    /// Sends `zPING` over TCP; true if clamd answered `PONG`.
    pub fn ping(&self) -> bool {
        ping(self.port)
    }

    /// Scans `data` with a blocking INSTREAM over TCP and returns clamd's reply without the
    /// trailing NUL (`stream: OK`, `stream: SIG FOUND`, `INSTREAM size limit exceeded. ERROR`).
    ///
    /// clamd answers and closes as soon as a stream exceeds `StreamMaxLength`; this client
    /// checks for an early reply before every chunk, so it gets that reply instead of EPIPE.
    pub fn scan_raw(&self, data: &[u8]) -> String {
        instream(self.port, data)
    }

    /// The clamd log so far.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `test.ndb` (EICAR) and `test.hdb` (clam.exe MD5) into `db`.
fn write_signatures(db: &Path) {
    fs::create_dir_all(db).expect("create db dir");
    let hex = EICAR.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    });
    fs::write(db.join("test.ndb"), format!("Test.EICAR:0:*:{hex}\n")).expect("write ndb");
    let clam_exe = fs::read(CLAM_EXE).unwrap_or_else(|e| {
        panic!("{CLAM_EXE}: {e} (install clamav-testfiles: scripts/install-test-deps.sh)")
    });
    let md5 = md5_hex(&clam_exe);
    let hdb = format!("{md5}:{}:Test.ClamAV-Test-File\n", clam_exe.len());
    fs::write(db.join("test.hdb"), hdb).expect("write hdb");
}

fn md5_hex(data: &[u8]) -> String {
    let output = Command::new("md5sum")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("run md5sum");
    let text = String::from_utf8(output.stdout).expect("md5sum output");
    text.split_whitespace().next().expect("md5 hex").to_string()
}

fn render_config(dir: &Path, port: u16, options: &ClamdOptions) -> String {
    let d = dir.display();
    let mut conf = format!(
        "Foreground yes\n\
         DatabaseDirectory {d}/db\n\
         LocalSocket {d}/clamd.sock\n\
         TCPSocket {port}\n\
         TCPAddr 127.0.0.1\n\
         LogFile {d}/clamd.log\n\
         LogTime yes\n\
         PidFile {d}/clamd.pid\n\
         ScanMail yes\n\
         ScanArchive yes\n\
         SelfCheck 0\n\
         Bytecode no\n"
    );
    if let Some(limit) = &options.stream_max_length {
        conf.push_str(&format!("StreamMaxLength {limit}\n"));
    }
    if let Some(threads) = options.max_threads {
        conf.push_str(&format!("MaxThreads {threads}\n"));
    }
    if options.disable_cache {
        conf.push_str("DisableCache yes\n");
    }
    if options.alert_exceeds_max {
        conf.push_str("AlertExceedsMax yes\n");
    }
    for line in &options.extra_config {
        conf.push_str(line);
        conf.push('\n');
    }
    conf
}

fn spawn(dir: &Path) -> Child {
    let output = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
    let errors = output.try_clone().expect("clone log handle");
    Command::new("clamd")
        .arg("-c")
        .arg(dir.join("clamd.conf"))
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .process_group(0)
        .spawn()
        .expect("spawn clamd (is clamav-daemon installed? see scripts/install-test-deps.sh)")
}

fn wait_ready(child: &mut Child, dir: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("clamd exited with {status}"));
        }
        if ping(port) && dir.join("clamd.sock").exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no PONG on port {port} within {START_TIMEOUT:?}"))
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.take(64).read_to_end(&mut reply);
    reply == b"PONG\0"
}

fn instream(port: u16, data: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect clamd");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reply = Vec::new();
    let mut send = |bytes: &[u8], stream: &mut TcpStream| -> bool {
        early_reply(stream, &mut reply) || stream.write_all(bytes).is_err()
    };
    let mut stopped = send(b"zINSTREAM\0", &mut stream);
    for chunk in data.chunks(64 * 1024) {
        if stopped {
            break;
        }
        let size = (chunk.len() as u32).to_be_bytes();
        stopped = send(&size, &mut stream) || send(chunk, &mut stream);
    }
    if !stopped {
        let _ = stream.write_all(&[0; 4]);
    }
    let _ = stream.take(4096).read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .trim_end_matches(['\0', '\n'])
        .to_string()
}

/// Reads a reply clamd sent before the stream was complete; true if there was one.
fn early_reply(stream: &mut TcpStream, reply: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 512];
    stream.set_nonblocking(true).expect("nonblocking");
    let read = stream.read(&mut buffer);
    stream.set_nonblocking(false).expect("blocking");
    match read {
        Ok(count) if count > 0 => {
            reply.extend_from_slice(&buffer[..count]);
            true
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

fn startup_log(dir: &Path) -> String {
    format!(
        "{}\n{}",
        file_tail(&dir.join("stdout.log"), 20),
        file_tail(&dir.join("clamd.log"), 40)
    )
}
