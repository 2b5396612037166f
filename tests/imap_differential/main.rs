//! Differential tests of "parse, then forward": what the proxy accounted for against what the
//! backend actually received.
//!
//! A generator builds client command streams from a grammar and knows the ground truth for every
//! byte (framing as RFC 3501 / RFC 7888 define it):
//! * **real** commands (tags `r…`): valid and allow-listed; each gets exactly one tagged response
//!   and may reach the backend, in the order issued;
//! * **rejected** commands (tags `b…`): unparseable or not allow-listed (trailing garbage after
//!   argument-less commands, NUL and control characters, COMPRESS, STARTTLS inside TLS,
//!   AUTHENTICATE after login, …); each gets exactly one tagged `BAD`/`NO` **from the proxy** and
//!   never reaches the backend;
//! * **data** (tags `s…`, mailbox `Smuggled`): command-shaped bytes that are not commands —
//!   inside quoted strings, literals, SASL responses, after a bare CR — which must never execute
//!   and never be answered.
//!
//! Properties, for every stream sent through the proxy (implicit TLS listener, plain backend):
//! (a) every command in Dovecot's rawlog `.in` (or the fake backend's record) carries a real tag,
//!     in the order issued, and a command mentioning `Smuggled` is a real one that did;
//! (b) every real and rejected command gets exactly one tagged response (rejected: BAD/NO), data
//!     none, and no other tag is answered;
//! (c) the session stays usable: a final `zz NOOP` gets `zz OK`.
//! Before login (not in Dovecot's rawlog), a recording fake backend checks that only CAPABILITY,
//! ID and the proxy's own LOGIN/AUTHENTICATE arrive.
//!
//! One Dovecot and one proxy per test, a fresh connection per case; every Dovecot case logs in
//! as its own user (`c0`…), so each rawlog directory holds exactly one case's sessions. The
//! proxy runs with `max_errors = 1000` and no auth penalty: rejected commands and failed SASL
//! attempts are the point of the streams, not abuse to throttle.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};

use support::certs::TestCa;
use support::dovecot::{imap_tag, Dovecot, DovecotOptions};
use support::fake::{recording_imap_backend, RecordedImapSession};
use support::proxy::{dovecot_backend, imap_to_fake, listener, tls_section, TestProxy};
use support::raw::{self, LineClient, TlsStream};

/// The mailbox named by smuggled commands (created up front, so a smuggled SELECT would work).
const MARK: &str = "Smuggled";
/// The user of the fake-backend test and the harness check.
const USER: &str = "alice";
const PASSWORD: &str = "wonderland-Pass1";
/// Dovecot users `c0`… (password [`PASSWORD`]): each case logs in as the next one, so a
/// backend session that ends late can never be mistaken for a later case's.
const CASE_USERS: usize = 160;
/// Generous for one response on a loaded machine, short enough to keep a hanging case cheap.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The proxy's limits for these tests: no auth penalty (failed SASL attempts are part of the
/// streams) and room for many rejected commands in one session.
const LIMITS: &str =
    "[limits]\nmax_errors = 1000\nauth_penalty_initial = \"0s\"\nauth_penalty_max = \"0s\"\n\n";

// ---------------------------------------------------------------------------------------------
// The grammar

/// A command-shaped line that must never execute (tag `s…`).
#[derive(Debug, Clone, Copy)]
enum Smuggle {
    Select,
    Compress,
    Starttls,
    Login,
}

/// The contents of a real quoted string argument.
#[derive(Debug, Clone, Copy)]
enum Quoted {
    Inbox,
    Mark,
    Brace,
    EscapedBrace,
    Compress,
    Command(Smuggle),
}

/// The contents of a real literal argument.
#[derive(Debug, Clone, Copy)]
enum LiteralPayload {
    Empty,
    Inbox,
    Line(Smuggle),
    Brace,
}

/// Valid, allow-listed commands (tag `r…`).
#[derive(Debug, Clone)]
enum Real {
    Noop,
    NoopLower,
    Capability,
    IdNil,
    IdQuoted(Smuggle),
    /// Post-login only from here on.
    Select,
    SelectLower,
    Examine,
    SelectMark,
    List,
    Status(Quoted),
    StatusLiteral {
        payload: LiteralPayload,
        sync: bool,
    },
    LongStatus(usize),
    QuotedControl(u8),
}

/// Unparseable or not allow-listed commands (tag `b…`).
#[derive(Debug, Clone)]
enum Rejected {
    Garbage {
        command: &'static str,
        garbage: &'static str,
    },
    QuoteBrace(&'static str),
    LiteralPlusArg {
        command: &'static str,
        smuggle: Smuggle,
    },
    BareCr(Smuggle),
    Nul(u8),
    AtomControl(u8),
    Compress,
    Starttls,
    Unknown,
    MissingArgument,
    /// Post-login only.
    AuthenticateAfterLogin,
    /// Pre-login only from here on: a would-be command as the SASL response line.
    AuthenticatePipelined(Smuggle),
    AuthenticateCancelled,
    SelectBeforeLogin,
}

#[derive(Debug, Clone)]
enum Command {
    Real(Real),
    Rejected(Rejected),
}

/// How the client logs in (always valid and successful).
#[derive(Debug, Clone, Copy)]
enum Login {
    Atoms,
    Quoted,
    Lower,
    Literal,
    LiteralPlus,
    SaslIr,
    SaslContinuation,
}

/// One command and whether the client waits for its tagged response before the next (false:
/// pipelined with what follows).
#[derive(Debug, Clone)]
struct Step {
    command: Command,
    wait: bool,
}

#[derive(Debug, Clone)]
struct Stream {
    pre_login: Vec<Step>,
    login: Login,
    wait_after_login: bool,
    post_login: Vec<Step>,
}

fn smuggle() -> impl Strategy<Value = Smuggle> {
    prop_oneof![
        Just(Smuggle::Select),
        Just(Smuggle::Compress),
        Just(Smuggle::Starttls),
        Just(Smuggle::Login),
    ]
}

fn control_char() -> impl Strategy<Value = u8> {
    prop_oneof![1u8..=9, 11u8..=12, 14u8..=31, Just(0x7f)]
}

fn real_any_phase() -> BoxedStrategy<Real> {
    prop_oneof![
        Just(Real::Noop),
        Just(Real::NoopLower),
        Just(Real::Capability),
        Just(Real::IdNil),
        smuggle().prop_map(Real::IdQuoted),
    ]
    .boxed()
}

fn real_post_login() -> BoxedStrategy<Real> {
    let quoted = prop_oneof![
        Just(Quoted::Inbox),
        Just(Quoted::Mark),
        Just(Quoted::Brace),
        Just(Quoted::EscapedBrace),
        Just(Quoted::Compress),
        smuggle().prop_map(Quoted::Command),
    ];
    let payload = prop_oneof![
        Just(LiteralPayload::Empty),
        Just(LiteralPayload::Inbox),
        Just(LiteralPayload::Brace),
        smuggle().prop_map(LiteralPayload::Line),
    ];
    prop_oneof![
        real_any_phase(),
        Just(Real::Select),
        Just(Real::SelectLower),
        Just(Real::Examine),
        Just(Real::SelectMark),
        Just(Real::List),
        quoted.prop_map(Real::Status),
        (payload, any::<bool>()).prop_map(|(payload, sync)| Real::StatusLiteral { payload, sync }),
        prop_oneof![
            4090usize..4100,
            8185usize..8195,
            16377usize..16390,
            30000usize..30010
        ]
        .prop_map(Real::LongStatus),
        control_char().prop_map(Real::QuotedControl),
    ]
    .boxed()
}

fn rejected_any_phase() -> BoxedStrategy<Rejected> {
    let argless = prop_oneof![
        Just("NOOP"),
        Just("noop"),
        Just("CAPABILITY"),
        Just("CHECK"),
        Just("LOGOUT"),
        Just("UNSELECT"),
        Just("CLOSE"),
        Just("EXPUNGE"),
        Just("STARTTLS"),
    ];
    let garbage = prop_oneof![
        Just("x"),
        Just("\"\""),
        Just("()"),
        Just(""),
        Just("SELECT Smuggled"),
    ];
    prop_oneof![
        (argless.clone(), garbage)
            .prop_map(|(command, garbage)| Rejected::Garbage { command, garbage }),
        prop_oneof![Just("NOOP"), Just("SELECT"), Just("LOGIN")].prop_map(Rejected::QuoteBrace),
        (
            prop_oneof![Just("NOOP"), Just("CAPABILITY"), Just("LOGOUT")],
            smuggle()
        )
            .prop_map(|(command, smuggle)| Rejected::LiteralPlusArg { command, smuggle }),
        smuggle().prop_map(Rejected::BareCr),
        (0u8..3).prop_map(Rejected::Nul),
        control_char().prop_map(Rejected::AtomControl),
        Just(Rejected::Compress),
        Just(Rejected::Starttls),
        Just(Rejected::Unknown),
        Just(Rejected::MissingArgument),
    ]
    .boxed()
}

fn pre_login_step() -> impl Strategy<Value = Step> {
    let command = prop_oneof![
        2 => real_any_phase().prop_map(Command::Real),
        3 => rejected_any_phase().prop_map(Command::Rejected),
        1 => smuggle().prop_map(|s| Command::Rejected(Rejected::AuthenticatePipelined(s))),
        1 => Just(Command::Rejected(Rejected::AuthenticateCancelled)),
        1 => Just(Command::Rejected(Rejected::SelectBeforeLogin)),
    ];
    (command, any::<bool>()).prop_map(|(command, wait)| Step { command, wait })
}

fn post_login_step() -> impl Strategy<Value = Step> {
    let command = prop_oneof![
        3 => real_post_login().prop_map(Command::Real),
        3 => rejected_any_phase().prop_map(Command::Rejected),
        1 => Just(Command::Rejected(Rejected::AuthenticateAfterLogin)),
    ];
    (command, any::<bool>()).prop_map(|(command, wait)| Step { command, wait })
}

fn login() -> impl Strategy<Value = Login> {
    prop_oneof![
        Just(Login::Atoms),
        Just(Login::Quoted),
        Just(Login::Lower),
        Just(Login::Literal),
        Just(Login::LiteralPlus),
        Just(Login::SaslIr),
        Just(Login::SaslContinuation),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        prop::collection::vec(pre_login_step(), 0..5),
        login(),
        any::<bool>(),
        prop::collection::vec(post_login_step(), 1..10),
    )
        .prop_map(|(pre_login, login, wait_after_login, post_login)| Stream {
            pre_login,
            login,
            wait_after_login,
            post_login,
        })
}

// ---------------------------------------------------------------------------------------------
// Rendering: bytes plus the ground truth

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Real,
    Rejected,
}

/// One rendered command: `chunks[0]` is sent at once, every further chunk only after a `+`
/// continuation request (synchronizing literals, SASL without SASL-IR).
#[derive(Debug, Clone)]
struct Rendered {
    tag: String,
    class: Class,
    chunks: Vec<Vec<u8>>,
    /// Tags of command-shaped data inside this command (never to execute or be answered).
    data_tags: Vec<String>,
    wait: bool,
    login: bool,
}

impl Rendered {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn mentions_mark(&self) -> bool {
        contains(&self.bytes(), MARK.as_bytes())
    }
}

struct Renderer {
    user: String,
    next: usize,
    out: Vec<Rendered>,
}

fn sasl_plain(user: &str) -> String {
    let encoded = support::mime::base64(format!("\0{user}\0{PASSWORD}").as_bytes());
    String::from_utf8(encoded)
        .expect("ascii")
        .trim_end()
        .to_string()
}

impl Renderer {
    fn tag(&mut self, prefix: char) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// A smuggled command line (with CRLF) and its data tag.
    fn smuggle(&mut self, smuggle: Smuggle) -> (String, String) {
        let tag = self.tag('s');
        let line = match smuggle {
            Smuggle::Select => format!("{tag} SELECT {MARK}\r\n"),
            Smuggle::Compress => format!("{tag} COMPRESS DEFLATE\r\n"),
            Smuggle::Starttls => format!("{tag} STARTTLS\r\n"),
            Smuggle::Login => format!("{tag} LOGIN {} {PASSWORD}\r\n", self.user),
        };
        (line, tag)
    }

    fn push(&mut self, tag: String, class: Class, chunks: Vec<Vec<u8>>, data: Vec<String>) {
        self.out.push(Rendered {
            tag,
            class,
            chunks,
            data_tags: data,
            wait: false,
            login: false,
        });
    }

    fn real(&mut self, real: &Real) {
        let t = self.tag('r');
        let mut data = Vec::new();
        let chunks: Vec<Vec<u8>> = match real {
            Real::Noop => vec![format!("{t} NOOP\r\n").into_bytes()],
            Real::NoopLower => vec![format!("{t} noop\r\n").into_bytes()],
            Real::Capability => vec![format!("{t} CAPABILITY\r\n").into_bytes()],
            Real::IdNil => vec![format!("{t} ID NIL\r\n").into_bytes()],
            Real::IdQuoted(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                let inner = line.trim_end();
                vec![format!("{t} ID (\"name\" \"{inner}\")\r\n").into_bytes()]
            }
            Real::Select => vec![format!("{t} SELECT INBOX\r\n").into_bytes()],
            Real::SelectLower => vec![format!("{t} select inbox\r\n").into_bytes()],
            Real::Examine => vec![format!("{t} EXAMINE INBOX\r\n").into_bytes()],
            Real::SelectMark => vec![format!("{t} SELECT {MARK}\r\n").into_bytes()],
            Real::List => vec![format!("{t} LIST \"\" \"*\"\r\n").into_bytes()],
            Real::Status(quoted) => {
                let inner = match quoted {
                    Quoted::Inbox => "INBOX".to_string(),
                    Quoted::Mark => MARK.to_string(),
                    Quoted::Brace => "{12}".to_string(),
                    Quoted::EscapedBrace => "\\\"{3}".to_string(),
                    Quoted::Compress => "COMPRESS DEFLATE".to_string(),
                    Quoted::Command(smuggle) => {
                        let (line, tag) = self.smuggle(*smuggle);
                        data.push(tag);
                        line.trim_end().to_string()
                    }
                };
                vec![format!("{t} STATUS \"{inner}\" (MESSAGES)\r\n").into_bytes()]
            }
            Real::StatusLiteral { payload, sync } => {
                let payload: Vec<u8> = match payload {
                    LiteralPayload::Empty => Vec::new(),
                    LiteralPayload::Inbox => b"INBOX".to_vec(),
                    LiteralPayload::Brace => b"{5}\r\nabcde".to_vec(),
                    LiteralPayload::Line(smuggle) => {
                        let (line, tag) = self.smuggle(*smuggle);
                        data.push(tag);
                        line.into_bytes()
                    }
                };
                let rest = [payload.as_slice(), b" (MESSAGES)\r\n"].concat();
                if *sync {
                    vec![
                        format!("{t} STATUS {{{}}}\r\n", payload.len()).into_bytes(),
                        rest,
                    ]
                } else {
                    let head = format!("{t} STATUS {{{}+}}\r\n", payload.len()).into_bytes();
                    vec![[head, rest].concat()]
                }
            }
            Real::LongStatus(pad) => {
                let (line, tag) = self.smuggle(Smuggle::Select);
                data.push(tag);
                let padding = "x".repeat(*pad);
                let inner = line.trim_end();
                vec![format!("{t} STATUS \"{padding} {inner}\" (MESSAGES)\r\n").into_bytes()]
            }
            Real::QuotedControl(c) => {
                let mut line = format!("{t} STATUS \"IN").into_bytes();
                line.push(*c);
                line.extend_from_slice(b"BOX\" (MESSAGES)\r\n");
                vec![line]
            }
        };
        self.push(t, Class::Real, chunks, data);
    }

    fn rejected(&mut self, rejected: &Rejected) {
        let t = self.tag('b');
        let mut data = Vec::new();
        let chunks: Vec<Vec<u8>> = match rejected {
            Rejected::Garbage { command, garbage } => {
                vec![format!("{t} {command} {garbage}\r\n").into_bytes()]
            }
            Rejected::QuoteBrace(command) => {
                vec![format!("{t} {command} \"{{12}}\r\n").into_bytes()]
            }
            Rejected::LiteralPlusArg { command, smuggle } => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} {command} {{{}+}}\r\n{line}\r\n", line.len()).into_bytes()]
            }
            Rejected::BareCr(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} NOOP x\r{line}").into_bytes()]
            }
            Rejected::Nul(variant) => {
                let line: &[u8] = match variant {
                    0 => b" SELECT \"IN\0BOX\"\r\n",
                    1 => b" NOOP \0\r\n",
                    _ => b" SELECT IN\0BOX\r\n",
                };
                vec![[t.as_bytes(), line].concat()]
            }
            Rejected::AtomControl(c) => {
                let mut line = format!("{t} SELECT IN").into_bytes();
                line.push(*c);
                line.extend_from_slice(b"BOX\r\n");
                vec![line]
            }
            Rejected::Compress => vec![format!("{t} COMPRESS DEFLATE\r\n").into_bytes()],
            Rejected::Starttls => vec![format!("{t} STARTTLS\r\n").into_bytes()],
            Rejected::Unknown => vec![format!("{t} XSMUGGLE {MARK}\r\n").into_bytes()],
            Rejected::MissingArgument => vec![format!("{t} SELECT\r\n").into_bytes()],
            Rejected::AuthenticateAfterLogin => {
                vec![format!("{t} AUTHENTICATE PLAIN\r\n").into_bytes()]
            }
            Rejected::AuthenticatePipelined(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} AUTHENTICATE PLAIN\r\n{line}").into_bytes()]
            }
            Rejected::AuthenticateCancelled => {
                vec![format!("{t} AUTHENTICATE PLAIN\r\n*\r\n").into_bytes()]
            }
            Rejected::SelectBeforeLogin => vec![format!("{t} SELECT {MARK}\r\n").into_bytes()],
        };
        self.push(t, Class::Rejected, chunks, data);
    }

    fn login(&mut self, login: Login) {
        let t = self.tag('r');
        let user = self.user.clone();
        let chunks = match login {
            Login::Atoms => vec![format!("{t} LOGIN {user} {PASSWORD}\r\n")],
            Login::Quoted => vec![format!("{t} LOGIN \"{user}\" \"{PASSWORD}\"\r\n")],
            Login::Lower => vec![format!("{t} login {user} {PASSWORD}\r\n")],
            Login::Literal => vec![
                format!("{t} LOGIN {user} {{{}}}\r\n", PASSWORD.len()),
                format!("{PASSWORD}\r\n"),
            ],
            Login::LiteralPlus => vec![format!(
                "{t} LOGIN {{{}+}}\r\n{user} {{{}+}}\r\n{PASSWORD}\r\n",
                user.len(),
                PASSWORD.len()
            )],
            Login::SaslIr => vec![format!("{t} AUTHENTICATE PLAIN {}\r\n", sasl_plain(&user))],
            Login::SaslContinuation => vec![
                format!("{t} AUTHENTICATE PLAIN\r\n"),
                format!("{}\r\n", sasl_plain(&user)),
            ],
        };
        let chunks = chunks.into_iter().map(String::into_bytes).collect();
        self.push(t, Class::Real, chunks, Vec::new());
        self.out.last_mut().expect("pushed").login = true;
    }

    fn step(&mut self, step: &Step) {
        match &step.command {
            Command::Real(real) => self.real(real),
            Command::Rejected(rejected) => self.rejected(rejected),
        }
        self.out.last_mut().expect("pushed").wait = step.wait;
    }
}

fn render(stream: &Stream, user: &str) -> Vec<Rendered> {
    let mut renderer = Renderer {
        user: user.to_string(),
        next: 0,
        out: Vec::new(),
    };
    for step in &stream.pre_login {
        renderer.step(step);
    }
    renderer.login(stream.login);
    renderer.out.last_mut().expect("login").wait = stream.wait_after_login;
    for step in &stream.post_login {
        renderer.step(step);
    }
    renderer.out
}

// ---------------------------------------------------------------------------------------------
// Driving a session

/// What one session produced on the client side.
#[derive(Debug, Default)]
struct Outcome {
    /// Every tagged status line, in arrival order: (tag, line).
    tagged: Vec<(String, String)>,
    /// Why the session ended early, if it did.
    broken: Option<String>,
    /// The final `zz NOOP` status.
    final_noop: Option<String>,
}

impl Outcome {
    fn answered(&self, tag: &str) -> bool {
        self.tagged.iter().any(|(t, _)| t == tag)
    }

    /// Whether the stream's login got its OK.
    fn logged_in(&self, commands: &[Rendered]) -> bool {
        commands.iter().filter(|c| c.login).any(|c| {
            let ok = format!("{} OK", c.tag);
            self.tagged.iter().any(|(_, line)| line.starts_with(&ok))
        })
    }
}

struct Session {
    client: LineClient<TlsStream>,
    outcome: Outcome,
    pending: Vec<u8>,
}

impl Session {
    fn new(port: u16, ca: &TestCa) -> Session {
        let mut client = raw::connect_tls(port, ca);
        client
            .get_mut()
            .sock
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let greeting = client.read_line();
        assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");
        Session {
            client,
            outcome: Outcome::default(),
            pending: Vec::new(),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.pending);
        let stream = self.client.get_mut();
        std::io::Write::write_all(stream, &data)
            .and_then(|()| std::io::Write::flush(stream))
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one response; `Ok(true)` for a continuation request.
    fn read_one(&mut self) -> Result<bool, String> {
        let response = match self.client.try_read_imap_response() {
            Ok(Some(response)) => response,
            Ok(None) => return Err("connection closed by the proxy".into()),
            Err(e) => return Err(format!("read: {e}")),
        };
        let text = response.text();
        let line = text.trim_end().to_string();
        if line.starts_with('+') {
            return Ok(true);
        }
        if line.starts_with("* BYE") {
            return Err(format!("proxy said {line:?}"));
        }
        if !line.starts_with('*') {
            let tag = line.split(' ').next().unwrap_or("").to_string();
            self.outcome.tagged.push((tag, line));
        }
        Ok(false)
    }

    fn wait_tagged(&mut self, tag: &str) -> Result<(), String> {
        self.flush()?;
        while !self.outcome.answered(tag) {
            self.read_one()?;
        }
        Ok(())
    }

    fn send(&mut self, command: &Rendered) -> Result<(), String> {
        self.pending.extend_from_slice(&command.chunks[0]);
        for chunk in &command.chunks[1..] {
            self.flush()?;
            loop {
                if self.outcome.answered(&command.tag) {
                    // Refused before the continuation: the rest is not sent.
                    return Ok(());
                }
                if self.read_one()? {
                    break;
                }
            }
            self.pending.extend_from_slice(chunk);
        }
        if command.wait {
            self.wait_tagged(&command.tag)?;
        }
        Ok(())
    }

    fn run(mut self, commands: &[Rendered]) -> Outcome {
        let result = (|| {
            for command in commands {
                self.send(command)?;
            }
            self.pending.extend_from_slice(b"zz NOOP\r\n");
            self.wait_tagged("zz")?;
            Ok::<(), String>(())
        })();
        self.outcome.final_noop = self
            .outcome
            .tagged
            .iter()
            .find(|(t, _)| t == "zz")
            .map(|(_, line)| line.clone());
        match result {
            Ok(()) => {
                // Best effort: end the backend session.
                self.pending.extend_from_slice(b"zq LOGOUT\r\n");
                let _ = self.wait_tagged("zq");
            }
            Err(reason) => self.outcome.broken = Some(reason),
        }
        self.outcome
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes as escaped text, one output line per received line (continuation lines indented);
/// long lines are abbreviated in the middle.
fn show(bytes: &[u8]) -> String {
    let lines: Vec<String> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let mut text = String::new();
            for &b in line {
                match b {
                    b'\r' => text.push_str("\\r"),
                    b'\n' => text.push_str("\\n"),
                    0x20..=0x7e => text.push(b as char),
                    _ => text.push_str(&format!("\\x{b:02x}")),
                }
            }
            if text.len() > 160 {
                format!(
                    "{}…({} chars)…{}",
                    &text[..80],
                    text.len() - 120,
                    &text[text.len() - 40..]
                )
            } else {
                text
            }
        })
        .collect();
    lines.join("\n    ")
}

fn describe(commands: &[Rendered]) -> String {
    commands
        .iter()
        .map(|c| {
            format!(
                "  [{:?}{}{}] {}",
                c.class,
                if c.login { ", login" } else { "" },
                if c.wait { ", wait" } else { "" },
                show(&c.bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Properties (b) and (c) on the client side.
fn check_responses(commands: &[Rendered], outcome: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(reason) = &outcome.broken {
        failures.push(format!("(c) session not usable: {reason}"));
    } else if !outcome
        .final_noop
        .as_deref()
        .is_some_and(|l| l.starts_with("zz OK"))
    {
        failures.push(format!("(c) final NOOP: {:?}", outcome.final_noop));
    }
    let mut counts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tag, line) in &outcome.tagged {
        counts.entry(tag).or_default().push(line);
    }
    for command in commands {
        let answers = counts.remove(command.tag.as_str()).unwrap_or_default();
        if outcome.broken.is_none() && answers.len() != 1 {
            failures.push(format!(
                "(b) {} got {} tagged responses: {answers:?}",
                command.tag,
                answers.len()
            ));
        }
        if command.login && !answers.iter().all(|a| a.contains(" OK")) {
            failures.push(format!("(b) login {} failed: {answers:?}", command.tag));
        }
        if command.class == Class::Rejected
            && !answers.iter().all(|a| {
                a.starts_with(&format!("{} BAD", command.tag))
                    || a.starts_with(&format!("{} NO", command.tag))
            })
        {
            failures.push(format!("(b) rejected {} answered {answers:?}", command.tag));
        }
        for data in &command.data_tags {
            if let Some(answers) = counts.remove(data.as_str()) {
                failures.push(format!("(b) smuggled {data} was answered: {answers:?}"));
            }
        }
    }
    counts.remove("zz");
    counts.remove("zq");
    for (tag, answers) in counts {
        failures.push(format!(
            "(b) unexpected tagged response(s) for {tag:?}: {answers:?}"
        ));
    }
    failures
}

/// Property (a): what the backend received after login is accounted for.
fn check_backend_commands(commands: &[Rendered], received: &[Vec<u8>], who: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut real: Vec<&Rendered> = commands.iter().filter(|c| c.class == Class::Real).collect();
    let finals = [final_command("zz NOOP"), final_command("zq LOGOUT")];
    real.extend(finals.iter());
    let mut position = 0;
    for command in received {
        let tag = imap_tag(command);
        let shown = show(command);
        match real[position..].iter().position(|c| c.tag == tag) {
            Some(offset) => {
                position += offset + 1;
                let issued = real[position - 1];
                if contains(command, MARK.as_bytes()) && !issued.mentions_mark() {
                    failures.push(format!("(a) {who} got {MARK} in {tag}: {shown}"));
                }
            }
            None => {
                let origin = if commands.iter().any(|c| c.tag == tag) {
                    "a rejected command"
                } else if commands.iter().any(|c| c.data_tags.contains(&tag)) {
                    "SMUGGLED data"
                } else if real.iter().any(|c| c.tag == tag) {
                    "a real command, out of order or repeated"
                } else {
                    "nothing the client issued as a command"
                };
                failures.push(format!("(a) {who} executed {origin}: {shown}"));
            }
        }
    }
    failures
}

fn final_command(text: &str) -> Rendered {
    Rendered {
        tag: text.split(' ').next().unwrap_or("").to_string(),
        class: Class::Real,
        chunks: vec![format!("{text}\r\n").into_bytes()],
        data_tags: Vec::new(),
        wait: true,
        login: false,
    }
}

fn verdict(failures: Vec<String>, commands: &[Rendered], extra: &str) -> Result<(), TestCaseError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "{}\nstream:\n{}\n{extra}",
        failures.join("\n"),
        describe(commands)
    )))
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

fn report(result: Result<(), TestError<Stream>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, stream)) => {
            panic!("minimal failing stream {stream:#?}\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

fn rawlog_dovecot() -> Dovecot {
    let dovecot = Dovecot::start_with(DovecotOptions {
        imap_rawlog: true,
        extra_config: vec!["auth_failure_delay = 0".into()],
        users: (0..CASE_USERS)
            .map(|i| (format!("c{i}"), PASSWORD.to_string()))
            .collect(),
        ..DovecotOptions::default()
    });
    assert_eq!((dovecot.user(), dovecot.password()), (USER, PASSWORD));
    for i in 0..CASE_USERS {
        dovecot.maildir_folder(&format!("c{i}"), MARK);
    }
    dovecot
}

/// The Dovecot user for the next case.
fn next_case_user() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c{}", n % CASE_USERS)
}

/// The harness itself: a direct session's rawlog holds exactly its post-login commands, literals
/// inlined, timestamps stripped.
#[test]
fn rawlog_shows_what_dovecot_received() {
    let dovecot = rawlog_dovecot();
    let user = "c0";
    let known = dovecot.imap_rawlog_files(user);
    let mut client = raw::connect_tls(dovecot.imaps_port, &dovecot.ca);
    client.read_line();
    let (_, status) = client.imap("l", &format!("LOGIN {user} {PASSWORD}"));
    assert!(status.starts_with("l OK"), "{status}");
    let (_, status) = client.imap("a", &format!("STATUS {MARK} (MESSAGES)"));
    assert!(
        status.starts_with("a OK"),
        "the {MARK} mailbox is missing: {status}"
    );
    client.send_line("b STATUS {5}");
    assert!(client.read_line().starts_with('+'));
    client.send_raw(b"INBOX (MESSAGES)\r\n");
    read_until_tagged(&mut client, "b");
    client.send_raw(b"c STATUS {5+}\r\nINBOX (MESSAGES)\r\n");
    read_until_tagged(&mut client, "c");
    client.imap("z", "LOGOUT");
    let sessions = dovecot
        .wait_imap_rawlog(user, &known, 1, Duration::from_secs(10))
        .expect("rawlog");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let received: Vec<String> = sessions[0]
        .commands()
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(
        received,
        [
            "a STATUS Smuggled (MESSAGES)\r\n",
            "b STATUS {5}\r\nINBOX (MESSAGES)\r\n",
            "c STATUS {5+}\r\nINBOX (MESSAGES)\r\n",
            "z LOGOUT\r\n"
        ],
        "raw file: {}",
        show(&std::fs::read(&sessions[0].path).unwrap_or_default())
    );
}

fn read_until_tagged(client: &mut LineClient<TlsStream>, tag: &str) -> String {
    loop {
        let text = client.read_imap_response().text();
        if text.starts_with(&format!("{tag} ")) {
            return text;
        }
    }
}

#[test]
fn backend_executes_only_what_the_proxy_accounted_for() {
    let started = Instant::now();
    let dovecot = rawlog_dovecot();
    let proxy = TestProxy::start(
        &(tls_section(&dovecot)
            + LIMITS
            + &listener("imaps", "imap", "implicit", "dovecot")
            + &dovecot_backend("dovecot", &dovecot, "imap", "none")),
    );
    assume_literal_plus(&proxy, &dovecot.ca);
    let result = runner(24).run(&stream(), |stream| {
        let user = next_case_user();
        let commands = render(&stream, &user);
        let known = dovecot.imap_rawlog_files(&user);
        let outcome = Session::new(proxy.port(0), &dovecot.ca).run(&commands);
        let mut failures = check_responses(&commands, &outcome);
        let mut extra = String::new();
        let expected = usize::from(outcome.logged_in(&commands));
        match dovecot.wait_imap_rawlog(&user, &known, expected, Duration::from_secs(10)) {
            Ok(sessions) => {
                if sessions.len() != expected {
                    failures.push(format!(
                        "(a) {} backend sessions, {expected} logins",
                        sessions.len()
                    ));
                }
                for session in &sessions {
                    let received = session.commands();
                    extra.push_str(&format!(
                        "Dovecot rawlog {}:\n    {}\n",
                        session.path.display(),
                        show(&session.input)
                    ));
                    failures.extend(check_backend_commands(&commands, &received, "Dovecot"));
                }
            }
            Err(reason) => failures.push(format!("(a) no complete rawlog: {reason}")),
        }
        verdict(failures, &commands, &extra)
    });
    eprintln!("differential run took {:?}", started.elapsed());
    report(result);
}

/// The grammar sends `{n+}` literals (RFC 7888) without waiting: that is only well-defined
/// while the proxy advertises LITERAL+ (as Dovecot does).
fn assume_literal_plus(proxy: &TestProxy, ca: &TestCa) {
    let mut client = raw::connect_tls(proxy.port(0), ca);
    client.read_line();
    let (_, status) = client.imap("l", &format!("LOGIN {USER} {PASSWORD}"));
    assert!(status.starts_with("l OK"), "{status}");
    let (untagged, _) = client.imap("c", "CAPABILITY");
    let caps: String = untagged.iter().map(|r| r.text()).collect();
    assert!(
        caps.contains("LITERAL+"),
        "the grammar assumes LITERAL+: {caps}"
    );
    client.imap("z", "LOGOUT");
}

/// Pre-login side (Dovecot's rawlog starts after login): a recording fake backend sees only
/// CAPABILITY, ID and the proxy's own single LOGIN/AUTHENTICATE before login, nothing smuggled,
/// and after login only real commands in order.
#[test]
fn nothing_but_the_proxys_own_login_reaches_the_backend_before_login() {
    let ca = TestCa::new();
    let (port, sessions) = recording_imap_backend(USER, PASSWORD);
    let proxy = imap_to_fake(&ca, port, "none", LIMITS);
    let result = runner(24).run(&stream(), |stream| {
        let commands = render(&stream, USER);
        let before = sessions.lock().expect("lock").len();
        let outcome = Session::new(proxy.port(0), &ca).run(&commands);
        let mut failures = check_responses(&commands, &outcome);
        let recorded = wait_recorded(&sessions, before);
        let mut extra = String::new();
        if recorded.len() != 1 {
            failures.push(format!(
                "{} backend connections for one client session",
                recorded.len()
            ));
        }
        for session in &recorded {
            extra.push_str(&format!(
                "backend received before login:\n    {}\nafter login:\n    {}\n",
                show(&session.pre_login.concat()),
                show(&session.post_login.concat())
            ));
            failures.extend(check_pre_login(&commands, session));
            failures.extend(check_backend_commands(
                &commands,
                &session.post_login,
                "the backend",
            ));
        }
        verdict(failures, &commands, &extra)
    });
    report(result);
}

/// The backend connections opened since `before`, once each is closed (10 s at most).
fn wait_recorded(
    sessions: &std::sync::Mutex<Vec<RecordedImapSession>>,
    before: usize,
) -> Vec<RecordedImapSession> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = sessions.lock().expect("lock").clone();
        let fresh = all[before.min(all.len())..].to_vec();
        if (!fresh.is_empty() && fresh.iter().all(|s| s.closed)) || Instant::now() >= deadline {
            return fresh;
        }
        drop(all);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_pre_login(commands: &[Rendered], session: &RecordedImapSession) -> Vec<String> {
    let mut failures = Vec::new();
    let mut logins = 0;
    let mut sasl_line_next = false;
    for command in &session.pre_login {
        let shown = show(command);
        if sasl_line_next {
            sasl_line_next = false;
            if command.trim_ascii_end() != sasl_plain(USER).as_bytes() {
                failures.push(format!(
                    "(pre-login) SASL response not the proxy's: {shown}"
                ));
            }
            continue;
        }
        let text = String::from_utf8_lossy(command);
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("");
        let name = words.next().unwrap_or("").to_ascii_uppercase();
        if commands
            .iter()
            .any(|c| c.data_tags.iter().any(|d| d == tag))
        {
            failures.push(format!(
                "(pre-login) backend got SMUGGLED data as a command: {shown}"
            ));
        }
        // A forwarded ID may carry what a real client ID said; anything else must not.
        if name != "ID" && contains(command, MARK.as_bytes()) {
            failures.push(format!("(pre-login) backend got {MARK}: {shown}"));
        }
        match name.as_str() {
            "CAPABILITY" | "ID" => {}
            "LOGIN" => {
                logins += 1;
                if !text.contains(USER) {
                    failures.push(format!("(pre-login) LOGIN without the user: {shown}"));
                }
            }
            "AUTHENTICATE" => {
                logins += 1;
                let ir = words.nth(1);
                match ir {
                    Some(ir) if ir == sasl_plain(USER) => {}
                    Some(_) => failures.push(format!("(pre-login) foreign SASL-IR: {shown}")),
                    None => sasl_line_next = true,
                }
            }
            _ => failures.push(format!("(pre-login) backend got a client command: {shown}")),
        }
    }
    if logins != 1 {
        failures.push(format!(
            "(pre-login) {logins} login commands reached the backend"
        ));
    }
    failures
}
