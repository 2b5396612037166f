//! Dovecot's raw protocol logs (`rawlog_dir`): what a logged-in IMAP/POP3 session received, read
//! back per user, and the IMAP command framing used to split it.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::dovecot::Dovecot;
use super::process::{make_traversable, MailUser};

/// What Dovecot's IMAP rawlog recorded as received in one post-login session.
#[derive(Debug, Clone)]
pub struct ImapRawlog {
    /// The `<date>-<time>.<pid>.<n>.in` file.
    pub path: PathBuf,
    /// The received bytes with rawlog's per-line timestamps stripped (literals included).
    pub input: Vec<u8>,
}

impl ImapRawlog {
    /// Parses a rawlog `.in` file's contents: every line starts with `<secs>.<usecs> `.
    pub fn from_file_contents(path: PathBuf, contents: &[u8]) -> ImapRawlog {
        let mut input = Vec::with_capacity(contents.len());
        for line in contents.split_inclusive(|&b| b == b'\n') {
            input.extend_from_slice(strip_rawlog_timestamp(line));
        }
        ImapRawlog { path, input }
    }

    /// The commands received, each as its bytes from the tag up to the final CRLF with its
    /// literals inlined (split the way an IMAP server frames them, see
    /// [`super::raw::announced_literal`]).
    pub fn commands(&self) -> Vec<Vec<u8>> {
        split_imap_commands(&self.input)
    }

    /// The tag (first space-separated token) of each command.
    pub fn tags(&self) -> Vec<String> {
        self.commands().iter().map(|c| imap_tag(c)).collect()
    }
}

/// Removes one leading `<digits>.<digits> ` timestamp, if present.
fn strip_rawlog_timestamp(line: &[u8]) -> &[u8] {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return line;
    };
    let stamp = &line[..space];
    let is_stamp = stamp.contains(&b'.')
        && stamp.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && stamp.first().is_some_and(u8::is_ascii_digit);
    if is_stamp {
        &line[space + 1..]
    } else {
        line
    }
}

/// Splits a client-to-server IMAP byte stream into commands (see [`ImapRawlog::commands`]);
/// a trailing incomplete command is returned as it is.
pub fn split_imap_commands(input: &[u8]) -> Vec<Vec<u8>> {
    let mut commands = Vec::new();
    let mut current = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        current.extend_from_slice(line);
        rest = after;
        match super::raw::announced_literal(line) {
            Some((size, _)) => {
                let take = size.min(rest.len());
                current.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
            _ => commands.push(std::mem::take(&mut current)),
        }
    }
    if !current.is_empty() {
        commands.push(current);
    }
    commands
}

/// The first space-separated token of a command line (lossy text).
pub fn imap_tag(command: &[u8]) -> String {
    let end = command
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(command.len());
    String::from_utf8_lossy(&command[..end]).into_owned()
}

/// The pid in a rawlog file name `<date>-<time>.<pid>.<n>.in`.
fn rawlog_pid(path: &Path) -> Option<i32> {
    let name = path.file_name()?.to_str()?;
    name.split('.').nth(1)?.parse().ok()
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Dovecot {
    /// The lines Dovecot received in `user`'s logged-in sessions (needs
    /// [`DovecotOptions::rawlog`](super::dovecot::DovecotOptions::rawlog)), one `Vec` per
    /// session in file-name (start time) order, each line without its timestamp.
    pub fn rawlog_in(&self, user: &str) -> Vec<Vec<String>> {
        let dir = self.dir().join("rawlog").join(user);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "in"));
        files.sort();
        files
            .iter()
            .map(|path| {
                let bytes = fs::read(path).unwrap_or_default();
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(|line| match line.split_once(' ') {
                        Some((stamp, rest)) if stamp.contains('.') => rest.to_string(),
                        _ => line.to_string(),
                    })
                    .collect()
            })
            .collect()
    }

    /// The directory Dovecot writes `user`'s IMAP rawlog files to (needs
    /// [`DovecotOptions::imap_rawlog`](super::dovecot::DovecotOptions::imap_rawlog)).
    pub fn imap_rawlog_dir(&self, user: &str) -> PathBuf {
        self.dir().join("rawlog").join(user)
    }

    /// The `.in` files of `user`'s IMAP sessions so far, sorted by name.
    pub fn imap_rawlog_files(&self, user: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.imap_rawlog_dir(user))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "in"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits for the IMAP sessions of `user` that started after `known` (a snapshot of
    /// [`Dovecot::imap_rawlog_files`]) to be complete and returns what each received.
    ///
    /// Complete means: at least `sessions` new `.in` files exist and the imap process named in
    /// each file name has exited (rawlog is flushed and closed by then). Polls until `timeout`;
    /// `Err` describes what was missing.
    pub fn wait_imap_rawlog(
        &self,
        user: &str,
        known: &[PathBuf],
        sessions: usize,
        timeout: Duration,
    ) -> Result<Vec<ImapRawlog>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let fresh: Vec<PathBuf> = self
                .imap_rawlog_files(user)
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect();
            let running: Vec<&PathBuf> = fresh
                .iter()
                .filter(|p| rawlog_pid(p).is_none_or(process_alive))
                .collect();
            if fresh.len() >= sessions && running.is_empty() {
                return Ok(fresh
                    .into_iter()
                    .map(|path| {
                        let contents = fs::read(&path).unwrap_or_default();
                        ImapRawlog::from_file_contents(path, &contents)
                    })
                    .collect());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "after {timeout:?}: {} new rawlog session(s) of {sessions} expected, still \
                     running: {running:?}",
                    fresh.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `<dir>/rawlog/<user>`, owned by the mail user (Dovecot's imap process writes there as that
/// user and does not create the directory). Harmless when rawlog is off.
pub(super) fn ensure_imap_rawlog_dir(dir: &Path, mail: MailUser, user: &str) -> PathBuf {
    let root = dir.join("rawlog");
    fs::create_dir_all(&root).expect("create rawlog dir");
    make_traversable(&root);
    let path = root.join(user);
    fs::create_dir_all(&path).expect("create user rawlog dir");
    chown(&path, Some(mail.uid), Some(mail.gid)).expect("chown rawlog dir");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod rawlog dir");
    path
}
