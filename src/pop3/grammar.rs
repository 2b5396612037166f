//! The strict POP3 command grammar the proxy accepts (RFC 1939 §3–§7, RFC 2449 §3–§5,
//! RFC 2595 §4 `STLS`, RFC 5034 §4 `AUTH`).
//!
//! A client line is parsed once into a typed [`Command`]; only that value's canonical
//! serialisation ([`Command::to_line`]) is ever sent to a backend, never the client's bytes. So
//! the proxy and the backend cannot disagree about what was sent: anything a lenient server
//! could read differently (a NUL after a number, `+1`, two spaces, trailing garbage) does not
//! parse and is answered `-ERR` by the proxy.
//!
//! Rules: keywords are case-insensitive (RFC 1939 §3); arguments are separated by exactly one
//! SP; message numbers are decimal digits only, at least 1 and fit a `u32` (the `TOP` line
//! count may be 0); no control character (NUL, bare CR, TAB, DEL, ...) anywhere; a line ends
//! with CRLF (a bare LF is tolerated as the terminator only) and is at most [`MAX_LINE`] octets
//! (RFC 2449 §4 allows 255; the margin is for long user names), except `AUTH` lines, which may
//! carry an initial response up to [`crate::sasl::MAX_RESPONSE`]. `PASS` takes the rest of the
//! line as the password (RFC 1939 §7 permits spaces in it).

use std::fmt;

use super::codec::Expect;
use crate::sasl::{self, Mechanism};

/// Longest command line accepted, line ending included (255 octets per RFC 2449 §4 plus margin).
pub const MAX_LINE: usize = 512;
/// Longest `AUTH` line accepted, line ending included (an initial response plus the keywords).
pub const MAX_AUTH_LINE: usize = sasl::MAX_RESPONSE + 32;

/// A secret argument (password, APOP digest, SASL initial response): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `AUTH mechanism [initial-response]` (RFC 5034 §4) for a mechanism the proxy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStart {
    /// The SASL mechanism.
    pub mechanism: Mechanism,
    /// The base64 initial response (`=` for an empty one), if given on the command line.
    pub initial: Option<Secret>,
}

/// One client command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS password` (RFC 1939 §7).
    Pass(Secret),
    /// `APOP name digest` (RFC 1939 §7); the digest is 32 hex digits, kept lower-case.
    Apop {
        /// The mailbox name.
        user: String,
        /// The MD5 digest in lower-case hex.
        digest: Secret,
    },
    /// `AUTH` alone (list the mechanisms) or `AUTH mechanism [initial-response]` (RFC 5034).
    Auth(Option<AuthStart>),
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `QUIT`.
    Quit,
    /// `NOOP`.
    Noop,
    /// `STAT`.
    Stat,
    /// `RSET`.
    Rset,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `TOP msg lines`.
    Top(u32, u32),
}

/// Why a client line is not a command the proxy accepts (always the client's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The line is longer than the limit for its command.
    #[error("client command line longer than {0} octets")]
    LineTooLong(usize),
    /// The line does not end with a line feed.
    #[error("client command line without line ending")]
    NoLineEnd,
    /// A control character (NUL, CR, TAB, DEL, ...) inside the line.
    #[error("control character 0x{byte:02x} at offset {offset} in client command")]
    ControlCharacter {
        /// The offending octet.
        byte: u8,
        /// Its offset in the line.
        offset: usize,
    },
    /// Arguments are not valid UTF-8.
    #[error("client command is not valid UTF-8")]
    InvalidUtf8,
    /// An empty argument: leading, trailing or doubled space.
    #[error("client command has an empty argument (extra space)")]
    EmptyArgument,
    /// No keyword the proxy knows.
    #[error("unknown client command {0:?}")]
    UnknownCommand(String),
    /// `XCLIENT` from a client: the client address is the proxy's to announce.
    #[error("XCLIENT is reserved for the proxy")]
    Xclient,
    /// A required argument is missing.
    #[error("{0}: missing argument")]
    MissingArgument(&'static str),
    /// More arguments than the command takes.
    #[error("{0}: too many arguments")]
    TooManyArguments(&'static str),
    /// A message number or line count that is not plain decimal digits.
    #[error("{0}: not a decimal number")]
    NotANumber(&'static str),
    /// Message number 0.
    #[error("{0}: message numbers start at 1")]
    ZeroMessage(&'static str),
    /// A number beyond `u32`.
    #[error("{0}: number too large")]
    NumberTooLarge(&'static str),
    /// An APOP digest that is not 32 hex digits.
    #[error("APOP: digest must be 32 hex digits")]
    BadDigest,
    /// A SASL mechanism the proxy does not run.
    #[error("AUTH: unsupported mechanism")]
    UnsupportedMechanism,
    /// An initial response that is not base64 (or `=`).
    #[error("AUTH: initial response is not base64")]
    BadInitialResponse,
    /// A valid command that is not allowed after login (RFC 1939 §5).
    #[error("{0} not allowed after login")]
    NotInTransaction(&'static str),
}

impl Command {
    /// Parses one complete client line (line ending included).
    pub fn parse(line: &[u8]) -> Result<Command, GrammarError> {
        let body = strip_line_end(line)?;
        check_length(line.len(), body)?;
        if let Some(offset) = body.iter().position(|&b| b < 0x20 || b == 0x7f) {
            return Err(GrammarError::ControlCharacter {
                byte: body[offset],
                offset,
            });
        }
        let text = std::str::from_utf8(body).map_err(|_| GrammarError::InvalidUtf8)?;
        let (keyword, rest) = match text.split_once(' ') {
            Some((keyword, rest)) => (keyword, Some(rest)),
            None => (text, None),
        };
        parse_keyword(&keyword.to_ascii_uppercase(), rest)
    }

    /// Parses a line in the TRANSACTION state: only the commands of
    /// [`Command::allowed_in_transaction`] are accepted.
    pub fn parse_transaction(line: &[u8]) -> Result<Command, GrammarError> {
        let command = Command::parse(line)?;
        if command.allowed_in_transaction() {
            Ok(command)
        } else {
            Err(GrammarError::NotInTransaction(command.keyword()))
        }
    }

    /// The canonical line sent to a backend, CRLF included.
    pub fn to_line(&self) -> Vec<u8> {
        let text = match self {
            Command::User(name) => format!("USER {name}"),
            Command::Pass(password) => format!("PASS {}", password.0),
            Command::Apop { user, digest } => format!("APOP {user} {}", digest.0),
            Command::Auth(None) => "AUTH".to_string(),
            Command::Auth(Some(AuthStart { mechanism, initial })) => match initial {
                Some(initial) => format!("AUTH {} {}", mechanism.name(), initial.0),
                None => format!("AUTH {}", mechanism.name()),
            },
            Command::Stls => "STLS".to_string(),
            Command::Capa => "CAPA".to_string(),
            Command::Quit => "QUIT".to_string(),
            Command::Noop => "NOOP".to_string(),
            Command::Stat => "STAT".to_string(),
            Command::Rset => "RSET".to_string(),
            Command::List(n) => optional("LIST", *n),
            Command::Uidl(n) => optional("UIDL", *n),
            Command::Retr(n) => format!("RETR {n}"),
            Command::Dele(n) => format!("DELE {n}"),
            Command::Top(n, lines) => format!("TOP {n} {lines}"),
        };
        let mut line = text.into_bytes();
        line.extend_from_slice(b"\r\n");
        line
    }

    /// The keyword, upper-case (safe to log: no argument).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth(_) => "AUTH",
            Command::Stls => "STLS",
            Command::Capa => "CAPA",
            Command::Quit => "QUIT",
            Command::Noop => "NOOP",
            Command::Stat => "STAT",
            Command::Rset => "RSET",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Top(..) => "TOP",
        }
    }

    /// Whether the command may be forwarded in the TRANSACTION state (RFC 1939 §5, RFC 2449 §5).
    pub fn allowed_in_transaction(&self) -> bool {
        matches!(
            self,
            Command::Stat
                | Command::List(_)
                | Command::Retr(_)
                | Command::Dele(_)
                | Command::Noop
                | Command::Rset
                | Command::Quit
                | Command::Top(..)
                | Command::Uidl(_)
                | Command::Capa
        )
    }

    /// The shape of the backend's answer to this command when forwarded.
    pub fn expect(&self) -> Expect {
        match self {
            Command::Capa
            | Command::Retr(_)
            | Command::Top(..)
            | Command::List(None)
            | Command::Uidl(None)
            | Command::Auth(None) => Expect::MultiLine,
            Command::Auth(Some(_)) => Expect::Sasl,
            _ => Expect::SingleLine,
        }
    }
}

fn optional(keyword: &str, n: Option<u32>) -> String {
    match n {
        Some(n) => format!("{keyword} {n}"),
        None => keyword.to_string(),
    }
}

/// The line without its terminator (CRLF, or a bare LF).
fn strip_line_end(line: &[u8]) -> Result<&[u8], GrammarError> {
    let body = line.strip_suffix(b"\n").ok_or(GrammarError::NoLineEnd)?;
    Ok(body.strip_suffix(b"\r").unwrap_or(body))
}

/// `AUTH` lines may be up to [`MAX_AUTH_LINE`], every other line up to [`MAX_LINE`].
fn check_length(len: usize, body: &[u8]) -> Result<(), GrammarError> {
    let is_auth = body.len() >= 4
        && body[..4].eq_ignore_ascii_case(b"AUTH")
        && matches!(body.get(4), None | Some(b' '));
    let limit = if is_auth { MAX_AUTH_LINE } else { MAX_LINE };
    if len > limit {
        return Err(GrammarError::LineTooLong(limit));
    }
    Ok(())
}

/// Splits arguments on single spaces; an empty piece means a stray space.
fn words(rest: Option<&str>) -> Result<Vec<&str>, GrammarError> {
    let Some(rest) = rest else {
        return Ok(Vec::new());
    };
    let words: Vec<&str> = rest.split(' ').collect();
    if words.iter().any(|w| w.is_empty()) {
        return Err(GrammarError::EmptyArgument);
    }
    Ok(words)
}

fn parse_keyword(keyword: &str, rest: Option<&str>) -> Result<Command, GrammarError> {
    match keyword {
        "PASS" => match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass(Secret(password.into()))),
            _ => Err(GrammarError::MissingArgument("PASS")),
        },
        "XCLIENT" => Err(GrammarError::Xclient),
        _ => parse_words(keyword, &words(rest)?),
    }
}

fn parse_words(keyword: &str, args: &[&str]) -> Result<Command, GrammarError> {
    let command = match (keyword, args) {
        ("STLS", []) => Command::Stls,
        ("CAPA", []) => Command::Capa,
        ("QUIT", []) => Command::Quit,
        ("NOOP", []) => Command::Noop,
        ("STAT", []) => Command::Stat,
        ("RSET", []) => Command::Rset,
        ("LIST", []) => Command::List(None),
        ("LIST", [n]) => Command::List(Some(message("LIST", n)?)),
        ("UIDL", []) => Command::Uidl(None),
        ("UIDL", [n]) => Command::Uidl(Some(message("UIDL", n)?)),
        ("RETR", [n]) => Command::Retr(message("RETR", n)?),
        ("DELE", [n]) => Command::Dele(message("DELE", n)?),
        ("TOP", [n, lines]) => Command::Top(message("TOP", n)?, number("TOP", lines)?),
        ("USER", [name]) => Command::User((*name).to_string()),
        ("APOP", [user, digest]) => Command::Apop {
            user: (*user).to_string(),
            digest: Secret(apop_digest(digest)?),
        },
        ("AUTH", []) => Command::Auth(None),
        ("AUTH", [mechanism]) => Command::Auth(Some(auth_start(mechanism, None)?)),
        ("AUTH", [mechanism, initial]) => {
            Command::Auth(Some(auth_start(mechanism, Some(initial))?))
        }
        _ => return Err(arity_error(keyword, args.len())),
    };
    Ok(command)
}

/// The error for a known keyword with the wrong number of arguments, or an unknown keyword.
fn arity_error(keyword: &str, given: usize) -> GrammarError {
    let (name, max): (&'static str, usize) = match keyword {
        "STLS" => ("STLS", 0),
        "CAPA" => ("CAPA", 0),
        "QUIT" => ("QUIT", 0),
        "NOOP" => ("NOOP", 0),
        "STAT" => ("STAT", 0),
        "RSET" => ("RSET", 0),
        "LIST" => ("LIST", 1),
        "UIDL" => ("UIDL", 1),
        "RETR" => ("RETR", 1),
        "DELE" => ("DELE", 1),
        "TOP" => ("TOP", 2),
        "USER" => ("USER", 1),
        "APOP" => ("APOP", 2),
        "AUTH" => ("AUTH", 2),
        _ => {
            let shown: String = keyword.chars().take(16).collect();
            return GrammarError::UnknownCommand(shown);
        }
    };
    if given > max {
        GrammarError::TooManyArguments(name)
    } else {
        GrammarError::MissingArgument(name)
    }
}

/// A message number: digits only, ≥ 1, fits `u32`.
fn message(keyword: &'static str, word: &str) -> Result<u32, GrammarError> {
    match number(keyword, word)? {
        0 => Err(GrammarError::ZeroMessage(keyword)),
        n => Ok(n),
    }
}

/// A non-negative decimal number: digits only (no sign), fits `u32`.
fn number(keyword: &'static str, word: &str) -> Result<u32, GrammarError> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GrammarError::NotANumber(keyword));
    }
    word.parse()
        .map_err(|_| GrammarError::NumberTooLarge(keyword))
}

fn apop_digest(word: &str) -> Result<String, GrammarError> {
    if word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(word.to_ascii_lowercase())
    } else {
        Err(GrammarError::BadDigest)
    }
}

fn auth_start(mechanism: &str, initial: Option<&str>) -> Result<AuthStart, GrammarError> {
    let mechanism =
        Mechanism::parse(mechanism.as_bytes()).ok_or(GrammarError::UnsupportedMechanism)?;
    let initial = match initial {
        None => None,
        Some(word) if is_base64_or_empty(word) => Some(Secret(word.to_string())),
        Some(_) => return Err(GrammarError::BadInitialResponse),
    };
    Ok(AuthStart { mechanism, initial })
}

/// `=` (empty response, RFC 5034 §4) or base64 alphabet with at most two trailing `=`.
fn is_base64_or_empty(word: &str) -> bool {
    if word == "=" {
        return true;
    }
    let data = word.trim_end_matches('=');
    word.len() - data.len() <= 2
        && !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
#[path = "grammar_tests.rs"]
mod tests;
