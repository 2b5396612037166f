//! `portcullis quarantine list|show|release|delete|purge`: the operator's view of the
//! quarantine directory (`[scan] quarantine_dir` of `--config`, or `--dir`).
//!
//! Output that comes from the quarantine (record fields, which quote the blocked message) is
//! escaped with [`super::summary::escape`] before it is printed: a hostile Subject cannot drive the
//! operator's terminal. `show --raw` writes the original itself and refuses a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::quarantine::{quarantine_id, sha256};
use super::quarantine_dir::{self, DirError, Listing, RecordFile};
use super::release::{self, Marker, ReleaseError};
use super::summary::{escape, neutralize};

/// Configuration file read when neither `--config` nor `--dir` is given.
pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.toml";

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: the id is not in the quarantine, or is not an id.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit status: usage or configuration error, or the quarantine could not be read or written.
pub const EXIT_ERROR: u8 = 2;

/// Longest field printed by `list` and `show` (record fields are capped when written; this
/// bounds records edited by hand).
const MAX_FIELD: usize = 300;

/// The exit statuses, as the help shows them.
const EXIT_HELP: &str = "Exit status: 0 done; 1 no quarantined message has that id (or it is \
    not an id); 2 usage or configuration error, or the quarantine directory could not be read \
    or written.";

/// The `quarantine` subcommand.
#[derive(Debug, Args)]
#[command(after_help = EXIT_HELP)]
pub struct QuarantineArgs {
    /// Configuration file whose `[scan] quarantine_dir` is used [default:
    /// /etc/portcullis/portcullis.toml].
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The quarantine directory itself (instead of reading a configuration file).
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "config")]
    pub dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: QuarantineAction,
}

/// The actions of `portcullis quarantine`.
#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// One line per record, tab-separated: id, date, user, protocol, verdict, signature or
    /// rule, size, released (yes/no), From, Subject. Control characters are escaped.
    #[command(after_help = EXIT_HELP)]
    List,
    /// The records of one quarantined message, its hash and whether it is released.
    #[command(after_help = EXIT_HELP)]
    Show {
        /// Quarantine id (16 hex digits, as in the notice) or the full SHA-256.
        id: String,
        /// Write the original message itself (it is what was blocked: handle with care; not
        /// to a terminal).
        #[arg(long)]
        raw: bool,
    },
    /// Let the original through: its content (SHA-256) is allowed from now on, for every user
    /// it was blocked for. Running servers pick it up within 5 seconds; it stays released
    /// across restarts, and `delete`/`purge` do not revoke it.
    #[command(after_help = EXIT_HELP)]
    Release {
        /// Quarantine id (16 hex digits, as in the notice) or the full SHA-256.
        id: String,
    },
    /// Remove the original and every record of one id (a release stays in force).
    #[command(after_help = EXIT_HELP)]
    Delete {
        /// Quarantine id (16 hex digits, as in the notice) or the full SHA-256.
        id: String,
    },
    /// Remove records older than DURATION, originals left without records, and abandoned
    /// temporary files; print the counts. Releases are kept.
    #[command(after_help = EXIT_HELP)]
    Purge {
        /// Age, e.g. `30d`, `12h`, `2w` (by the record's time).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

/// Why a quarantine command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded.
    #[error("{0}")]
    Config(String),
    /// The argument is not a quarantine id.
    #[error("not a quarantine id: {0:?} (expected the 16 hex digits the notice quotes)")]
    BadId(String),
    /// Nothing with this id is in the quarantine.
    #[error("no quarantined message with id {id} in {dir}")]
    NotFound {
        /// The id.
        id: String,
        /// The quarantine directory.
        dir: String,
    },
    /// Reading or changing the directory failed.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Reading or writing a release failed.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The quarantined files contradict each other.
    #[error("{0}")]
    Damaged(String),
    /// `show --raw` with standard output on a terminal.
    #[error("refusing to write a quarantined original to a terminal: redirect the output")]
    Terminal,
    /// Standard output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadId(_) | CliError::NotFound { .. } => EXIT_NOT_FOUND,
            _ => EXIT_ERROR,
        }
    }
}

/// Runs the command with standard output and error; returns the exit status.
pub fn main(args: &QuarantineArgs) -> u8 {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = stdout.lock();
    match run(args, &mut out, terminal) {
        Ok(()) => EXIT_OK,
        Err(error) => {
            let _ = out.flush();
            eprintln!("portcullis quarantine: {error}");
            error.exit_code()
        }
    }
}

/// Runs the command, writing to `out` (`terminal`: whether `out` is one); notes for the
/// operator go to standard error.
pub fn run(args: &QuarantineArgs, out: &mut dyn Write, terminal: bool) -> Result<(), CliError> {
    let dir = quarantine_dir(args)?;
    match &args.action {
        QuarantineAction::List => list(&dir, out),
        QuarantineAction::Show { id, raw } => show(&dir, &parse_id(id)?, *raw, out, terminal),
        QuarantineAction::Release { id } => release(&dir, &parse_id(id)?, out),
        QuarantineAction::Delete { id } => delete(&dir, &parse_id(id)?, out),
        QuarantineAction::Purge { older_than } => purge(&dir, *older_than, out),
    }
}

fn quarantine_dir(args: &QuarantineArgs) -> Result<PathBuf, CliError> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    crate::config::Config::load(&path)
        .map(|config| config.scan.quarantine_dir)
        .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
}

/// A quarantine id from what the operator typed: 16 hex digits, or a full SHA-256 (either
/// case, surrounding blanks ignored).
pub fn parse_id(text: &str) -> Result<String, CliError> {
    let lower = text.trim().to_ascii_lowercase();
    let id = match lower.len() {
        64 => lower.get(..16).unwrap_or_default(),
        _ => lower.as_str(),
    };
    if quarantine_dir::is_id(id) && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_string())
    } else {
        Err(CliError::BadId(escape(text, 80)))
    }
}

fn field(text: &str) -> String {
    match text {
        "" => "-".into(),
        // Record fields are escaped when written; this catches hand-edited ones.
        text => neutralize(text, MAX_FIELD),
    }
}

fn opt(text: Option<&str>) -> String {
    field(text.unwrap_or_default())
}

fn date(time: Option<SystemTime>) -> String {
    time.map_or_else(
        || "-".into(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    )
}

/// The released ids (a release directory that cannot be read is reported and taken as none).
fn released_ids(dir: &Path) -> std::collections::HashSet<String> {
    match release::read_set(dir) {
        Ok(set) => set.iter().map(quarantine_id).collect(),
        Err(error) => {
            eprintln!("portcullis quarantine: warning: {error}");
            Default::default()
        }
    }
}

fn note_skipped(listing: &Listing) {
    for record in &listing.records {
        if let Err(problem) = &record.record {
            eprintln!(
                "portcullis quarantine: skipping {}: {}",
                record.path.display(),
                escape(problem, MAX_FIELD)
            );
        }
    }
    for path in &listing.skipped {
        eprintln!(
            "portcullis quarantine: ignoring {}: not a quarantine file",
            escape(&path.display().to_string(), MAX_FIELD)
        );
    }
}

fn list(dir: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let listing = quarantine_dir::scan(dir)?;
    let released = released_ids(dir);
    note_skipped(&listing);
    let mut rows: Vec<(Option<SystemTime>, String)> = Vec::new();
    for file in &listing.records {
        let Ok(record) = &file.record else { continue };
        let detail = record
            .signature
            .as_deref()
            .or(record.rule.as_deref())
            .unwrap_or(&record.detail);
        let columns = [
            field(&file.id),
            field(&record.time),
            opt(record.user.as_deref()),
            field(&record.protocol),
            field(&record.verdict),
            field(detail),
            record.size.to_string(),
            yes_no(released.contains(&file.id)).into(),
            opt(record.from.as_deref()),
            opt(record.subject.as_deref()),
        ];
        rows.push((file.date(), columns.join("\t")));
    }
    for (id, message) in &listing.messages {
        if listing.records_of(id).next().is_none() {
            let columns = [
                id.clone(),
                date(message.modified),
                "-".into(),
                "-".into(),
                "(no record)".into(),
                "-".into(),
                message.size.to_string(),
                yes_no(released.contains(id)).into(),
                "-".into(),
                "-".into(),
            ];
            rows.push((message.modified, columns.join("\t")));
        }
    }
    rows.sort();
    for (_, row) in rows {
        writeln!(out, "{row}")?;
    }
    Ok(())
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

/// The listing, which must hold something of `id`.
fn find(dir: &Path, id: &str) -> Result<Listing, CliError> {
    let listing = quarantine_dir::scan(dir)?;
    if listing.has(id) {
        Ok(listing)
    } else {
        Err(CliError::NotFound {
            id: id.to_string(),
            dir: dir.display().to_string(),
        })
    }
}

/// The content hash of `id`: that of its original, else the one its records name.
fn content_hash(listing: &Listing, id: &str) -> Result<[u8; 32], CliError> {
    if let Some(message) = listing.messages.get(id) {
        let bytes = std::fs::read(&message.path).map_err(|source| DirError::Io {
            op: "read",
            path: message.path.clone(),
            source,
        })?;
        let hash = sha256(&bytes);
        if quarantine_id(&hash) != id {
            return Err(CliError::Damaged(format!(
                "{}: its content does not match its id",
                message.path.display()
            )));
        }
        return Ok(hash);
    }
    listing
        .records_of(id)
        .filter_map(|r| r.record.as_ref().ok())
        .filter_map(|r| release::parse_hash(&r.sha256))
        .find(|hash| quarantine_id(hash) == id)
        .ok_or_else(|| CliError::Damaged(format!("no original and no usable record for {id}")))
}

fn show(
    dir: &Path,
    id: &str,
    raw: bool,
    out: &mut dyn Write,
    terminal: bool,
) -> Result<(), CliError> {
    let listing = find(dir, id)?;
    if raw {
        let message = listing.messages.get(id).ok_or_else(|| {
            CliError::Damaged(format!(
                "the original of {id} is missing from {}",
                dir.display()
            ))
        })?;
        if terminal {
            return Err(CliError::Terminal);
        }
        let bytes = std::fs::read(&message.path).map_err(|source| DirError::Io {
            op: "read",
            path: message.path.clone(),
            source,
        })?;
        out.write_all(&bytes)?;
        return Ok(out.flush()?);
    }
    note_skipped(&listing);
    writeln!(out, "id:            {id}")?;
    match content_hash(&listing, id) {
        Ok(hash) => {
            writeln!(out, "sha256:        {}", hex::encode(hash))?;
            let released = match release::read_marker(dir, &hash)? {
                Some(marker) => format!("yes, by {} at {}", field(&marker.by), field(&marker.time)),
                None => "no".into(),
            };
            writeln!(out, "released:      {released}")?;
        }
        Err(problem) => writeln!(out, "sha256:        ({problem})")?,
    }
    match listing.messages.get(id) {
        Some(m) => writeln!(
            out,
            "original:      {} ({} bytes)",
            m.path.display(),
            m.size
        )?,
        None => writeln!(out, "original:      (missing)")?,
    }
    for file in listing.records_of(id) {
        show_record(file, out)?;
    }
    Ok(())
}

fn show_record(file: &RecordFile, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "\nrecord:        {}", file.path.display())?;
    let Ok(r) = &file.record else {
        return Ok(());
    };
    let number = |n: Option<u32>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    let lines = [
        ("time", field(&r.time)),
        ("user", opt(r.user.as_deref())),
        ("client", field(&r.client_addr)),
        ("protocol", field(&r.protocol)),
        ("mailbox", opt(r.mailbox.as_deref())),
        ("uidvalidity", number(r.uidvalidity)),
        ("uid", number(r.uid)),
        ("msgno", number(r.msgno)),
        ("verdict", field(&r.verdict)),
        ("signature", opt(r.signature.as_deref())),
        ("rule", opt(r.rule.as_deref())),
        ("detail", field(&r.detail)),
        ("action", field(&r.action)),
        ("size", r.size.to_string()),
        ("delivered", r.delivered_size.to_string()),
        ("from", opt(r.from.as_deref())),
        ("subject", opt(r.subject.as_deref())),
    ];
    for (name, value) in lines {
        writeln!(out, "  {:<13}{value}", format!("{name}:"))?;
    }
    Ok(())
}

/// The local user releasing: `$SUDO_USER` (the person behind `sudo`), else `$USER`.
fn local_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .map_or_else(|| "unknown".into(), |user| escape(&user, 64))
}

fn release(dir: &Path, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let listing = find(dir, id)?;
    let hash = content_hash(&listing, id)?;
    let sha = hex::encode(hash);
    if let Some(marker) = release::read_marker(dir, &hash)? {
        writeln!(
            out,
            "{id} is already released (by {} at {})",
            field(&marker.by),
            field(&marker.time)
        )?;
        return Ok(());
    }
    let marker = Marker {
        id: id.to_string(),
        sha256: sha.clone(),
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        by: local_user(),
    };
    for warning in release::write_marker(dir, &hash, &marker)? {
        eprintln!("portcullis quarantine: warning: {warning}");
    }
    tracing::info!(quarantine_id = %id, sha256 = %sha, released_by = %marker.by, "quarantine release written");
    writeln!(
        out,
        "released {id} (sha256 {sha}): running servers serve the original within 5 seconds, \
         to every user it was blocked for"
    )?;
    Ok(())
}

fn delete(dir: &Path, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let listing = find(dir, id)?;
    let removal = quarantine_dir::plan_delete(&listing, id);
    let (records, messages, _) = quarantine_dir::remove(&removal)?;
    tracing::info!(quarantine_id = %id, records, originals = messages, by = %local_user(), "quarantine entry deleted");
    writeln!(
        out,
        "deleted {id}: {records} record(s), {messages} original(s)"
    )?;
    if released_ids(dir).contains(id) {
        writeln!(out, "{id} stays released")?;
    }
    Ok(())
}

fn purge(dir: &Path, older_than: Duration, out: &mut dyn Write) -> Result<(), CliError> {
    let listing = quarantine_dir::scan(dir)?;
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let removal = quarantine_dir::plan_purge(&listing, cutoff);
    let (records, messages, temps) = quarantine_dir::remove(&removal)?;
    let kept = listing.records.len() - records;
    let age = humantime::format_duration(older_than);
    tracing::info!(records, originals = messages, temporary = temps, kept, older_than = %age, "quarantine purged");
    writeln!(
        out,
        "purged {records} record(s), {messages} original(s) and {temps} temporary file(s) \
         older than {age}; {kept} record(s) kept"
    )?;
    Ok(())
}
