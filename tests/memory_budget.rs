//! The global memory budget (`[limits] memory`) on the real `portcullis serve` binary in front of
//! a real Dovecot: clients that ask for a ~9 MiB message and never read cannot push the proxy's
//! resident memory past the budget (plus slack); the sessions waiting for budget proceed once the
//! stalled ones go away, and a normal client then gets the message intact — over IMAP FETCH and
//! POP3 RETR. A session that waits `memory_wait` in vain ends with the protocol's busy line. A
//! control run with a huge budget shows the same stalled clients do exceed the bound.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::Dovecot;
use support::ops::empty_rules;
use support::process::KilledOnDrop;
use support::proxy::{dovecot_backend, listener, tls_section};
use support::raw::{connect, LineClient};
use support::{free_port, wait_for_port};

const MIB: u64 = 1 << 20;
/// The message the stalled clients ask for.
const MESSAGE_SIZE: usize = 9 << 20;
/// Clients that ask for it and never read.
const STALLED: usize = 6;
/// Resident memory the proxy may gain over the budget (allocator slack, read buffers, copies
/// made while a response is rewritten).
const SLACK: u64 = 16 * MIB;

/// A `portcullis serve` child with an IMAP and a POP3 listener (plaintext), killed on drop.
struct Serve {
    child: KilledOnDrop,
    imap: u16,
    pop3: u16,
    metrics: u16,
}

impl Serve {
    fn start(dovecot: &Dovecot, dir: &Path, limits: &str) -> Serve {
        let (_rules, scan) = empty_rules();
        for _ in 0..5 {
            let (imap, pop3, metrics) = (free_port(), free_port(), free_port());
            let config = format!("[limits]\n{limits}\n\n")
                + &scan
                + &tls_section(dovecot)
                + &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n")
                + &listener("imap", "imap", "none", "imap")
                    .replace("127.0.0.1:0", &format!("127.0.0.1:{imap}"))
                + &listener("pop3", "pop3", "none", "pop3")
                    .replace("127.0.0.1:0", &format!("127.0.0.1:{pop3}"))
                + &dovecot_backend("imap", dovecot, "imap", "none")
                + &dovecot_backend("pop3", dovecot, "pop3", "none");
            let path = dir.join("portcullis.toml");
            fs::write(&path, config).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("serve")
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn portcullis");
            let mut serve = Serve {
                child: KilledOnDrop(child),
                imap,
                pop3,
                metrics,
            };
            if [imap, pop3, metrics]
                .iter()
                .all(|port| wait_for_port(*port, Duration::from_secs(20)))
            {
                return serve;
            }
            assert!(
                serve.child.try_wait().unwrap().is_some(),
                "neither listens nor exits"
            );
        }
        panic!("portcullis did not start in 5 attempts");
    }

    /// `VmRSS` of the proxy process, in octets.
    fn rss(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// An unlabelled series (or one with its labels spelled out) from the metrics endpoint.
    fn metric(&self, series: &str) -> f64 {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.metrics)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{series} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series}"))
    }

    /// Watches the proxy for `duration`: the largest RSS and reservation seen.
    fn watch(&self, duration: Duration) -> (u64, u64) {
        let (mut rss, mut reserved) = (0, 0);
        let until = Instant::now() + duration;
        while Instant::now() < until {
            rss = rss.max(self.rss());
            reserved = reserved.max(self.metric("portcullis_memory_reserved_bytes") as u64);
            std::thread::sleep(Duration::from_millis(100));
        }
        (rss, reserved)
    }
}

/// A deterministic message of about `size` octets (text lines, no dot at a line start).
fn message(size: usize) -> Vec<u8> {
    let mut text = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n".to_vec();
    let mut n = 0u64;
    while text.len() < size {
        n += 1;
        text.extend_from_slice(
            format!("line {n:010} of a large message body .......\r\n").as_bytes(),
        );
    }
    text
}

fn imap_login(port: u16, dovecot: &Dovecot) -> LineClient<TcpStream> {
    let mut client = connect(port);
    assert!(client.read_line().starts_with("* OK"));
    let (_, status) = client.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l OK"), "{status}");
    let (_, status) = client.imap("s", "SELECT INBOX");
    assert!(status.starts_with("s OK"), "{status}");
    client
}

/// Fetches message 1 whole and returns its body.
fn imap_fetch(client: &mut LineClient<TcpStream>) -> Vec<u8> {
    let (untagged, status) = client.imap("f", "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK"), "{status}");
    let fetch = untagged
        .iter()
        .find(|r| r.raw.starts_with(b"* 1 FETCH"))
        .expect("FETCH response");
    fetch.literals.first().cloned().expect("body literal")
}

fn pop3_login(port: u16, dovecot: &Dovecot) -> LineClient<TcpStream> {
    let mut client = connect(port);
    assert!(client.read_line().starts_with("+OK"));
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    let pass = client.pop3(&format!("PASS {}", dovecot.password()));
    assert!(pass.starts_with("+OK"), "{pass}");
    client
}

/// Clients that ask for message 1 (`command`) and never read a byte of the answer.
fn stalled(
    count: usize,
    login: impl Fn() -> LineClient<TcpStream>,
    command: &str,
) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut client = login();
            client.send_line(command);
            client.into_inner()
        })
        .collect()
}

fn close_all(streams: Vec<TcpStream>) {
    for stream in streams {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Starts Dovecot with the big message and the proxy with `limits`.
fn setup(limits: &str) -> (Dovecot, tempfile::TempDir, Serve, Vec<u8>) {
    let dovecot = Dovecot::start();
    let body = message(MESSAGE_SIZE);
    dovecot.seed_messages(dovecot.user(), std::slice::from_ref(&body));
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dovecot, dir.path(), limits);
    (dovecot, dir, serve, body)
}

/// Stalled IMAP clients against `budget`: the RSS the proxy gained over a warm baseline while
/// they stall, and the largest reservation seen.
fn stalled_imap_growth(
    serve: &Serve,
    dovecot: &Dovecot,
    body: &[u8],
) -> (u64, u64, Vec<TcpStream>) {
    // Warm up (one whole FETCH), so the baseline includes the allocator's first big arenas.
    let mut warm = imap_login(serve.imap, dovecot);
    assert!(imap_fetch(&mut warm) == body, "warm-up FETCH intact");
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = serve.rss();
    let streams = stalled(
        STALLED,
        || imap_login(serve.imap, dovecot),
        "f FETCH 1 BODY.PEEK[]",
    );
    let (rss, reserved) = serve.watch(Duration::from_secs(6));
    (rss.saturating_sub(baseline), reserved, streams)
}

#[test]
fn stalled_imap_fetches_stay_within_the_budget_and_waiters_proceed_after_them() {
    let budget = 24 * MIB;
    let (dovecot, _dir, serve, body) = setup("memory = \"24MiB\"\nmemory_wait = \"120s\"");
    assert_eq!(
        serve.metric("portcullis_memory_budget_bytes") as u64,
        budget
    );
    let (growth, reserved, streams) = stalled_imap_growth(&serve, &dovecot, &body);
    eprintln!(
        "IMAP, budget 24 MiB: RSS growth {} MiB, reserved at most {} MiB",
        growth / MIB,
        reserved / MIB
    );
    assert!(reserved <= budget, "reserved {reserved} over the budget");
    assert!(growth <= budget + SLACK, "RSS grew by {} MiB", growth / MIB);
    assert!(
        serve.metric("portcullis_memory_waits_total") >= 1.0,
        "some session waited"
    );

    // A normal client asks now: it waits behind the stalled ones, and gets the message intact
    // once they are gone.
    let port = serve.imap;
    let reader = std::thread::spawn({
        let user = (dovecot.user(), dovecot.password());
        move || {
            let mut client = connect(port);
            assert!(client.read_line().starts_with("* OK"));
            let (_, status) = client.imap("l", &format!("LOGIN {} {}", user.0, user.1));
            assert!(status.starts_with("l OK"), "{status}");
            client.imap("s", "SELECT INBOX");
            imap_fetch(&mut client)
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !reader.is_finished(),
        "the budget was spent: the reader must wait"
    );
    close_all(streams);
    assert!(
        reader.join().unwrap() == body,
        "FETCH after the stalled clients left: intact"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while serve.metric("portcullis_memory_reserved_bytes") as u64 > MIB {
        assert!(Instant::now() < deadline, "reservations not returned");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The control: without a meaningful budget the same stalled clients exceed the bound, so the
/// bound above is the budget's doing.
#[test]
fn without_a_budget_the_same_stalled_fetches_exceed_the_bound() {
    let (dovecot, _dir, serve, body) = setup("memory = \"4096GiB\"");
    let (growth, _, streams) = stalled_imap_growth(&serve, &dovecot, &body);
    eprintln!("IMAP, no budget: RSS growth {} MiB", growth / MIB);
    assert!(
        growth > 24 * MIB + SLACK,
        "RSS grew by only {} MiB",
        growth / MIB
    );
    close_all(streams);
}

#[test]
fn stalled_pop3_retrs_stay_within_the_budget_and_a_reader_gets_the_message_after_them() {
    let budget = 24 * MIB;
    let (dovecot, _dir, serve, body) = setup("memory = \"24MiB\"\nmemory_wait = \"120s\"");
    let mut warm = pop3_login(serve.pop3, &dovecot);
    assert!(warm.pop3("RETR 1").starts_with("+OK"));
    assert!(warm.read_pop3_multiline() == body, "warm-up RETR intact");
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = serve.rss();
    let streams = stalled(STALLED, || pop3_login(serve.pop3, &dovecot), "RETR 1");
    let (rss, reserved) = serve.watch(Duration::from_secs(6));
    let growth = rss.saturating_sub(baseline);
    eprintln!(
        "POP3, budget 24 MiB: RSS growth {} MiB, reserved at most {} MiB",
        growth / MIB,
        reserved / MIB
    );
    assert!(reserved <= budget, "reserved {reserved} over the budget");
    assert!(growth <= budget + SLACK, "RSS grew by {} MiB", growth / MIB);
    close_all(streams);
    let mut reader = pop3_login(serve.pop3, &dovecot);
    assert!(reader.pop3("RETR 1").starts_with("+OK"));
    assert!(
        reader.read_pop3_multiline() == body,
        "RETR after the stalled clients left: intact"
    );
}

#[test]
fn a_session_that_waits_memory_wait_in_vain_ends_with_the_busy_line() {
    let (dovecot, _dir, serve, body) = setup("memory = \"14MiB\"\nmemory_wait = \"2s\"");
    let before = serve.metric("portcullis_limit_rejections_total{limit=\"memory\"}");
    // One stalled FETCH holds most of the budget (the 9 MiB message, held until it is written),
    // so a second FETCH of it cannot be covered.
    let holder = stalled(
        1,
        || imap_login(serve.imap, &dovecot),
        "f FETCH 1 BODY.PEEK[]",
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut imap = imap_login(serve.imap, &dovecot);
    imap.send_line("f FETCH 1 BODY.PEEK[]");
    let started = Instant::now();
    assert_eq!(
        imap.read_line(),
        "* BYE [UNAVAILABLE] Server busy (memory), try again later"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ended before memory_wait"
    );
    let mut pop3 = pop3_login(serve.pop3, &dovecot);
    pop3.send_line("RETR 1");
    assert_eq!(
        pop3.read_line(),
        "-ERR [SYS/TEMP] server busy (memory), try again later"
    );
    assert!(serve.metric("portcullis_limit_rejections_total{limit=\"memory\"}") >= before + 2.0);
    close_all(holder);
    // With the holder gone the message is served again.
    let mut reader = imap_login(serve.imap, &dovecot);
    assert!(imap_fetch(&mut reader) == body);
}
