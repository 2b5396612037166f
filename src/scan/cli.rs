//! `portcullis scan PATH…`: scans .eml files, mbox files and Maildir folders and prints one line
//! per message: `path[#n]\t<verdict>\t<signature or rule>`.
//!
//! Exit code: 0 when every message is clean, 1 when something was found (infected or a rule
//! matched), 2 when anything could not be read or scanned (errors, oversize). mbox files are split
//! on `From ` lines and `>From ` quoting is undone (mboxrd, RFC 4155).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::verdict::{verdict_label, ScanError, Verdict};
use super::{ScanConfig, Scanner};

/// Largest file read by the CLI.
const MAX_FILE: u64 = 1 << 30;

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
    let scanner = Scanner::new(cfg).await?;
    let mut code = 0;
    let write_err = |e: std::io::Error| ScanError::Internal(format!("writing output: {e}"));
    for path in paths {
        for item in collect(path) {
            let line = match &item.content {
                Ok(message) => {
                    let verdict = scanner.verdict(message).await;
                    code = code.max(exit_code(&verdict));
                    format!(
                        "{}\t{}\t{}",
                        item.label,
                        verdict_label(&verdict),
                        verdict.detail()
                    )
                }
                Err(problem) => {
                    code = 2;
                    format!("{}\terror\t{problem}", item.label)
                }
            };
            writeln!(out, "{}", line.replace(['\r', '\n'], " ")).map_err(write_err)?;
        }
    }
    Ok(code)
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
    }
}
