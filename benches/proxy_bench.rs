//! What portcullis costs compared with talking to the backend directly.
//!
//! One run starts a private Dovecot, seeds a fixed corpus (20 messages of about 1 MB, each with
//! unique content, plus the harness's clean corpus), starts portcullis in-process with
//! implicit-TLS listeners (RFC 8314) in front of Dovecot's plaintext IMAP and POP3 ports, and
//! measures both paths over TLS:
//!
//! - IMAP `FETCH 1:* (BODY.PEEK[])` throughput (RFC 3501 §6.4.5), Dovecot's imaps port vs the
//!   portcullis listener;
//! - IMAP `NOOP` round-trip latency (RFC 3501 §6.1.2), median and p99;
//! - POP3 `RETR` throughput (RFC 1939 §7), Dovecot's pop3s port vs the portcullis listener
//!   (reported as "not available" when the POP3 listener does not serve yet);
//! - with `[scan]` and a real clamd: cold-scan FETCH throughput vs raw clamd INSTREAM of the same
//!   bytes, and cached-refetch throughput vs Dovecot directly.
//!
//! Run: `cargo bench --bench proxy_bench` (as root; needs `scripts/install-test-deps.sh`).
//! Knobs: `BENCH_ROUNDS` (whole-corpus fetches per path, default 5), `BENCH_NOOPS` (default 2000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use support::certs::TestCa;
use support::dovecot::Dovecot;
use support::mime::{message, pseudo_random, Part};
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use support::raw::{connect_tls, LineClient, TlsStream};

/// Number of ~1 MB messages in the corpus.
const LARGE_MESSAGES: usize = 20;
/// Raw attachment size of each large message (base64 makes the message about 1 MB).
const LARGE_ATTACHMENT: usize = 768 * 1024;
/// Unmeasured operations before each latency series.
const WARMUP_NOOPS: usize = 100;

/// A TLS client connection.
type Client = LineClient<TlsStream>;

/// Run parameters, from the environment.
struct Settings {
    rounds: usize,
    noops: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        Settings {
            rounds: number("BENCH_ROUNDS", 5),
            noops: number("BENCH_NOOPS", 2000),
        }
    }
}

/// Everything a measurement needs: the backend, the proxy and the corpus.
struct Bench {
    dovecot: Dovecot,
    proxy: TestProxy,
    corpus: Vec<Vec<u8>>,
    settings: Settings,
}

/// Listener indexes in the proxy configuration.
const IMAP_LISTENER: usize = 0;
const POP3_LISTENER: usize = 1;

impl Bench {
    fn start(settings: Settings) -> Bench {
        let dovecot = Dovecot::start();
        let corpus = corpus();
        dovecot.seed_messages(dovecot.user(), &corpus);
        let mut toml = tls_section(&dovecot);
        toml += &listener("imaps", "imap", "implicit", "dovecot-imap");
        toml += &listener("pop3s", "pop3", "implicit", "dovecot-pop3");
        toml += &dovecot_backend("dovecot-imap", &dovecot, "imap", "none");
        toml += &dovecot_backend("dovecot-pop3", &dovecot, "pop3", "none");
        let proxy = TestProxy::start(&toml);
        Bench {
            dovecot,
            proxy,
            corpus,
            settings,
        }
    }

    fn corpus_bytes(&self) -> usize {
        self.corpus.iter().map(Vec::len).sum()
    }
}

/// 20 unique ~1 MB messages followed by the clean corpus of the test harness.
fn corpus() -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = (0..LARGE_MESSAGES)
        .map(|i| {
            let root = Part::multipart(
                "mixed",
                "bench-boundary",
                vec![
                    Part::text("Benchmark payload attached.\n"),
                    Part::attachment(
                        "payload.bin",
                        "application/octet-stream",
                        &pseudo_random(1000 + i as u64, LARGE_ATTACHMENT),
                    ),
                ],
            );
            message(&format!("bench-{i}"), &format!("Payload {i}"), root)
        })
        .collect();
    messages.extend(
        support::corpus::clean_messages()
            .into_iter()
            .map(|(_, bytes)| bytes),
    );
    messages
}

/// One line of the result table; `ratio` is always portcullis / direct.
struct Row {
    name: String,
    unit: &'static str,
    direct: f64,
    proxy: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// IMAP

fn imap_session(port: u16, ca: &TestCa, user: &str, password: &str) -> Client {
    let mut client = connect_tls(port, ca);
    let greeting = client.read_line();
    assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
    let (_, status) = client.imap("l1", &format!("LOGIN {user} {password}"));
    assert!(status.starts_with("l1 OK"), "LOGIN: {status}");
    let (_, status) = client.imap("e1", "EXAMINE INBOX");
    assert!(status.starts_with("e1 OK"), "EXAMINE: {status}");
    client
}

/// Fetches every message's `BODY[]`; returns the bodies and the time taken.
fn fetch_corpus(client: &mut Client) -> (Vec<Vec<u8>>, Duration) {
    let start = Instant::now();
    let (responses, status) = client.imap("f1", "FETCH 1:* (BODY.PEEK[])");
    let elapsed = start.elapsed();
    assert!(status.starts_with("f1 OK"), "FETCH: {status}");
    let bodies = responses.into_iter().flat_map(|r| r.literals).collect();
    (bodies, elapsed)
}

/// Throughput in MB/s (10^6 bytes per second).
fn megabytes_per_second(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn imap_fetch_throughput(bench: &Bench) -> Row {
    let (dovecot, ca) = (&bench.dovecot, &bench.dovecot.ca);
    let mut direct = imap_session(dovecot.imaps_port, ca, dovecot.user(), dovecot.password());
    let mut proxied = imap_session(
        bench.proxy.port(IMAP_LISTENER),
        ca,
        dovecot.user(),
        dovecot.password(),
    );
    // Warm-up round (page cache, TLS session state); also checks both paths agree byte for byte.
    let (direct_bodies, _) = fetch_corpus(&mut direct);
    let (proxied_bodies, _) = fetch_corpus(&mut proxied);
    assert!(
        direct_bodies == bench.corpus,
        "Dovecot returns the seeded bytes"
    );
    assert!(proxied_bodies == direct_bodies, "portcullis changed bytes");
    let (mut direct_time, mut proxied_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..bench.settings.rounds {
        direct_time += fetch_corpus(&mut direct).1;
        proxied_time += fetch_corpus(&mut proxied).1;
    }
    let bytes = bench.corpus_bytes() * bench.settings.rounds;
    Row {
        name: "IMAP FETCH BODY.PEEK[]".into(),
        unit: "MB/s",
        direct: megabytes_per_second(bytes, direct_time),
        proxy: Some(megabytes_per_second(bytes, proxied_time)),
    }
}

/// Round-trip times of `count` NOOPs, in microseconds, sorted.
fn noop_latencies(client: &mut Client, count: usize) -> Vec<f64> {
    for i in 0..WARMUP_NOOPS {
        let (_, status) = client.imap(&format!("w{i}"), "NOOP");
        assert!(status.contains(" OK"), "NOOP: {status}");
    }
    let mut micros: Vec<f64> = (0..count)
        .map(|i| {
            let start = Instant::now();
            let (_, status) = client.imap(&format!("n{i}"), "NOOP");
            let elapsed = start.elapsed();
            assert!(status.contains(" OK"), "NOOP: {status}");
            elapsed.as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    micros
}

/// The `q`-quantile (0..=1) of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn imap_noop_latency(bench: &Bench) -> Vec<Row> {
    let (dovecot, ca) = (&bench.dovecot, &bench.dovecot.ca);
    let mut direct = imap_session(dovecot.imaps_port, ca, dovecot.user(), dovecot.password());
    let mut proxied = imap_session(
        bench.proxy.port(IMAP_LISTENER),
        ca,
        dovecot.user(),
        dovecot.password(),
    );
    let direct_times = noop_latencies(&mut direct, bench.settings.noops);
    let proxied_times = noop_latencies(&mut proxied, bench.settings.noops);
    [("median", 0.5), ("p99", 0.99)]
        .into_iter()
        .map(|(label, q)| Row {
            name: format!("IMAP NOOP {label} ({} ops)", bench.settings.noops),
            unit: "µs",
            direct: quantile(&direct_times, q),
            proxy: Some(quantile(&proxied_times, q)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// POP3

fn pop3_session(port: u16, ca: &TestCa, user: &str, password: &str) -> Result<Client, String> {
    let mut client = connect_tls(port, ca);
    let greeting = client.read_line();
    if !greeting.starts_with("+OK") {
        return Err(format!("greeting {greeting:?}"));
    }
    for command in [format!("USER {user}"), format!("PASS {password}")] {
        let status = client.pop3(&command);
        if !status.starts_with("+OK") {
            return Err(format!("{} answered {status:?}", &command[..4]));
        }
    }
    Ok(client)
}

/// RETRs messages 1..=count; returns the (unstuffed) bodies and the time taken.
fn retr_all(client: &mut Client, count: usize) -> Result<(Vec<Vec<u8>>, Duration), String> {
    let start = Instant::now();
    let mut bodies = Vec::with_capacity(count);
    for number in 1..=count {
        let status = client.pop3(&format!("RETR {number}"));
        if !status.starts_with("+OK") {
            return Err(format!("RETR {number} answered {status:?}"));
        }
        bodies.push(client.read_pop3_multiline());
    }
    Ok((bodies, start.elapsed()))
}

/// Warm-up plus `rounds` measured RETR passes over the corpus on one connection.
fn pop3_pass(bench: &Bench, port: u16) -> Result<Duration, String> {
    let dovecot = &bench.dovecot;
    let mut client = pop3_session(port, &dovecot.ca, dovecot.user(), dovecot.password())?;
    let count = bench.corpus.len();
    let (bodies, _) = retr_all(&mut client, count)?;
    if bodies != bench.corpus {
        return Err("RETR bodies differ from the seeded corpus".into());
    }
    let mut total = Duration::ZERO;
    for _ in 0..bench.settings.rounds {
        total += retr_all(&mut client, count)?.1;
    }
    Ok(total)
}

fn pop3_retr_throughput(bench: &Bench) -> Row {
    let bytes = bench.corpus_bytes() * bench.settings.rounds;
    let direct = pop3_pass(bench, bench.dovecot.pop3s_port)
        .unwrap_or_else(|e| panic!("direct POP3 to Dovecot failed: {e}"));
    let proxied = quietly(|| pop3_pass(bench, bench.proxy.port(POP3_LISTENER)));
    let proxy = match proxied {
        Ok(elapsed) => Some(megabytes_per_second(bytes, elapsed)),
        Err(reason) => {
            println!("pop3: not available ({reason})");
            None
        }
    };
    Row {
        name: "POP3 RETR".into(),
        unit: "MB/s",
        direct: megabytes_per_second(bytes, direct),
        proxy,
    }
}

/// Runs `f`, turning a panic (e.g. the client seeing EOF) into an error without printing it.
fn quietly<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "client panicked".into())),
    }
}

// ---------------------------------------------------------------------------------------------
// SCANNING

/// Cold-scan and cached-refetch throughput through a portcullis with `[scan]` and a real clamd
/// (`DisableCache yes`, so clamd itself never answers from its hash cache):
/// (a) cold scan: the first `FETCH 1:* (BODY.PEEK[])` through the scanning proxy, against raw
///     clamd INSTREAM of the same bytes (one message after another, as the proxy scans them);
/// (b) cached refetch: the same FETCH again (verdicts from portcullis's cache, no clamd call),
///     against a direct fetch from Dovecot's TLS port.
fn scan_throughput(bench: &Bench) -> Vec<Row> {
    let dovecot = &bench.dovecot;
    let clamd = support::clamd::Clamd::start_with(support::clamd::ClamdOptions {
        disable_cache: true,
        stream_max_length: Some("64M".into()),
        ..Default::default()
    });
    let quarantine = tempfile::tempdir().expect("quarantine dir");
    let mut toml = tls_section(dovecot);
    toml += &format!(
        "[scan]\nclamd = [{:?}]\nquarantine_dir = {:?}\n\n",
        clamd.tcp_addr(),
        quarantine.path().display().to_string()
    );
    toml += &listener("imaps-scan", "imap", "implicit", "dovecot-imap");
    toml += &dovecot_backend("dovecot-imap", dovecot, "imap", "none");
    let scanning = TestProxy::start(&toml);
    let bytes = bench.corpus_bytes();
    let raw_start = Instant::now();
    for message in &bench.corpus {
        let reply = clamd.scan_raw(message);
        assert_eq!(reply, "stream: OK", "clamd INSTREAM");
    }
    let raw_clamd = raw_start.elapsed();
    let mut client = imap_session(
        scanning.port(0),
        &dovecot.ca,
        dovecot.user(),
        dovecot.password(),
    );
    let (bodies, cold) = fetch_corpus(&mut client);
    assert!(bodies == bench.corpus, "scanned fetch changed clean bytes");
    let mut direct = imap_session(
        dovecot.imaps_port,
        &dovecot.ca,
        dovecot.user(),
        dovecot.password(),
    );
    fetch_corpus(&mut direct);
    let (mut cached, mut plain) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..bench.settings.rounds {
        cached += fetch_corpus(&mut client).1;
        plain += fetch_corpus(&mut direct).1;
    }
    let refetched = bytes * bench.settings.rounds;
    vec![
        Row {
            name: "cold scan FETCH vs clamd".into(),
            unit: "MB/s",
            direct: megabytes_per_second(bytes, raw_clamd),
            proxy: Some(megabytes_per_second(bytes, cold)),
        },
        Row {
            name: "cached refetch vs Dovecot".into(),
            unit: "MB/s",
            direct: megabytes_per_second(refetched, plain),
            proxy: Some(megabytes_per_second(refetched, cached)),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Report

fn print_table(bench: &Bench, rows: &[Row]) {
    println!();
    println!(
        "portcullis proxy benchmark: {} messages, {:.1} MB corpus, {} rounds, all paths over TLS",
        bench.corpus.len(),
        bench.corpus_bytes() as f64 / 1e6,
        bench.settings.rounds
    );
    println!("direct = Dovecot's own TLS port; portcullis = TLS listener -> plaintext backend,");
    println!(
        "  no [scan] section (rules + built-in EICAR check, no clamd); after one warm-up pass"
    );
    println!("scan rows: 'direct' is raw clamd INSTREAM (cold) or Dovecot's TLS port (cached);");
    println!("  portcullis there runs [scan] with a real clamd (DisableCache yes)");
    println!(
        "{:<30} {:>14} {:>14} {:>8}",
        "measurement", "direct", "portcullis", "ratio"
    );
    for row in rows {
        let (proxy, ratio) = match row.proxy {
            Some(value) => (
                format!("{value:.1} {}", row.unit),
                format!("{:.2}", value / row.direct),
            ),
            None => ("n/a".to_string(), "-".to_string()),
        };
        println!(
            "{:<30} {:>14} {:>14} {:>8}",
            row.name,
            format!("{:.1} {}", row.direct, row.unit),
            proxy,
            ratio
        );
    }
    println!(
        "ratio = portcullis / direct (throughput: higher is better; latency: lower is better)"
    );
}

fn main() {
    let settings = Settings::from_env();
    println!("proxy_bench: starting Dovecot and portcullis, seeding the corpus...");
    let bench = Bench::start(settings);
    let mut rows = vec![imap_fetch_throughput(&bench)];
    rows.extend(imap_noop_latency(&bench));
    rows.push(pop3_retr_throughput(&bench));
    rows.extend(scan_throughput(&bench));
    print_table(&bench, &rows);
}
