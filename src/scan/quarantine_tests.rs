//! Tests of quarantine writes: files, modes, records, concurrent writers of one id.

use super::*;

fn msg() -> MessageRef {
    MessageRef {
        client_addr: "192.0.2.7:40000".parse().unwrap(),
        user: Some("bob".into()),
        protocol: Protocol::Imap,
        mailbox: Some("INBOX".into()),
        uidvalidity: Some(7),
        uid: Some(42),
        msgno: Some(3),
        backend: None,
    }
}

#[tokio::test]
async fn writes_original_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path().join("q"));
    let original = bytes::Bytes::from_static(b"Subject: x\r\n\r\nbad\r\n");
    let hash = sha256(&original);
    let verdict = Verdict::Oversize;
    let id = q
        .store(
            original.clone(),
            record(&original, &hash, &msg(), &verdict, "replace", 10),
        )
        .await
        .unwrap();
    assert_eq!(id.len(), 16);
    assert_eq!(id, quarantine_id(&hash));
    assert_eq!(fs::read(q.message_path(&id)).unwrap(), original.as_ref());
    let json: Record =
        serde_json::from_slice(&fs::read(dir.path().join("q").join(format!("{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(json.uid, Some(42));
    assert_eq!(json.user.as_deref(), Some("bob"));
    assert_eq!(json.sha256, hex::encode(hash));
    assert_eq!(json.verdict, "oversize");
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("q"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty());
    // same message again: same id, still fine
    let again = q
        .store(
            original.clone(),
            record(&original, &hash, &msg(), &verdict, "replace", 10),
        )
        .await
        .unwrap();
    assert_eq!(again, id);
    let second: Record = serde_json::from_slice(
        &fs::read(dir.path().join("q").join(format!("{id}.1.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(second.sha256, json.sha256);
}

#[test]
fn files_are_private_and_records_carry_subject_from_and_signature() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path().join("new").join("q"));
    let original =
        b"From: Mallory <m@example.org>\r\nSubject: =?utf-8?q?Rechnung_=1B[2J?=\r\n\r\nx\r\n";
    let hash = sha256(original);
    let verdict = Verdict::Infected {
        engine: "clamd".into(),
        signature: "Win.Test.EICAR_HDB-1".into(),
    };
    let record = record(original, &hash, &msg(), &verdict, "replace", 5);
    let id = q.store_blocking(original, &record).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&q.message_path(&id)), FILE_MODE);
    assert_eq!(mode(&q.dir().join(format!("{id}.json"))), FILE_MODE);
    assert_eq!(mode(q.dir()), DIR_MODE);
    let stored: Record =
        serde_json::from_slice(&fs::read(q.dir().join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(stored, record);
    assert_eq!(stored.subject.as_deref(), Some("Rechnung \\u{1b}[2J"));
    assert_eq!(stored.from.as_deref(), Some("Mallory <m@example.org>"));
    assert_eq!(stored.signature.as_deref(), Some("Win.Test.EICAR_HDB-1"));
    assert_eq!(stored.rule, None);
    assert_eq!(stored.size, original.len());
}

#[test]
fn concurrent_writers_of_one_id_never_overwrite_each_others_records() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path().join("q"));
    let original = b"Subject: x\r\n\r\nsame content\r\n";
    let hash = sha256(original);
    std::thread::scope(|scope| {
        for n in 0..8u32 {
            let q = &q;
            scope.spawn(move || {
                let mut m = msg();
                m.uid = Some(n);
                let record = record(original, &hash, &m, &Verdict::Oversize, "replace", 1);
                q.store_blocking(original, &record).unwrap();
            });
        }
    });
    let mut uids: Vec<u32> = fs::read_dir(q.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .map(|name| {
            let record: Record =
                serde_json::from_slice(&fs::read(q.dir().join(name)).unwrap()).unwrap();
            record.uid.unwrap()
        })
        .collect();
    uids.sort_unstable();
    assert_eq!(uids, (0..8).collect::<Vec<_>>());
    let names: Vec<String> = fs::read_dir(q.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn records_without_the_newer_fields_still_parse() {
    let old = r#"{"id":"0123456789abcdef","time":"2024-01-01T00:00:00Z","client_addr":"192.0.2.1:1",
        "user":"bob","protocol":"pop3","mailbox":null,"uidvalidity":null,"uid":null,"msgno":1,
        "verdict":"rule","detail":"r","action":"replace","size":1,"delivered_size":2,
        "sha256":"00"}"#;
    let record: Record = serde_json::from_str(old).unwrap();
    assert_eq!(
        (record.subject, record.from, record.rule),
        (None, None, None)
    );
}

#[tokio::test]
async fn unwritable_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"not a dir").unwrap();
    let q = Quarantine::new(blocker.join("q"));
    let hash = sha256(b"x");
    let err = q
        .store(
            bytes::Bytes::from_static(b"x"),
            record(b"x", &hash, &msg(), &Verdict::Oversize, "replace", 1),
        )
        .await;
    assert!(err.is_err());
    assert!(q.check_writable_blocking().is_err());
}

#[test]
fn writable_check_creates_the_dir_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::new(dir.path().join("new").join("q"));
    q.check_writable_blocking().unwrap();
    assert_eq!(fs::read_dir(dir.path().join("new/q")).unwrap().count(), 0);
}
