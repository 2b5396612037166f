//! Quarantine management with a real Dovecot, a real clamd and the `portcullis quarantine`
//! binary: blocked messages leave private records with their Subject and From; `list`, `show`,
//! `delete` and `purge` work on them and survive garbage; `release` reaches a proxy that is
//! already running, over IMAP and POP3, within 5 seconds, for every user, and after a restart;
//! run as root it leaves files the service user owns.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::clamd::Clamd;
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::proxy::TestProxy;
use support::raw;
use support::scanning::{
    clamd_endpoint, contains, fetch, imap_login, pop3_login, retrieve, scan_section, start_proxy,
    Client,
};

/// How long a running proxy may take to honour a release.
const RELEASE_DEADLINE: Duration = Duration::from_secs(5);

/// A message clamd blocks (EICAR in the body) with an encoded Subject and From.
fn blocked_message(n: usize, subject: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: =?utf-8?q?J=C3=B6rg_B=C3=B6se?= <joerg{n}@example.org>\r\n\
         To: user@example.org\r\nSubject: {subject}\r\nMessage-ID: <fp{n}@example.org>\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain\r\n\r\nThe test file follows.\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(EICAR);
    raw.extend_from_slice(b"\r\n");
    raw
}

/// The quarantine id of a message (first 16 hex digits of its SHA-256), as the proxy names it.
fn id_of(message: &[u8]) -> String {
    portcullis::scan::quarantine::quarantine_id(&portcullis::scan::quarantine::sha256(message))
}

/// Runs `portcullis quarantine ARGS…` with `global` options first, as `olga` via sudo:
/// (exit code, stdout, stderr, raw stdout).
fn run(global: &[&str], args: &[&str]) -> (i32, String, String, Vec<u8>) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("quarantine")
        .args(global)
        .args(args)
        .env("SUDO_USER", "olga")
        .env("RUST_LOG", "info")
        .output()
        .expect("run portcullis quarantine");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.stdout,
    )
}

/// `portcullis quarantine --dir DIR ARGS…`.
fn quarantine(dir: &Path, args: &[&str]) -> (i32, String, String, Vec<u8>) {
    run(&["--dir", &dir.display().to_string()], args)
}

/// An IMAPS session's `FETCH seq (RFC822.SIZE BODY.PEEK[])`: (body, RFC822.SIZE).
fn imap_body_and_size(client: &mut Client, seq: usize) -> (Vec<u8>, usize) {
    let (raw, literals, status) = fetch(client, &format!("FETCH {seq} (RFC822.SIZE BODY.PEEK[])"));
    assert!(status.starts_with("f OK"), "{status}");
    let text = String::from_utf8_lossy(&raw);
    let size = text
        .split("RFC822.SIZE ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no RFC822.SIZE in {text}"));
    (literals[0].clone(), size)
}

/// A new POP3S session as `user`: `LIST n` (before any RETR) and `RETR n`: (listed size, body).
fn pop3_list_and_retr(port: u16, dovecot: &Dovecot, user: &str, n: usize) -> (usize, Vec<u8>) {
    let mut client = if user == dovecot.user() {
        pop3_login(port, dovecot)
    } else {
        let mut client = raw::connect_tls(port, &dovecot.ca);
        assert!(client.read_line().starts_with("+OK"));
        assert!(client.pop3(&format!("USER {user}")).starts_with("+OK"));
        assert!(client.pop3("PASS secret2").starts_with("+OK"));
        client
    };
    let listed = client.pop3(&format!("LIST {n}"));
    let size = listed
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("LIST {n}: {listed}"));
    let (status, body) = retrieve(&mut client, &format!("RETR {n}"));
    assert!(status.starts_with("+OK"), "RETR {n}: {status}");
    (size, body)
}

/// Polls `served` (a fresh session each time) until it returns true; panics after the deadline.
fn within_deadline(what: &str, mut served: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if served() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < RELEASE_DEADLINE,
            "{what}: the release was not honoured within {RELEASE_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn proxy(dovecot: &Dovecot, clamd: &Clamd, dir: &Path) -> TestProxy {
    let scan = scan_section(
        &clamd_endpoint(clamd),
        dir,
        None,
        "contact = \"helpdesk@example.org\"",
    );
    // port(0): IMAPS, port(1): POP3S.
    start_proxy(dovecot, &scan, &["imap", "pop3"])
}

#[test]
fn release_reaches_a_running_proxy_over_imap_and_pop3_and_survives_a_restart() {
    let dovecot = Dovecot::start();
    dovecot.add_user("second", "secret2");
    let clamd = Clamd::start();
    let dir = tempfile::tempdir().expect("dir");
    let released = blocked_message(1, "Quarterly report");
    let still_blocked = blocked_message(2, "Something else");
    dovecot.seed_messages(dovecot.user(), &[released.clone(), still_blocked.clone()]);
    dovecot.seed_messages("second", std::slice::from_ref(&released));
    let id = id_of(&released);
    let proxy = proxy(&dovecot, &clamd, dir.path());

    // Blocked first, for both users and over both protocols: the caches hold the notice.
    let mut imap = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let (notice, size) = imap_body_and_size(&mut imap, 1);
    assert!(notice != released && !contains(&notice, EICAR));
    assert_eq!(size, notice.len());
    let text = String::from_utf8_lossy(&notice).into_owned();
    assert!(
        text.contains(&format!(
            "to have it released, ask helpdesk@example.org\r\nquoting id {id}."
        )),
        "the notice explains how to ask for a release:\n{text}"
    );
    let (_, body) = pop3_list_and_retr(proxy.port(1), &dovecot, dovecot.user(), 1);
    assert_eq!(body, notice, "POP3 serves the same notice");
    let (listed, body) = pop3_list_and_retr(proxy.port(1), &dovecot, dovecot.user(), 1);
    assert_eq!(
        (listed, &body),
        (notice.len(), &notice),
        "LIST from the cache"
    );
    let (_, body) = pop3_list_and_retr(proxy.port(1), &dovecot, "second", 1);
    assert_eq!(body, notice, "blocked for the second user too");

    let metrics = portcullis::metrics::metrics();
    let picked_up = || {
        metrics
            .quarantine_releases
            .with_label_values(&[] as &[&str])
            .get()
    };
    let before = picked_up();
    let (code, out, err, _) = quarantine(dir.path(), &["release", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("released {id}")), "{out}");
    assert!(
        err.contains("quarantine release written") && err.contains("olga"),
        "logged with who released it: {err}"
    );
    let (_, shown, _, _) = quarantine(dir.path(), &["show", &id]);
    assert!(shown.contains("released:      yes, by olga at "), "{shown}");
    let (_, listed, _, _) = quarantine(dir.path(), &["list"]);
    assert!(listed.contains("\tyes\t"), "{listed}");

    // The running proxy (started before the release) serves the original within 5 s.
    let elapsed = within_deadline("IMAP", || {
        let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
        imap_body_and_size(&mut client, 1).0 == released
    });
    eprintln!("release honoured after {elapsed:?}");
    assert!(
        picked_up() > before,
        "portcullis_quarantine_releases_total counted it"
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    assert_eq!(
        imap_body_and_size(&mut client, 1),
        (released.clone(), released.len()),
        "IMAP BODY.PEEK[] and RFC822.SIZE are the original's"
    );
    assert_eq!(
        imap_body_and_size(&mut imap, 1),
        (released.clone(), released.len()),
        "an IMAP session opened before the release gets the original at its next FETCH"
    );
    let (body, _) = imap_body_and_size(&mut client, 2);
    assert!(
        !contains(&body, EICAR),
        "only the released content is let through"
    );
    for user in [dovecot.user(), "second"] {
        let (listed, body) = pop3_list_and_retr(proxy.port(1), &dovecot, user, 1);
        assert_eq!(listed, released.len(), "POP3 LIST 1 for {user}");
        assert!(body == released, "POP3 RETR 1 for {user} is the original");
    }
    let (_, body) = pop3_list_and_retr(proxy.port(1), &dovecot, dovecot.user(), 2);
    assert!(!contains(&body, EICAR));

    // Still released after a restart (the release is on disk).
    drop(client);
    drop(imap);
    drop(proxy);
    let proxy = self::proxy(&dovecot, &clamd, dir.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    assert_eq!(
        imap_body_and_size(&mut client, 1),
        (released.clone(), released.len())
    );
    let (listed, body) = pop3_list_and_retr(proxy.port(1), &dovecot, "second", 1);
    assert!(
        listed == released.len() && body == released,
        "POP3 after restart"
    );

    // Releasing again is not an error and keeps the first release's author.
    let (code, out, _, _) = quarantine(dir.path(), &["release", &id.to_uppercase()]);
    assert_eq!(code, 0);
    assert!(out.contains("already released (by olga"), "{out}");
}

/// Every quarantine file and what `list` shows of them.
fn assert_private(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "eml" || e == "json") {
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
        }
    }
}

#[test]
fn list_show_delete_and_purge_work_on_real_quarantine_records() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let dir = tempfile::tempdir().expect("dir");
    let messages = [
        blocked_message(1, "=?utf-8?q?Rechnung_=E2=82=AC_42?="),
        blocked_message(2, "=?utf-8?q?evil=1B]0;pwned=07_title?="),
        blocked_message(3, "Old news"),
    ];
    dovecot.seed_messages(dovecot.user(), &messages);
    let ids: Vec<String> = messages.iter().map(|m| id_of(m)).collect();
    let proxy = proxy(&dovecot, &clamd, dir.path());
    let mut imap = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    for seq in 1..=2 {
        let (body, _) = imap_body_and_size(&mut imap, seq);
        assert!(!contains(&body, EICAR));
    }
    drop(imap);
    let (_, body) = pop3_list_and_retr(proxy.port(1), &dovecot, dovecot.user(), 3);
    assert!(!contains(&body, EICAR));
    drop(proxy);
    assert_private(dir.path());

    // Garbage beside the records.
    std::fs::write(dir.path().join("notes.txt"), b"operator notes").expect("write");
    std::fs::write(dir.path().join("ffffffffffffffff.json"), b"{ broken").expect("write");
    std::fs::create_dir(dir.path().join("junk")).expect("mkdir");
    std::fs::write(dir.path().join("junk").join("x.eml"), b"x").expect("write");
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfe.eml");
    std::fs::write(dir.path().join(not_utf8), b"x").expect("write");

    let (code, out, err, raw) = quarantine(dir.path(), &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one line per record:\n{out}");
    let line = |id: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{out}"))
    };
    let first: Vec<&str> = line(&ids[0]).split('\t').collect();
    assert_eq!(first.len(), 10, "{first:?}");
    assert_eq!(first[2], dovecot.user());
    assert_eq!(first[3], "imap");
    assert_eq!(first[4], "infected");
    assert!(first[5].starts_with("Test.EICAR"), "signature: {first:?}");
    assert_eq!(first[6], messages[0].len().to_string());
    assert_eq!(first[7], "no");
    assert_eq!(first[8], "Jörg Böse <joerg1@example.org>");
    assert_eq!(first[9], "Rechnung € 42");
    assert!(
        line(&ids[1]).ends_with("\tevil\\u{1b}]0;pwned\\u{7} title"),
        "{}",
        line(&ids[1])
    );
    assert!(
        !raw.contains(&0x1b) && !raw.contains(&0x07),
        "no raw control bytes"
    );
    assert!(line(&ids[2]).contains("\tpop3\t"));
    assert!(
        err.contains("ffffffffffffffff.json") && err.contains("notes.txt"),
        "{err}"
    );

    let (code, out, _, _) = quarantine(dir.path(), &["show", &ids[0]]);
    assert_eq!(code, 0);
    assert!(out.contains("released:      no"), "{out}");
    assert!(out.contains("  subject:     Rechnung € 42"), "{out}");
    assert!(
        out.contains("  from:        Jörg Böse <joerg1@example.org>"),
        "{out}"
    );
    let (code, _, _, raw) = quarantine(dir.path(), &["show", "--raw", &ids[0]]);
    assert_eq!(code, 0);
    assert!(raw == messages[0], "show --raw writes the original");

    // Bad ids: exit 1 and a clear message; configuration problems: exit 2.
    for (args, says) in [
        (vec!["show", "not-an-id"], "not a quarantine id"),
        (vec!["release", "0123"], "not a quarantine id"),
        (
            vec!["release", "0000000000000000"],
            "no quarantined message with id 0000000000000000",
        ),
        (
            vec!["delete", "0000000000000000"],
            "no quarantined message with id",
        ),
    ] {
        let (code, _, err, _) = quarantine(dir.path(), &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, err, _) = run(&["--config", "/nonexistent/portcullis.toml"], &["list"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _, _) = quarantine(dir.path(), &["purge"]);
    assert_eq!(code, 2, "--older-than is required");

    // delete removes every file of one id.
    let (code, out, err, _) = quarantine(dir.path(), &["delete", &ids[1]]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("deleted {}: 1 record(s), 1 original(s)", ids[1])),
        "{out}"
    );
    assert!(!dir.path().join(format!("{}.eml", ids[1])).exists());
    assert!(!dir.path().join(format!("{}.json", ids[1])).exists());

    // purge goes by the record's date.
    let record = dir.path().join(format!("{}.json", ids[2]));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).expect("read")).expect("json");
    json["time"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&record, serde_json::to_vec(&json).expect("json")).expect("write");
    let (code, out, err, _) = quarantine(dir.path(), &["purge", "--older-than", "30d"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("purged 1 record(s), 1 original(s)"),
        "{out}"
    );
    assert!(!record.exists() && !dir.path().join(format!("{}.eml", ids[2])).exists());
    assert!(dir.path().join(format!("{}.eml", ids[0])).exists());
    assert!(
        dir.path().join("notes.txt").exists(),
        "foreign files are left alone"
    );
    let (_, out, _, _) = quarantine(dir.path(), &["list"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, _, _) = quarantine(dir.path(), &["purge", "--older-than", "30d"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("purged 0 record(s), 0 original(s)"),
        "{out}"
    );
}

#[test]
fn release_run_as_root_leaves_files_the_service_user_owns() {
    use portcullis::scan::quarantine::{record, sha256, Quarantine};
    use portcullis::scan::{MessageRef, Protocol, Verdict};
    use std::os::unix::fs::MetadataExt;

    // The quarantine directory belongs to the service user (here: nobody, 65534).
    let dir = tempfile::tempdir().expect("dir");
    let q = dir.path().join("quarantine");
    let original = blocked_message(9, "Owned");
    let reference = MessageRef {
        client_addr: "192.0.2.1:1".parse().expect("addr"),
        user: Some("u".into()),
        protocol: Protocol::Pop3,
        mailbox: None,
        uidvalidity: None,
        uid: None,
        msgno: Some(1),
        backend: None,
    };
    let hash = sha256(&original);
    let entry = record(
        &original,
        &hash,
        &reference,
        &Verdict::Oversize,
        "replace",
        1,
    );
    let id = Quarantine::new(&q)
        .store_blocking(&original, &entry)
        .expect("store");
    std::os::unix::fs::chown(&q, Some(65534), Some(65534)).expect("chown (tests run as root)");
    let (code, _, err, _) = quarantine(&q, &["release", &id]);
    assert_eq!(code, 0, "{err}");
    let released = q.join("released");
    let marker = released.join(hex::encode(hash));
    for path in [&released, &marker] {
        let meta = std::fs::metadata(path).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{}",
            path.display()
        );
    }
}
