//! A private Dovecot (2.3) per test: own config, temp dir, log, passwd-file users and maildirs,
//! IMAP/IMAPS/POP3/POP3S on ephemeral 127.0.0.1 ports.
//!
//! `ssl = yes` offers STARTTLS (RFC 2595 / RFC 3501 §6.2.1) on the plain listeners and implicit
//! TLS (RFC 8314) on the `s` listeners; `auth_mechanisms` includes `apop` so the POP3 greeting
//! carries an RFC 1939 §7 timestamp.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::certs::TestCa;
use super::dovecot_config::{render_config, Ports};
use super::ports::{wait_for_port, wait_until_closed};
use super::process::{
    file_tail, mail_user, make_traversable, require_dovecot_2_3, stop_group, MailUser, Watchdog,
};
use super::rawlog::ensure_imap_rawlog_dir;
#[allow(unused_imports)]
pub use super::rawlog::{imap_tag, split_imap_commands, ImapRawlog};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 5;
const DEFAULT_USER: &str = "alice";
const DEFAULT_PASSWORD: &str = "wonderland-Pass1";

static INSTANCE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Knobs for [`Dovecot::start_with`].
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// Raw lines appended at the end of the generated `dovecot.conf` (later settings win).
    pub extra_config: Vec<String>,
    /// `login_trusted_networks` (e.g. `"127.0.0.0/8"`): lets IMAP `ID x-originating-ip` and
    /// POP3 `XCLIENT` from those addresses set the client address Dovecot logs as `rip=`.
    pub login_trusted_networks: Option<String>,
    /// Adds one IMAP and one POP3 listener with `haproxy = yes` (PROXY protocol required) and
    /// `haproxy_trusted_networks = 127.0.0.0/8`; see [`Dovecot::imap_haproxy_port`].
    pub haproxy: bool,
    /// `mail_max_userip_connections` (Dovecot's default is 10; default here 1000).
    pub mail_max_userip_connections: u32,
    /// `rawlog_dir = <dir>/rawlog/%u`: Dovecot writes what each logged-in IMAP/POP3 session
    /// received (`*.in`) and sent (`*.out`); see [`Dovecot::rawlog_in`].
    pub rawlog: bool,
    /// Extra `(name, password)` users present from the start (cheaper than
    /// [`Dovecot::add_user`], which has to wait for a new second).
    pub users: Vec<(String, String)>,
    /// IMAP raw protocol log: `rawlog_dir = <dir>/rawlog/%u` in `protocol imap { }`, read back
    /// with [`Dovecot::imap_rawlog_files`] / [`Dovecot::wait_imap_rawlog`].
    pub imap_rawlog: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            extra_config: Vec::new(),
            login_trusted_networks: None,
            haproxy: false,
            rawlog: false,
            mail_max_userip_connections: 1000,
            users: Vec::new(),
            imap_rawlog: false,
        }
    }
}

/// A running Dovecot; dropping it stops the daemon and deletes its directory.
pub struct Dovecot {
    /// Plain IMAP listener (STARTTLS offered).
    pub imap_port: u16,
    /// Implicit-TLS IMAP listener.
    pub imaps_port: u16,
    /// Plain POP3 listener (STLS offered).
    pub pop3_port: u16,
    /// Implicit-TLS POP3 listener.
    pub pop3s_port: u16,
    /// IMAP listener expecting a PROXY protocol header (only with `DovecotOptions::haproxy`).
    pub imap_haproxy_port: Option<u16>,
    /// POP3 listener expecting a PROXY protocol header (only with `DovecotOptions::haproxy`).
    pub pop3_haproxy_port: Option<u16>,
    /// The CA whose leaf certificate Dovecot presents.
    pub ca: TestCa,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    mail: MailUser,
    users: Mutex<Users>,
    seeded: AtomicU64,
    dir: tempfile::TempDir,
}

/// The passwd-file contents and how often it was written.
struct Users {
    list: Vec<(String, String)>,
    generation: u64,
}

impl Dovecot {
    /// Starts Dovecot with [`DovecotOptions::default`].
    pub fn start() -> Dovecot {
        Dovecot::start_with(DovecotOptions::default())
    }

    /// Starts Dovecot with `options`; panics (with the log tail) if it is not serving all
    /// listeners and an IMAP greeting within 15 s.
    pub fn start_with(options: DovecotOptions) -> Dovecot {
        require_dovecot_2_3();
        let mail = mail_user();
        let dir = tempfile::Builder::new()
            .prefix("pc-dovecot-")
            .tempdir()
            .expect("tempdir");
        make_traversable(dir.path());
        let ca = TestCa::new();
        ca.write_to(dir.path());
        let instance = format!(
            "pc-{}-{}",
            std::process::id(),
            INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut list = vec![(DEFAULT_USER.to_string(), DEFAULT_PASSWORD.to_string())];
        list.extend(options.users.iter().cloned());
        let users = Users {
            list,
            generation: 0,
        };
        write_passwd(dir.path(), mail, &users);
        if options.rawlog || options.imap_rawlog {
            for (name, _) in &users.list {
                ensure_imap_rawlog_dir(dir.path(), mail, name);
            }
        }
        for attempt in 1..=START_ATTEMPTS {
            let ports = Ports::pick(options.haproxy);
            let config = render_config(dir.path(), &instance, mail, &ports, &options);
            fs::write(dir.path().join("dovecot.conf"), config).expect("write dovecot.conf");
            let _ = fs::remove_file(dir.path().join("dovecot.log"));
            let mut child = spawn(dir.path());
            match wait_ready(&mut child, &ports) {
                Ok(()) => {
                    let watchdog = Watchdog::guard(child.id(), dir.path());
                    return Dovecot {
                        imap_port: ports.imap,
                        imaps_port: ports.imaps,
                        pop3_port: ports.pop3,
                        pop3s_port: ports.pop3s,
                        imap_haproxy_port: ports.haproxy.map(|p| p.0),
                        pop3_haproxy_port: ports.haproxy.map(|p| p.1),
                        ca,
                        child: Some(child),
                        watchdog: Some(watchdog),
                        mail,
                        users: Mutex::new(users),
                        seeded: AtomicU64::new(0),
                        dir,
                    };
                }
                Err(reason) => {
                    stop_group(&mut child, Duration::ZERO);
                    let log = startup_log(dir.path());
                    if log.contains("in use") && attempt < START_ATTEMPTS {
                        continue;
                    }
                    panic!("Dovecot did not start ({reason}); log tail:\n{log}");
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The default user's login name.
    pub fn user(&self) -> &'static str {
        DEFAULT_USER
    }

    /// The default user's password.
    pub fn password(&self) -> &'static str {
        DEFAULT_PASSWORD
    }

    /// Adds (or re-passwords) a user. Dovecot re-checks the passwd-file at most once per
    /// wall-clock second, so this returns only after the second has changed (up to 1 s):
    /// the next login is then guaranteed to see the new file.
    pub fn add_user(&self, name: &str, password: &str) {
        assert!(!name.contains([':', '\n']) && !password.contains([':', '\n']));
        let mut users = self.users.lock().expect("users lock");
        users.list.retain(|(existing, _)| existing != name);
        users.list.push((name.to_string(), password.to_string()));
        users.generation += 1;
        write_passwd(self.dir.path(), self.mail, &users);
        ensure_imap_rawlog_dir(self.dir.path(), self.mail, name);
        wait_for_next_second();
    }

    /// The user's maildir (`<home>/Maildir`), created with the right owner if missing.
    pub fn maildir(&self, user: &str) -> PathBuf {
        ensure_maildir(self.dir.path(), self.mail, user)
    }

    /// Creates the (empty) mailbox `name` of `user` directly on disk (Maildir++ folder
    /// `.name`, owned by the mail user) — cheaper than an IMAP CREATE per user.
    pub fn maildir_folder(&self, user: &str, name: &str) -> PathBuf {
        let folder = self.maildir(user).join(format!(".{name}"));
        for path in [
            folder.clone(),
            folder.join("cur"),
            folder.join("new"),
            folder.join("tmp"),
        ] {
            fs::create_dir_all(&path).expect("create maildir folder");
            chown(&path, Some(self.mail.uid), Some(self.mail.gid)).expect("chown folder");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod folder");
        }
        folder
    }

    /// Writes each message as a new unseen file into `Maildir/cur` (owned by the mail user).
    /// Files are named so that Dovecot assigns UIDs in slice order; returns their paths.
    pub fn seed_messages(&self, user: &str, messages: &[Vec<u8>]) -> Vec<PathBuf> {
        let cur = self.maildir(user).join("cur");
        messages
            .iter()
            .map(|message| {
                let seq = self.seeded.fetch_add(1, Ordering::Relaxed);
                let name = format!(
                    "1700000000.M{seq:08}P{}.portcullis,S={}:2,",
                    std::process::id(),
                    message.len()
                );
                let path = cur.join(name);
                fs::write(&path, message).expect("write maildir file");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
                chown(&path, Some(self.mail.uid), Some(self.mail.gid)).expect("chown");
                path
            })
            .collect()
    }

    /// The whole Dovecot log so far.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Waits (polling, up to `timeout`) until `needle` occurs at least `count` times in the
    /// Dovecot log; returns the log then, panics with the log on timeout.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_contents();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot did not log {needle:?} {count} time(s) within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The instance's private directory (config, log, homes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the generated `dovecot.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }
}

impl Dovecot {
    /// Kills Dovecot and all its processes at once (SIGKILL to the process group: a graceful
    /// stop waits seconds for idle clients); open connections are closed, listeners refuse
    /// afterwards. Idempotent. The directory stays until drop, so the log remains readable.
    pub fn stop(&mut self) {
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::ZERO);
            // Login processes die a moment after the master and hold the listening sockets.
            let ports = [
                self.imap_port,
                self.imaps_port,
                self.pop3_port,
                self.pop3s_port,
            ];
            wait_until_closed(&ports, Duration::from_secs(5));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_next_second() {
    let second = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    };
    let start = second();
    while second() == start {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(dir: &Path) -> Child {
    let output = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
    let errors = output.try_clone().expect("clone log handle");
    Command::new("dovecot")
        .arg("-F")
        .arg("-c")
        .arg(dir.join("dovecot.conf"))
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .process_group(0)
        .spawn()
        .expect("spawn dovecot (is dovecot-imapd installed? see scripts/install-test-deps.sh)")
}

fn wait_ready(child: &mut Child, ports: &Ports) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    for port in ports.all() {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("dovecot exited with {status}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("port {port} not accepting after {START_TIMEOUT:?}"));
            }
            if wait_for_port(port, left.min(Duration::from_millis(250))) {
                break;
            }
        }
    }
    read_imap_greeting(ports.imap, deadline)
}

fn read_imap_greeting(port: u16, deadline: Instant) -> Result<(), String> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(500));
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("reading IMAP greeting: {e}"))?;
    if line.starts_with("* OK") {
        Ok(())
    } else {
        Err(format!("unexpected IMAP greeting {line:?}"))
    }
}

fn startup_log(dir: &Path) -> String {
    format!(
        "{}\n{}",
        file_tail(&dir.join("stdout.log"), 20),
        file_tail(&dir.join("dovecot.log"), 40)
    )
}

fn home(dir: &Path, user: &str) -> PathBuf {
    dir.join("home").join(user)
}

fn ensure_maildir(dir: &Path, mail: MailUser, user: &str) -> PathBuf {
    let homes = dir.join("home");
    fs::create_dir_all(&homes).expect("create homes");
    make_traversable(&homes);
    let home = home(dir, user);
    let maildir = home.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).expect("create maildir");
    }
    for path in [
        home.clone(),
        maildir.clone(),
        maildir.join("cur"),
        maildir.join("new"),
        maildir.join("tmp"),
    ] {
        chown(&path, Some(mail.uid), Some(mail.gid)).expect("chown maildir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod maildir");
    }
    maildir
}

/// Writes the passwd-file atomically with a new mtime per generation: Dovecot re-reads it
/// when mtime or size changed, even for two writes within one second.
fn write_passwd(dir: &Path, mail: MailUser, users: &Users) {
    let mut text = String::new();
    for (name, password) in &users.list {
        ensure_maildir(dir, mail, name);
        let home = home(dir, name);
        text.push_str(&format!(
            "{name}:{{PLAIN}}{password}:{}:{}::{}::\n",
            mail.uid,
            mail.gid,
            home.display()
        ));
    }
    let tmp = dir.join("passwd.tmp");
    fs::write(&tmp, text).expect("write passwd");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod passwd");
    let mtime = SystemTime::now() + Duration::from_secs(users.generation);
    fs::File::options()
        .write(true)
        .open(&tmp)
        .and_then(|file| file.set_modified(mtime))
        .expect("set passwd mtime");
    fs::rename(&tmp, dir.join("passwd")).expect("rename passwd");
}
