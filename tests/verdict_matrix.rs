//! Issue 9, with a real Dovecot, a real clamd and the proxy: every placement of EICAR × every
//! FETCH item Dovecot answers × sequence and UID forms (cold, then cached), and POP3 `RETR`,
//! `TOP n 0`, `TOP n m`: no byte of the infected original reaches the client; the served
//! message is the same by every form, connection and protocol, and is itself clean; a client
//! that first asks for sizes and structure and then for parts gets a coherent message.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::clamd::Clamd;
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::proxy::{direct_imap, TestProxy};
use support::scanning::{
    clamd_endpoint, contains, imap_login, pop3_login, retrieve, scan_section, start_proxy, Client,
};

/// Every FETCH item Dovecot answers that carries message content, sizes or structure
/// (RFC 9051 §6.4.5, RFC 3516 for BINARY). `PREVIEW` is refused by the proxy (tested in
/// `verdict_items.rs`).
const ITEMS: [&str; 22] = [
    "BODY.PEEK[]",
    "BODY.PEEK[]<0.64>",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[HEADER.FIELDS (Subject Cc References From)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (Date)]",
    "BODY.PEEK[1]",
    "BODY.PEEK[2]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.TEXT]",
    "BINARY.PEEK[1]",
    "BINARY.PEEK[2]",
    "BINARY.SIZE[2]",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
    "RFC822.SIZE",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
];

const FORMS: [&str; 2] = ["FETCH", "UID FETCH"];

/// Where EICAR sits in the message.
const PLACEMENTS: [&str; 12] = [
    "text",
    "base64",
    "quoted-printable",
    "html",
    "alternative",
    "nested",
    "nested-no-blank-line",
    "subject",
    "cc",
    "references",
    "from",
    "part-header",
];

fn eicar() -> &'static str {
    std::str::from_utf8(EICAR).expect("ascii")
}

fn eicar_base64() -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, EICAR)
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

/// The message for `placement`, copy `copy` (distinct Message-IDs, so distinct verdicts).
fn infected(placement: &str, copy: &str) -> Vec<u8> {
    let e = eicar();
    let (mut subject, mut cc, mut refs, mut from) = (
        format!("case {placement}"),
        "carol@example.org".to_string(),
        "<a@example.org>".to_string(),
        "Mallory <mallory@example.org>".to_string(),
    );
    match placement {
        "subject" => subject = e.to_string(),
        "cc" => cc = format!("{e} <c@example.org>"),
        "references" => refs = format!("<a@example.org> <{e}>"),
        "from" => from = format!("{e} <evil@example.org>"),
        _ => {}
    }
    let head = format!(
        "From: {from}\nTo: bob@example.org\nCc: {cc}\nReferences: {refs}\nSubject: {subject}\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\nMessage-ID: <{placement}-{copy}@test>\nMIME-Version: 1.0\n"
    );
    let b64 = eicar_base64();
    let part2 = match placement {
        "text" => format!("Content-Type: text/plain\n\nsee {e} here"),
        "base64" => format!(
            "Content-Type: application/octet-stream; name=\"x.com\"\nContent-Transfer-Encoding: base64\n\n{b64}"
        ),
        "quoted-printable" => format!(
            "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n{}",
            e.replace('=', "=3D")
        ),
        "html" => format!("Content-Type: text/html\n\n<html><body><p>{e}</p></body></html>"),
        "alternative" => format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\nContent-Type: text/plain\n\n{e}\n--alt\nContent-Type: text/html\n\n<p>{e}</p>\n--alt--"
        ),
        "nested" => format!(
            "Content-Type: message/rfc822\n\nSubject: inner\nFrom: x@example.org\n\n{e}"
        ),
        "nested-no-blank-line" => format!(
            "Content-Type: message/rfc822\n\nSubject: inner\nX-Payload: {e}"
        ),
        "part-header" => format!(
            "Content-Type: application/octet-stream\nContent-Description: {e}\n\nAAAA"
        ),
        _ => "Content-Type: text/plain\n\nnothing to see".to_string(),
    };
    crlf(&format!(
        "{head}Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhello\n--b\n{part2}\n--b--\n"
    ))
}

/// The proxy under test: IMAPS on `port(0)`, POP3S on `port(1)`.
fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "");
    start_proxy(dovecot, &scan, &["imap", "pop3"])
}

/// No byte of EICAR in `bytes`: not raw, not base64-encoded, not in any part or header value
/// mail-parser decodes (for whole messages).
fn assert_no_eicar(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!contains(bytes, EICAR), "{what}: raw EICAR in {text}");
    assert!(
        !contains(bytes, b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"),
        "{what}: EICAR text in {text}"
    );
    assert!(
        !contains(bytes, &eicar_base64().as_bytes()[..40]),
        "{what}: base64 EICAR in {text}"
    );
    let Some(parsed) = mail_parser::MessageParser::default().parse(bytes) else {
        return;
    };
    for part in &parsed.parts {
        assert!(!contains(part.contents(), EICAR), "{what}: decoded part");
    }
}

/// clamd's verdict on `bytes` (INSTREAM): `true` when clean.
fn clamd_clean(clamd: &Clamd, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(clamd.host_port()).expect("connect clamd");
    stream.write_all(b"zINSTREAM\0").expect("write");
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .expect("write");
    stream.write_all(bytes).expect("write");
    stream.write_all(&0u32.to_be_bytes()).expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read clamd");
    assert!(
        reply.contains("OK") || reply.contains("FOUND"),
        "clamd: {reply}"
    );
    reply.trim_end_matches('\0').ends_with(": OK")
}

/// Sequence number and UID of every message, in order (direct from Dovecot).
fn numbers(dovecot: &Dovecot) -> Vec<(u32, u32)> {
    let mut direct = direct_imap(dovecot);
    let (responses, status) = direct.imap("d", "FETCH 1:* (UID)");
    assert!(status.starts_with("d OK"), "{status}");
    responses
        .iter()
        .filter_map(|r| {
            let text = r.text();
            let seq = text.strip_prefix("* ")?.split(' ').next()?.parse().ok()?;
            let uid = text.split("UID ").nth(1)?.split(')').next()?.parse().ok()?;
            Some((seq, uid))
        })
        .collect()
}

/// Fetches `items` of message (`seq`, `uid`) by `form`: no EICAR, never `[UNAVAILABLE]`.
fn fetch_checked(client: &mut Client, (seq, uid): (u32, u32), form: &str, items: &str) -> Vec<u8> {
    let number = if form == "FETCH" { seq } else { uid };
    let (responses, status) = client.imap("f", &format!("{form} {number} ({items})"));
    let raw: Vec<u8> = responses.iter().flat_map(|r| r.raw.clone()).collect();
    let what = format!("{form} {number} ({items})");
    assert!(
        !status.contains("BAD") && !status.contains("UNAVAILABLE"),
        "{what}: {status}"
    );
    assert_no_eicar(&raw, &what);
    raw
}

/// The literal of the first response to `FETCH n (item)` (or an empty vector for `NIL`).
fn literal(client: &mut Client, command: &str) -> Vec<u8> {
    let (responses, status) = client.imap("l", command);
    assert!(status.starts_with("l OK"), "{command}: {status}");
    responses
        .iter()
        .find_map(|r| r.literals.first().cloned())
        .unwrap_or_default()
}

#[test]
fn no_item_of_any_placement_carries_the_infected_original() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    // One copy per (placement, item, form): the first pass never meets a cached verdict.
    let mut messages = Vec::new();
    for placement in PLACEMENTS {
        for (i, _) in ITEMS.iter().enumerate() {
            for (f, _) in FORMS.iter().enumerate() {
                messages.push(infected(placement, &format!("{i}-{f}")));
            }
        }
    }
    dovecot.seed_messages(dovecot.user(), &messages);
    let numbers = numbers(&dovecot);
    assert_eq!(numbers.len(), messages.len());
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let per_placement = ITEMS.len() * FORMS.len();
    for (index, message) in numbers.iter().enumerate() {
        let item = ITEMS[(index % per_placement) / FORMS.len()];
        let form = FORMS[index % FORMS.len()];
        fetch_checked(&mut client, *message, form, item);
    }
    // Every verdict is cached now: all items at once, both forms, a new connection.
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let all = ITEMS.join(" ");
    for (index, message) in numbers.iter().enumerate().step_by(per_placement / 2) {
        fetch_checked(&mut client, *message, FORMS[index % 2], &all);
    }
    let quarantined = support::scanning::quarantined(quarantine.path());
    assert_eq!(quarantined.len(), messages.len(), "every original is kept");
}

#[test]
fn the_served_message_is_the_same_everywhere_and_clean() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages: Vec<_> = PLACEMENTS.iter().map(|p| infected(p, "whole")).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let numbers = numbers(&dovecot);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    // POP3 first this time: the verdicts come from RETR, then IMAP must agree.
    let mut pop3 = pop3_login(proxy.port(1), &dovecot);
    let mut first = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let mut second = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    for (index, placement) in PLACEMENTS.iter().enumerate() {
        let n = index + 1;
        let (seq, uid) = numbers[index];
        let (status, retr) = retrieve(&mut pop3, &format!("RETR {n}"));
        assert!(status.starts_with("+OK"), "{placement}: {status}");
        assert_no_eicar(&retr, placement);
        assert!(
            contains(&retr, b"X-Portcullis-Verdict"),
            "{placement}: not blocked"
        );
        assert!(
            clamd_clean(&clamd, &retr),
            "{placement}: the notice is not clean"
        );
        for top in [format!("TOP {n} 0"), format!("TOP {n} 5")] {
            let (status, head) = retrieve(&mut pop3, &top);
            assert!(status.starts_with("+OK"), "{placement} {top}: {status}");
            assert_no_eicar(&head, &top);
            assert!(
                retr.starts_with(&head),
                "{placement} {top}: not the served message"
            );
        }
        let by_seq = literal(&mut first, &format!("FETCH {seq} (BODY.PEEK[])"));
        let by_uid = literal(&mut second, &format!("UID FETCH {uid} (BODY.PEEK[])"));
        let rfc822 = literal(&mut second, &format!("FETCH {seq} (RFC822)"));
        assert_eq!(by_seq, retr, "{placement}: IMAP and POP3 differ");
        assert_eq!(by_uid, retr, "{placement}: UID FETCH differs");
        assert_eq!(rfc822, retr, "{placement}: RFC822 differs");
    }
    assert!(pop3.pop3("QUIT").starts_with("+OK"));
}

/// A desktop client's sync: sizes and structure first, then parts by section. For a blocked
/// message what it learns first must describe what it then gets — exactly as Dovecot describes
/// the served message when it stores it.
#[test]
fn structure_sizes_and_parts_of_a_blocked_message_agree() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = vec![infected("base64", "sync"), infected("nested", "sync")];
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let (responses, status) = client.imap("s", "FETCH 1:* (UID RFC822.SIZE FLAGS BODYSTRUCTURE)");
    assert!(status.starts_with("s OK"), "{status}");
    assert_eq!(responses.len(), 2);
    let mut direct = direct_imap(&dovecot);
    let (_, status) = direct.imap("c", "CREATE Served");
    assert!(status.starts_with("c OK"), "{status}");
    for (index, response) in responses.iter().enumerate() {
        let seq = index + 1;
        let synced = response.text();
        assert_no_eicar(&response.raw, "sync");
        let served = literal(&mut client, &format!("FETCH {seq} (BODY.PEEK[])"));
        assert!(contains(&served, b"X-Portcullis-Verdict"), "not blocked");
        assert!(
            synced.contains(&format!("RFC822.SIZE {} ", served.len())),
            "size differs from the served message ({}): {synced}",
            served.len()
        );
        // Dovecot's own view of the served message.
        direct.send_line(&format!("a APPEND Served {{{}}}", served.len()));
        assert!(direct.read_line().starts_with('+'));
        direct.send_raw(&served);
        direct.send_raw(b"\r\n");
        let appended = std::iter::repeat_with(|| direct.read_line())
            .find(|line| !line.starts_with('*'))
            .unwrap_or_default();
        assert!(appended.starts_with("a OK"), "{appended}");
        let (_, status) = direct.imap("x", "EXAMINE Served");
        assert!(status.starts_with("x OK"), "{status}");
        let (view, _) = direct.imap("v", &format!("FETCH {seq} (BODYSTRUCTURE)"));
        let structure = |text: &str| text.split("BODYSTRUCTURE ").nth(1).map(str::to_string);
        assert_eq!(
            structure(&synced),
            structure(&view[0].text()),
            "BODYSTRUCTURE differs from Dovecot's for the served message"
        );
        // Every part the structure announces is there, and is the served message's part.
        for part in ["1", "2", "1.MIME", "2.MIME"] {
            let proxied = literal(&mut client, &format!("FETCH {seq} (BODY.PEEK[{part}])"));
            let (dovecot_view, _) = direct.imap("p", &format!("FETCH {seq} (BODY.PEEK[{part}])"));
            let expected = dovecot_view[0]
                .literals
                .first()
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&proxied),
                String::from_utf8_lossy(&expected),
                "BODY[{part}] differs from Dovecot's for the served message"
            );
        }
    }
}
