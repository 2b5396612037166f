//! Differential test of POP3 "parse, then forward" after login, against a real Dovecot.
//!
//! A proptest generator builds command streams and knows the ground truth of every line it
//! writes (from its own model, never from the proxy's parser):
//! * **real** commands: valid and allowed in the TRANSACTION state (RFC 1939 §5, RFC 2449 §5),
//!   keywords in any case, message numbers within the seeded mailbox, sometimes ended by a bare
//!   LF (tolerated by the proxy); each reaches Dovecot as its canonical serialisation (upper-case
//!   keyword, CRLF; `TOP n m` as `RETR n`, since the proxy scans and cuts it; `STAT` as `LIST`,
//!   since the proxy answers it from the sizes RETR serves, issue 9);
//! * **rejected** lines: a control byte inside the line (`RETR 1\0`, `TOP 5 20\0`, bare CR, DEL),
//!   extra/leading/trailing spaces, signs or garbage in numbers (`RETR +1`, `RETR 1x`, `RETR 0`),
//!   numbers beyond `u32`, wrong arity, unknown commands (`XSMUGGLE`, `XCLIENT ADDR=…`), commands
//!   not allowed after login (`USER`, `PASS`, `APOP`, `AUTH PLAIN <ir>`, `STLS`), non-UTF-8, and
//!   long lines (over RFC 2449 §4's 255 octets, up to beyond the grammar's 512 but below the
//!   framer's fatal limit, raised to 4000 here); each is answered `-ERR` by the proxy and must
//!   never reach Dovecot.
//!
//! The login is USER/PASS or AUTH PLAIN with an initial response (RFC 5034), either waited for or
//! with the first batch of commands pipelined behind it in the same write; later commands go in
//! batches of one to four lines per write.
//!
//! Properties, per stream:
//! (a) Dovecot's rawlog `.in` for the session is exactly the canonical lines of the real
//!     commands, in order, then the final `NOOP` and `QUIT` — and the proxy's own `UIDL` just
//!     before the first `STAT`/`LIST`, unless a client `UIDL` (no argument) went first;
//! (b) every real command gets exactly one answer (`+OK`/`-ERR` as the generator's model of the
//!     mailbox predicts: deleted messages answer `-ERR` until `RSET`), every rejected line exactly
//!     one `-ERR`, in order, and nothing else is sent;
//! (c) the session stays usable: a final `NOOP` gets `+OK`.
//!
//! 64 cases (about 5 s). One Dovecot, one clamd and one proxy for all cases; every case logs in
//! as its own Dovecot user (`p0`…, mailbox reseeded with three clean messages), so each rawlog
//! directory holds exactly one case's session.

mod support;

use std::fmt;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};

use support::clamd::Clamd;
use support::corpus;
use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use support::raw::{self, LineClient};

const PASSWORD: &str = "wonderland-Pass1";
/// Dovecot users `p0`…; cases (and shrink attempts) cycle through them.
const CASE_USERS: usize = 80;
/// Messages seeded per case: real message numbers are 1..=MESSAGES.
const MESSAGES: u32 = 3;
const CASES: u32 = 64;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// No auth penalty, room for many rejected lines, and a framer limit for commands (255 +
/// margin = 4000 octets) above the grammar's 512: lines in between are answered `-ERR` and the
/// session goes on (with the default margin the two limits coincide and a longer line is fatal).
const LIMITS: &str = "[limits]\nmax_errors = 1000\nauth_penalty_initial = \"0s\"\n\
                      auth_penalty_max = \"0s\"\npop3_command_margin = 3745\n\n";

// ---------------------------------------------------------------------------------------------
// Ground truth

/// A real command, as the generator models it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Real {
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Dele(u32),
    Top(u32, u32),
    Noop,
    Rset,
    Capa,
}

impl Real {
    /// The line as the client writes it, keyword in upper case.
    fn text(self) -> String {
        match self {
            Real::Stat => "STAT".into(),
            Real::List(None) => "LIST".into(),
            Real::List(Some(n)) => format!("LIST {n}"),
            Real::Uidl(None) => "UIDL".into(),
            Real::Uidl(Some(n)) => format!("UIDL {n}"),
            Real::Retr(n) => format!("RETR {n}"),
            Real::Dele(n) => format!("DELE {n}"),
            Real::Top(n, m) => format!("TOP {n} {m}"),
            Real::Noop => "NOOP".into(),
            Real::Rset => "RSET".into(),
            Real::Capa => "CAPA".into(),
        }
    }

    /// What Dovecot must receive (without CRLF): TOP n m is fetched whole, for the scan; STAT
    /// is answered from LIST.
    fn canonical(self) -> String {
        match self {
            Real::Top(n, _) => format!("RETR {n}"),
            Real::Stat => "LIST".into(),
            other => other.text(),
        }
    }

    /// Whether a `+OK` answer is followed by a multi-line body.
    fn multiline(self) -> bool {
        matches!(
            self,
            Real::List(None) | Real::Uidl(None) | Real::Retr(_) | Real::Top(..) | Real::Capa
        )
    }

    /// The message this command addresses, if any.
    fn message(self) -> Option<u32> {
        match self {
            Real::List(Some(n)) | Real::Uidl(Some(n)) | Real::Retr(n) | Real::Dele(n) => Some(n),
            Real::Top(n, _) => Some(n),
            _ => None,
        }
    }
}

/// One line of a stream with its ground truth.
#[derive(Clone)]
enum Item {
    Real { command: Real, bytes: Vec<u8> },
    Rejected { why: &'static str, bytes: Vec<u8> },
}

impl Item {
    fn bytes(&self) -> &[u8] {
        match self {
            Item::Real { bytes, .. } | Item::Rejected { bytes, .. } => bytes,
        }
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Real { command, bytes } => write!(f, "real {command:?} {}", show(bytes)),
            Item::Rejected { why, bytes } => write!(f, "rejected ({why}) {}", show(bytes)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Login {
    UserPass,
    AuthPlain,
}

#[derive(Debug, Clone)]
struct Stream {
    login: Login,
    /// The first batch goes in the same write as the login.
    pipelined_login: bool,
    batches: Vec<Vec<Item>>,
}

impl Stream {
    fn items(&self) -> impl Iterator<Item = &Item> {
        self.batches.iter().flatten()
    }
}

/// Bytes as escaped text.
fn show(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &b in bytes {
        match b {
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            0x20..=0x7e => text.push(b as char),
            _ => text.push_str(&format!("\\x{b:02x}")),
        }
    }
    if text.len() > 120 {
        format!(
            "{}…({} chars)…{}",
            &text[..60],
            text.len() - 90,
            &text[text.len() - 30..]
        )
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------------
// Generator

/// Applies a case mask to the keyword (the text up to the first space).
fn with_case(text: &str, mask: &[bool]) -> String {
    let end = text.find(' ').unwrap_or(text.len());
    let keyword: String = text[..end]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if mask.get(i).copied().unwrap_or(false) {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect();
    format!("{keyword}{}", &text[end..])
}

fn crlf(text: impl AsRef<[u8]>) -> Vec<u8> {
    let mut bytes = text.as_ref().to_vec();
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn msg() -> impl Strategy<Value = u32> {
    1..=MESSAGES
}

fn real_command() -> impl Strategy<Value = Real> {
    prop_oneof![
        Just(Real::Stat),
        prop::option::of(msg()).prop_map(Real::List),
        prop::option::of(msg()).prop_map(Real::Uidl),
        msg().prop_map(Real::Retr),
        msg().prop_map(Real::Dele),
        (msg(), 0..=20u32).prop_map(|(n, m)| Real::Top(n, m)),
        Just(Real::Noop),
        Just(Real::Rset),
        Just(Real::Capa),
    ]
}

fn case_mask() -> impl Strategy<Value = Vec<bool>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => Just(vec![true; 8]),
        2 => prop::collection::vec(any::<bool>(), 8),
    ]
}

fn real_item() -> impl Strategy<Value = Item> {
    (real_command(), case_mask(), prop::bool::weighted(0.15)).prop_map(|(command, mask, lf)| {
        let mut bytes = with_case(&command.text(), &mask).into_bytes();
        bytes.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
        Item::Real { command, bytes }
    })
}

const CONTROL: &[u8] = &[0x00, 0x01, 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x1b, 0x7f];

/// A control byte inserted anywhere after the keyword's first letter of a real command's line.
fn control_byte() -> impl Strategy<Value = Item> {
    (
        real_command(),
        case_mask(),
        prop::sample::select(CONTROL),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(command, mask, byte, at)| {
            let mut bytes = with_case(&command.text(), &mask).into_bytes();
            let at = 1 + at.index(bytes.len());
            bytes.insert(at, byte);
            Item::Rejected {
                why: "control byte",
                bytes: crlf(bytes),
            }
        })
}

/// Lines that look like commands with arguments but break the one-SP / digits-only rules.
fn bad_arguments() -> impl Strategy<Value = Item> {
    let bad_number = prop::sample::select(vec![
        "+1",
        "-1",
        "1x",
        "x1",
        "0x1",
        "1.0",
        "1e3",
        "0",
        "00",
        "",
        "\u{b9}",
        "4294967296",
        "99999999999999",
        "18446744073709551617",
        "111111111111111111111111111111",
    ]);
    let keyword = prop::sample::select(vec!["RETR", "DELE", "LIST", "UIDL"]);
    prop_oneof![
        (keyword.clone(), bad_number.clone(), case_mask()).prop_map(|(k, n, mask)| {
            Item::Rejected {
                why: "bad number",
                bytes: crlf(with_case(&format!("{k} {n}"), &mask)),
            }
        }),
        (msg(), bad_number.clone(), any::<bool>()).prop_map(|(n, bad, first)| {
            // The line count may be 0; the message number may not.
            let line = if first {
                format!("TOP {bad} 1")
            } else if bad == "0" || bad.is_empty() || bad == "00" {
                format!("TOP {n} -0")
            } else {
                format!("TOP {n} {bad}")
            };
            Item::Rejected {
                why: "bad number",
                bytes: crlf(line),
            }
        }),
        (keyword, msg(), 0..4usize, case_mask()).prop_map(|(k, n, shape, mask)| {
            let line = match shape {
                0 => format!("{k}  {n}"),
                1 => format!("{k} {n} "),
                2 => format!(" {k} {n}"),
                _ => format!("{k}\u{a0}{n}"),
            };
            Item::Rejected {
                why: "spacing",
                bytes: crlf(with_case(&line, &mask)),
            }
        }),
        (msg(), 0..10u32, 0..3usize).prop_map(|(n, m, shape)| {
            let line = match shape {
                0 => format!("TOP {n}  {m}"),
                1 => format!("TOP  {n} {m}"),
                _ => format!("TOP {n} {m} "),
            };
            Item::Rejected {
                why: "spacing",
                bytes: crlf(line),
            }
        }),
        prop::sample::select(vec![
            "RETR",
            "DELE",
            "TOP",
            "TOP 1",
            "RETR 1 2",
            "DELE 1 1",
            "LIST 1 2",
            "UIDL 1 2",
            "TOP 1 2 3",
            "NOOP x",
            "STAT 1",
            "RSET x",
            "CAPA x",
            "NOOP ",
            "STAT  ",
            "QUIT now",
        ])
        .prop_map(|line| Item::Rejected {
            why: "arity",
            bytes: crlf(line),
        }),
    ]
}

/// Unknown commands, XCLIENT, commands of the AUTHORIZATION state, non-UTF-8, over-long lines.
fn not_allowed() -> impl Strategy<Value = Item> {
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0p1\0{PASSWORD}"));
    prop_oneof![
        (
            prop::sample::select(vec![
                "XSMUGGLE".to_string(),
                "XSMUGGLE RETR 1".into(),
                "XCLIENT ADDR=203.0.113.9".into(),
                "xclient ADDR=203.0.113.9 PORT=1".into(),
                "LAST".into(),
                "RETRX 1".into(),
                "RE TR 1".into(),
                "".into(),
                "USER x".into(),
                "USER p1".into(),
                "PASS y".into(),
                format!("PASS {PASSWORD}"),
                "APOP p1 0123456789abcdef0123456789abcdef".into(),
                "AUTH".into(),
                "AUTH LOGIN".into(),
                "AUTH PLAIN".into(),
                format!("AUTH PLAIN {ir}"),
                "STLS".into(),
            ]),
            case_mask()
        )
            .prop_map(|(line, mask)| Item::Rejected {
                why: "not allowed after login",
                bytes: crlf(with_case(&line, &mask)),
            }),
        prop::sample::select(vec![&b"RETR \xff"[..], b"\xc3\x28", b"NOOP \x80"]).prop_map(
            |bytes| Item::Rejected {
                why: "not UTF-8",
                bytes: crlf(bytes),
            }
        ),
        (
            prop::sample::select(vec!["NOOP ", "RETR ", "LIST 1", "XSMUGGLE "]),
            prop::sample::select(vec![b'a', b'1', b' ']),
            254..3990usize
        )
            .prop_map(|(prefix, fill, len)| {
                let mut bytes = prefix.as_bytes().to_vec();
                bytes.resize(len, fill);
                Item::Rejected {
                    why: "long line (over RFC 2449's 255, or the grammar's 512)",
                    bytes: crlf(bytes),
                }
            }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        5 => real_item(),
        2 => control_byte(),
        2 => bad_arguments(),
        2 => not_allowed(),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        prop_oneof![Just(Login::UserPass), Just(Login::AuthPlain)],
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(item(), 1..=4), 1..=6),
    )
        .prop_map(|(login, pipelined_login, batches)| Stream {
            login,
            pipelined_login,
            batches,
        })
}

// ---------------------------------------------------------------------------------------------
// Oracle: the answers the model predicts

/// `Some(true)` for `+OK`, `Some(false)` for `-ERR`, per item, from a model of the mailbox.
fn predicted(stream: &Stream) -> Vec<bool> {
    let mut deleted = [false; MESSAGES as usize + 1];
    stream
        .items()
        .map(|item| match item {
            Item::Rejected { .. } => false,
            Item::Real { command, .. } => {
                let ok = command.message().is_none_or(|n| !deleted[n as usize]);
                match command {
                    Real::Dele(n) if ok => deleted[*n as usize] = true,
                    Real::Rset => deleted = [false; MESSAGES as usize + 1],
                    _ => {}
                }
                ok
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Session

struct Outcome {
    login: Vec<String>,
    answers: Vec<String>,
    noop: String,
    quit: String,
    trailing: Vec<u8>,
}

fn login_bytes(login: Login, user: &str) -> Vec<u8> {
    match login {
        Login::UserPass => format!("USER {user}\r\nPASS {PASSWORD}\r\n").into_bytes(),
        Login::AuthPlain => {
            let ir =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
            format!("AUTH PLAIN {ir}\r\n").into_bytes()
        }
    }
}

fn login_answers(login: Login) -> usize {
    match login {
        Login::UserPass => 2,
        Login::AuthPlain => 1,
    }
}

/// Reads one answer: the status line, and the body if the command has one and got `+OK`.
fn read_answer(client: &mut LineClient<TcpStream>, item: &Item) -> String {
    let status = client.read_line();
    if let Item::Real { command, .. } = item {
        if command.multiline() && status.starts_with("+OK") {
            while client.read_raw_line() != b".\r\n" {}
        }
    }
    status
}

fn run_session(port: u16, user: &str, stream: &Stream) -> Outcome {
    let mut client = raw::connect(port);
    client
        .get_mut()
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    let greeting = client.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting}");
    let login = login_bytes(stream.login, user);
    let mut batches = stream.batches.iter();
    let mut answers = Vec::new();
    let mut login_status = Vec::new();
    if stream.pipelined_login {
        let first = batches.next().expect("at least one batch");
        let mut bytes = login;
        for item in first {
            bytes.extend_from_slice(item.bytes());
        }
        client.send_raw(&bytes);
        for _ in 0..login_answers(stream.login) {
            login_status.push(client.read_line());
        }
        for item in first {
            answers.push(read_answer(&mut client, item));
        }
    } else {
        client.send_raw(&login);
        for _ in 0..login_answers(stream.login) {
            login_status.push(client.read_line());
        }
    }
    for batch in batches {
        let bytes: Vec<u8> = batch.iter().flat_map(|i| i.bytes().to_vec()).collect();
        client.send_raw(&bytes);
        for item in batch {
            answers.push(read_answer(&mut client, item));
        }
    }
    let noop = client.pop3("NOOP");
    let quit = client.pop3("QUIT");
    let mut trailing = Vec::new();
    let mut tcp = client.into_inner();
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = tcp.read_to_end(&mut trailing);
    Outcome {
        login: login_status,
        answers,
        noop,
        quit,
        trailing,
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

fn check(stream: &Stream, outcome: &Outcome, received: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    if !outcome.login.iter().all(|s| s.starts_with("+OK")) {
        failures.push(format!("login failed: {:?}", outcome.login));
    }
    // (a) exactly the canonical real commands, in order, then NOOP and QUIT; the proxy's own
    // UIDL before the first STAT/LIST unless the client's came first.
    let mut expected: Vec<String> = Vec::new();
    let mut ids_asked = false;
    for item in stream.items() {
        let Item::Real { command, .. } = item else {
            continue;
        };
        match command {
            Real::Uidl(None) => ids_asked = true,
            Real::Stat | Real::List(_) if !ids_asked => {
                expected.push("UIDL".to_string());
                ids_asked = true;
            }
            _ => {}
        }
        expected.push(command.canonical());
    }
    expected.extend(["NOOP".to_string(), "QUIT".to_string()]);
    if received != expected {
        failures.push(format!(
            "(a) Dovecot received {received:#?}\n    expected {expected:#?}"
        ));
    }
    // (b) one answer per line, as predicted.
    for ((item, ok), answer) in stream.items().zip(predicted(stream)).zip(&outcome.answers) {
        let good = if ok {
            answer.starts_with("+OK")
        } else {
            answer.starts_with("-ERR")
        };
        if !good {
            failures.push(format!(
                "(b) {item:?}: answered {answer:?}, expected {}",
                if ok { "+OK" } else { "-ERR" }
            ));
        }
    }
    if !outcome.trailing.is_empty() {
        failures.push(format!(
            "(b) unexpected bytes after QUIT's answer: {}",
            show(&outcome.trailing)
        ));
    }
    // (c) still usable.
    if !outcome.noop.starts_with("+OK") {
        failures.push(format!("(c) final NOOP answered {:?}", outcome.noop));
    }
    if !outcome.quit.starts_with("+OK") {
        failures.push(format!("(c) QUIT answered {:?}", outcome.quit));
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// Test

fn case_user(n: usize) -> String {
    format!("p{}", n % CASE_USERS)
}

/// Empties the user's maildir and seeds it with [`MESSAGES`] clean messages.
fn reseed(dovecot: &Dovecot, user: &str, messages: &[Vec<u8>]) {
    let maildir = dovecot.maildir(user);
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    dovecot.seed_messages(user, messages);
}

#[test]
fn after_login_only_canonical_real_commands_reach_dovecot() {
    let started = Instant::now();
    let dovecot = Dovecot::start_with(DovecotOptions {
        rawlog: true,
        extra_config: vec!["auth_failure_delay = 0".into()],
        users: (0..CASE_USERS)
            .map(|i| (case_user(i), PASSWORD.to_string()))
            .collect(),
        ..DovecotOptions::default()
    });
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = corpus::small_clean_messages(MESSAGES as usize);
    assert_eq!(messages.len(), MESSAGES as usize);
    let config = tls_section(&dovecot)
        + &format!(
            "[scan]\nclamd = [{:?}]\ntimeout = \"5s\"\nquarantine_dir = {:?}\n\n",
            clamd.tcp_addr(),
            quarantine.path().display().to_string()
        )
        + LIMITS
        + &listener("pop3", "pop3", "none", "pop3")
        + &dovecot_backend("pop3", &dovecot, "pop3", "none");
    let proxy = TestProxy::start(&config);

    let next = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        max_shrink_iters: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&stream(), |stream| {
        let user = case_user(next.get());
        next.set(next.get() + 1);
        reseed(&dovecot, &user, &messages);
        let known = dovecot.imap_rawlog_files(&user);
        let outcome = run_session(proxy.port(0), &user, &stream);
        let received: Vec<String> =
            match dovecot.wait_imap_rawlog(&user, &known, 1, Duration::from_secs(10)) {
                Ok(sessions) if sessions.len() == 1 => String::from_utf8_lossy(&sessions[0].input)
                    .lines()
                    .map(str::to_string)
                    .collect(),
                Ok(sessions) => {
                    return Err(TestCaseError::fail(format!(
                        "(a) {} rawlog sessions for one login",
                        sessions.len()
                    )))
                }
                Err(reason) => {
                    return Err(TestCaseError::fail(format!(
                        "(a) no complete rawlog: {reason}"
                    )))
                }
            };
        let failures = check(&stream, &outcome, &received);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(failures.join("\n")))
        }
    });
    eprintln!("POP3 differential run took {:?}", started.elapsed());
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, stream)) => {
            panic!("minimal failing stream {stream:#?}\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}
