//! Released content: the SHA-256 hashes of quarantined originals an operator let through with
//! `portcullis quarantine release`.
//!
//! Layout: `<quarantine_dir>/released/<sha256 hex>`, one file per released content hash,
//! holding a JSON [`Marker`] (id, hash, time, who). The file *name* is the release; its content
//! is for people. One file per release means concurrent releases never race on a shared list,
//! and each is written atomically (temporary file + rename, mode 0600).
//!
//! A running scanner keeps the set in memory ([`Released`]) and re-reads the directory when its
//! modification time changes (checked every [`POLL_INTERVAL`] by the scanner's watcher), so a
//! release takes effect without a restart or SIGHUP, and survives restarts because it is on disk.
//! Releases are keyed by content, like the verdict cache: a released message is served as the
//! original to every user it was blocked for.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cache::Hash;
use super::quarantine::{self, QuarantineError};

/// Subdirectory of the quarantine directory holding the release markers.
pub const RELEASED_DIR: &str = "released";

/// How often a running scanner looks for new releases.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A directory modification time this close to the moment it was read may hide a later change
/// within the same timestamp tick: such a read is repeated at the next poll.
const SETTLE: Duration = Duration::from_secs(2);

/// Errors reading or writing release markers.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
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
    /// Writing the marker failed.
    #[error("writing the release marker: {0}")]
    Write(#[from] QuarantineError),
    /// A marker's content is not a JSON [`Marker`].
    #[error("release marker {path}: {message}")]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ReleaseError + 'a {
    move |source| ReleaseError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Who released which original, and when (the content of a marker file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Quarantine id of the original.
    pub id: String,
    /// SHA-256 of the original, hex.
    pub sha256: String,
    /// When it was released (RFC 3339, UTC).
    pub time: String,
    /// The local user who released it (`$SUDO_USER`, else `$USER`).
    pub by: String,
}

/// The hash a marker file name stands for: exactly 64 lowercase hex digits.
pub fn parse_hash(name: &str) -> Option<Hash> {
    if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(name, &mut hash).ok()?;
    Some(hash)
}

/// The release directory of a quarantine directory.
pub fn released_dir(quarantine_dir: &Path) -> PathBuf {
    quarantine_dir.join(RELEASED_DIR)
}

/// Path of the marker of `hash`.
pub fn marker_path(quarantine_dir: &Path, hash: &Hash) -> PathBuf {
    released_dir(quarantine_dir).join(hex::encode(hash))
}

/// Every released hash (file names that are not hashes are ignored; no directory is no release).
pub fn read_set(quarantine_dir: &Path) -> Result<HashSet<Hash>, ReleaseError> {
    let dir = released_dir(quarantine_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io_err("read dir", &dir)(e)),
    };
    let mut set = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read dir", &dir))?;
        if let Some(hash) = entry.file_name().to_str().and_then(parse_hash) {
            set.insert(hash);
        }
    }
    Ok(set)
}

/// The marker of `hash`, if it is released.
pub fn read_marker(quarantine_dir: &Path, hash: &Hash) -> Result<Option<Marker>, ReleaseError> {
    let path = marker_path(quarantine_dir, hash);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ReleaseError::Marker {
            path,
            message: e.to_string(),
        })
}

/// Gives `path` the owner of `like` when they differ (the CLI run as root must not leave files
/// the service user cannot read). A failure is returned for the caller to report.
pub fn adopt_owner(path: &Path, like: &Path) -> Result<(), ReleaseError> {
    let want = std::fs::metadata(like).map_err(io_err("stat", like))?;
    let have = std::fs::metadata(path).map_err(io_err("stat", path))?;
    if (have.uid(), have.gid()) == (want.uid(), want.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(want.uid()), Some(want.gid()))
        .map_err(io_err("chown", path))
}

/// Writes the marker of `hash` (creating `released/`, mode 0700, owned like the quarantine
/// directory). Ownership problems are returned as warnings: the release itself is in place.
pub fn write_marker(
    quarantine_dir: &Path,
    hash: &Hash,
    marker: &Marker,
) -> Result<Vec<ReleaseError>, ReleaseError> {
    let dir = released_dir(quarantine_dir);
    let existed = dir.is_dir();
    quarantine::create_dir(&dir)?;
    let mut warnings = Vec::new();
    if !existed {
        warnings.extend(adopt_owner(&dir, quarantine_dir).err());
    }
    let json = serde_json::to_vec_pretty(marker).map_err(|e| ReleaseError::Marker {
        path: marker_path(quarantine_dir, hash),
        message: e.to_string(),
    })?;
    quarantine::write_atomic(&dir, &hex::encode(hash), &json)?;
    warnings.extend(adopt_owner(&marker_path(quarantine_dir, hash), quarantine_dir).err());
    Ok(warnings)
}

/// When the release directory must be listed again (pure: the caller supplies the times).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// The directory's modification time at the last read (`Some(None)`: it did not exist);
    /// `None` before the first read.
    last: Option<Option<SystemTime>>,
    /// Whether that modification time was old enough at the read to trust (see [`SETTLE`]).
    settled: bool,
}

impl Freshness {
    /// Whether a directory now modified at `mtime` (`None`: missing) must be read again.
    pub fn needs_read(&self, mtime: Option<SystemTime>) -> bool {
        self.last != Some(mtime) || !self.settled
    }

    /// The directory, modified at `mtime`, was read at `now`.
    pub fn read(&mut self, mtime: Option<SystemTime>, now: SystemTime) {
        self.last = Some(mtime);
        self.settled = mtime.is_none_or(|m| now.duration_since(m).is_ok_and(|age| age >= SETTLE));
    }

    /// The last read failed: read again next time.
    pub fn failed(&mut self) {
        self.last = None;
    }
}

/// The release set of a running scanner.
#[derive(Debug)]
pub struct Released {
    quarantine_dir: PathBuf,
    set: RwLock<Arc<HashSet<Hash>>>,
    freshness: Mutex<Freshness>,
}

impl Released {
    /// An empty set for `quarantine_dir`, not read yet.
    pub fn new(quarantine_dir: &Path) -> Released {
        Released {
            quarantine_dir: quarantine_dir.to_path_buf(),
            set: RwLock::new(Arc::new(HashSet::new())),
            freshness: Mutex::new(Freshness::default()),
        }
    }

    /// The quarantine directory whose releases this is.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine_dir
    }

    fn current(&self) -> Arc<HashSet<Hash>> {
        match self.set.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the content with this hash is released.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.current().contains(hash)
    }

    /// How many hashes are released.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether nothing is released.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Re-reads the directory if it changed since the last read (blocking I/O: call it from a
    /// blocking thread); returns the hashes released since then.
    pub fn refresh(&self) -> Result<Vec<Hash>, ReleaseError> {
        let dir = released_dir(&self.quarantine_dir);
        let mtime = match std::fs::metadata(&dir) {
            Ok(meta) => Some(meta.modified().map_err(io_err("stat", &dir))?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("stat", &dir)(e)),
        };
        let mut freshness = match self.freshness.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !freshness.needs_read(mtime) {
            return Ok(Vec::new());
        }
        let now = SystemTime::now();
        let set = match read_set(&self.quarantine_dir) {
            Ok(set) => set,
            Err(e) => {
                freshness.failed();
                return Err(e);
            }
        };
        freshness.read(mtime, now);
        let old = self.current();
        let mut added: Vec<Hash> = set.difference(&old).copied().collect();
        added.sort_unstable();
        match self.set.write() {
            Ok(mut slot) => *slot = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(added)
    }
}

#[cfg(test)]
#[path = "release_tests.rs"]
mod tests;
