//! The command load of the imaptest bench: the real `imaptest` binary (its default stress
//! profile, `logout=0`) and, as a cross-check that needs nothing installed, a built-in mix of
//! the same kinds of commands (SELECT, LIST, UID FETCH of flags/envelope/structure, FETCH of a
//! whole message, STORE, STORE \Deleted + EXPUNGE, APPEND) from blocking TLS clients.
//! Both count completed commands over a fixed time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::certs::TestCa;
use crate::support::mime::{message, pseudo_random, Part};
use crate::support::raw::{tls_over, LineClient};

/// A client's byte stream: TLS or plain TCP.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A client connection (TLS or plaintext).
pub type Client = LineClient<Box<dyn Stream>>;

/// Read timeout of the bench's clients (a cold scan of a whole mailbox can take a while).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Messages the load appends (and imaptest's mbox holds): `count` realistic small and medium
/// messages (1 to ~60 KB: plain text, multipart with a PDF-like or binary attachment), each with a
/// unique Message-ID.
pub fn append_corpus(count: usize) -> Vec<Vec<u8>> {
    let clean: Vec<Vec<u8>> = crate::support::corpus::small_clean_messages(8);
    (0..count)
        .map(|i| {
            let words = 40 + (i * 37) % 900;
            let text: String = (0..words)
                .map(|w| ["lorem", "ipsum", "mail", "proxy", "scan", "dovecot"][(w + i) % 6])
                .collect::<Vec<_>>()
                .chunks(12)
                .map(|line| line.join(" ") + "\n")
                .collect();
            let root = match i % 4 {
                0 | 1 => Part::text(&text),
                2 => Part::multipart(
                    "mixed",
                    &format!("b-{i}"),
                    vec![
                        Part::text(&text),
                        Part::attachment(
                            "data.bin",
                            "application/octet-stream",
                            &pseudo_random(50_000 + i as u64, 2_000 + (i * 397) % 40_000),
                        ),
                    ],
                ),
                _ => {
                    // Re-use a harness corpus message body under a unique Message-ID.
                    let base = &clean[i % clean.len()];
                    let split = find(base, b"\r\n\r\n").map_or(0, |p| p + 4);
                    let body = String::from_utf8_lossy(&base[split..]).replace("\r\n", "\n");
                    Part::text(&body)
                }
            };
            message(&format!("imaptest-{i}"), &format!("Load message {i}"), root)
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `messages` as an mbox file (CRLF, `>From ` quoting) for imaptest's `mbox=`.
pub fn write_mbox(path: &Path, messages: &[Vec<u8>]) {
    let mut out = Vec::new();
    for msg in messages {
        out.extend_from_slice(b"From sender@example.org Tue Nov 14 10:00:00 2023\r\n");
        for line in msg.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
        }
        if !msg.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    std::fs::write(path, out).expect("write the mbox");
}

/// imaptest's counters for one run: column names and totals.
#[derive(Debug, Clone)]
pub struct ImaptestTotals {
    /// (state abbreviation, count), e.g. ("Fetc", 1234).
    pub columns: Vec<(String, u64)>,
}

impl ImaptestTotals {
    /// Sum of all columns except logins and logouts (one each per client with `logout=0`).
    pub fn commands(&self) -> u64 {
        self.columns
            .iter()
            .filter(|(name, _)| !name.starts_with("Logi") && !name.starts_with("Logo"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Runs `bin` against 127.0.0.1:`port` (implicit TLS accepting any certificate when `tls`)
/// with the stress profile of issue 10 (`clients`, `secs`, `logout=0`) on mailbox `mailbox`.
#[allow(clippy::too_many_arguments)]
pub fn run_imaptest(
    bin: &Path,
    port: u16,
    tls: bool,
    user: &str,
    password: &str,
    mbox: &Path,
    mailbox: &str,
    clients: usize,
    secs: u64,
) -> Result<ImaptestTotals, String> {
    let mut command = Command::new(bin);
    if tls {
        command.arg("ssl=any-cert");
    }
    let output = command
        .arg("host=127.0.0.1")
        .arg(format!("port={port}"))
        .arg(format!("user={user}"))
        .arg(format!("pass={password}"))
        .arg(format!("mbox={}", mbox.display()))
        .arg(format!("box={mailbox}"))
        .arg(format!("clients={clients}"))
        .arg(format!("secs={secs}"))
        .arg("logout=0")
        .arg("seed=1")
        .output()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    parse_totals(&text).ok_or_else(|| {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        format!(
            "no Totals in imaptest's output; tail (newest first): {}",
            tail.join(" / ")
        )
    })
}

/// Parses the block after imaptest's last `Totals:` line: a header of state abbreviations, then
/// (after the percentage lines) a line of as many integers.
pub fn parse_totals(text: &str) -> Option<ImaptestTotals> {
    let start = text.rfind("Totals:")?;
    let mut lines = text[start..].lines().skip(1);
    let header: Vec<String> = lines
        .by_ref()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|tokens| {
            !tokens.is_empty() && tokens.iter().all(|t| t.chars().all(char::is_alphanumeric))
        })?;
    let counts: Vec<u64> = lines
        .map(|l| {
            l.split_whitespace()
                .map(str::parse)
                .collect::<Result<Vec<u64>, _>>()
        })
        .find_map(|parsed| parsed.ok().filter(|n| n.len() == header.len()))?;
    Some(ImaptestTotals {
        columns: header.into_iter().zip(counts).collect(),
    })
}

/// How to obtain imaptest, printed when it is missing.
pub fn how_to_get_imaptest() -> String {
    "imaptest not found (set IMAPTEST_BIN or put `imaptest` on PATH).\n  \
     Build it against the installed Dovecot 2.3: `IMAPTEST_BIN=$(scripts/build-imaptest.sh) \
     cargo bench --bench imaptest`\n  (the script installs dovecot-dev if missing, clones \
     github.com/dovecot/imaptest at a commit that still builds against 2.3, or builds \
     IMAPTEST_SRC=<dir>)"
        .into()
}

/// The imaptest executable: `IMAPTEST_BIN`, else `imaptest` on `PATH`, else the build script's
/// cache location.
pub fn find_imaptest() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("IMAPTEST_BIN").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(bin)).filter(|p| p.is_file());
    }
    crate::servers::which(&["imaptest"]).or_else(|| {
        let home = std::env::var_os("HOME")?;
        let cached = Path::new(&home).join(".cache/portcullis/imaptest/build/src/imaptest");
        cached.is_file().then_some(cached)
    })
}

/// Connects to 127.0.0.1:`port` with `TCP_NODELAY`, over implicit TLS verified against `ca`
/// when given, else plaintext.
pub fn connect(port: u16, ca: Option<&TestCa>) -> Client {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.set_nodelay(true).expect("nodelay");
    let stream: Box<dyn Stream> = match ca {
        Some(ca) => Box::new(tls_over(tcp, ca)),
        None => Box::new(tcp),
    };
    LineClient::new(stream)
}

/// Connects (see [`connect`]) and logs in.
pub fn login(port: u16, ca: Option<&TestCa>, user: &str, password: &str) -> Client {
    let mut client = connect(port, ca);
    let greeting = client.read_line();
    assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
    let (_, status) = client.imap("l", &format!("LOGIN {user} {password}"));
    assert!(status.starts_with("l OK"), "LOGIN: {status}");
    client
}

/// APPENDs `message` to `mailbox` with a synchronizing literal.
pub fn append(client: &mut Client, tag: &str, mailbox: &str, message: &[u8]) {
    client.send_line(&format!("{tag} APPEND {mailbox} {{{}}}", message.len()));
    let ready = client.read_line();
    assert!(ready.starts_with('+'), "APPEND continuation: {ready}");
    let mut literal = Vec::with_capacity(message.len() + 2);
    literal.extend_from_slice(message);
    literal.extend_from_slice(b"\r\n");
    client.send_raw(&literal);
    let prefix = format!("{tag} ");
    loop {
        let line = client.read_line();
        if line.starts_with(&prefix) {
            assert!(line.contains(" OK"), "APPEND: {line}");
            return;
        }
    }
}

/// Number of messages from a SELECT's `* N EXISTS`.
fn exists(responses: &[crate::support::raw::ImapResponse]) -> u32 {
    responses
        .iter()
        .rev()
        .find_map(|r| {
            let text = r.text();
            let rest = text.strip_prefix("* ")?;
            let (n, what) = rest.trim_end().split_once(' ')?;
            (what == "EXISTS").then(|| n.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// The command kinds of the built-in mix, in the order of [`Counts::kinds`].
pub const KINDS: [&str; 8] = [
    "SELECT",
    "LIST",
    "UID FETCH meta",
    "FETCH BODY[]",
    "STORE",
    "STORE Deleted",
    "EXPUNGE",
    "APPEND",
];

/// The items of the mix's metadata fetch (`IMAPTEST_MIX_META` overrides them, e.g. `UID FLAGS`
/// for items that need no scan verdict).
pub const DEFAULT_META: &str = "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE";

/// The mix's metadata fetch items: `IMAPTEST_MIX_META` or [`DEFAULT_META`].
pub fn meta_items() -> String {
    std::env::var("IMAPTEST_MIX_META")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_META.into())
}

/// Completed commands and their summed round-trip time, per kind.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// (count, total time) per entry of [`KINDS`].
    pub kinds: [(u64, Duration); KINDS.len()],
}

impl Counts {
    /// All completed commands.
    pub fn commands(&self) -> u64 {
        self.kinds.iter().map(|(n, _)| n).sum()
    }

    /// Mean round trip of kind `i`, in microseconds.
    pub fn mean_micros(&self, i: usize) -> f64 {
        let (n, total) = self.kinds[i];
        total.as_secs_f64() * 1e6 / n.max(1) as f64
    }

    fn add(&mut self, other: &Counts) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
    }

    /// Sends `command` (of kind `kind`), asserts a tagged OK and records the round trip;
    /// returns the untagged responses.
    fn ok(
        &mut self,
        client: &mut Client,
        kind: usize,
        command: &str,
    ) -> Vec<crate::support::raw::ImapResponse> {
        let start = Instant::now();
        let (responses, status) = client.imap("m", command);
        self.record(kind, start);
        assert!(status.starts_with("m OK"), "{command}: {status}");
        responses
    }

    fn record(&mut self, kind: usize, start: Instant) {
        self.kinds[kind].0 += 1;
        self.kinds[kind].1 += start.elapsed();
    }
}

/// One built-in client: loops over the command mix on its own `mailbox` until `deadline`.
pub fn mix_client(
    mut client: Client,
    mailbox: &str,
    appends: &[Vec<u8>],
    seed: usize,
    deadline: Instant,
) -> Counts {
    let mut counts = Counts::default();
    let mut cycle = seed;
    let meta = meta_items();
    while Instant::now() < deadline {
        cycle += 1;
        let count = exists(&counts.ok(&mut client, 0, &format!("SELECT {mailbox}")));
        if cycle % 2 == 0 {
            counts.ok(&mut client, 1, "LIST \"\" \"*\"");
        }
        counts.ok(&mut client, 2, &format!("UID FETCH 1:* ({meta})"));
        if count > 0 {
            let n = 1 + (cycle * 7919) as u32 % count;
            let sign = if cycle % 2 == 0 { '+' } else { '-' };
            counts.ok(&mut client, 3, &format!("FETCH {n} BODY.PEEK[]"));
            counts.ok(
                &mut client,
                4,
                &format!("STORE {n} {sign}FLAGS (\\Flagged)"),
            );
            counts.ok(&mut client, 5, "STORE 1 +FLAGS (\\Deleted)");
            counts.ok(&mut client, 6, "EXPUNGE");
        }
        let start = Instant::now();
        append(&mut client, "m", mailbox, &appends[cycle % appends.len()]);
        counts.record(7, start);
    }
    counts
}

/// Runs `clients` mix clients against `port` for `duration`; returns the summed counts and the
/// wall time.
pub fn run_mix(
    port: u16,
    ca: Option<&TestCa>,
    (user, password): (&str, &str),
    clients: usize,
    duration: Duration,
    appends: &[Vec<u8>],
) -> (Counts, Duration) {
    let sessions: Vec<Client> = (0..clients)
        .map(|_| login(port, ca, user, password))
        .collect();
    let start = Instant::now();
    let deadline = start + duration;
    let total = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                scope.spawn(move || mix_client(client, &mix_mailbox(i), appends, i * 13, deadline))
            })
            .collect();
        let mut total = Counts::default();
        for handle in handles {
            total.add(&handle.join().expect("mix client"));
        }
        total
    });
    (total, start.elapsed())
}

/// The mailbox of built-in client `i`.
pub fn mix_mailbox(i: usize) -> String {
    format!("mix{i}")
}
