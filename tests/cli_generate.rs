//! `portcullis generate`: the manual page renders with `man -l` (or groff) without warnings and
//! documents every subcommand; the bash/zsh/fish completions name the subcommands (and pass the
//! shell's syntax check where that shell is installed). `generate cert` is in
//! tests/cli_generate_cert.rs.

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SUBCOMMANDS: [&str; 4] = ["serve", "check-config", "scan", "generate"];

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .expect("run portcullis")
}

fn stdout_of(args: &[&str]) -> String {
    let output = portcullis(args);
    assert!(
        output.status.success(),
        "portcullis {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Renders a roff page to text: `man -l` where man-db is installed, else `groff -man`. Fails
/// on any warning. `None` when neither tool exists.
fn render_man(page: &Path) -> Option<String> {
    let page = page.to_str().expect("UTF-8 path");
    let attempts: [(&str, Vec<&str>); 2] = [
        ("man", vec!["--warnings=all", "-l", page]),
        ("groff", vec!["-man", "-Tutf8", "-ww", "-z", page]),
    ];
    for (program, args) in attempts {
        let output = Command::new(program)
            .args(&args)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot run {program}: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "`{program} {args:?}` failed or warned:\n{stderr}"
        );
        if program == "groff" {
            // -z only checks; there is no text to return.
            return Some(String::new());
        }
        return Some(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    None
}

#[test]
fn man_page_renders_and_documents_every_subcommand() {
    let page = stdout_of(&["generate", "man"]);
    // The roff source itself: headings and the subcommand list, whatever renders it.
    for heading in [".TH portcullis 1", ".SH NAME", ".SH SYNOPSIS", ".SH FILES"] {
        assert!(page.contains(heading), "no {heading} in the page");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.1");
    std::fs::write(&file, &page).unwrap();
    match render_man(&file) {
        Some(text) if !text.is_empty() => {
            for expected in [
                "NAME",
                "SYNOPSIS",
                "SUBCOMMANDS",
                "FILES",
                "SIGNALS",
                "SIGHUP",
            ] {
                assert!(
                    text.contains(expected),
                    "rendered page lacks {expected}:\n{text}"
                );
            }
            for sub in SUBCOMMANDS {
                let reference = format!("portcullis-{sub}(1)");
                assert!(text.contains(&reference), "no {reference}:\n{text}");
            }
        }
        Some(_) => {}
        None => eprintln!("neither man nor groff is installed: checked the roff source only"),
    }
}

#[test]
fn man_out_dir_writes_a_renderable_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    stdout_of(&["generate", "man", "--out-dir", out.to_str().unwrap()]);
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|s| format!("portcullis-{s}.1"))
        .chain(
            ["man", "completions", "cert"]
                .iter()
                .map(|s| format!("portcullis-generate-{s}.1")),
        )
        .collect();
    expected.push("portcullis.1".into());
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, expected);
    for name in &found {
        if let Some(text) = render_man(&out.join(name)) {
            assert!(
                text.is_empty() || text.contains("SYNOPSIS"),
                "{name}:\n{text}"
            );
        }
    }
}

/// Runs `shell -n` (syntax check only) on a script where that shell is installed.
fn syntax_check(shell: &str, script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("completion");
    std::fs::write(&path, script).unwrap();
    let flag = if shell == "fish" {
        "--no-execute"
    } else {
        "-n"
    };
    match Command::new(shell).arg(flag).arg(&path).output() {
        Ok(output) => assert!(
            output.status.success(),
            "{shell} {flag} rejects the completion script: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("{shell} is not installed: completion syntax not checked")
        }
        Err(e) => panic!("cannot run {shell}: {e}"),
    }
}

#[test]
fn completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["generate", "completions", shell]);
        assert!(script.len() > 500, "{shell}: {script}");
        for word in SUBCOMMANDS.iter().chain(&["completions", "cert", "config"]) {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        syntax_check(shell, &script);
    }
    let unknown = portcullis(&["generate", "completions", "tcsh"]);
    assert!(!unknown.status.success());
}
