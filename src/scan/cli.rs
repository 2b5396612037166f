//! `portcullis scan PATH…`: scans .eml files, mbox files and Maildir folders and prints one line
//! per message: `path[#n]\t<verdict>\t<signature or rule>`.
//!
//! Exit code: 0 when every message is clean, 1 when something was found (infected or a rule
//! matched), 2 when anything could not be read or scanned (errors, oversize). mbox files are split
//! on `From ` lines and `>From ` quoting is undone (mboxrd, RFC 4155).
//!
//! A [`Summary`] (messages, found, errors, time) ends the run; on a terminal a progress bar
//! (stderr) shows runs of [`PROGRESS_MIN`] messages or more.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::verdict::{verdict_label, ScanError, Verdict};
use super::{ScanConfig, Scanner};

/// Largest file read by the CLI.
const MAX_FILE: u64 = 1 << 30;

/// Runs with at least this many messages get a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN: usize = 100;

/// What a run of `portcullis scan` saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages looked at (including those that could not be read).
    pub messages: usize,
    /// Messages found infected or matching a rule.
    pub found: usize,
    /// Messages that could not be read or scanned (errors, oversize).
    pub errors: usize,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Summary {
    /// 2 if anything could not be scanned, else 1 if something was found, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.errors > 0 {
            2
        } else if self.found > 0 {
            1
        } else {
            0
        }
    }

    fn count(&mut self, code: i32) {
        self.messages += 1;
        match code {
            0 => {}
            1 => self.found += 1,
            _ => self.errors += 1,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scanned {} message(s): {} found, {} error(s) in {:.1}s",
            self.messages,
            self.found,
            self.errors,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A progress bar on stderr when `wanted`, stderr is a terminal and there are enough messages.
fn progress_bar(wanted: bool, total: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !wanted || total < PROGRESS_MIN || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} messages, {per_sec}, ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// One message found under a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Label printed in the first column.
    pub label: String,
    /// The message bytes, or why they could not be read.
    pub content: Result<Vec<u8>, String>,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE {
        return Err("file larger than 1GiB".into());
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Splits an mbox into messages, undoing `>From ` quoting.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            messages.extend(current.take().map(trim_separator));
            current = Some(Vec::new());
            continue;
        }
        let body = current.get_or_insert_with(Vec::new);
        let quoted = line
            .iter()
            .position(|&b| b != b'>')
            .is_some_and(|n| n > 0 && line.get(n..).is_some_and(|rest| rest.starts_with(b"From ")));
        body.extend_from_slice(match quoted {
            true => line.get(1..).unwrap_or(line),
            false => line,
        });
    }
    messages.extend(current.map(trim_separator));
    messages
}

/// Removes the blank line that separates a message from the next `From ` line.
fn trim_separator(mut message: Vec<u8>) -> Vec<u8> {
    if message.ends_with(b"\r\n\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n\n") {
        message.truncate(message.len() - 1);
    }
    message
}

fn maildir_items(dir: &Path) -> Vec<Item> {
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|file| Item {
            label: file.display().to_string(),
            content: read_limited(&file),
        })
        .collect()
}

/// Every message under `path`.
pub fn collect(path: &Path) -> Vec<Item> {
    let label = path.display().to_string();
    if path.is_dir() {
        if path.join("cur").is_dir() || path.join("new").is_dir() {
            return maildir_items(path);
        }
        let content = Err("directory is not a Maildir (no cur/ or new/)".to_string());
        return vec![Item { label, content }];
    }
    match read_limited(path) {
        Ok(data) if data.starts_with(b"From ") => split_mbox(&data)
            .into_iter()
            .enumerate()
            .map(|(n, message)| Item {
                label: format!("{label}#{}", n + 1),
                content: Ok(message),
            })
            .collect(),
        content => vec![Item { label, content }],
    }
}

fn exit_code(verdict: &Verdict) -> i32 {
    match verdict {
        Verdict::Clean => 0,
        Verdict::Infected { .. } | Verdict::Rule { .. } => 1,
        Verdict::Error { .. } | Verdict::Oversize => 2,
    }
}

/// Runs `portcullis scan PATH…`, writing one line per message to `out`; returns the exit code.
pub async fn run_scan_command(
    cfg: &ScanConfig,
    paths: &[PathBuf],
    out: &mut impl Write,
) -> Result<i32, ScanError> {
    Ok(run_scan(cfg, paths, out, false).await?.exit_code())
}

/// Scans every message under `paths`, writing one line per message to `out`, with a progress
/// bar on stderr if `progress` (and stderr is a terminal, and the run is large).
pub async fn run_scan(
    cfg: &ScanConfig,
    paths: &[PathBuf],
    out: &mut impl Write,
    progress: bool,
) -> Result<Summary, ScanError> {
    let started = Instant::now();
    let scanner = Scanner::new(cfg).await?;
    let mut summary = Summary::default();
    let write_err = |e: std::io::Error| ScanError::Internal(format!("writing output: {e}"));
    let items: Vec<Item> = paths.iter().flat_map(|path| collect(path)).collect();
    let bar = progress_bar(progress, items.len());
    for item in items {
        let (code, line) = match item.content {
            Ok(message) => {
                let verdict = scanner.verdict(bytes::Bytes::from(message)).await;
                let line = format!(
                    "{}\t{}\t{}",
                    item.label,
                    verdict_label(&verdict),
                    verdict.detail()
                );
                (exit_code(&verdict), line)
            }
            Err(problem) => (2, format!("{}\terror\t{problem}", item.label)),
        };
        summary.count(code);
        bar.suspend(|| writeln!(out, "{}", line.replace(['\r', '\n'], " ")))
            .map_err(write_err)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::engine::EICAR;

    fn config(dir: &Path) -> ScanConfig {
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        ScanConfig {
            rules_dir: Some(rules),
            quarantine_dir: dir.join("q"),
            ..ScanConfig::default()
        }
    }

    #[test]
    fn mbox_split_and_unescape() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\n>>From there\n\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Subject: one\n\nFrom here\n>From there\n");
        assert_eq!(parts[1], b"Subject: two\n\nbody\n");
    }

    #[tokio::test]
    async fn scans_eml_mbox_and_maildir() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let eml = dir.path().join("clean.eml");
        std::fs::write(&eml, b"Subject: hi\r\n\r\nhello\r\n").unwrap();
        let mut mbox = b"From x Mon Jan  1 00:00:00 2024\nSubject: a\n\nclean\n\nFrom y Mon Jan  1 00:00:00 2024\nSubject: b\n\n".to_vec();
        mbox.extend_from_slice(EICAR);
        mbox.push(b'\n');
        let mbox_path = dir.path().join("box.mbox");
        std::fs::write(&mbox_path, mbox).unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        std::fs::write(maildir.join("cur/1.host:2,S"), b"Subject: c\r\n\r\nok\r\n").unwrap();
        std::fs::write(maildir.join("new/2.host"), b"Subject: d\r\n\r\nok\r\n").unwrap();

        let mut out = Vec::new();
        let code = run_scan_command(&cfg, std::slice::from_ref(&eml), &mut out)
            .await
            .unwrap();
        assert_eq!(code, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\tclean\t\n", eml.display())
        );

        let mut out = Vec::new();
        let code = run_scan_command(&cfg, &[mbox_path.clone(), maildir.clone()], &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, 1, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], format!("{}#1\tclean\t", mbox_path.display()));
        assert_eq!(
            lines[1],
            format!("{}#2\tinfected\tEicar-Test-Signature", mbox_path.display())
        );
        assert!(
            lines[2].ends_with("cur/1.host:2,S\tclean\t")
                && lines[3].ends_with("new/2.host\tclean\t")
        );

        let mut out = Vec::new();
        let missing = dir.path().join("missing.eml");
        assert_eq!(
            run_scan_command(&cfg, &[eml, missing], &mut out)
                .await
                .unwrap(),
            2
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("missing.eml\terror\t"));

        let mut out = Vec::new();
        let summary = run_scan(&cfg, &[mbox_path, maildir], &mut out, true)
            .await
            .unwrap();
        assert_eq!((summary.messages, summary.found, summary.errors), (4, 1, 0));
        assert!(summary
            .to_string()
            .starts_with("scanned 4 message(s): 1 found, 0 error(s) in "));
    }
}
