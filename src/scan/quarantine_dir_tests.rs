use std::time::Duration;

use super::*;
use crate::scan::quarantine::{self, Quarantine};
use crate::scan::verdict::{MessageRef, Protocol, Verdict};

const ID: &str = "0123456789abcdef";

#[test]
fn names_are_classified_strictly() {
    let rec = |n| FileKind::Record(ID.to_string(), n);
    assert_eq!(classify(&format!("{ID}.eml")), FileKind::Message(ID.into()));
    assert_eq!(classify(&format!("{ID}.json")), rec(0));
    assert_eq!(classify(&format!("{ID}.7.json")), rec(7));
    assert_eq!(classify(".x.eml.12.0.tmp"), FileKind::Temp);
    assert_eq!(classify("released"), FileKind::Released);
    for other in [
        "notes.txt",
        "ABCDEF0123456789.eml",
        "0123456789abcde.eml",
        "0123456789abcdef.0.json",
        "0123456789abcdef.01.json",
        "0123456789abcdef.+1.json",
        "0123456789abcdef.x.json",
        "0123456789abcdef.1.2.json",
        "../0123456789abcdef.json",
        "0123456789abcdef.json.bak",
        "",
    ] {
        assert_eq!(classify(other), FileKind::Other, "{other}");
    }
}

fn msg(user: &str) -> MessageRef {
    MessageRef {
        client_addr: "192.0.2.7:40000".parse().unwrap(),
        user: Some(user.into()),
        protocol: Protocol::Pop3,
        mailbox: None,
        uidvalidity: None,
        uid: None,
        msgno: Some(1),
        backend: None,
    }
}

/// Quarantines `original` once per user; returns its id.
fn store(q: &Quarantine, original: &[u8], users: &[&str]) -> String {
    let hash = quarantine::sha256(original);
    let mut id = String::new();
    for user in users {
        let record = quarantine::record(
            original,
            &hash,
            &msg(user),
            &Verdict::Oversize,
            "replace",
            1,
        );
        id = q.store_blocking(original, &record).unwrap();
    }
    id
}

/// Rewrites the `time` of a record file.
fn backdate(path: &Path, time: &str) {
    let mut record: Record = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    record.time = time.into();
    std::fs::write(path, serde_json::to_vec(&record).unwrap()).unwrap();
}

#[test]
fn listing_survives_garbage_and_groups_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path());
    let id = store(&q, b"Subject: a\r\n\r\na\r\n", &["alice", "bob"]);
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("ffffffffffffffff.json"), b"{not json").unwrap();
    std::fs::write(dir.path().join("eeeeeeeeeeeeeeee.eml"), b"orphan").unwrap();
    std::fs::create_dir(dir.path().join("dddddddddddddddd.eml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("cccccccccccccccc.json")).unwrap();
    let listing = scan(dir.path()).unwrap();
    let ours: Vec<_> = listing.records_of(&id).collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(
        ours[0].record.as_ref().unwrap().user.as_deref(),
        Some("alice")
    );
    assert_eq!(ours[1].n, 1);
    let broken = listing.records_of("ffffffffffffffff").next().unwrap();
    assert!(broken.record.as_ref().unwrap_err().contains("not a record"));
    assert!(listing.has("eeeeeeeeeeeeeeee") && !listing.has("dddddddddddddddd"));
    let skipped: Vec<String> = listing
        .skipped
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        skipped,
        ["cccccccccccccccc.json", "dddddddddddddddd.eml", "notes.txt"]
    );
    assert!(scan(&dir.path().join("missing"))
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn delete_removes_every_file_of_one_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path());
    let id = store(&q, b"Subject: a\r\n\r\na\r\n", &["alice", "bob"]);
    let other = store(&q, b"Subject: b\r\n\r\nb\r\n", &["alice"]);
    let listing = scan(dir.path()).unwrap();
    let removal = plan_delete(&listing, &id);
    assert_eq!((removal.records.len(), removal.messages.len()), (2, 1));
    assert_eq!(remove(&removal).unwrap(), (2, 1, 0));
    let after = scan(dir.path()).unwrap();
    assert!(!after.has(&id) && after.has(&other));
    assert!(plan_delete(&after, &id).is_empty());
}

#[test]
fn purge_goes_by_record_date_and_keeps_shared_originals() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path());
    let old = store(&q, b"Subject: old\r\n\r\n1\r\n", &["alice"]);
    let mixed = store(&q, b"Subject: mixed\r\n\r\n2\r\n", &["alice", "bob"]);
    let new = store(&q, b"Subject: new\r\n\r\n3\r\n", &["carol"]);
    backdate(
        &dir.path().join(format!("{old}.json")),
        "2020-01-01T00:00:00Z",
    );
    backdate(
        &dir.path().join(format!("{mixed}.json")),
        "2020-01-01T00:00:00Z",
    );
    let month_ago = SystemTime::now() - Duration::from_secs(40 * 86400);
    let orphan = dir.path().join("eeeeeeeeeeeeeeee.eml");
    std::fs::write(&orphan, b"orphan").unwrap();
    let fresh_orphan = dir.path().join("aaaaaaaaaaaaaaaa.eml");
    std::fs::write(&fresh_orphan, b"being written").unwrap();
    let temp = dir.path().join(".x.eml.1.0.tmp");
    std::fs::write(&temp, b"").unwrap();
    for path in [&orphan, &temp] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(month_ago)
            .unwrap();
    }
    let cutoff = SystemTime::now() - Duration::from_secs(30 * 86400);
    let listing = scan(dir.path()).unwrap();
    let plan = plan_purge(&listing, cutoff);
    let mut records = plan.records.clone();
    records.sort();
    let mut expected = vec![
        dir.path().join(format!("{mixed}.json")),
        dir.path().join(format!("{old}.json")),
    ];
    expected.sort();
    assert_eq!(records, expected);
    let mut messages = plan.messages.clone();
    messages.sort();
    let mut expected = vec![dir.path().join(format!("{old}.eml")), orphan.clone()];
    expected.sort();
    assert_eq!(
        messages, expected,
        "mixed keeps its original for bob's record"
    );
    assert_eq!(plan.temps, vec![temp]);
    assert_eq!(remove(&plan).unwrap(), (2, 2, 1));
    let after = scan(dir.path()).unwrap();
    assert!(!after.has(&old) && after.has(&mixed) && after.has(&new));
    assert!(after.messages.contains_key("aaaaaaaaaaaaaaaa"));
    assert!(plan_purge(&after, cutoff).is_empty(), "nothing more to do");
}
