//! Quarantine of originals: `<id>.eml` plus a `<id>.json` record, each written atomically
//! (temporary file in the same directory, write, fsync, rename, fsync of the directory) with
//! mode 0600 whatever the umask (the originals are malware; the records name users). A
//! directory the quarantine creates itself gets mode 0700.
//!
//! The id is the first 16 hex digits of the SHA-256 of the original, so the same message blocked
//! twice gets the same id and its replacement stays byte-stable.
//!
//! Several replicas may share one quarantine directory (NFS, CephFS, a ReadWriteMany volume):
//! temporary names carry a per-process random token (not only the pid, which is 1 in every
//! container), an original is renamed over an identical one harmlessly, and each record is
//! published with `link(2)` under the first free name (`<id>.json`, `<id>.1.json`, …), which
//! fails instead of overwriting when another replica took that name at the same moment.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::summary;
use super::verdict::{verdict_label, MessageRef, Protocol, Verdict};

/// Errors writing to the quarantine.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The record could not be serialized.
    #[error("record: {0}")]
    Record(String),
    /// The blocking task failed.
    #[error("task: {0}")]
    Task(String),
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_slice());
    out
}

/// Quarantine id for a content hash: its first 16 hex digits.
pub fn quarantine_id(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

/// The JSON record written beside each quarantined original.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Quarantine id.
    pub id: String,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// Client address.
    pub client_addr: String,
    /// Authenticated user.
    pub user: Option<String>,
    /// `imap` or `pop3`.
    pub protocol: String,
    /// IMAP mailbox.
    pub mailbox: Option<String>,
    /// IMAP UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// IMAP UID.
    pub uid: Option<u32>,
    /// Sequence / POP3 message number.
    pub msgno: Option<u32>,
    /// Verdict label (`infected`, `rule`, ...).
    pub verdict: String,
    /// Signature, rule name or error.
    pub detail: String,
    /// The antivirus signature, for an `infected` verdict.
    #[serde(default)]
    pub signature: Option<String>,
    /// The rule name, for a `rule` verdict.
    #[serde(default)]
    pub rule: Option<String>,
    /// The original's decoded Subject, escaped and capped (see [`super::summary`]).
    #[serde(default)]
    pub subject: Option<String>,
    /// The original's first From address, escaped and capped (see [`super::summary`]).
    #[serde(default)]
    pub from: Option<String>,
    /// Action taken (`replace`, `strip`).
    pub action: String,
    /// Size of the original in bytes.
    pub size: usize,
    /// Size of what was delivered instead.
    pub delivered_size: usize,
    /// SHA-256 of the original, hex.
    pub sha256: String,
}

/// Builds the record for one message; `hash` is the SHA-256 of `original`, which also gives
/// the record its Subject and From.
pub fn record(
    original: &[u8],
    hash: &[u8; 32],
    msg: &MessageRef,
    verdict: &Verdict,
    action: &str,
    delivered_size: usize,
) -> Record {
    let summary = summary::of(original);
    Record {
        id: quarantine_id(hash),
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        client_addr: msg.client_addr.to_string(),
        user: msg.user.clone(),
        protocol: match msg.protocol {
            Protocol::Imap => "imap".into(),
            Protocol::Pop3 => "pop3".into(),
        },
        mailbox: msg.mailbox.clone(),
        uidvalidity: msg.uidvalidity,
        uid: msg.uid,
        msgno: msg.msgno,
        verdict: verdict_label(verdict).into(),
        detail: verdict.detail(),
        signature: match verdict {
            Verdict::Infected { signature, .. } => Some(signature.clone()),
            _ => None,
        },
        rule: match verdict {
            Verdict::Rule { name, .. } => Some(name.clone()),
            _ => None,
        },
        subject: summary.subject,
        from: summary.from,
        action: action.into(),
        size: original.len(),
        delivered_size,
        sha256: hex::encode(hash),
    }
}

/// `<id>.json` for the first sighting; later sightings of the same original (another user,
/// another fetch after a cache flush, another replica) get `<id>.<n>.json` so no record is
/// overwritten.
fn record_names(id: &str) -> Vec<String> {
    std::iter::once(format!("{id}.json"))
        .chain((1..=MAX_RECORDS).map(|n| format!("{id}.{n}.json")))
        .collect()
}

/// The quarantine directory.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> QuarantineError + 'a {
    move |source| QuarantineError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Records kept per quarantined original; beyond this the last one is overwritten.
const MAX_RECORDS: u32 = 1000;

/// Makes temporary file names unique within the process (concurrent writes of the same id).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Makes temporary file names unique across processes and hosts sharing the directory.
static PROCESS_TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let seed = format!("{}:{nanos}:{host}:{:p}", std::process::id(), &TEMP_COUNTER);
    hex::encode(&sha256(seed.as_bytes())[..6])
});

/// A new temporary path beside `name` in `dir`.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{unique}.tmp", *PROCESS_TOKEN))
}

/// Writes and syncs `bytes` to a new file `temp` with mode [`FILE_MODE`].
fn write_temp(temp: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(temp)
        .map_err(io_err("create", temp))?;
    // The umask may have taken bits from `mode` (never added any): set it exactly.
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("chmod", temp))?;
    file.write_all(bytes).map_err(io_err("write", temp))?;
    file.sync_all().map_err(io_err("fsync", temp))
}

fn sync_dir(dir: &Path) -> Result<(), QuarantineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

/// Writes `bytes` under the first of `names` that does not exist yet, never replacing a file
/// (another process may pick the same name at the same moment: `link(2)` lets only one win);
/// when every name is taken, the last is replaced. Returns the name used.
pub fn write_new(dir: &Path, names: &[String], bytes: &[u8]) -> Result<String, QuarantineError> {
    let Some(last) = names.last() else {
        return Err(QuarantineError::Record("no file name to write".into()));
    };
    let temp = temp_path(dir, last);
    let result = (|| {
        write_temp(&temp, bytes)?;
        for name in names {
            let target = dir.join(name);
            match fs::hard_link(&temp, &target) {
                Ok(()) => return Ok(name.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("link", &target)(e)),
            }
        }
        let target = dir.join(last);
        fs::rename(&temp, &target).map_err(io_err("rename", &target))?;
        Ok(last.clone())
    })();
    let _ = fs::remove_file(&temp);
    let name = result?;
    sync_dir(dir)?;
    Ok(name)
}

/// Mode of every file the quarantine writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory the quarantine creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with [`DIR_MODE`]; an existing directory is left as is.
pub fn create_dir(dir: &Path) -> Result<(), QuarantineError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err("create dir", dir))
}

/// Writes `bytes` to `dir/name` atomically and durably, mode [`FILE_MODE`] whatever the umask:
/// a temporary `.<name>.<token>.<n>.tmp` beside the target, renamed over it once synced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), QuarantineError> {
    let target = dir.join(name);
    let temp = temp_path(dir, name);
    let result = write_temp(&temp, bytes)
        .and_then(|()| fs::rename(&temp, &target).map_err(io_err("rename", &target)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

impl Quarantine {
    /// A quarantine in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Quarantine {
        Quarantine { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the original for `id`.
    pub fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Synchronously stores the original and its record; returns the id.
    pub fn store_blocking(
        &self,
        original: &[u8],
        record: &Record,
    ) -> Result<String, QuarantineError> {
        create_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| QuarantineError::Record(e.to_string()))?;
        write_atomic(&self.dir, &format!("{}.eml", record.id), original)?;
        write_new(&self.dir, &record_names(&record.id), &json)?;
        Ok(record.id.clone())
    }

    /// Readiness: what a store needs, without storing anything — the directory is created if
    /// missing, then a temporary file is created, fsynced and removed in it.
    pub fn check_writable_blocking(&self) -> Result<(), QuarantineError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create dir", &self.dir))?;
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".readiness.{}.{unique}.tmp", *PROCESS_TOKEN));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|file| file.sync_all())
            .map_err(io_err("create", &temp));
        let removed = fs::remove_file(&temp).map_err(io_err("remove", &temp));
        written.and(removed)
    }

    /// Stores the original and its record on the blocking pool; returns the id.
    pub async fn store(
        &self,
        original: bytes::Bytes,
        record: Record,
    ) -> Result<String, QuarantineError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.store_blocking(&original, &record))
            .await
            .map_err(|e| QuarantineError::Task(e.to_string()))?
    }
}

#[cfg(test)]
#[path = "quarantine_tests.rs"]
mod tests;
