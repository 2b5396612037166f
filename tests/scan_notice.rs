//! The replacement notice of a blocked message is safe by construction (issue 9 item 3), checked
//! end to end with a real clamd, a real Dovecot and the proxy: messages with EICAR in Subject,
//! Cc, References, From, a folded Subject and an encoded-word Subject are blocked and quarantined,
//! and no served byte of `BODY[]`, `BODY[TEXT]`, `RFC822` or POP3 `RETR` carries EICAR — raw or
//! after decoding — while two fetches give identical bytes.
//!
//! Header-only items (`BODY[HEADER]`, `ENVELOPE`, `HEADER.FIELDS`) are checked too (see
//! `header_items_of_blocked_messages_carry_no_eicar`): they wait for the verdict and come from the
//! notice.

mod support;

use std::path::Path;

use support::clamd::Clamd;
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::proxy::TestProxy;
use support::scanning::{
    clamd_endpoint, contains, fetch, imap_login, pop3_login, quarantined, scan_section, start_proxy,
};

fn eicar() -> &'static str {
    std::str::from_utf8(EICAR).expect("ascii")
}

/// (name, message): EICAR in one header each; a clean body unless noted.
fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let e = eicar();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, EICAR);
    let cases: Vec<(&'static str, String, &str)> = vec![
        ("subject", format!("Subject: {e}\r\n"), "hello\r\n"),
        (
            "cc",
            format!("Subject: cc\r\nCc: {e} <c@example.org>\r\n"),
            "hello\r\n",
        ),
        (
            "references",
            format!("Subject: refs\r\nReferences: <a@example.org> <{e}>\r\n"),
            "hello\r\n",
        ),
        ("from", "Subject: from\r\n".to_string(), "hello\r\n"),
        (
            "folded",
            format!("Subject: folded\r\n {e}\r\n"),
            "hello\r\n",
        ),
        (
            "encoded-word",
            format!("Subject: =?us-ascii?b?{b64}?=\r\n"),
            // the encoded header alone may not be flagged by clamd: block by the body too
            e,
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(index, (name, headers, body))| {
            let from = if name == "from" {
                format!("From: {e} <evil@example.org>\r\n")
            } else {
                "From: Alice <alice@example.org>\r\n".to_string()
            };
            let message = format!(
                "Date: Mon, 2 Mar 2026 10:00:0{index} +0000\r\n{from}To: bob@example.org\r\n\
                 Message-ID: <notice-{index}@example.org>\r\n{headers}\r\n{body}\r\n"
            );
            (name, message.into_bytes())
        })
        .collect()
}

/// The proxy under test: IMAPS on `port(0)`, POP3S on `port(1)`.
fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &Path) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "");
    start_proxy(dovecot, &scan, &["imap", "pop3"])
}

/// No EICAR in `bytes` raw, nor in any part or header value mail-parser decodes from it.
fn assert_clean(bytes: &[u8], what: &str) {
    assert!(!contains(bytes, EICAR), "{what}: raw EICAR");
    let Some(parsed) = mail_parser::MessageParser::default().parse(bytes) else {
        return;
    };
    for part in &parsed.parts {
        assert!(!contains(part.contents(), EICAR), "{what}: decoded part");
    }
    for header in parsed.headers() {
        let value = format!("{:?}", header.value());
        assert!(
            !value.contains(eicar()),
            "{what}: decoded {}",
            header.name()
        );
    }
}

/// The items served from the replacement after the verdict.
const BODY_FORMS: [&str; 4] = [
    "BODY.PEEK[]",
    "BODY.PEEK[TEXT]",
    "RFC822",
    "BODY.PEEK[]<0.200>",
];

#[test]
fn blocked_messages_serve_a_notice_without_eicar_by_imap_and_pop3() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = hostile();
    for (name, message) in &messages {
        if *name != "encoded-word" {
            assert!(
                clamd.scan_raw(message).contains("FOUND"),
                "{name}: clamd must flag the original"
            );
        }
    }
    let bodies: Vec<Vec<u8>> = messages.iter().map(|(_, m)| m.clone()).collect();
    dovecot.seed_messages(dovecot.user(), &bodies);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut imap = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let mut notices = Vec::new();
    for (index, (name, original)) in messages.iter().enumerate() {
        let seq = index + 1;
        let (_, first, status) = fetch(&mut imap, &format!("FETCH {seq} BODY.PEEK[]"));
        assert!(status.starts_with("f OK"), "{name}: {status}");
        let notice = first.first().cloned().expect("a body");
        assert_ne!(&notice, original, "{name}: original served");
        let text = String::from_utf8_lossy(&notice).to_string();
        assert!(
            text.contains("X-Portcullis-Quarantine-Id"),
            "{name}: {text}"
        );
        assert_clean(&notice, name);
        assert_eq!(
            clamd.scan_raw(&notice),
            "stream: OK",
            "{name}: notice not clean"
        );
        assert!(
            text.contains("To: bob@example.org\r\n"),
            "{name}: clean header lost"
        );
        for form in BODY_FORMS {
            let (raw, literals, status) = fetch(&mut imap, &format!("FETCH {seq} {form}"));
            assert!(status.starts_with("f OK"), "{name} {form}: {status}");
            assert!(!contains(&raw, EICAR), "{name} {form}: EICAR served");
            assert_eq!(clamd.scan_raw(&raw), "stream: OK", "{name} {form}");
            if form == "BODY.PEEK[TEXT]" {
                assert!(
                    notice.ends_with(&literals[0]),
                    "{name}: TEXT is not the notice's"
                );
            }
        }
        let (_, again, _) = fetch(&mut imap, &format!("FETCH {seq} BODY.PEEK[]"));
        assert_eq!(again[0], notice, "{name}: two fetches differ");
        assert!(
            quarantined(quarantine.path()).contains(original),
            "{name}: original not quarantined"
        );
        notices.push(notice);
    }
    // A second session (cached verdicts) and POP3 serve the very same bytes.
    let mut second = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let (_, all, status) = fetch(&mut second, &format!("FETCH 1:{} RFC822", messages.len()));
    assert!(status.starts_with("f OK"), "{status}");
    assert_eq!(all, notices, "RFC822 differs from BODY[]");
    let mut pop3 = pop3_login(proxy.port(1), &dovecot);
    for round in 0..2 {
        for (index, (name, _)) in messages.iter().enumerate() {
            let status = pop3.pop3(&format!("RETR {}", index + 1));
            assert!(status.starts_with("+OK"), "{name}: {status}");
            let body = pop3.read_pop3_multiline();
            assert_clean(&body, name);
            assert_eq!(
                body, notices[index],
                "{name}: RETR (round {round}) != IMAP notice"
            );
        }
    }
}

/// EICAR as served: raw, unescaped from an IMAP quoted string (`\\` for `\`), or as the
/// base64 of an encoded-word the client decodes.
fn served_eicar(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, EICAR);
    contains(raw, EICAR) || text.replace("\\\\", "\\").contains(eicar()) || text.contains(&b64)
}

/// Header-class items of a blocked message wait for the verdict and are then computed from the
/// notice: no EICAR before a body fetch (no verdict cached) nor after it (cached).
#[test]
fn header_items_of_blocked_messages_carry_no_eicar() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = hostile();
    let bodies: Vec<Vec<u8>> = messages.iter().map(|(_, m)| m.clone()).collect();
    dovecot.seed_messages(dovecot.user(), &bodies);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut imap = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    let items = [
        "BODY.PEEK[HEADER]",
        "ENVELOPE",
        "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM CC REFERENCES)]",
    ];
    for when in ["before", "after"] {
        for (index, (name, _)) in messages.iter().enumerate() {
            let seq = index + 1;
            for item in items {
                let (raw, _, status) = fetch(&mut imap, &format!("FETCH {seq} {item}"));
                assert!(status.starts_with("f OK"), "{when} {name} {item}: {status}");
                assert!(
                    !served_eicar(&raw),
                    "{when} body fetch: {name} {item} served EICAR"
                );
            }
            if when == "before" {
                let (raw, _, status) = fetch(&mut imap, &format!("FETCH {seq} BODY.PEEK[]"));
                assert!(status.starts_with("f OK"), "{name}: {status}");
                assert!(!contains(&raw, EICAR), "{name}: BODY[] after header items");
            }
        }
    }
}
