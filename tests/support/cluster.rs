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
    TestProxy::start(&replica_config(dovecot, clamd, redis, quarantine))
}

/// A [`replica`] whose `[cluster]` section starts with `cluster` (`redis = …` and, for
/// `rediss://`, `ca = …`).
pub fn replica_with(
    dovecot: &Dovecot,
    clamd: &Clamd,
    cluster: &str,
    quarantine: &std::path::Path,
) -> TestProxy {
    TestProxy::start(&config_with(dovecot, clamd, cluster, quarantine))
}

/// A [`replica`] whose listener expects a PROXY protocol header from a load balancer on
/// 127.0.0.1 (HAProxy's `send-proxy-v2`).
pub fn replica_behind_load_balancer(
    dovecot: &Dovecot,
    clamd: &Clamd,
    redis: &Redis,
    quarantine: &std::path::Path,
) -> TestProxy {
    let config = replica_config(dovecot, clamd, redis, quarantine).replacen(
        "backend = \"dovecot\"\n",
        "backend = \"dovecot\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    );
    TestProxy::start(&config)
}

fn replica_config(
    dovecot: &Dovecot,
    clamd: &Clamd,
    redis: &Redis,
    quarantine: &std::path::Path,
) -> String {
    let cluster = format!("redis = {:?}\n", redis.url());
    config_with(dovecot, clamd, &cluster, quarantine)
}

fn config_with(
    dovecot: &Dovecot,
    clamd: &Clamd,
    cluster: &str,
    quarantine: &std::path::Path,
) -> String {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "")
        + &format!(
            "[cluster]\n{cluster}timeout = \"300ms\"\nretry_after = \"200ms\"\nlock_ttl = \"10s\"\n\n\
             [limits]\nauth_penalty_initial = \"600ms\"\n\n"
        );
    imap_config(dovecot, &scan)
}

/// A real HAProxy in TCP mode on an ephemeral loopback port, spreading connections round-robin
/// over `servers` (ports on 127.0.0.1) with a PROXY v2 header each; killed when dropped.
pub struct HaProxy {
    /// The port clients connect to.
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy in front of `servers`; the first connection goes to the first server.
    pub fn start(servers: &[u16]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::ports::free_port();
        let mut config = format!(
            "global\n    maxconn 1000\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
             timeout client 5m\n    timeout server 5m\nfrontend imaps\n    bind 127.0.0.1:{port}\n    \
             default_backend replicas\nbackend replicas\n    balance roundrobin\n"
        );
        for (index, server) in servers.iter().enumerate() {
            config.push_str(&format!(
                "    server r{index} 127.0.0.1:{server} send-proxy-v2\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start haproxy (scripts/install-test-deps.sh installs it)");
        assert!(
            super::ports::wait_for_port(port, std::time::Duration::from_secs(10)),
            "haproxy did not listen on {port}"
        );
        HaProxy {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
