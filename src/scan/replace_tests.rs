//! Tests of the replacement notice: re-encoded headers, hostile headers never reach the notice
//! (raw or decoded), determinism, and the fallback to the minimal notice.

use bytes::Bytes;

use super::*;
use crate::scan::engine::EICAR;
use crate::scan::reencode::{safe_headers, MAX_RAW_HEADER};
use crate::scan::{mime, Disposition, MessageRef, Protocol, ScanConfig, Scanner};

const ORIGINAL: &[u8] = b"Received: from x\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
From: Alice <alice@example.org>\r\nTo: bob@example.org,\r\n\tcarol@example.org\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= invoice\r\nMessage-ID: <m1@example.org>\r\n\
References: <a@x>\r\n <b@x>\r\nX-Other: drop me\r\n\r\nbody\r\n";

fn infected() -> Verdict {
    Verdict::Infected {
        engine: "clamd".into(),
        signature: "Eicar-Test-Signature".into(),
    }
}

fn notice(verdict: &Verdict) -> Notice<'_> {
    Notice {
        verdict,
        quarantine_id: "0123456789abcdef",
        contact: "postmaster@example.org",
        template: DEFAULT_TEMPLATE,
    }
}

fn full(original: &[u8], notice: &Notice<'_>) -> Vec<u8> {
    let parsed = mime::parse(original);
    let headers = safe_headers(parsed.as_ref());
    let present = Present {
        subject: parsed.as_ref().is_some_and(|m| m.subject().is_some()),
        from: parsed.as_ref().is_some_and(|m| m.from().is_some()),
    };
    build(&headers, &Shown::of(&headers, present), notice)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// No EICAR in the raw bytes, in any decoded part (base64/QP/8bit), in any decoded header value,
/// nor in the base64 payload of any encoded-word.
fn assert_no_eicar(bytes: &[u8], case: &str) {
    assert!(!contains(bytes, EICAR), "{case}: raw EICAR");
    let parsed = mime::parse(bytes).unwrap_or_else(|| panic!("{case}: does not parse"));
    for part in &parsed.parts {
        assert!(!contains(part.contents(), EICAR), "{case}: EICAR in a part");
    }
    for (name, value) in mime::view(&parsed).headers {
        assert!(
            !contains(value.as_bytes(), EICAR),
            "{case}: EICAR in {name}"
        );
    }
    let text = String::from_utf8_lossy(bytes);
    for word in text.split("=?utf-8?b?").skip(1) {
        let payload = word.split("?=").next().unwrap_or_default();
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, payload)
            .unwrap_or_else(|e| panic!("{case}: bad encoded-word {payload}: {e}"));
        assert!(
            !contains(&decoded, EICAR),
            "{case}: EICAR in an encoded-word"
        );
    }
}

/// Every line CRLF-terminated, at most 998 octets, no NUL or bare CR; header lines ≤ 78.
fn assert_well_formed(bytes: &[u8], case: &str) {
    assert!(bytes.ends_with(b"\r\n"), "{case}");
    assert!(!bytes.contains(&0), "{case}: NUL");
    let text = String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| panic!("{case}: not UTF-8"));
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "{case}: bare CR/LF"
    );
    let (head, _) = text.split_once("\r\n\r\n").expect("header/body separator");
    for line in head.split("\r\n") {
        assert!(line.len() <= 78, "{case}: long header line {line:?}");
    }
    assert!(text.split("\r\n").all(|line| line.len() <= 998), "{case}");
    let parsed = mime::parse(bytes).expect("parses");
    assert!(
        parsed.header("X-Portcullis-Quarantine-Id").is_some(),
        "{case}"
    );
}

#[test]
fn reencodes_headers_and_is_deterministic() {
    let verdict = infected();
    let first = full(ORIGINAL, &notice(&verdict));
    assert_eq!(first, full(ORIGINAL, &notice(&verdict)));
    assert_well_formed(&first, "original");
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.starts_with(
        "Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nFrom: Alice <alice@example.org>\r\n"
    ));
    assert!(text.contains("To: bob@example.org, carol@example.org\r\n"));
    assert!(text.contains("References: <a@x> <b@x>\r\n"));
    assert!(text.contains("Subject: =?utf-8?b?Q2Fmw6kgaW52b2ljZQ==?=\r\n"));
    assert!(!text.contains("X-Other") && !text.contains("Received"));
    assert!(text.contains("X-Portcullis-Verdict: infected: Eicar-Test-Signature (clamd)\r\n"));
    assert!(text.contains("Quarantine id:   0123456789abcdef"));
    assert!(text.contains("Original subject: Café invoice"));
    assert!(text.contains("Original sender:  alice@example.org"));
    assert!(
        text.contains(
            "to have it released, ask postmaster@example.org\r\nquoting id 0123456789abcdef."
        ),
        "{text}"
    );
    let reparsed = mime::parse(&first).unwrap();
    assert_eq!(reparsed.message_id(), Some("m1@example.org"));
    assert_eq!(reparsed.subject(), Some("Café invoice"));
}

#[test]
fn lf_original_and_template() {
    let original = b"Subject: hi\nFrom: a@b\n\nx\n";
    let verdict = Verdict::Rule {
        name: "exe".into(),
        action: crate::scan::rules::RuleAction::Block,
    };
    let mut n = notice(&verdict);
    n.template = "{verdict}|{quarantine_id}|{contact}|{subject}|{from}";
    let text = String::from_utf8(full(original, &n)).unwrap();
    assert!(text.starts_with("From: a@b\r\nSubject: hi\r\n"));
    assert!(text
        .ends_with("\r\n\r\nrule exe (block)|0123456789abcdef|postmaster@example.org|hi|a@b\r\n"));
}

#[test]
fn long_text_and_many_ids_are_folded_and_bounded() {
    let subject = "Größenordnung ".repeat(40);
    let ids: String = (0..60).map(|i| format!(" <id{i}@example.org>")).collect();
    let original = format!(
        "Subject: {subject}\r\nReferences:{ids}\r\nFrom: \"Zoë Ünal\" <z@example.org>, plain@example.org\r\n\r\nx\r\n"
    );
    let headers = safe_headers(mime::parse(original.as_bytes()).as_ref());
    let names: Vec<&str> = headers.iter().map(|h| h.name).collect();
    assert_eq!(names, ["From", "Subject", "References"]);
    let bytes = full(original.as_bytes(), &notice(&infected()));
    assert_well_formed(&bytes, "long");
    let parsed = mime::parse(&bytes).unwrap();
    assert_eq!(parsed.subject(), Some(subject.trim_end()));
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name.as_deref(), Some("Zoë Ünal"));
    let references = parsed.references().as_text_list().unwrap();
    assert_eq!(references.len(), 20);
    assert_eq!(references[0], "id0@example.org");
    assert_eq!(references[19], "id59@example.org");
    // over the bounds: dropped, never truncated
    let huge = format!("Subject: {}\r\n\r\nx\r\n", "é".repeat(500));
    assert!(safe_headers(mime::parse(huge.as_bytes()).as_ref()).is_empty());
}

fn eicar_str() -> &'static str {
    std::str::from_utf8(EICAR).unwrap()
}

/// (case, original headers) — each message also gets a clean body line.
fn hostile_headers() -> Vec<(&'static str, Vec<u8>)> {
    let e = eicar_str();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, EICAR);
    let quoted = e.replace('\\', "\\\\");
    let big = "A".repeat(100 << 10);
    assert!(big.len() > MAX_RAW_HEADER);
    let cases: Vec<(&'static str, String)> = vec![
        ("subject", format!("Subject: {e}\r\n")),
        ("cc-name", format!("Cc: \"{quoted}\" <c@example.org>\r\n")),
        ("cc-address", format!("Cc: {e}\r\n")),
        ("references", format!("References: <a@x> <{e}>\r\n")),
        (
            "from-name",
            format!("From: \"{quoted}\" <evil@example.org>\r\n"),
        ),
        ("from-address", format!("From: <{e}@example.org>\r\n")),
        ("message-id", format!("Message-ID: <{e}>\r\n")),
        ("folded", format!("Subject: hello\r\n {e}\r\n")),
        ("encoded-word", format!("Subject: =?us-ascii?b?{b64}?=\r\n")),
        (
            "split-encoded-words",
            format!(
                "Subject: =?utf-8?q?{}?= =?utf-8?q?{}?=\r\n",
                &e[..30]
                    .replace('?', "=3F")
                    .replace('_', "=5F")
                    .replace(' ', "_"),
                &e[30..]
                    .replace('?', "=3F")
                    .replace('_', "=5F")
                    .replace(' ', "_")
            ),
        ),
        ("100k", format!("Subject: {big}\r\n")),
        ("nul", "Subject: a\0b\r\n".to_string()),
        ("bare-cr", "Subject: a\rb\r\n".to_string()),
        ("bare-cr-fold", "Subject: a\r b\r\n".to_string()),
    ];
    cases
        .into_iter()
        .map(|(case, header)| {
            let mut raw =
                b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nTo: bob@example.org\r\n".to_vec();
            raw.extend_from_slice(header.as_bytes());
            raw.extend_from_slice(b"\r\nclean body\r\n");
            // header-only EICAR messages are blocked by the header; the others need a body
            if !contains(&raw, EICAR) {
                raw.extend_from_slice(EICAR);
                raw.extend_from_slice(b"\r\n");
            }
            (case, raw)
        })
        .collect()
}

fn msg(uid: u32) -> MessageRef {
    MessageRef {
        client_addr: "127.0.0.1:5000".parse().unwrap(),
        user: Some("bob".into()),
        protocol: Protocol::Imap,
        mailbox: Some("INBOX".into()),
        uidvalidity: Some(1),
        uid: Some(uid),
        msgno: Some(uid),
        backend: None,
    }
}

fn config(dir: &std::path::Path, rules: &str) -> ScanConfig {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("r.toml"), rules).unwrap();
    ScanConfig {
        rules_dir: Some(rules_dir),
        quarantine_dir: dir.join("quarantine"),
        contact: "helpdesk@example.org".into(),
        ..ScanConfig::default()
    }
}

async fn replacement(cfg: &ScanConfig, original: &[u8], uid: u32) -> (Vec<u8>, String) {
    let scanner = Scanner::new(cfg).await.unwrap();
    match scanner
        .process(Bytes::copy_from_slice(original), &msg(uid))
        .await
    {
        Disposition::Replace {
            bytes,
            quarantine_id,
            ..
        } => (bytes.to_vec(), quarantine_id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn hostile_headers_never_reach_the_notice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    for (index, (case, original)) in hostile_headers().into_iter().enumerate() {
        let uid = u32::try_from(index).unwrap() + 1;
        let (bytes, id) = replacement(&cfg, &original, uid).await;
        assert_no_eicar(&bytes, case);
        assert_well_formed(&bytes, case);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!("Quarantine id:   {id}")),
            "{case}: {text}"
        );
        assert!(
            text.contains("To: bob@example.org\r\n"),
            "{case}: clean header kept"
        );
        // the hostile header (the third line of the original) is dropped, not repaired
        let hostile = String::from_utf8_lossy(&original)
            .split("\r\n")
            .nth(2)
            .and_then(|line| line.split(':').next())
            .map(|name| format!("\r\n{name}:"))
            .unwrap();
        assert!(!format!("\r\n{text}").contains(&hostile), "{case}: {text}");
        assert!(
            !text.contains("X-Portcullis-Notice: minimal"),
            "{case}: one bad header must not cost the whole notice"
        );
        // deterministic: a fresh scanner (no caches) serves the very same bytes
        let (again, _) = replacement(&cfg, &original, uid).await;
        assert_eq!(bytes, again, "{case}: not deterministic");
        let stored = std::fs::read(cfg.quarantine_dir.join(format!("{id}.eml"))).unwrap();
        assert_eq!(stored, original, "{case}: original not quarantined");
    }
}

#[tokio::test]
async fn a_header_a_rule_flags_is_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[rule]]\nname = \"project\"\ntarget = \"header\"\nheader = \"subject\"\n\
                 pattern = 'secret-project'\naction = \"log\"\n";
    let cfg = config(dir.path(), rules);
    let mut original = b"From: alice@example.org\r\nSubject: secret-project plans\r\n\r\n".to_vec();
    original.extend_from_slice(EICAR);
    let (bytes, _) = replacement(&cfg, &original, 1).await;
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("secret-project"), "{text}");
    assert!(text.contains("From: alice@example.org\r\n"));
    assert!(text.contains("Original subject: (withheld)"));
    assert!(!text.contains("X-Portcullis-Notice: minimal"));
}

#[tokio::test]
async fn an_unclean_full_notice_falls_back_to_the_minimal_one() {
    let dir = tempfile::tempdir().unwrap();
    // Matches only the combination of two copied values: every header passes alone.
    let rules = "[[rule]]\nname = \"combo\"\ntarget = \"body\"\n\
                 pattern = '(?s)secret-project.*alice@example\\.org'\naction = \"log\"\n";
    let cfg = config(dir.path(), rules);
    let mut original = b"From: Alice <alice@example.org>\r\nSubject: secret-project\r\n\
Message-ID: <m@example.org>\r\nTo: bob@example.org\r\n\r\n"
        .to_vec();
    original.extend_from_slice(EICAR);
    let (bytes, id) = replacement(&cfg, &original, 1).await;
    assert_no_eicar(&bytes, "minimal");
    assert_well_formed(&bytes, "minimal");
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("X-Portcullis-Notice: minimal\r\n"), "{text}");
    for copied in [
        "secret-project",
        "alice",
        "Alice",
        "m@example.org",
        "bob@",
        "Eicar",
    ] {
        assert!(
            !text.contains(copied),
            "minimal notice copies {copied}: {text}"
        );
    }
    assert!(text.contains(&format!("Quarantine id: {id}\r\n")));
    assert!(text.contains("Contact:       helpdesk@example.org\r\n"));
    assert!(text.contains(&format!(
        "To have it released, ask helpdesk@example.org quoting id {id}.\r\n"
    )));
    assert!(text.contains("X-Portcullis-Verdict: infected\r\n"));
    let (again, _) = replacement(&cfg, &original, 1).await;
    assert_eq!(bytes, again);
}

#[test]
fn minimal_notice_is_fixed_text() {
    let verdict = infected();
    let mut n = notice(&verdict);
    n.template = "{subject}";
    let bytes = minimal(&n);
    assert_well_formed(&bytes, "minimal");
    let parsed = mime::parse(&bytes).unwrap();
    assert!(parsed.from().is_none() && parsed.message_id().is_none());
    assert_eq!(parsed.subject(), Some("Message blocked by portcullis"));
    assert_eq!(bytes, minimal(&n));
}

#[tokio::test]
async fn an_error_verdict_blocked_by_policy_gets_the_minimal_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "");
    cfg.clamd = vec!["unix:/nonexistent/portcullis-test/clamd.sock".into()];
    cfg.connect_timeout = crate::scan::config::HumanDuration(std::time::Duration::from_millis(200));
    cfg.on_error = crate::scan::OnError::Block;
    let original = b"From: alice@example.org\r\nSubject: hello\r\n\r\nbody\r\n";
    let (bytes, _) = replacement(&cfg, original, 1).await;
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("X-Portcullis-Notice: minimal\r\n"));
    assert!(text.contains("X-Portcullis-Verdict: error\r\n"));
    assert!(!text.contains("alice") && !text.contains("hello"));
}
