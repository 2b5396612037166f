//! Sans-I/O IMAP framing (the "fragmentizer"), one parser for both directions.
//!
//! [`Framer::feed`] takes whatever bytes arrived; [`Framer::next_event`] yields complete
//! fragments: a line (CRLF included) that may announce a literal, then that literal's bytes as one
//! opaque [`Event::Literal`]. Literal bytes are never interpreted as commands (RFC 9051 §4.3).
//! Recognised announcements: synchronizing `{n}`, non-synchronizing `{n+}` (LITERAL+/LITERAL-,
//! RFC 7888) and literal8 `~{n}` (RFC 3516). No `.await` here: the caller owns the I/O, so the
//! same framing serves client commands and server responses, and tests can replay any chunking.
//!
//! Hard limits: line length, literal size, parenthesis/bracket nesting; literal lengths are parsed
//! overflow-safe; NUL outside a literal is rejected. A synchronizing client literal over the limit
//! is not an error: it is reported as [`Event::LiteralRejected`] so the proxy can answer
//! `NO [TOOBIG]` without the client ever sending it.

use bytes::Bytes;

use crate::framing::InputBuffer;
use crate::metrics::Limit;

/// Which peer's bytes this framer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Commands from a client: synchronizing literals wait for a `+` continuation.
    Client,
    /// Responses from a server: literal bytes always follow their announcement at once.
    Server,
}

/// Hard bounds applied while framing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest line in octets, CRLF included.
    pub max_line: usize,
    /// Largest literal in octets.
    pub max_literal: u64,
    /// Deepest `(`/`[` nesting within one command or response.
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_nesting: 64,
        }
    }
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// Number of octets that follow.
    pub length: u64,
    /// `{n}`: the client waits for a `+` before sending (client role only).
    pub synchronizing: bool,
    /// `~{n}`: literal8, may contain NUL (RFC 3516).
    pub binary: bool,
}

/// A framing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One line, CRLF included. `first` is true when it starts a new command/response (not the
    /// continuation after a literal); `literal` is set when the line announces one.
    Line {
        /// The raw bytes.
        bytes: Bytes,
        /// Whether this line begins a command or response.
        first: bool,
        /// The literal announced at its end, if any.
        literal: Option<Announcement>,
    },
    /// The complete bytes of the literal announced by the previous line.
    Literal(Bytes),
    /// A client announced a synchronizing literal over the limit; it will not be sent, and the
    /// command ends here. The proxy should answer `tag NO [TOOBIG]`.
    LiteralRejected {
        /// The announcing line.
        bytes: Bytes,
        /// The announced size.
        length: u64,
    },
}

impl Event {
    /// The raw bytes of this event, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Event::Line { bytes, .. }
            | Event::Literal(bytes)
            | Event::LiteralRejected { bytes, .. } => bytes,
        }
    }
}

/// Framing violations; each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No CRLF within the line limit.
    #[error("line longer than {0} octets")]
    LineTooLong(usize),
    /// A literal larger than the limit that cannot be refused politely.
    #[error("literal of {length} octets exceeds the limit of {limit}")]
    LiteralTooLarge {
        /// Announced size.
        length: u64,
        /// Configured limit.
        limit: u64,
    },
    /// A literal length that is not a number or overflows.
    #[error("invalid literal length")]
    BadLiteralLength,
    /// NUL outside a literal8.
    #[error("NUL octet outside a literal")]
    Nul,
    /// Too many nested parentheses/brackets.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
}

impl FrameError {
    /// The limit that was hit (the `limit` metric label).
    pub fn limit(&self) -> Limit {
        match self {
            FrameError::LineTooLong(_) => Limit::LineLength,
            FrameError::LiteralTooLarge { .. } | FrameError::BadLiteralLength => Limit::LiteralSize,
            FrameError::Nul => Limit::Syntax,
            FrameError::TooDeep(_) => Limit::Nesting,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a line; `first` = it begins a new message.
    Line { first: bool },
    /// Expecting `remaining` literal octets.
    Literal { length: usize },
    /// A framing error occurred; nothing more is parsed.
    Failed,
}

/// The framing state machine for one direction of one connection.
#[derive(Debug)]
pub struct Framer {
    role: Role,
    limits: Limits,
    input: InputBuffer,
    state: State,
    /// Nesting depth carried across the lines of one message.
    depth: usize,
    /// The fatal error, once one occurred.
    error: Option<FrameError>,
}

impl Framer {
    /// A framer for `role` with `limits`.
    pub fn new(role: Role, limits: Limits) -> Framer {
        Framer {
            role,
            limits,
            input: InputBuffer::default(),
            state: State::Line { first: true },
            depth: 0,
            error: None,
        }
    }

    /// Appends received bytes. Call [`Framer::next_event`] until it returns `Ok(None)` before
    /// feeding more, so the buffer stays within one line or one literal.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.input.feed(data);
        }
    }

    /// Bytes received but not yet returned as events.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Whether the framer is between messages (no partial command/response pending).
    pub fn at_message_boundary(&self) -> bool {
        self.state == State::Line { first: true } && self.input.is_empty()
    }

    /// The literal being received: `(announced length, octets of it already buffered)`.
    pub fn literal_progress(&self) -> Option<(u64, u64)> {
        match self.state {
            State::Literal { length } => {
                let buffered = self.input.len().min(length);
                Some((length as u64, buffered as u64))
            }
            _ => None,
        }
    }

    /// Whether it waits for the bytes of a literal.
    pub fn in_literal(&self) -> bool {
        matches!(self.state, State::Literal { .. })
    }

    /// Abandons an announced synchronizing literal the server refused (tagged NO/BAD instead of
    /// `+`): the client will not send it, and its command is over.
    pub fn cancel_literal(&mut self) {
        if matches!(self.state, State::Literal { .. }) {
            self.state = State::Line { first: true };
            self.depth = 0;
        }
    }

    /// Replaces the limits (the pre-login phase uses tighter ones than the session after it).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = match self.state {
            State::Line { first } => self.next_line(first),
            State::Literal { length } => Ok(self.next_literal(length)),
            State::Failed => Ok(None),
        };
        if let Err(error) = &result {
            self.error = Some(error.clone());
            self.state = State::Failed;
            self.input.clear();
        }
        result
    }

    fn next_literal(&mut self, length: usize) -> Option<Event> {
        if self.input.len() < length {
            return None;
        }
        let literal = self.input.take(length);
        self.state = State::Line { first: false };
        Some(Event::Literal(literal))
    }

    fn next_line(&mut self, first: bool) -> Result<Option<Event>, FrameError> {
        let end = self
            .input
            .line_end(self.limits.max_line)
            .map_err(|e| FrameError::LineTooLong(e.0))?;
        let Some(end) = end else {
            return Ok(None);
        };
        let line = self.input.take(end);
        if first {
            self.depth = 0;
        }
        // A client's NUL is for the grammar to refuse (`BAD`, the session goes on); a server
        // that sends one outside a literal8 has broken the framing.
        let reject_nul = self.role == Role::Server;
        let (depth, open_quote) =
            check_line(&line, self.depth, self.limits.max_nesting, reject_nul)?;
        self.depth = depth;
        // A client's `{n}` inside a quoted string is text, not an announcement (RFC 9051 §4.3:
        // a literal is announced only outside quotes); the grammar then refuses the line.
        let literal = match open_quote && self.role == Role::Client {
            true => None,
            false => parse_announcement(&line)?,
        };
        self.after_line(line, first, literal)
    }

    fn after_line(
        &mut self,
        line: Bytes,
        first: bool,
        literal: Option<Announcement>,
    ) -> Result<Option<Event>, FrameError> {
        let Some(announcement) = literal else {
            self.state = State::Line { first: true };
            return Ok(Some(Event::Line {
                bytes: line,
                first,
                literal: None,
            }));
        };
        if announcement.length > self.limits.max_literal {
            if self.role == Role::Client && announcement.synchronizing {
                self.state = State::Line { first: true };
                return Ok(Some(Event::LiteralRejected {
                    bytes: line,
                    length: announcement.length,
                }));
            }
            return Err(FrameError::LiteralTooLarge {
                length: announcement.length,
                limit: self.limits.max_literal,
            });
        }
        let length =
            usize::try_from(announcement.length).map_err(|_| FrameError::BadLiteralLength)?;
        if self.role == Role::Server {
            // A server's literal follows at once (RFC 9051 §7.5): room for it now saves copying
            // it each time the buffer grows.
            self.input.reserve_literal(length);
        }
        self.state = State::Literal { length };
        Ok(Some(Event::Line {
            bytes: line,
            first,
            literal: Some(announcement),
        }))
    }
}

/// Scans a line for NUL and nesting outside quoted strings; returns the new depth and whether
/// the line ends inside an unterminated quoted string.
fn check_line(
    line: &[u8],
    mut depth: usize,
    max_nesting: usize,
    reject_nul: bool,
) -> Result<(usize, bool), FrameError> {
    let mut in_quote = false;
    let mut escaped = false;
    for &byte in line {
        if byte == 0 && reject_nul {
            return Err(FrameError::Nul);
        }
        if in_quote {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_quote = true,
            b'(' | b'[' => {
                depth += 1;
                if depth > max_nesting {
                    return Err(FrameError::TooDeep(max_nesting));
                }
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok((depth, in_quote))
}

/// Recognises `{n}`, `{n+}`, `~{n}` or `~{n+}` right before the line ending.
pub fn parse_announcement(line: &[u8]) -> Result<Option<Announcement>, FrameError> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let Some(inner_end) = body.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = inner_end.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let mut digits = &inner_end[open + 1..];
    let non_synchronizing = digits.last() == Some(&b'+');
    if non_synchronizing {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        // `{abc}` at the end of a text line is not an announcement.
        return Ok(None);
    }
    let length = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let length = length.ok_or(FrameError::BadLiteralLength)?;
    let binary = open > 0 && inner_end[open - 1] == b'~';
    Ok(Some(Announcement {
        length,
        synchronizing: !non_synchronizing,
        binary,
    }))
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
