//! The shared store over each transport `[cluster] redis` accepts (issue 13 item 1): a replica
//! on the Unix socket and one on TCP share verdicts; replicas on `rediss://` (TLS, the store's
//! certificate checked against `ca`) share verdicts; a TLS store whose certificate is not
//! trusted is refused, and the replica scans alone (degraded, never failing a fetch).

mod support;

use support::certs::TestCa;
use support::cluster::{bodies, clean, counting_clamd, replica, replica_with, scans};
use support::dovecot::Dovecot;
use support::redis::{Redis, TlsFiles};
use support::scanning::imap_login;

fn seed(dovecot: &Dovecot) {
    let messages: Vec<_> = (0..3).map(|n| clean("transport", n)).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
}

#[test]
fn a_replica_on_the_unix_socket_shares_with_one_on_tcp() {
    let (dovecot, clamd, redis) = (Dovecot::start(), counting_clamd(), Redis::start());
    seed(&dovecot);
    let q = tempfile::tempdir().expect("dir");
    let unix = format!("redis = {:?}\n", redis.unix_url());
    let a = replica_with(&dovecot, &clamd, &unix, q.path());
    let b = replica(&dovecot, &clamd, &redis, q.path());
    let before = scans(&clamd);
    let mut client = imap_login(a.port(0), &dovecot, "EXAMINE");
    assert_eq!(bodies(&mut client, 1..=3).len(), 3);
    assert_eq!(
        scans(&clamd) - before,
        3,
        "replica A scans each message once"
    );
    assert!(
        !redis.keys("portcullis:v1:*").is_empty(),
        "nothing shared over the socket"
    );
    let mut client = imap_login(b.port(0), &dovecot, "EXAMINE");
    assert_eq!(bodies(&mut client, 1..=3).len(), 3);
    assert_eq!(scans(&clamd) - before, 3, "replica B used A's verdicts");
}

#[test]
fn replicas_on_rediss_share_verdicts_and_an_untrusted_store_is_refused() {
    let store_ca = TestCa::new();
    let redis = Redis::start_tls(TlsFiles {
        cert: store_ca.cert_path(),
        key: store_ca.key_path(),
        ca: store_ca.ca_pem_path(),
    });
    let (dovecot, clamd) = (Dovecot::start(), counting_clamd());
    seed(&dovecot);
    let q = tempfile::tempdir().expect("dir");
    let trusted = format!(
        "redis = {:?}\nca = {:?}\n",
        redis.url(),
        store_ca.ca_pem_path().display().to_string()
    );
    assert!(redis.url().starts_with("rediss://"));
    let a = replica_with(&dovecot, &clamd, &trusted, q.path());
    let b = replica_with(&dovecot, &clamd, &trusted, q.path());
    let before = scans(&clamd);
    let mut client = imap_login(a.port(0), &dovecot, "EXAMINE");
    assert_eq!(bodies(&mut client, 1..=3).len(), 3);
    assert_eq!(scans(&clamd) - before, 3);
    assert!(
        !redis.keys("portcullis:v1:*").is_empty(),
        "nothing shared over TLS"
    );
    let mut client = imap_login(b.port(0), &dovecot, "EXAMINE");
    assert_eq!(bodies(&mut client, 1..=3).len(), 3);
    assert_eq!(
        scans(&clamd) - before,
        3,
        "replica B used A's verdicts over TLS"
    );
    // A replica that does not trust the store's certificate (system roots) shares nothing but
    // still serves every message, scanning it itself.
    let untrusted = format!("redis = {:?}\n", redis.url());
    let c = replica_with(&dovecot, &clamd, &untrusted, q.path());
    let mut client = imap_login(c.port(0), &dovecot, "EXAMINE");
    assert_eq!(bodies(&mut client, 1..=3).len(), 3);
    assert_eq!(
        scans(&clamd) - before,
        6,
        "the untrusting replica scanned alone"
    );
}
