use std::os::unix::fs::PermissionsExt;

use super::*;

fn marker(hash: &Hash) -> Marker {
    Marker {
        id: quarantine::quarantine_id(hash),
        sha256: hex::encode(hash),
        time: "2026-01-01T00:00:00Z".into(),
        by: "alice".into(),
    }
}

#[test]
fn hash_names_are_exactly_64_lowercase_hex() {
    let hex = "ab".repeat(32);
    assert_eq!(parse_hash(&hex), Some([0xab; 32]));
    assert_eq!(parse_hash(&hex.to_uppercase()), None);
    assert_eq!(parse_hash(&hex[..62]), None);
    assert_eq!(parse_hash(&format!("{hex}0")), None);
    assert_eq!(parse_hash(&format!(".{}", &hex[1..])), None);
    assert_eq!(parse_hash(&"zz".repeat(32)), None);
}

#[test]
fn markers_round_trip_privately_and_garbage_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_set(dir.path()).unwrap().is_empty(), "no released/ dir");
    let hash = quarantine::sha256(b"original");
    let warnings = write_marker(dir.path(), &hash, &marker(&hash)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let released = released_dir(dir.path());
    std::fs::write(released.join("README"), b"not a hash").unwrap();
    std::fs::write(released.join(".tmp.1.2.tmp"), b"").unwrap();
    std::fs::create_dir(released.join("ab".repeat(31))).unwrap();
    assert_eq!(read_set(dir.path()).unwrap(), HashSet::from([hash]));
    assert_eq!(read_marker(dir.path(), &hash).unwrap(), Some(marker(&hash)));
    assert_eq!(read_marker(dir.path(), &[0; 32]).unwrap(), None);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&released), 0o700);
    assert_eq!(mode(&marker_path(dir.path(), &hash)), 0o600);
    // Releasing again rewrites the marker in place.
    let mut again = marker(&hash);
    again.by = "bob".into();
    write_marker(dir.path(), &hash, &again).unwrap();
    assert_eq!(read_marker(dir.path(), &hash).unwrap(), Some(again));
}

#[test]
fn freshness_rereads_on_change_and_while_unsettled() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut fresh = Freshness::default();
    assert!(fresh.needs_read(None), "first read");
    fresh.read(None, t0);
    assert!(!fresh.needs_read(None), "still missing");
    assert!(fresh.needs_read(Some(t0)), "created");
    // Read right after a change: the same mtime may hide a second change, so read again.
    fresh.read(Some(t0), t0 + Duration::from_millis(300));
    assert!(fresh.needs_read(Some(t0)));
    fresh.read(Some(t0), t0 + SETTLE);
    assert!(!fresh.needs_read(Some(t0)), "settled");
    assert!(fresh.needs_read(Some(t0 + Duration::from_secs(9))));
    assert!(fresh.needs_read(None), "removed");
    fresh.failed();
    assert!(fresh.needs_read(Some(t0)));
    // An mtime in the future (clock step) is never trusted as settled.
    fresh.read(Some(t0 + Duration::from_secs(60)), t0);
    assert!(fresh.needs_read(Some(t0 + Duration::from_secs(60))));
}

#[test]
fn live_set_reports_new_releases_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = Released::new(dir.path());
    assert!(live.refresh().unwrap().is_empty());
    assert!(live.is_empty());
    let first = quarantine::sha256(b"one");
    let second = quarantine::sha256(b"two");
    write_marker(dir.path(), &first, &marker(&first)).unwrap();
    assert_eq!(live.refresh().unwrap(), vec![first]);
    assert!(live.contains(&first) && !live.contains(&second));
    write_marker(dir.path(), &second, &marker(&second)).unwrap();
    // Within the same timestamp tick as the first write: found because the first read was not
    // settled yet.
    assert_eq!(live.refresh().unwrap(), vec![second]);
    assert_eq!(live.len(), 2);
    assert!(live.refresh().unwrap().is_empty(), "nothing new");
    std::fs::remove_file(marker_path(dir.path(), &first)).unwrap();
    assert!(live.refresh().unwrap().is_empty());
    assert!(!live.contains(&first) && live.contains(&second), "revoked");
}

mod scanner {
    use bytes::Bytes;

    use super::*;
    use crate::scan::engine::EICAR;
    use crate::scan::{Cached, Disposition, MessageKey, MessageRef, Protocol, ScanConfig, Scanner};

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

    #[tokio::test]
    async fn released_content_is_served_past_the_caches_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        let cfg = ScanConfig {
            rules_dir: Some(rules),
            quarantine_dir: dir.path().join("q"),
            ..ScanConfig::default()
        };
        let scanner = Scanner::new(&cfg).await.unwrap();
        let mut raw = b"From: a@example.org\r\nSubject: false positive\r\n\r\n".to_vec();
        raw.extend_from_slice(EICAR);
        let original = Bytes::from(raw);
        let hash = quarantine::sha256(&original);
        let pop3 = MessageKey::Pop3 {
            user: "carol".into(),
            uidl: "u1".into(),
        };
        let blocked = scanner
            .process_as(original.clone(), &msg(1), Some(pop3.clone()))
            .await;
        assert!(
            matches!(blocked, Disposition::Replace { .. }),
            "{blocked:?}"
        );
        assert_eq!(
            scanner.cached(&msg(1)).await,
            Some(Cached::Serve(blocked.clone()))
        );

        write_marker(&cfg.quarantine_dir, &hash, &marker(&hash)).unwrap();
        assert_eq!(scanner.inner.released.refresh().unwrap(), vec![hash]);
        let served = |bytes: &Bytes| Disposition::Deliver {
            bytes: bytes.clone(),
            modified: false,
            verdict: crate::scan::Verdict::Clean,
        };
        assert_eq!(scanner.cached(&msg(1)).await, Some(Cached::Clean));
        assert_eq!(scanner.peek(&pop3).await, Some(Cached::Clean));
        assert_eq!(
            scanner.process(original.clone(), &msg(1)).await,
            served(&original)
        );
        assert_eq!(
            scanner.process(original.clone(), &msg(2)).await,
            served(&original)
        );
        assert_eq!(scanner.cached(&msg(2)).await, Some(Cached::Clean));
        // A new scanner (a restart) reads the release from disk.
        let restarted = Scanner::new(&cfg).await.unwrap();
        assert_eq!(
            restarted.process(original.clone(), &msg(1)).await,
            served(&original)
        );

        std::fs::remove_file(marker_path(&cfg.quarantine_dir, &hash)).unwrap();
        scanner.inner.released.refresh().unwrap();
        assert_eq!(scanner.process(original, &msg(1)).await, blocked, "revoked");
    }
}
