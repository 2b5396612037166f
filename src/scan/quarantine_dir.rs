//! Reading and pruning a quarantine directory for `portcullis quarantine`: which files belong to
//! which id, the records, deleting one id and the age-based purge.
//!
//! A quarantine directory holds `<id>.eml` (the original), `<id>.json` and `<id>.<n>.json` (one
//! record per sighting), `.<name>.<pid>.<n>.tmp` (a write in progress, or left by a crash) and
//! `released/` (see [`super::release`]). Anything else is reported as skipped and never touched.
//! Deleting removes records before the original, so an interruption leaves at worst an original
//! without records, which `list` shows and `purge` removes.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::quarantine::Record;
use super::release::RELEASED_DIR;

/// Largest record file read (records are a few hundred bytes).
const MAX_RECORD: u64 = 1 << 20;

/// Errors reading or changing a quarantine directory.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
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
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DirError + 'a {
    move |source| DirError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What a file name in the quarantine directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `<id>.eml`.
    Message(String),
    /// `<id>.json` (sighting 0) or `<id>.<n>.json`.
    Record(String, u32),
    /// `.<name>.<pid>.<n>.tmp`: an atomic write in progress or abandoned.
    Temp,
    /// The `released/` directory.
    Released,
    /// Not a quarantine file.
    Other,
}

/// Whether `id` is a quarantine id: 16 lowercase hex digits.
pub fn is_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Classifies a file name (pure).
pub fn classify(name: &str) -> FileKind {
    if name == RELEASED_DIR {
        return FileKind::Released;
    }
    if name.starts_with('.') && name.ends_with(".tmp") {
        return FileKind::Temp;
    }
    if let Some(id) = name.strip_suffix(".eml").filter(|id| is_id(id)) {
        return FileKind::Message(id.to_string());
    }
    let Some(stem) = name.strip_suffix(".json") else {
        return FileKind::Other;
    };
    let (id, n) = match stem.split_once('.') {
        None => (stem, 0),
        Some((id, n)) => match n.parse::<u32>() {
            // Canonical numbers only (`1`, not `01` or `+1`), as the writer names them.
            Ok(value) if value > 0 && value.to_string() == n => (id, value),
            _ => return FileKind::Other,
        },
    };
    if is_id(id) {
        FileKind::Record(id.to_string(), n)
    } else {
        FileKind::Other
    }
}

/// One record file.
#[derive(Debug)]
pub struct RecordFile {
    /// Its path.
    pub path: PathBuf,
    /// The id in its name.
    pub id: String,
    /// Sighting number (0 for `<id>.json`).
    pub n: u32,
    /// The parsed record, or why it could not be read.
    pub record: Result<Record, String>,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
}

impl RecordFile {
    /// When the message was quarantined: the record's `time`, else the file's mtime.
    pub fn date(&self) -> Option<SystemTime> {
        self.record
            .as_ref()
            .ok()
            .and_then(|r| humantime::parse_rfc3339_weak(&r.time).ok())
            .or(self.modified)
    }
}

/// A file that is not a record.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time.
    pub modified: Option<SystemTime>,
}

/// Everything in a quarantine directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Records, by id then sighting number.
    pub records: Vec<RecordFile>,
    /// Originals by id.
    pub messages: BTreeMap<String, FileInfo>,
    /// Temporary files.
    pub temps: Vec<FileInfo>,
    /// Names that are not quarantine files (left alone).
    pub skipped: Vec<PathBuf>,
}

impl Listing {
    /// The records of `id`.
    pub fn records_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a RecordFile> + 'a {
        self.records.iter().filter(move |r| r.id == id)
    }

    /// Whether anything of `id` is in the quarantine.
    pub fn has(&self, id: &str) -> bool {
        self.messages.contains_key(id) || self.records_of(id).next().is_some()
    }
}

fn read_record(path: &Path, size: u64) -> Result<Record, String> {
    if size > MAX_RECORD {
        return Err("larger than 1 MiB".into());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a record: {e}"))
}

/// Lists `dir` (a missing directory is an empty quarantine).
pub fn scan(dir: &Path) -> Result<Listing, DirError> {
    let mut listing = Listing::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(io_err("read dir", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            listing.skipped.push(path);
            continue;
        };
        let kind = classify(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(_) => {
                listing.skipped.push(path);
                continue;
            }
        };
        let wanted_dir = kind == FileKind::Released;
        if meta.is_dir() != wanted_dir || meta.file_type().is_symlink() {
            if !wanted_dir {
                listing.skipped.push(path);
            }
            continue;
        }
        let info = FileInfo {
            path,
            size: meta.len(),
            modified: meta.modified().ok(),
        };
        match kind {
            FileKind::Message(id) => {
                listing.messages.insert(id, info);
            }
            FileKind::Record(id, n) => listing.records.push(RecordFile {
                record: read_record(&info.path, info.size),
                path: info.path,
                id,
                n,
                modified: info.modified,
            }),
            FileKind::Temp => listing.temps.push(info),
            FileKind::Released => {}
            FileKind::Other => listing.skipped.push(info.path),
        }
    }
    listing
        .records
        .sort_by(|a, b| (&a.id, a.n).cmp(&(&b.id, b.n)));
    listing.skipped.sort();
    Ok(listing)
}

/// Files to remove, records first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Record files.
    pub records: Vec<PathBuf>,
    /// Originals.
    pub messages: Vec<PathBuf>,
    /// Temporary files.
    pub temps: Vec<PathBuf>,
}

impl Removal {
    /// Whether nothing is to be removed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.messages.is_empty() && self.temps.is_empty()
    }
}

/// Everything of `id` (pure).
pub fn plan_delete(listing: &Listing, id: &str) -> Removal {
    Removal {
        records: listing.records_of(id).map(|r| r.path.clone()).collect(),
        messages: listing
            .messages
            .get(id)
            .map(|m| m.path.clone())
            .into_iter()
            .collect(),
        temps: Vec::new(),
    }
}

/// What `purge` removes (pure): records dated before `cutoff` (undated ones stay), originals
/// left without any record (those that had none already only once modified before `cutoff`),
/// and temporary files modified before `cutoff`.
pub fn plan_purge(listing: &Listing, cutoff: SystemTime) -> Removal {
    let old = |date: Option<SystemTime>| date.is_some_and(|d| d < cutoff);
    let records: Vec<&RecordFile> = listing.records.iter().filter(|r| old(r.date())).collect();
    let kept = |id: &str| {
        listing
            .records_of(id)
            .any(|r| !records.iter().any(|gone| gone.path == r.path))
    };
    let messages = listing
        .messages
        .iter()
        .filter(|(id, info)| {
            let had_records = listing.records_of(id).next().is_some();
            !kept(id) && (had_records || old(info.modified))
        })
        .map(|(_, info)| info.path.clone())
        .collect();
    Removal {
        records: records.iter().map(|r| r.path.clone()).collect(),
        messages,
        temps: listing
            .temps
            .iter()
            .filter(|t| old(t.modified))
            .map(|t| t.path.clone())
            .collect(),
    }
}

/// Removes the files of `removal`, records first; returns how many of each were removed (a
/// file already gone counts as removed).
pub fn remove(removal: &Removal) -> Result<(usize, usize, usize), DirError> {
    let gone = |paths: &[PathBuf]| -> Result<usize, DirError> {
        for path in paths {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", path)(e)),
            }
        }
        Ok(paths.len())
    };
    let records = gone(&removal.records)?;
    let messages = gone(&removal.messages)?;
    let temps = gone(&removal.temps)?;
    Ok((records, messages, temps))
}

#[cfg(test)]
#[path = "quarantine_dir_tests.rs"]
mod tests;
