//! Issue 9 item 1, with a real Dovecot, a real clamd and the proxy: items a proxy might think of
//! as "header only" — `BODY[HEADER]`, `RFC822.HEADER`, `HEADER.FIELDS`, `ENVELOPE`, `n.MIME`,
//! `n.HEADER` — carry no byte of an infected message, whether the verdict is cached or not
//! (RFC 9051 §6.4.5); POP3 `TOP n 0` is scanned too (RFC 1939 §7).

mod support;

use std::collections::HashMap;

use support::clamd::Clamd;
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::proxy::TestProxy;
use support::scanning::{
    clamd_endpoint, contains, imap_login, pop3_login, retrieve, scan_section, start_proxy, Client,
};

/// The items under test (issue 9 item 1), plus the structure items.
const ITEMS: [&str; 9] = [
    "BODY.PEEK[HEADER]",
    "RFC822.HEADER",
    "BODY.PEEK[HEADER.FIELDS (Subject From)]",
    "ENVELOPE",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[1.MIME]",
    "BODYSTRUCTURE",
    "BODY",
];

/// The distinctive text of EICAR: also caught where a server unescapes a quoted parameter.
const EICAR_TEXT: &[u8] = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE";

const FORMS: [&str; 2] = ["FETCH", "UID FETCH"];

fn eicar() -> String {
    String::from_utf8(EICAR.to_vec()).expect("ascii")
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

/// The placements of EICAR, each a message with Message-ID `<{case}-{copy}@test>`.
fn infected(case: &str, copy: &str) -> Vec<u8> {
    let id = format!("<{case}-{copy}@test>");
    let eicar = eicar();
    let head = format!("From: Mallory <mallory@example.org>\nTo: bob@example.org\nSubject: case {case}\nMessage-ID: {id}\nMIME-Version: 1.0\n");
    let multipart = |part2: &str| {
        crlf(&format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhello\n--b\n{part2}\n--b--\n"
        ))
    };
    match case {
        // A nested message with no blank line: all of it is header.
        "nested" => multipart(&format!(
            "Content-Type: message/rfc822\n\nSubject: inner\nX-Payload: {eicar}\nX-More: yes"
        )),
        // EICAR in a part's MIME header.
        "mime" => multipart(&format!(
            "Content-Type: application/octet-stream\nContent-Description: {eicar}\n\nAAAA"
        )),
        // EICAR as a filename parameter (BODYSTRUCTURE carries it).
        "filename" => multipart(&format!(
            "Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"{eicar}\"\n\nAAAA"
        )),
        // A top-level message with no header/body separator.
        "noblank" => crlf(&format!("{head}X-Payload: {eicar}\n")),
        // An ordinary infected attachment (7bit, so EICAR's bytes are in the raw message).
        _ => multipart(&format!(
            "Content-Type: application/octet-stream; name=\"eicar.com\"\nContent-Disposition: attachment; filename=\"eicar.com\"\n\n{eicar}"
        )),
    }
}

const CASES: [&str; 5] = ["nested", "mime", "filename", "noblank", "attachment"];

/// The proxy under test: IMAPS on `port(0)`, POP3S on `port(1)`.
fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "");
    start_proxy(dovecot, &scan, &["imap", "pop3"])
}

/// Message-ID → (sequence number, UID), read directly from Dovecot.
fn directory(dovecot: &Dovecot) -> HashMap<String, (u32, u32)> {
    let mut direct = support::proxy::direct_imap(dovecot);
    let (responses, status) =
        direct.imap("d", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    assert!(status.starts_with("d OK"), "{status}");
    let mut map = HashMap::new();
    for response in responses {
        let text = response.text();
        let Some(seq) = text.strip_prefix("* ").and_then(|r| r.split(' ').next()) else {
            continue;
        };
        let uid = text
            .split("UID ")
            .nth(1)
            .and_then(|r| r.split([' ', ')']).next())
            .expect("UID");
        let id = text
            .split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .expect("Message-ID");
        map.insert(
            id.to_string(),
            (seq.parse().expect("seq"), uid.parse().expect("uid")),
        );
    }
    map
}

/// Fetches `item` of the message with `id` by `form`; asserts OK and no EICAR; returns the bytes.
fn check(
    client: &mut Client,
    map: &HashMap<String, (u32, u32)>,
    id: &str,
    form: &str,
    item: &str,
    pass: &str,
) -> Vec<u8> {
    let (seq, uid) = map[id];
    let number = if form == "FETCH" { seq } else { uid };
    let (responses, status) = client.imap("f", &format!("{form} {number} ({item})"));
    let raw: Vec<u8> = responses.iter().flat_map(|r| r.raw.clone()).collect();
    let what = format!("{pass}: {id} {form} {item}");
    assert!(status.starts_with("f OK"), "{what}: {status}");
    assert!(
        !contains(&raw, EICAR) && !contains(&raw, EICAR_TEXT),
        "{what}: EICAR reached the client:\n{}",
        String::from_utf8_lossy(&raw)
    );
    raw
}

#[test]
fn header_class_items_of_infected_messages_carry_no_eicar() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    // One copy per (case, item, form), so every fetch of the first pass meets no cached verdict.
    let mut messages = Vec::new();
    for case in CASES {
        for (i, _) in ITEMS.iter().enumerate() {
            for (f, _) in FORMS.iter().enumerate() {
                messages.push(infected(case, &format!("{i}-{f}")));
            }
        }
        messages.push(infected(case, "whole"));
    }
    dovecot.seed_messages(dovecot.user(), &messages);
    let map = directory(&dovecot);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    for case in CASES {
        for (i, item) in ITEMS.iter().enumerate() {
            for (f, form) in FORMS.iter().enumerate() {
                let id = format!("{case}-{i}-{f}@test");
                let raw = check(&mut client, &map, &id, form, item, "no cached verdict");
                if *item == "BODY.PEEK[HEADER]" {
                    assert!(
                        contains(&raw, b"X-Portcullis-Verdict"),
                        "{id}: the header must be the replacement's: {}",
                        String::from_utf8_lossy(&raw)
                    );
                }
            }
        }
        // The verdict really is "blocked": the whole message is the replacement.
        let id = format!("{case}-whole@test");
        let raw = check(&mut client, &map, &id, "FETCH", "BODY.PEEK[]", "whole");
        assert!(
            contains(&raw, b"X-Portcullis-Verdict"),
            "{case}: not blocked"
        );
    }
    // Second pass, new session: every verdict is cached now.
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let (_, status) = client.imap("w", "FETCH 1:* BODY.PEEK[]");
    assert!(status.starts_with("w OK"), "{status}");
    for case in CASES {
        for (i, item) in ITEMS.iter().enumerate() {
            for (f, form) in FORMS.iter().enumerate() {
                let id = format!("{case}-{i}-{f}@test");
                check(&mut client, &map, &id, form, item, "cached verdict");
            }
        }
        let id = format!("{case}-whole@test");
        let all = ITEMS.join(" ") + " RFC822.SIZE BODY.PEEK[2.HEADER.FIELDS.NOT (X)]";
        for form in FORMS {
            check(
                &mut client,
                &map,
                &id,
                form,
                &all,
                "cached, all items at once",
            );
        }
    }
}

#[test]
fn clean_header_items_are_dovecots_and_unknown_items_are_refused() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let clean = crlf("From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: clean\nMessage-ID: <clean@test>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: message/rfc822\nContent-Description: forwarded\n\nSubject: inner\nFrom: carol@example.org\n\ninner body\n--b--\n");
    dovecot.seed_messages(dovecot.user(), &[clean]);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let mut direct = support::proxy::direct_imap(&dovecot);
    for item in ITEMS.iter().copied().chain([
        "BODY.PEEK[2.HEADER.FIELDS.NOT (Subject)]",
        "BODY.PEEK[HEADER]<0.20>",
        "FLAGS",
    ]) {
        let command = format!("FETCH 1 ({item})");
        let (proxied, status) = client.imap("f", &command);
        assert!(status.starts_with("f OK"), "{item}: {status}");
        let (expected, _) = direct.imap("f", &command);
        assert_eq!(
            proxied.iter().map(|r| r.text()).collect::<Vec<_>>(),
            expected.iter().map(|r| r.text()).collect::<Vec<_>>(),
            "{item}: clean message differs from Dovecot's"
        );
    }
    for item in ["PREVIEW", "SNIPPET", "X-UNKNOWN"] {
        let (responses, status) = client.imap("u", &format!("FETCH 1 ({item})"));
        assert!(status.starts_with("u BAD"), "{item}: {status}");
        assert!(responses.is_empty(), "{item}: {responses:?}");
    }
}

fn top0(client: &mut Client, n: usize) -> (String, Vec<u8>) {
    retrieve(client, &format!("TOP {n} 0"))
}

#[test]
fn pop3_top_0_is_scanned() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let eicar = eicar();
    let messages = vec![
        crlf(&format!(
            "From: m@example.org\nSubject: header\nX-Payload: {eicar}\n\nbody\n"
        )),
        crlf(&format!(
            "From: m@example.org\nSubject: no blank line\nX-Payload: {eicar}\n"
        )),
        crlf("From: a@example.org\nSubject: clean\n\nline 1\nline 2\n"),
        crlf("From: a@example.org\nSubject: clean, no blank line\n"),
        support::corpus::clean_messages()[0].1.clone(),
    ];
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = pop3_login(proxy.port(1), &dovecot);
    let mut direct = pop3_login(dovecot.pop3s_port, &dovecot);
    for n in 1..=2 {
        let (status, head) = top0(&mut client, n);
        assert!(status.starts_with("+OK"), "TOP {n} 0: {status}");
        assert!(!contains(&head, EICAR), "TOP {n} 0 delivered EICAR");
        assert!(
            contains(&head, b"X-Portcullis-Verdict") && head.ends_with(b"\r\n\r\n"),
            "TOP {n} 0 is not the replacement's header: {}",
            String::from_utf8_lossy(&head)
        );
    }
    for n in 3..=messages.len() {
        let (status, head) = top0(&mut client, n);
        let (direct_status, expected) = top0(&mut direct, n);
        assert!(status.starts_with("+OK") && direct_status.starts_with("+OK"));
        assert_eq!(
            String::from_utf8_lossy(&head),
            String::from_utf8_lossy(&expected),
            "TOP {n} 0 differs from Dovecot's"
        );
    }
    assert!(client.pop3("QUIT").starts_with("+OK"));
}
