//! Tests of the public `Scanner` API: policy table, quarantine-before-replace, cache paths.

use std::path::Path;

use super::*;
use crate::scan::config::ByteSize;
use crate::scan::engine::EICAR;

const CLEAN: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <c@x>\r\n\r\nhello\r\n";

fn infected() -> Bytes {
    let mut raw = b"From: a@example.org\r\nSubject: bad\r\n\r\n".to_vec();
    raw.extend_from_slice(EICAR);
    raw.extend_from_slice(b"\r\n");
    Bytes::from(raw)
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

struct Setup {
    dir: tempfile::TempDir,
    cfg: ScanConfig,
}

fn setup(rules: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("r.toml"), rules).unwrap();
    let cfg = ScanConfig {
        rules_dir: Some(rules_dir),
        quarantine_dir: dir.path().join("quarantine"),
        ..ScanConfig::default()
    };
    Setup { dir, cfg }
}

fn unreachable_clamd(cfg: &mut ScanConfig) {
    cfg.clamd = vec!["unix:/nonexistent/portcullis-test/clamd.sock".into()];
    cfg.connect_timeout = config::HumanDuration(std::time::Duration::from_millis(200));
}

const STRIP_RULES: &str = "[[rule]]\nname = \"exe\"\ntarget = \"filename\"\npattern = '(?i)\\.exe$'\naction = \"strip\"\n\
[[rule]]\nname = \"wire\"\ntarget = \"header\"\nheader = \"subject\"\npattern = 'wire'\naction = \"tag\"\n";

#[tokio::test]
async fn clean_is_byte_identical_and_cached() {
    let s = setup("");
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    assert_eq!(scanner.engine_name(), "builtin-eicar");
    assert_eq!(scanner.cached(&msg(1)).await, None);
    let original = Bytes::from_static(CLEAN);
    let d = scanner.process(original.clone(), &msg(1)).await;
    assert_eq!(
        d,
        Disposition::Deliver {
            bytes: original.clone(),
            modified: false,
            verdict: Verdict::Clean
        }
    );
    assert_eq!(scanner.cached(&msg(1)).await, Some(Cached::Clean));
    assert_eq!(scanner.cached(&msg(2)).await, None);
    let pop = MessageRef {
        protocol: Protocol::Pop3,
        mailbox: None,
        uidvalidity: None,
        uid: None,
        ..msg(1)
    };
    assert_eq!(scanner.cached(&pop).await, None);
    scanner.flush();
    assert_eq!(scanner.cached(&msg(1)).await, None);
}

#[tokio::test]
async fn infected_is_quarantined_then_replaced_stably() {
    let s = setup("");
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let original = infected();
    let first = scanner.process(original.clone(), &msg(7)).await;
    let Disposition::Replace {
        bytes,
        quarantine_id,
        verdict,
    } = first.clone()
    else {
        panic!("{first:?}")
    };
    assert_eq!(
        verdict,
        Verdict::Infected {
            engine: "builtin-eicar".into(),
            signature: "Eicar-Test-Signature".into()
        }
    );
    assert!(!bytes.windows(EICAR.len()).any(|w| w == EICAR));
    let stored = std::fs::read(s.cfg.quarantine_dir.join(format!("{quarantine_id}.eml"))).unwrap();
    assert_eq!(stored, original.as_ref());
    assert!(s
        .cfg
        .quarantine_dir
        .join(format!("{quarantine_id}.json"))
        .exists());
    assert_eq!(
        scanner.cached(&msg(7)).await,
        Some(Cached::Serve(first.clone()))
    );
    // the same content under another UID: served from the outcome cache, no second scan/write
    let hits_before = ScanStats::get(&scanner.stats().cache_hits);
    let misses_before = ScanStats::get(&scanner.stats().cache_misses);
    assert_eq!(scanner.process(original.clone(), &msg(8)).await, first);
    assert_eq!(ScanStats::get(&scanner.stats().cache_hits), hits_before + 1);
    assert_eq!(ScanStats::get(&scanner.stats().cache_misses), misses_before);
    assert_eq!(
        scanner.cached(&msg(8)).await,
        Some(Cached::Serve(first.clone()))
    );
    // a fresh scanner (no cache) produces the very same bytes
    let again = Scanner::new(&s.cfg)
        .await
        .unwrap()
        .process(original, &msg(7))
        .await;
    assert_eq!(again, first);
    assert_eq!(verdict_label(&verdict), "infected");
    assert_eq!(ScanStats::get(&scanner.stats().quarantine_writes), 1);
}

#[tokio::test]
async fn quarantine_failure_never_leaks_or_loses() {
    let mut s = setup("");
    let blocker = s.dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    s.cfg.quarantine_dir = blocker.join("q");
    for on_error in [OnError::Pass, OnError::Block, OnError::Tempfail] {
        s.cfg.on_error = on_error;
        let scanner = Scanner::new(&s.cfg).await.unwrap();
        let d = scanner.process(infected(), &msg(1)).await;
        assert!(
            matches!(d, Disposition::TempFail { .. }),
            "{on_error:?}: {d:?}"
        );
        assert_eq!(ScanStats::get(&scanner.stats().quarantine_failures), 1);
        assert_eq!(scanner.cached(&msg(1)).await, None);
    }
}

#[tokio::test]
async fn policy_table_on_error() {
    for on_error in [OnError::Tempfail, OnError::Pass, OnError::Block] {
        let mut s = setup("");
        unreachable_clamd(&mut s.cfg);
        s.cfg.on_error = on_error;
        let scanner = Scanner::new(&s.cfg).await.unwrap();
        assert!(scanner.ping().await.is_err());
        let original = Bytes::from_static(CLEAN);
        let d = scanner.process(original.clone(), &msg(1)).await;
        let unavailable = Verdict::Error {
            cause: ScanErrorCause::ScannerUnavailable,
        };
        match on_error {
            OnError::Tempfail => assert!(matches!(d, Disposition::TempFail { .. })),
            OnError::Pass => assert_eq!(
                d,
                Disposition::Deliver {
                    bytes: original,
                    modified: false,
                    verdict: unavailable
                }
            ),
            OnError::Block => assert!(
                matches!(d, Disposition::Replace { ref verdict, .. } if *verdict == unavailable)
            ),
        }
        // errors are never cached: the next fetch scans again
        assert_eq!(scanner.cached(&msg(1)).await, None);
        assert_eq!(ScanStats::get(&scanner.stats().error), 1);
    }
}

#[tokio::test]
async fn policy_table_on_oversize() {
    for on_oversize in [OnOversize::Pass, OnOversize::Tempfail, OnOversize::Block] {
        for on_error in [OnError::Tempfail, OnError::Pass, OnError::Block] {
            let mut s = setup("");
            unreachable_clamd(&mut s.cfg); // oversize is decided before any scan
            s.cfg.max_size = ByteSize(16);
            s.cfg.on_oversize = on_oversize;
            s.cfg.on_error = on_error;
            let scanner = Scanner::new(&s.cfg).await.unwrap();
            let original = infected();
            assert_eq!(scanner.verdict(original.clone()).await, Verdict::Oversize);
            let d = scanner.process(original.clone(), &msg(1)).await;
            match on_oversize {
                OnOversize::Pass => assert_eq!(
                    d,
                    Disposition::Deliver {
                        bytes: original,
                        modified: false,
                        verdict: Verdict::Oversize
                    }
                ),
                OnOversize::Tempfail => assert!(matches!(d, Disposition::TempFail { .. })),
                // the notice must be checked by the antivirus before it is served: with clamd
                // down that is a temporary failure (never cached), whatever `on_error` says
                OnOversize::Block => {
                    assert!(matches!(d, Disposition::TempFail { .. }), "{d:?}");
                    assert_eq!(scanner.cached(&msg(1)).await, None);
                }
            }
        }
    }
    // with an engine that answers, `block` serves the (checked) notice
    let mut s = setup("");
    s.cfg.max_size = ByteSize(16);
    s.cfg.on_oversize = OnOversize::Block;
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let d = scanner.process(infected(), &msg(1)).await;
    assert!(
        matches!(
            d,
            Disposition::Replace {
                verdict: Verdict::Oversize,
                ..
            }
        ),
        "{d:?}"
    );
}

#[tokio::test]
async fn strip_tag_and_reload() {
    let s = setup(STRIP_RULES);
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let raw = "Subject: files\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee\r\n--B\r\n\
               Content-Type: application/octet-stream; name=\"x.exe\"\r\n\r\nMZ\r\n--B--\r\n";
    let d = scanner.process(Bytes::from(raw), &msg(3)).await;
    let Disposition::Deliver {
        bytes,
        modified: true,
        verdict,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        verdict,
        Verdict::Rule {
            name: "exe".into(),
            action: RuleAction::Strip
        }
    );
    assert!(bytes.starts_with(b"Subject: files\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee\r\n--B\r\n"));
    assert!(!bytes.windows(2).any(|w| w == b"MZ"));
    assert!(s
        .cfg
        .quarantine_dir
        .join(format!(
            "{}.eml",
            quarantine::quarantine_id(&quarantine::sha256(raw.as_bytes()))
        ))
        .exists());
    let tagged = scanner
        .process(
            Bytes::from_static(b"Subject: wire now\r\n\r\nx\r\n"),
            &msg(4),
        )
        .await;
    let Disposition::Deliver {
        bytes,
        modified: true,
        ..
    } = tagged
    else {
        panic!("{tagged:?}")
    };
    assert_eq!(
        bytes.as_ref(),
        b"X-Portcullis-Rule: wire\r\nSubject: [portcullis: wire] wire now\r\n\r\nx\r\n"
    );
    assert_eq!(scanner.stats().rule_hits().get("wire"), Some(&1));
    // reload with no rules: caches flushed, the message is clean now
    let empty = s.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    scanner.reload_rules(Some(&empty)).unwrap();
    assert_eq!(scanner.cached(&msg(4)).await, None);
    assert_eq!(
        scanner
            .verdict(Bytes::from_static(b"Subject: wire now\r\n\r\nx\r\n"))
            .await,
        Verdict::Clean
    );
    // a broken reload keeps the old rules
    std::fs::write(empty.join("bad.toml"), "[[rule]]\nname=\"b\"\n").unwrap();
    assert!(scanner.reload_rules(Some(&empty)).is_err());
    assert!(scanner
        .reload_rules(Some(Path::new("/nonexistent/rules")))
        .is_err());
}

#[tokio::test]
async fn notice_template_and_bad_config() {
    let mut s = setup("");
    let template = s.dir.path().join("notice.txt");
    std::fs::write(
        &template,
        "Blocked: {verdict} id={quarantine_id} ask {contact}\n",
    )
    .unwrap();
    s.cfg.notice = Some(template);
    s.cfg.contact = "helpdesk@example.org".into();
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let d = scanner.process(infected(), &msg(1)).await;
    let Disposition::Replace {
        bytes,
        quarantine_id,
        ..
    } = d
    else {
        panic!("{d:?}")
    };
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.ends_with(&format!("Blocked: infected: Eicar-Test-Signature (builtin-eicar) id={quarantine_id} ask helpdesk@example.org\r\n")));
    s.cfg.notice = Some(s.dir.path().join("missing.txt"));
    assert!(Scanner::new(&s.cfg)
        .await
        .unwrap_err()
        .to_string()
        .contains("scan.notice"));
    s.cfg.notice = None;
    s.cfg.rules_dir = Some(s.dir.path().join("nope"));
    assert!(Scanner::new(&s.cfg).await.is_err());
}

#[test]
fn process_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup("");
    let scanner = rt.block_on(Scanner::new(&s.cfg)).unwrap();
    let m = msg(1);
    let fut = scanner.process(Bytes::new(), &m);
    assert_send(&fut);
    let v = scanner.verdict(Bytes::new());
    assert_send(&v);
}

#[tokio::test]
async fn pop3_dispositions_are_found_by_unique_id() {
    let s = setup("");
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let pop = MessageRef {
        protocol: Protocol::Pop3,
        mailbox: None,
        uidvalidity: None,
        uid: None,
        ..msg(3)
    };
    let key = |user: &str, uidl: &str| MessageKey::Pop3 {
        user: user.into(),
        uidl: uidl.into(),
    };
    assert_eq!(scanner.peek(&key("bob", "u3")).await, None);
    let blocked = scanner
        .process_as(infected(), &pop, Some(key("bob", "u3")))
        .await;
    assert!(
        matches!(blocked, Disposition::Replace { .. }),
        "{blocked:?}"
    );
    assert_eq!(
        scanner.peek(&key("bob", "u3")).await,
        Some(Cached::Serve(blocked))
    );
    assert_eq!(scanner.peek(&key("eve", "u3")).await, None, "per user");
    assert_eq!(scanner.peek(&key("bob", "u4")).await, None);
    // Clean: found as clean; a cache hit by content also remembers the id.
    scanner
        .process_as(Bytes::from_static(CLEAN), &pop, Some(key("bob", "c1")))
        .await;
    scanner
        .process_as(Bytes::from_static(CLEAN), &pop, Some(key("bob", "c2")))
        .await;
    assert_eq!(scanner.peek(&key("bob", "c2")).await, Some(Cached::Clean));
    // A flush forgets everything.
    scanner.flush();
    assert_eq!(scanner.peek(&key("bob", "u3")).await, None);
}

/// The same user, mailbox, UIDVALIDITY and UID on two backends are two messages: a verdict for
/// one must never be found for the other (with routing, or two listeners with a backend each).
#[tokio::test]
async fn cache_keys_are_scoped_by_backend() {
    let s = setup("");
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let on = |backend: &str| MessageRef {
        backend: Some(backend.into()),
        ..msg(7)
    };
    scanner.process(Bytes::from_static(CLEAN), &on("old")).await;
    assert_eq!(scanner.cached(&on("old")).await, Some(Cached::Clean));
    assert_eq!(scanner.cached(&on("new")).await, None);
    assert_eq!(scanner.cached(&msg(7)).await, None);
    assert_ne!(
        scoped_user(Some("old"), "zed"),
        scoped_user(Some("ol"), "dzed")
    );
}

/// Issue 10: a message whose disposition is cached under its IMAP identity is answered from the
/// identity without hashing its content again (content never changes under (mailbox,
/// UIDVALIDITY, UID)); the bytes passed in are what a clean disposition delivers. A flush
/// forgets the identity, and the next fetch is scanned.
#[tokio::test]
async fn a_cached_identity_is_answered_without_hashing() {
    let s = setup("");
    let scanner = Scanner::new(&s.cfg).await.unwrap();
    let hits = || {
        scanner
            .stats()
            .cache_hits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let blocked = scanner.process(infected(), &msg(1)).await;
    assert!(matches!(blocked, Disposition::Replace { .. }));
    let before = hits();
    // Different bytes under the same identity: the identity decides, no hash is taken.
    let again = scanner.process(Bytes::from_static(CLEAN), &msg(1)).await;
    assert_eq!(again, blocked);
    assert_eq!(hits(), before + 1);
    scanner.process(Bytes::from_static(CLEAN), &msg(2)).await;
    let other = Bytes::from_static(b"Subject: other\r\n\r\nbody\r\n");
    let clean = scanner.process(other.clone(), &msg(2)).await;
    assert_eq!(
        clean,
        Disposition::Deliver {
            bytes: other,
            modified: false,
            verdict: Verdict::Clean
        }
    );
    scanner.flush();
    let rescanned = scanner.process(infected(), &msg(2)).await;
    assert!(matches!(rescanned, Disposition::Replace { .. }));
}
