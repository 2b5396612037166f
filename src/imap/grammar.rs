//! A strict IMAP command grammar for "parse, then forward".
//!
//! After login every client command is parsed *completely* by [`parse_command`] before any byte
//! of it reaches the backend; what is forwarded is the canonical serialisation
//! ([`ParsedCommand::encode`]) of what was parsed, never the client's bytes. A command that does
//! not parse, or is not on the allow-list below, is never forwarded.
//!
//! The grammar is RFC 9051 §6 / §9 (IMAP4rev2) and RFC 3501 §6 / §9 (IMAP4rev1) as
//! implemented by `imap-codec` 2.0.0-alpha.10 (a sans-I/O nom parser with a matching encoder),
//! plus the extensions below.
//!
//! # Allow-list
//!
//! | command | RFC | [`CommandKind`] |
//! |---|---|---|
//! | CAPABILITY, NOOP, LOGOUT | 9051 §6.1, 3501 §6.1 | `Capability`, `Noop`, `Logout` |
//! | STARTTLS, AUTHENTICATE, LOGIN | 9051 §6.2, 3501 §6.2; SASL-IR 4959 | `StartTls`, `Authenticate`, `Login` |
//! | SELECT, EXAMINE | 9051 §6.3.2–3 | `Select` |
//! | CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS | 9051 §6.3, 3501 §6.3 | `Other` |
//! | APPEND (literal or literal8 message) | 9051 §6.3.12; BINARY 3516 | `Append` |
//! | CHECK, EXPUNGE, SEARCH, STORE, COPY | 3501 §6.4 | `Other` |
//! | CLOSE | 9051 §6.4.1 | `Close` |
//! | FETCH, UID FETCH (incl. BINARY/BINARY.PEEK/BINARY.SIZE items) | 9051 §6.4.5; 3516 | `Fetch` |
//! | UID COPY/STORE/SEARCH/MOVE | 9051 §6.4.9 | `Other` |
//! | UID EXPUNGE | UIDPLUS 4315 | `Other` |
//! | IDLE | 2177 | `Idle` |
//! | NAMESPACE | 2342 | `Other` |
//! | UNSELECT | 3691 | `Unselect` |
//! | MOVE | 6851 | `Other` |
//! | ID | 2971 | `Id` |
//! | ENABLE (parsed; the session decides) | 5161 | `Enable` |
//! | COMPRESS (parsed so the session can refuse it) | 4978 | `Compress` |
//! | GETQUOTA, GETQUOTAROOT | QUOTA 9208 | `Other` |
//! | SORT, THREAD, UID SORT, UID THREAD | 5256 | `Other` |
//!
//! Everything else is [`GrammarError::NotAllowed`] (SETQUOTA, and any command a future
//! `imap-codec` feature adds, e.g. METADATA) or [`GrammarError::Syntax`] (anything imap-codec has
//! no grammar for: NOTIFY, X-commands, `UID` with a sub-command other than those above,
//! LIST-EXTENDED forms, CONDSTORE/QRESYNC parameters, and the FETCH items `PREVIEW`/`SNIPPET`
//! (RFC 8970), which are refused as `Syntax` because imap-codec does not know them).
//!
//! # Strictness decisions
//!
//! * `imap-codec` is used with `default-features = false`: no `quirk_*` features. The
//!   `quirk_trailing_space_*` quirks would accept trailing spaces after SEARCH and ID arguments,
//!   and `quirk_always_normalize_sequence_sets` would rewrite (sort/merge) sequence sets on
//!   encoding; we forward sequence sets exactly as parsed. Features: `starttls`, `ext_id`
//!   (RFC 2971), `ext_namespace` (RFC 2342), `ext_utf8` (UTF-8 in quoted strings, as in the
//!   RFC 9051 grammar `QUOTED-CHAR =/ UTF8-2 / UTF8-3 / UTF8-4`; clients send non-ASCII
//!   passwords that way; it cannot break framing). Cargo unifies features: if another module
//!   enables quirks on imap-codec, this grammar becomes laxer (the unit tests would show it).
//! * Argument-less commands must be exactly `tag SP name CRLF`; command names are
//!   case-insensitive (`a noop` parses); CRLF is strict (no bare LF).
//! * No string argument other than APPEND's message may contain CR, LF or NUL, even inside a
//!   literal (a literal mailbox name `"x\r\nb SELECT y"` is `Syntax`). NUL, CR and LF are not
//!   allowed in quoted strings by the grammar itself; NUL is never allowed in a `literal`.
//! * Strings that become `String`s in [`CommandKind`] (LOGIN user/password, SELECT/EXAMINE
//!   mailbox) must be UTF-8, else `Syntax`. ID values are converted lossily (they are only
//!   informational; the forwarded bytes come from the parsed value).
//! * Empty literals `{0}` parse wherever a string is allowed, including an empty LOGIN user (the
//!   backend rejects the login).
//! * Nesting is bounded by imap-codec (SEARCH keys: 9 levels; others are not recursive), so deep
//!   `((((...` input fails without deep recursion.
//!
//! # Capabilities passed through ([`capability_allowed`])
//!
//! `IMAP4rev1`, `LITERAL+`, `LITERAL-` (7888), `SASL-IR` (4959), `ID` (2971), `IDLE` (2177),
//! `NAMESPACE` (2342), `UNSELECT` (3691), `MOVE` (6851), `UIDPLUS` (4315), `CHILDREN` (3348),
//! `SPECIAL-USE` (6154: LIST attributes only), `BINARY` (3516), `QUOTA` and `QUOTA=RES-*`
//! (9208), `SORT` and `THREAD=*` (5256). Stripped, among others: `IMAP4rev2` (its response
//! shapes — ESEARCH by default, no RECENT, LIST changes — are not what the session relies on;
//! a dual rev1/rev2 backend stays rev1 unless the client ENABLEs rev2), `ENABLE` (nothing
//! enable-able is offered), `COMPRESS=*`, `NOTIFY`, `PREVIEW`, `SNIPPET=*`, `METADATA*`,
//! `CONDSTORE`, `QRESYNC`, `UTF8=*`, `I18NLEVEL=*`, `URLAUTH`, `CATENATE`, `MULTIAPPEND`,
//! `CONTEXT=*`, `ESEARCH`, `LIST-EXTENDED`, `LIST-STATUS`, `SORT=DISPLAY`, `WITHIN`,
//! `QUOTASET`.
//!
//! # Literals in the canonical form
//!
//! A string the client sent as a literal is re-sent as a literal, quoted as quoted, atom as atom;
//! [`ParsedCommand::encode`] rewrites every literal announcement to `{n+}` (backend has LITERAL+,
//! RFC 7888) or `{n}`; literal8 (`~{n}`, RFC 3516) stays literal8 (`~{n+}` with LITERAL+).

use std::fmt;

use base64::Engine as _;
use imap_codec::{
    decode::Decoder,
    encode::{Encoder, Fragment as CodecFragment},
    imap_types::{
        command::{Command, CommandBody},
        core::{IString, NString},
        mailbox::Mailbox,
        IntoStatic,
    },
    CommandCodec,
};

use crate::sasl::Credentials;

#[path = "grammar_capability.rs"]
mod capability;
#[path = "grammar_id.rs"]
mod id;

pub use capability::capability_allowed;

#[cfg(test)]
#[path = "grammar_proptests.rs"]
mod proptests;
#[cfg(test)]
#[path = "grammar_tests.rs"]
mod tests;

/// One fragment of a serialised command, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// Bytes of a line, CRLF included at the end of the last piece of a line; when the next
    /// fragment is a literal, this line ends with the literal announcement `{n}`/`{n+}`/`~{n}`
    /// and CRLF.
    Line(Vec<u8>),
    /// Literal payload (exactly the announced octets).
    Literal(Vec<u8>),
}

/// What a parsed command means to the session (typed; parsed once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// `CAPABILITY`.
    Capability,
    /// `NOOP`.
    Noop,
    /// `LOGOUT`.
    Logout,
    /// `STARTTLS` (RFC 2595).
    StartTls,
    /// `LOGIN user password`.
    Login(Credentials),
    /// Mechanism upper-cased, initial response (SASL-IR, RFC 4959) raw base64 bytes as sent
    /// (`=` kept as is).
    Authenticate {
        /// SASL mechanism name, upper-case.
        mechanism: String,
        /// The initial response as base64 text, `=` for an empty one.
        initial: Option<Vec<u8>>,
    },
    /// RFC 2971 ID; `None` = `ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),
    /// SELECT/EXAMINE: mailbox name decoded to a String (INBOX canonical upper-case);
    /// `read_only` = EXAMINE.
    Select {
        /// The mailbox name.
        mailbox: String,
        /// True for EXAMINE.
        read_only: bool,
    },
    /// `CLOSE`.
    Close,
    /// `UNSELECT` (RFC 3691).
    Unselect,
    /// `IDLE` (RFC 2177).
    Idle,
    /// FETCH / UID FETCH (the session rewrites FETCH items on the canonical line).
    Fetch {
        /// True for UID FETCH.
        uid: bool,
    },
    /// `APPEND`.
    Append,
    /// `COMPRESS` (RFC 4978).
    Compress,
    /// `ENABLE` (RFC 5161).
    Enable,
    /// Every other allowed command; the canonical upper-case name, e.g. "UID STORE", "LIST".
    Other(&'static str),
}

/// A client command that parsed completely and is on the allow-list.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    /// The command's tag.
    pub tag: String,
    /// What the command means to the session.
    pub kind: CommandKind,
    command: Command<'static>,
}

impl fmt::Debug for ParsedCommand {
    // The inner value holds passwords and SASL data in clear in debug builds: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedCommand")
            .field("tag", &self.tag)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why a client command is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// Not even `tag SP` could be read: answer `* BAD`.
    #[error("no valid tag")]
    NoTag,
    /// The tag was read but the rest does not parse: answer `tag BAD <reason>`.
    #[error("command syntax error")]
    Syntax {
        /// The command's tag.
        tag: String,
    },
    /// Parsed, but the command is not one the proxy lets through.
    #[error("command {name} not allowed")]
    NotAllowed {
        /// The command's tag.
        tag: String,
        /// The command's canonical name.
        name: String,
    },
    /// Bytes left over after one complete command.
    #[error("bytes after the end of the command")]
    TrailingBytes {
        /// The command's tag.
        tag: String,
    },
}

/// Reads `tag SP` the way the grammar does (`tag = 1*<any ASTRING-CHAR except "+">`).
fn read_tag(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == b' ')?;
    let tag = &bytes[..end];
    let ok = !tag.is_empty() && tag.iter().all(|&b| is_astring_char(b) && b != b'+');
    ok.then(|| String::from_utf8_lossy(tag).into_owned())
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials` (RFC 9051 §9).
fn is_astring_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
}

/// Parses exactly one complete client command: its first line, every literal it announces (with
/// the literal bytes and following line text appended, exactly as received from the client),
/// ending with CRLF. Never panics on any input.
pub fn parse_command(bytes: &[u8]) -> Result<ParsedCommand, GrammarError> {
    let tag = read_tag(bytes).ok_or(GrammarError::NoTag)?;
    let (rest, command) = match CommandCodec::new().decode(bytes) {
        Ok(decoded) => decoded,
        Err(_) => return Err(GrammarError::Syntax { tag }),
    };
    if !rest.is_empty() {
        return Err(GrammarError::TrailingBytes { tag });
    }
    let command = command.into_static();
    let kind = match classify(&command.body) {
        Classified::Kind(kind) => kind,
        Classified::NotAllowed => {
            let name = canonical_name(&command.body).to_owned();
            return Err(GrammarError::NotAllowed { tag, name });
        }
        Classified::Syntax => return Err(GrammarError::Syntax { tag }),
    };
    let parsed = ParsedCommand { tag, kind, command };
    if !parsed.strings_are_clean() {
        return Err(GrammarError::Syntax { tag: parsed.tag });
    }
    Ok(parsed)
}

enum Classified {
    Kind(CommandKind),
    NotAllowed,
    Syntax,
}

fn utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

fn mailbox_name(mailbox: &Mailbox<'_>) -> Option<String> {
    match mailbox {
        Mailbox::Inbox => Some("INBOX".to_owned()),
        Mailbox::Other(other) => utf8(other.as_ref()),
    }
}

fn lossy(value: &IString<'_>) -> String {
    String::from_utf8_lossy(value.as_ref()).into_owned()
}

fn classify(body: &CommandBody<'_>) -> Classified {
    use Classified::Kind as K;
    use CommandKind as C;
    match body {
        CommandBody::Capability => K(C::Capability),
        CommandBody::Noop => K(C::Noop),
        CommandBody::Logout => K(C::Logout),
        CommandBody::StartTLS => K(C::StartTls),
        CommandBody::Login { username, password } => {
            let user = utf8(username.as_ref());
            let pass = utf8(password.declassify().as_ref());
            match (user, pass) {
                (Some(user), Some(pass)) => K(C::Login(Credentials::new(user, pass))),
                _ => Classified::Syntax,
            }
        }
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => K(C::Authenticate {
            mechanism: mechanism.as_ref().to_ascii_uppercase(),
            initial: initial_response
                .as_ref()
                .map(|ir| match ir.declassify().as_ref() {
                    [] => b"=".to_vec(),
                    data => base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .into_bytes(),
                }),
        }),
        CommandBody::Id { parameters } => K(C::Id(parameters.as_ref().map(|params| {
            params
                .iter()
                .map(|(key, NString(value))| (lossy(key), value.as_ref().map(lossy)))
                .collect()
        }))),
        CommandBody::Select { mailbox, .. } | CommandBody::Examine { mailbox, .. } => {
            let read_only = matches!(body, CommandBody::Examine { .. });
            match mailbox_name(mailbox) {
                Some(mailbox) => K(C::Select { mailbox, read_only }),
                None => Classified::Syntax,
            }
        }
        CommandBody::Close => K(C::Close),
        CommandBody::Unselect => K(C::Unselect),
        CommandBody::Idle => K(C::Idle),
        CommandBody::Fetch { uid, .. } => K(C::Fetch { uid: *uid }),
        CommandBody::Append { .. } => K(C::Append),
        CommandBody::Compress { .. } => K(C::Compress),
        CommandBody::Enable { .. } => K(C::Enable),
        CommandBody::Create { .. }
        | CommandBody::Delete { .. }
        | CommandBody::Rename { .. }
        | CommandBody::Subscribe { .. }
        | CommandBody::Unsubscribe { .. }
        | CommandBody::List { .. }
        | CommandBody::Lsub { .. }
        | CommandBody::Status { .. }
        | CommandBody::Check
        | CommandBody::Expunge
        | CommandBody::ExpungeUid { .. }
        | CommandBody::Search { .. }
        | CommandBody::Sort { .. }
        | CommandBody::Thread { .. }
        | CommandBody::Store { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. }
        | CommandBody::GetQuota { .. }
        | CommandBody::GetQuotaRoot { .. }
        | CommandBody::Namespace => K(C::Other(canonical_name(body))),
        // SETQUOTA (administrative) and whatever other features add (METADATA, ...).
        _ => Classified::NotAllowed,
    }
}

/// Canonical upper-case name of a command body, with the `UID ` prefix where it applies.
fn canonical_name(body: &CommandBody<'_>) -> &'static str {
    match body {
        CommandBody::Fetch { uid: true, .. } => "UID FETCH",
        CommandBody::Store { uid: true, .. } => "UID STORE",
        CommandBody::Copy { uid: true, .. } => "UID COPY",
        CommandBody::Search { uid: true, .. } => "UID SEARCH",
        CommandBody::Move { uid: true, .. } => "UID MOVE",
        CommandBody::Sort { uid: true, .. } => "UID SORT",
        CommandBody::Thread { uid: true, .. } => "UID THREAD",
        CommandBody::ExpungeUid { .. } => "UID EXPUNGE",
        CommandBody::Id { .. } => "ID",
        other => other.name(),
    }
}

/// Rewrites the literal announcement at the end of `line` (`{n}`, `{n+}`, `~{n}`, `~{n+}`
/// followed by CRLF) to the requested mode. A line without one is returned unchanged.
fn set_literal_mode(line: &mut Vec<u8>, non_sync: bool) {
    let Some(body) = line.strip_suffix(b"}\r\n") else {
        return;
    };
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !body[..body.len() - digits].ends_with(b"{") {
        return;
    }
    line.truncate(body.len());
    if non_sync {
        line.push(b'+');
    }
    line.extend_from_slice(b"}\r\n");
}

impl ParsedCommand {
    fn codec_fragments(&self) -> Vec<CodecFragment> {
        CommandCodec::new().encode(&self.command).collect()
    }

    /// The mailbox of an APPEND, named as SELECT names it (INBOX upper-case); `None` for other
    /// commands or a name that is not UTF-8.
    pub fn append_mailbox(&self) -> Option<String> {
        match &self.command.body {
            CommandBody::Append { mailbox, .. } => mailbox_name(mailbox),
            _ => None,
        }
    }

    /// Every string but APPEND's message must be free of CR, LF and NUL, even in a literal.
    fn strings_are_clean(&self) -> bool {
        let bad = |data: &[u8]| data.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
        if let CommandBody::Append { mailbox, .. } = &self.command.body {
            // Flags are atoms and the date is quoted: the mailbox is the only other string.
            return !matches!(mailbox, Mailbox::Other(name) if bad(name.as_ref()));
        }
        self.codec_fragments()
            .iter()
            .all(|f| !matches!(f, CodecFragment::Literal { data, .. } if bad(data)))
    }

    /// The canonical serialisation. `literal_plus`: the backend advertised LITERAL+ (RFC 7888),
    /// so every literal is sent non-synchronizing `{n+}`; otherwise `{n}` and the caller waits
    /// for the backend's `+` between fragments. literal8 (`~{n}`, RFC 3516) stays literal8.
    pub fn encode(&self, literal_plus: bool) -> Vec<Fragment> {
        let mut out: Vec<Fragment> = Vec::new();
        for fragment in self.codec_fragments() {
            match fragment {
                CodecFragment::Line { data } => out.push(Fragment::Line(data)),
                CodecFragment::Literal { data, .. } => {
                    if let Some(Fragment::Line(line)) = out.last_mut() {
                        set_literal_mode(line, literal_plus);
                    }
                    out.push(Fragment::Literal(data));
                }
            }
        }
        out
    }

    /// Encoding as one byte string (concatenation of fragments).
    pub fn to_bytes(&self, literal_plus: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for fragment in self.encode(literal_plus) {
            match fragment {
                Fragment::Line(data) | Fragment::Literal(data) => out.extend_from_slice(&data),
            }
        }
        out
    }

    /// The canonical upper-case command name ("LOGIN", "UID FETCH", ...), for logs and BAD texts.
    pub fn name(&self) -> &'static str {
        canonical_name(&self.command.body)
    }
}

/// A quoted string serialiser for the proxy's own commands: returns `"..."` with `\` and `"`
/// escaped if the value has no control characters (CR, LF, NUL and the other C0 controls, DEL),
/// else `None` (the caller then uses a literal). Non-ASCII UTF-8 is kept as is.
pub fn quoted(value: &str) -> Option<String> {
    if value.chars().any(|c| c.is_ascii_control()) {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}
