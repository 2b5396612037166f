//! Two portcullis replicas sharing state in a real redis-server (`[cluster]`): the pieces
//! `tests/cluster.rs` and `benches/cluster_bench.rs` share.

use super::clamd::{Clamd, ClamdOptions};
use super::dovecot::Dovecot;
use super::proxy::TestProxy;
use super::redis::Redis;
use super::scanning::{clamd_endpoint, fetch, imap_config, scan_section, Client};

/// A clamd that logs every scan, clean or not, and never answers from its cache.
pub fn counting_clamd() -> Clamd {
    Clamd::start_with(ClamdOptions {
        disable_cache: true,
        extra_config: vec!["LogClean yes".into()],
        ..ClamdOptions::default()
    })
}

/// INSTREAM scans clamd answered so far (clean or not).
pub fn scans(clamd: &Clamd) -> usize {
    clamd
        .log_contents()
        .lines()
        .filter(|line| line.contains("stream") && (line.contains(": OK") || line.contains("FOUND")))
        .count()
}

/// A small clean message, distinct per `tag` and `n`.
pub fn clean(tag: &str, n: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {tag} {n}\r\nMessage-ID: <{tag}.{n}@x>\r\n\r\nbody {tag} {n}\r\n"
    )
    .into_bytes()
}

/// A replica: IMAPS in front of `dovecot`, scanning with `clamd`, sharing through `redis`.
pub fn replica(
    dovecot: &Dovecot,
    clamd: &Clamd,
    redis: &Redis,
    quarantine: &std::path::Path,
) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "")
        + &format!(
            "[cluster]\nredis = {:?}\ntimeout = \"300ms\"\nretry_after = \"200ms\"\nlock_ttl = \"10s\"\n\n\
             [limits]\nauth_penalty_initial = \"600ms\"\n\n",
            redis.url()
        );
    TestProxy::start(&imap_config(dovecot, &scan))
}

/// Every message body (`BODY.PEEK[]`) of sequence numbers `seqs`.
pub fn bodies(client: &mut Client, seqs: std::ops::RangeInclusive<usize>) -> Vec<Vec<u8>> {
    seqs.map(|seq| {
        let (_, literals, status) = fetch(client, &format!("FETCH {seq} BODY.PEEK[]"));
        assert!(status.starts_with("f OK"), "{seq}: {status}");
        literals.into_iter().next().expect("a body")
    })
    .collect()
}
