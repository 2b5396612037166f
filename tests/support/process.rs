//! Child-process plumbing shared by the daemon wrappers: process groups, stopping, the mail user,
//! directory permissions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The system user that owns the test maildirs (created by `scripts/install-test-deps.sh`, or
/// lazily by [`mail_user`]).
pub const MAIL_USER: &str = "portcullis-mail";

/// Numeric ids of [`MAIL_USER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailUser {
    /// The user's uid.
    pub uid: u32,
    /// The user's primary gid.
    pub gid: u32,
}

/// Returns the ids of [`MAIL_USER`], creating the user (`useradd --system`) if it is missing.
///
/// Panics when the tests do not run as root: Dovecot needs root to switch to the mail uid.
pub fn mail_user() -> MailUser {
    static USER: OnceLock<MailUser> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "the Dovecot/clamd test harness must run as root");
        if let Some(user) = lookup_user(MAIL_USER) {
            return user;
        }
        // A concurrent test binary may create it between lookup and useradd: ignore the status.
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", MAIL_USER])
            .status();
        lookup_user(MAIL_USER).unwrap_or_else(|| panic!("cannot create system user {MAIL_USER}"))
    })
}

fn lookup_user(name: &str) -> Option<MailUser> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    let line = String::from_utf8(output.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some(MailUser {
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
    })
}

/// `chmod 0755` so daemons' unprivileged processes can traverse a (0700 by default) temp dir.
pub fn make_traversable(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.display()));
}

/// Sends `signal` to the whole process group `pgid`; errors (group already gone) are ignored.
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Stops a daemon started in its own process group: SIGTERM to the group, then SIGKILL to the
/// group after `grace` (at once if `grace` is zero); always reaps the leader.
pub fn stop_group(child: &mut Child, grace: Duration) {
    if grace.is_zero() || matches!(child.try_wait(), Ok(Some(_))) {
        signal_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
        return;
    }
    signal_group(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    signal_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// The last `lines` lines of a text file (empty when it does not exist), for panic messages.
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Cleans up after a daemon whose handle is never dropped (a `static`, a killed test run):
/// a tiny `sh` loop that waits for the test process to exit, then kills the daemon's process
/// group and removes its directory. Dropping the guard (done first in the daemons' `Drop`)
/// ends the watchdog, so it never signals a group it no longer owns.
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Guards the daemon process group `pgid` and its directory `dir`.
    pub fn guard(pgid: u32, dir: &Path) -> Watchdog {
        const SCRIPT: &str = "while kill -0 \"$0\" 2>/dev/null; do sleep 0.5; done; \
             kill -TERM \"-$1\" 2>/dev/null; sleep 1; kill -KILL \"-$1\" 2>/dev/null; \
             rm -rf -- \"$2\"";
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg(std::process::id().to_string())
            .arg(pgid.to_string())
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn watchdog sh");
        Watchdog { child }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Still our unreaped child, so its pid (= its group id) cannot have been reused.
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Panics unless the installed Dovecot speaks the 2.3 configuration syntax used here
/// (2.4 changed it incompatibly).
pub fn require_dovecot_2_3() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let output = Command::new("dovecot")
            .arg("--version")
            .output()
            .expect("run `dovecot --version` (see scripts/install-test-deps.sh)");
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            version.starts_with("2.3."),
            "test harness writes Dovecot 2.3 configuration; installed: {version:?}"
        );
    });
}

/// A child process that is killed and reaped when dropped (a `portcullis serve` a test runs).
pub struct KilledOnDrop(pub Child);

impl std::ops::Deref for KilledOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KilledOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
