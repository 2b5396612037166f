//! Child-process plumbing shared by the daemon wrappers: process groups, stopping, the mail user,
//! directory permissions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
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

/// Stops a daemon started in its own process group: SIGTERM to the leader, then SIGKILL to the
/// group after `grace`; always reaps the leader.
pub fn stop_group(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        signal_group(child.id(), libc::SIGKILL);
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
