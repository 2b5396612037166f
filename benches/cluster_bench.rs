//! Two replicas sharing verdicts in a real redis-server (issue 13), behind a real HAProxy in TCP
//! mode with PROXY protocol v2 (round-robin, so consecutive sessions land on different
//! replicas): a cold mailbox fetched through one replica, then through the other; prints both
//! throughputs and the clamd scans each caused (counted in clamd's own log).
//!
//! Run: `cargo bench --bench cluster_bench` (as root, with the test dependencies installed).
//! Knobs: `PORTCULLIS_BENCH_MESSAGES` (default 300), `PORTCULLIS_BENCH_SIZE` in octets (default
//! 20000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::cluster::{
    bodies, clean, counting_clamd, replica_behind_load_balancer, scans, HaProxy,
};
use support::dovecot::Dovecot;
use support::redis::Redis;
use support::scanning::imap_login;

fn main() {
    let count: usize = std::env::var("PORTCULLIS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let size: usize = std::env::var("PORTCULLIS_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (dovecot, clamd, redis) = (Dovecot::start(), counting_clamd(), Redis::start());
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|n| {
            let mut m = clean("bench", n);
            m.extend(
                std::iter::repeat_n(b'x', size)
                    .collect::<Vec<u8>>()
                    .chunks(76)
                    .flat_map(|line| [line, b"\r\n"].concat()),
            );
            m
        })
        .collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let q = tempfile::tempdir().unwrap();
    let a = replica_behind_load_balancer(&dovecot, &clamd, &redis, q.path());
    let b = replica_behind_load_balancer(&dovecot, &clamd, &redis, q.path());
    let haproxy = HaProxy::start(&[a.port(0), b.port(0)]);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let mut report = Vec::new();
    // Round-robin alternates replicas: consecutive sessions land on different ones.
    for name in ["first replica (cold)", "the other replica"] {
        let mut client = imap_login(haproxy.port, &dovecot, "EXAMINE");
        let before = scans(&clamd);
        let started = Instant::now();
        let fetched = bodies(&mut client, 1..=count);
        let elapsed = started.elapsed();
        assert_eq!(fetched.len(), count);
        report.push(format!(
            "{name}: {count} messages, {:.1} MB in {:.2} s = {:.0} msg/s, {:.1} MB/s; clamd scans {}",
            bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            scans(&clamd) - before
        ));
    }
    let keys = redis.keys("portcullis:v1:*").len();
    eprintln!("{}\nstore keys: {keys}", report.join("\n"));
}
