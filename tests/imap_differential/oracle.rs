//! Checking the properties against what the client saw and the backend received, and reporting
//! failures (with the stream, shown as escaped text).

use std::collections::BTreeMap;

use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};

use crate::generator::Stream;
use crate::render::{Class, Rendered};
use crate::session::Outcome;
use crate::support::rawlog::imap_tag;
use crate::MARK;

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes as escaped text, one output line per received line (continuation lines indented);
/// long lines are abbreviated in the middle.
pub(crate) fn show(bytes: &[u8]) -> String {
    let lines: Vec<String> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let mut text = String::new();
            for &b in line {
                match b {
                    b'\r' => text.push_str("\\r"),
                    b'\n' => text.push_str("\\n"),
                    0x20..=0x7e => text.push(b as char),
                    _ => text.push_str(&format!("\\x{b:02x}")),
                }
            }
            if text.len() > 160 {
                format!(
                    "{}…({} chars)…{}",
                    &text[..80],
                    text.len() - 120,
                    &text[text.len() - 40..]
                )
            } else {
                text
            }
        })
        .collect();
    lines.join("\n    ")
}

fn describe(commands: &[Rendered]) -> String {
    commands
        .iter()
        .map(|c| {
            format!(
                "  [{:?}{}{}] {}",
                c.class,
                if c.login { ", login" } else { "" },
                if c.wait { ", wait" } else { "" },
                show(&c.bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Properties (b) and (c) on the client side.
pub(crate) fn check_responses(commands: &[Rendered], outcome: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(reason) = &outcome.broken {
        failures.push(format!("(c) session not usable: {reason}"));
    } else if !outcome
        .final_noop
        .as_deref()
        .is_some_and(|l| l.starts_with("zz OK"))
    {
        failures.push(format!("(c) final NOOP: {:?}", outcome.final_noop));
    }
    let mut counts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tag, line) in &outcome.tagged {
        counts.entry(tag).or_default().push(line);
    }
    for command in commands {
        let answers = counts.remove(command.tag.as_str()).unwrap_or_default();
        if outcome.broken.is_none() && answers.len() != 1 {
            failures.push(format!(
                "(b) {} got {} tagged responses: {answers:?}",
                command.tag,
                answers.len()
            ));
        }
        if command.login && !answers.iter().all(|a| a.contains(" OK")) {
            failures.push(format!("(b) login {} failed: {answers:?}", command.tag));
        }
        if command.class == Class::Rejected
            && !answers.iter().all(|a| {
                a.starts_with(&format!("{} BAD", command.tag))
                    || a.starts_with(&format!("{} NO", command.tag))
            })
        {
            failures.push(format!("(b) rejected {} answered {answers:?}", command.tag));
        }
        for data in &command.data_tags {
            if let Some(answers) = counts.remove(data.as_str()) {
                failures.push(format!("(b) smuggled {data} was answered: {answers:?}"));
            }
        }
    }
    counts.remove("zz");
    counts.remove("zq");
    for (tag, answers) in counts {
        failures.push(format!(
            "(b) unexpected tagged response(s) for {tag:?}: {answers:?}"
        ));
    }
    failures
}

/// Property (a): what the backend received after login is accounted for.
pub(crate) fn check_backend_commands(
    commands: &[Rendered],
    received: &[Vec<u8>],
    who: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut real: Vec<&Rendered> = commands.iter().filter(|c| c.class == Class::Real).collect();
    let finals = [final_command("zz NOOP"), final_command("zq LOGOUT")];
    real.extend(finals.iter());
    let mut position = 0;
    for command in received {
        let tag = imap_tag(command);
        let shown = show(command);
        match real[position..].iter().position(|c| c.tag == tag) {
            Some(offset) => {
                position += offset + 1;
                let issued = real[position - 1];
                if contains(command, MARK.as_bytes()) && !issued.mentions_mark() {
                    failures.push(format!("(a) {who} got {MARK} in {tag}: {shown}"));
                }
            }
            None => {
                let origin = if commands.iter().any(|c| c.tag == tag) {
                    "a rejected command"
                } else if commands.iter().any(|c| c.data_tags.contains(&tag)) {
                    "SMUGGLED data"
                } else if real.iter().any(|c| c.tag == tag) {
                    "a real command, out of order or repeated"
                } else {
                    "nothing the client issued as a command"
                };
                failures.push(format!("(a) {who} executed {origin}: {shown}"));
            }
        }
    }
    failures
}

fn final_command(text: &str) -> Rendered {
    Rendered {
        tag: text.split(' ').next().unwrap_or("").to_string(),
        class: Class::Real,
        chunks: vec![format!("{text}\r\n").into_bytes()],
        data_tags: Vec::new(),
        wait: true,
        login: false,
    }
}

pub(crate) fn verdict(
    failures: Vec<String>,
    commands: &[Rendered],
    extra: &str,
) -> Result<(), TestCaseError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "{}\nstream:\n{}\n{extra}",
        failures.join("\n"),
        describe(commands)
    )))
}

pub(crate) fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

pub(crate) fn report(result: Result<(), TestError<Stream>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, stream)) => {
            panic!("minimal failing stream {stream:#?}\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}
