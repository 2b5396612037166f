//! The second cache level with in-memory stores: sharing between two scanners, single-flight,
//! releases, scopes, and a store that fails or hangs (never a failed fetch, never a pass).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::cluster::memory::{MemoryStore, FAILING, HANGING};
use crate::cluster::Cluster;
use crate::scan::engine::EICAR;

const CLEAN: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello shared\r\n";

fn infected() -> Bytes {
    let mut raw = b"From: a@example.org\r\nSubject: bad\r\n\r\n".to_vec();
    raw.extend_from_slice(EICAR);
    Bytes::from(raw)
}

fn msg(user: &str, uid: u32) -> MessageRef {
    MessageRef {
        client_addr: "127.0.0.1:5000".parse().unwrap(),
        user: Some(user.into()),
        protocol: Protocol::Imap,
        mailbox: Some("INBOX".into()),
        uidvalidity: Some(1),
        uid: Some(uid),
        msgno: Some(uid),
        backend: None,
    }
}

async fn replica(dir: &Path, store: &Arc<MemoryStore>, rules: &str) -> Scanner {
    let rules_dir = dir.join(format!("rules-{}", rules.len()));
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("r.toml"), rules).unwrap();
    let cfg = ScanConfig {
        rules_dir: Some(rules_dir),
        quarantine_dir: dir.join("quarantine"),
        ..ScanConfig::default()
    };
    let cluster = Cluster::with_store(store.clone(), &crate::cluster::tests::config());
    Scanner::with_cluster(&cfg, Some(cluster)).await.unwrap()
}

fn scans(scanner: &Scanner) -> u64 {
    let stats = scanner.stats();
    stats.clean.load(Ordering::SeqCst) + stats.infected.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_verdict_found_through_one_replica_is_not_rescanned_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let a = replica(dir.path(), &store, "").await;
    let b = replica(dir.path(), &store, "").await;
    let clean = Bytes::from_static(CLEAN);
    let from_a = a.process(clean.clone(), &msg("bob", 1)).await;
    let from_b = b.process(clean.clone(), &msg("eve", 9)).await;
    assert_eq!(from_a, from_b);
    let blocked_a = a.process(infected(), &msg("bob", 2)).await;
    let blocked_b = b.process(infected(), &msg("bob", 2)).await;
    assert!(
        matches!(blocked_b, Disposition::Replace { .. }),
        "{blocked_b:?}"
    );
    assert_eq!(
        blocked_a, blocked_b,
        "the stored notice is served byte for byte"
    );
    assert_eq!((scans(&a), scans(&b)), (2, 0));
    // B knows A's message identities without fetching.
    assert_eq!(b.cached(&msg("bob", 1)).await, Some(Cached::Clean));
    assert!(matches!(
        b.cached(&msg("bob", 2)).await,
        Some(Cached::Serve(Disposition::Replace { .. }))
    ));
    assert!(store.keys().iter().all(|k| k.starts_with("portcullis:v1:")));
    assert!(
        !store.keys().iter().any(|k| k.contains(":lock:")),
        "locks dropped"
    );
}

#[tokio::test]
async fn concurrent_first_fetches_scan_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let a = replica(dir.path(), &store, "").await;
    let b = replica(dir.path(), &store, "").await;
    let message = Bytes::from_static(b"Subject: race\r\n\r\nsame body\r\n");
    let target = msg("bob", 3);
    let (x, y) = tokio::join!(
        a.process(message.clone(), &target),
        b.process(message.clone(), &target)
    );
    assert_eq!(x, y);
    assert_eq!(scans(&a) + scans(&b), 1);
}

#[tokio::test]
async fn a_release_shared_by_one_replica_is_honoured_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let a = replica(dir.path(), &store, "").await;
    let b = replica(dir.path(), &store, "").await;
    let original = infected();
    assert!(matches!(
        b.process(original.clone(), &msg("bob", 4)).await,
        Disposition::Replace { .. }
    ));
    a.inner
        .shared_publish_releases(&[quarantine::sha256(&original)])
        .await;
    assert_eq!(b.cached(&msg("bob", 4)).await, Some(Cached::Clean));
    let served = b.process(original.clone(), &msg("bob", 4)).await;
    assert!(
        matches!(&served, Disposition::Deliver { bytes, .. } if *bytes == original),
        "{served:?}"
    );
}

#[tokio::test]
async fn other_rules_are_another_scope() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let a = replica(dir.path(), &store, "").await;
    let rules = "[[rule]]\nname = \"x\"\ntarget = \"header\"\nheader = \"subject\"\npattern = 'zzz'\naction = \"tag\"\n";
    let b = replica(dir.path(), &store, rules).await;
    a.process(Bytes::from_static(CLEAN), &msg("bob", 1)).await;
    b.process(Bytes::from_static(CLEAN), &msg("bob", 1)).await;
    assert_eq!((scans(&a), scans(&b)), (1, 1));
}

#[tokio::test]
async fn a_failing_or_hanging_store_costs_scans_never_fetches_or_blocks() {
    for mode in [FAILING, HANGING] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::default());
        store.mode.store(mode, Ordering::SeqCst);
        let a = replica(dir.path(), &store, "").await;
        let started = std::time::Instant::now();
        let clean = a.process(Bytes::from_static(CLEAN), &msg("bob", 1)).await;
        assert!(matches!(
            clean,
            Disposition::Deliver {
                modified: false,
                ..
            }
        ));
        let blocked = a.process(infected(), &msg("bob", 2)).await;
        assert!(
            matches!(blocked, Disposition::Replace { .. }),
            "{blocked:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(a.cached(&msg("bob", 3)).await, None);
        let cluster = a.cluster().unwrap();
        assert!(cluster.degraded().is_some());
        assert!(cluster.check().await.ok);
    }
}
