//! Two replicas sharing state in a real redis-server (`[cluster]`), in front of one real
//! Dovecot and one real clamd: verdicts, message identities, releases and auth penalties are
//! shared; concurrent first fetches scan once; a store killed mid-session costs scans, never a
//! fetch and never a block, and sharing resumes once it is back.
//!
//! Scans are counted in clamd's own log (`LogClean yes`, `DisableCache yes`): one line per
//! INSTREAM, whichever replica sent it.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{bodies, clean, counting_clamd as clamd, replica, scans};
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::redis::Redis;
use support::scanning::{contains, imap_login};

fn infected(tag: &str) -> Vec<u8> {
    let mut raw = format!("From: m@example.org\r\nSubject: bad {tag}\r\n\r\n").into_bytes();
    raw.extend_from_slice(EICAR);
    raw.extend_from_slice(b"\r\n");
    raw
}

#[test]
fn a_mailbox_fetched_through_a_then_b_is_scanned_once_and_blocked_on_both() {
    let (dovecot, clamd, redis) = (Dovecot::start(), clamd(), Redis::start());
    let mut messages: Vec<Vec<u8>> = (0..5).map(|n| clean("ab", n)).collect();
    messages.push(infected("ab"));
    dovecot.seed_messages(dovecot.user(), &messages);
    let (qa, qb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(&dovecot, &clamd, &redis, qa.path());
    let b = replica(&dovecot, &clamd, &redis, qb.path());

    let through_a = bodies(&mut imap_login(a.port(0), &dovecot, "EXAMINE"), 1..=6);
    let after_a = scans(&clamd);
    assert!(after_a >= 6, "A scanned every message: {after_a}");
    let through_b = bodies(&mut imap_login(b.port(0), &dovecot, "EXAMINE"), 1..=6);
    assert_eq!(scans(&clamd), after_a, "B scanned nothing");
    assert_eq!(through_a, through_b, "same bytes through both replicas");
    assert_eq!(&through_b[..5], &messages[..5], "clean mail byte-identical");
    assert!(!contains(&through_b[5], EICAR), "B served the notice");
    assert!(String::from_utf8_lossy(&through_b[5]).contains("X-Portcullis-Verdict"));

    let verdicts = redis.keys("portcullis:v1:verdict:*");
    assert_eq!(verdicts.len(), 6, "{verdicts:?}");
    assert_eq!(redis.keys("portcullis:v1:msg:imap:*").len(), 6);
    assert!(redis.keys("portcullis:v1:lock:*").is_empty());
    let mut sizes: Vec<u64> = verdicts
        .iter()
        .filter_map(|k| redis.memory_usage(k))
        .collect();
    sizes.sort_unstable();
    let msg_key = &redis.keys("portcullis:v1:msg:imap:*")[0];
    eprintln!(
        "MEMORY USAGE: verdict keys {sizes:?} octets (the largest holds the notice), message key {:?}",
        redis.memory_usage(msg_key)
    );
}

#[test]
fn concurrent_first_fetches_on_both_replicas_scan_once() {
    let (dovecot, clamd, redis) = (Dovecot::start(), clamd(), Redis::start());
    dovecot.seed_messages(dovecot.user(), &[clean("race", 0)]);
    let q = tempfile::tempdir().unwrap();
    let a = replica(&dovecot, &clamd, &redis, q.path());
    let b = replica(&dovecot, &clamd, &redis, q.path());
    let mut ca = imap_login(a.port(0), &dovecot, "EXAMINE");
    let mut cb = imap_login(b.port(0), &dovecot, "EXAMINE");
    let before = scans(&clamd);
    let barrier = std::sync::Barrier::new(2);
    let (x, y) = std::thread::scope(|scope| {
        let x = scope.spawn(|| {
            barrier.wait();
            bodies(&mut ca, 1..=1)
        });
        let y = scope.spawn(|| {
            barrier.wait();
            bodies(&mut cb, 1..=1)
        });
        (x.join().unwrap(), y.join().unwrap())
    });
    assert_eq!(x, y);
    assert_eq!(scans(&clamd) - before, 1, "one scan for both replicas");
}

#[test]
fn a_release_through_one_replica_is_honoured_by_both() {
    let (dovecot, clamd, redis) = (Dovecot::start(), clamd(), Redis::start());
    let original = infected("release");
    dovecot.seed_messages(dovecot.user(), std::slice::from_ref(&original));
    let (qa, qb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(&dovecot, &clamd, &redis, qa.path());
    let b = replica(&dovecot, &clamd, &redis, qb.path());
    let mut ca = imap_login(a.port(0), &dovecot, "EXAMINE");
    let mut cb = imap_login(b.port(0), &dovecot, "EXAMINE");
    assert_ne!(bodies(&mut ca, 1..=1)[0], original);
    assert_ne!(bodies(&mut cb, 1..=1)[0], original);
    // The operator releases it on A's host (what `portcullis quarantine release` writes).
    let hash = portcullis::scan::quarantine::sha256(&original);
    let marker = portcullis::scan::release::Marker {
        id: portcullis::scan::quarantine::quarantine_id(&hash),
        sha256: hex_of(&hash),
        time: "2026-01-01T00:00:00Z".into(),
        by: "test".into(),
    };
    portcullis::scan::release::write_marker(qa.path(), &hash, &marker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if bodies(&mut cb, 1..=1)[0] == original {
            break;
        }
        assert!(Instant::now() < deadline, "B never honoured A's release");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bodies(&mut ca, 1..=1)[0], original);
    assert_eq!(redis.keys("portcullis:v1:released:*").len(), 1);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn auth_failures_through_a_delay_logins_through_b() {
    let (dovecot, clamd, redis) = (Dovecot::start(), clamd(), Redis::start());
    let q = tempfile::tempdir().unwrap();
    let a = replica(&dovecot, &clamd, &redis, q.path());
    let b = replica(&dovecot, &clamd, &redis, q.path());
    let login = |port: u16, password: &str| {
        let mut client = support::raw::connect_tls(port, &dovecot.ca);
        client.read_line();
        let started = Instant::now();
        let (_, status) = client.imap("l", &format!("LOGIN {} {password}", dovecot.user()));
        (status, started.elapsed())
    };
    let (status, quick) = login(b.port(0), "wrong");
    assert!(status.starts_with("l NO"), "{status}");
    let (status, _) = login(a.port(0), "wrong");
    assert!(status.starts_with("l NO"), "{status}");
    assert_eq!(
        redis.keys("portcullis:v1:authfail:*"),
        vec!["portcullis:v1:authfail:127.0.0.1".to_string()]
    );
    // Two failures (one through each replica): 1.2 s before B relays the next login.
    let (status, delayed) = login(b.port(0), dovecot.password());
    assert!(status.starts_with("l OK"), "{status}");
    assert!(
        delayed >= Duration::from_millis(1100),
        "B waited only {delayed:?} (first login {quick:?})"
    );
    // The success through B cleared the shared count: A lets the next login through at once.
    let (status, after) = login(a.port(0), dovecot.password());
    assert!(status.starts_with("l OK"), "{status}");
    assert!(after < Duration::from_millis(500), "{after:?}");
}

#[test]
fn a_store_killed_mid_session_costs_scans_never_fetches_then_sharing_resumes() {
    let (dovecot, clamd, mut redis) = (Dovecot::start(), clamd(), Redis::start());
    let mut messages: Vec<Vec<u8>> = (0..4).map(|n| clean("kill", n)).collect();
    messages.push(infected("kill"));
    messages.extend((4..6).map(|n| clean("kill", n)));
    dovecot.seed_messages(dovecot.user(), &messages);
    let q = tempfile::tempdir().unwrap();
    let a = replica(&dovecot, &clamd, &redis, q.path());
    let b = replica(&dovecot, &clamd, &redis, q.path());
    let mut ca = imap_login(a.port(0), &dovecot, "EXAMINE");
    let mut cb = imap_login(b.port(0), &dovecot, "EXAMINE");
    bodies(&mut ca, 1..=1);
    let shared = scans(&clamd);
    bodies(&mut cb, 1..=1);
    assert_eq!(scans(&clamd), shared, "shared while the store is up");

    redis.kill();
    let started = Instant::now();
    let through_b = bodies(&mut cb, 2..=5);
    assert_eq!(&through_b[..3], &messages[1..4]);
    assert!(
        !contains(&through_b[3], EICAR),
        "the infected message stays blocked"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let local = scans(&clamd);
    assert!(local >= shared + 4, "scanned locally: {shared} -> {local}");

    redis.restart();
    std::thread::sleep(Duration::from_millis(400));
    // The first calls after the restart may still find the old connection broken.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 6;
    loop {
        let before = scans(&clamd);
        bodies(&mut ca, n..=n);
        let after_a = scans(&clamd);
        bodies(&mut cb, n..=n);
        if scans(&clamd) == after_a && after_a > before {
            break;
        }
        assert!(n < 7 && Instant::now() < deadline, "sharing did not resume");
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!redis.keys("portcullis:v1:verdict:*").is_empty());
}
