//! Sans-I/O POP3 framing, one parser for both directions (RFC 1939 §3, RFC 2449, RFC 5034).
//!
//! [`Framer::feed`] takes whatever bytes arrived; [`Framer::next_event`] yields complete units:
//! * client role: one command line (or, while a SASL exchange runs, one SASL response line),
//!   CRLF included, limited to 255 octets (RFC 2449 §4) plus a configurable margin;
//! * server role: a single-line response (`+OK`, `-ERR`, or a SASL `+ ` continuation), or a
//!   complete multi-line response — status line, dot-stuffed body and the `CRLF.CRLF`
//!   terminator kept byte for byte in one [`MultiLine`].
//!
//! POP3 responses do not say whether they are multi-line: that depends on the command. The
//! session pushes an [`Expect`] for every command it forwards ([`Framer::expect`]); the server
//! framer consumes them in order (the responses come in command order, RFC 2449 §6.6).
//! No `.await` here, so any chunking of the input can be replayed in tests.
//!
//! Hard limits: line length, multi-line total size, pipeline depth.

use crate::metrics::Limit;
use std::collections::VecDeque;

use bytes::Bytes;

use crate::framing::InputBuffer;

use crate::config::LimitsConfig;

pub use super::multiline::{stuff, unstuff, MultiLine};

/// RFC 2449 §4: a command line is at most 255 octets including CRLF.
pub const RFC_COMMAND_LIMIT: usize = 255;

/// Which peer's bytes this framer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Commands from a client.
    Client,
    /// Responses from a server.
    Server,
}

/// Hard bounds applied while framing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest command line (CRLF included) outside a SASL exchange.
    pub max_command: usize,
    /// Longest response line and longest SASL response line (CRLF included).
    pub max_line: usize,
    /// Largest multi-line response, status line and terminator included.
    pub max_multiline: u64,
    /// Most responses that may be expected at once.
    pub max_pipeline: usize,
}

impl Limits {
    /// The limits the configuration asks for.
    pub fn from_config(config: &LimitsConfig) -> Limits {
        Limits {
            max_command: RFC_COMMAND_LIMIT.saturating_add(config.pop3_command_margin),
            max_line: config.max_line,
            max_multiline: config.max_backend_literal,
            max_pipeline: config.max_pipeline,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&LimitsConfig::default())
    }
}

/// The shape of the response a forwarded command will get (see
/// [`super::grammar::Command::expect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One line, `+OK` or `-ERR`.
    SingleLine,
    /// After `+OK` a dot-terminated body; `-ERR` is single-line.
    MultiLine,
    /// A SASL exchange (RFC 5034): `+ ` continuations until `+OK` or `-ERR`.
    Sasl,
}

/// The status indicator of a response line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
    /// `+ ` (or a bare `+`): a SASL continuation.
    Continue,
}

impl Status {
    /// Classifies a response line; `None` for anything else.
    pub fn of(line: &[u8]) -> Option<Status> {
        let head = &line[..line.len().min(4)];
        if head.len() >= 3 && head[..3].eq_ignore_ascii_case(b"+OK") {
            Some(Status::Ok)
        } else if head.len() >= 4 && head.eq_ignore_ascii_case(b"-ERR") {
            Some(Status::Err)
        } else if head.starts_with(b"+ ") || head == b"+\r\n" || head == b"+\n" {
            Some(Status::Continue)
        } else {
            None
        }
    }
}

/// A single-line response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The raw line, CRLF included.
    pub line: Bytes,
    /// Its status indicator.
    pub status: Status,
    /// What it answered; `None` when nothing was expected (e.g. a notice before closing).
    pub answered: Option<Expect>,
}

/// A framing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client role: one line, CRLF included.
    Line(Bytes),
    /// Server role: a single-line response.
    Reply(Reply),
    /// Server role: a complete multi-line response.
    MultiLine(MultiLine),
}

impl Event {
    /// The raw bytes of the event, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Event::Line(bytes) => bytes,
            Event::Reply(reply) => &reply.line,
            Event::MultiLine(multi) => multi.raw(),
        }
    }
}

/// Framing violations; each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No line ending within the line limit.
    #[error("line longer than {0} octets")]
    LineTooLong(usize),
    /// A multi-line response grew beyond the limit.
    #[error("multi-line response larger than {0} octets")]
    MultiLineTooLarge(u64),
    /// More responses expected than the pipeline limit allows.
    #[error("more than {0} commands in flight")]
    PipelineFull(usize),
    /// A server line that is not a valid response where it arrived.
    #[error("invalid response line")]
    BadResponse,
}

impl FrameError {
    /// The limit that was hit (the `limit` metric label).
    pub fn limit(&self) -> Limit {
        match self {
            FrameError::LineTooLong(_) => Limit::LineLength,
            FrameError::MultiLineTooLarge(_) => Limit::ResponseSize,
            FrameError::PipelineFull(_) => Limit::PipelineDepth,
            FrameError::BadResponse => Limit::Syntax,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a line.
    Line,
    /// Inside a multi-line body; the buffer starts with its status line and the current body
    /// line starts at `line_start`.
    Body {
        status_len: usize,
        line_start: usize,
    },
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
    expected: VecDeque<Expect>,
    /// Client role: lines are SASL responses (longer limit).
    sasl: bool,
    error: Option<FrameError>,
}

impl Framer {
    /// A framer for `role` with `limits`.
    pub fn new(role: Role, limits: Limits) -> Framer {
        Framer {
            role,
            limits,
            input: InputBuffer::default(),
            state: State::Line,
            expected: VecDeque::new(),
            sasl: false,
            error: None,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.input.feed(data);
        }
    }

    /// Bytes received but not yet returned as events.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Server role: announces the response shape of a command just forwarded.
    pub fn expect(&mut self, expect: Expect) -> Result<(), FrameError> {
        if self.expected.len() >= self.limits.max_pipeline {
            return Err(FrameError::PipelineFull(self.limits.max_pipeline));
        }
        self.expected.push_back(expect);
        Ok(())
    }

    /// Server role: room for `extra` more expected responses than `max_pipeline` (commands the
    /// proxy sends on its own behalf besides the client's).
    pub fn allow_extra(&mut self, extra: usize) {
        self.limits.max_pipeline = self.limits.max_pipeline.saturating_add(extra);
    }

    /// Server role: responses still expected.
    pub fn expected(&self) -> usize {
        self.expected.len()
    }

    /// Client role: whether lines are SASL responses (limited by `max_line`, not `max_command`).
    pub fn set_sasl(&mut self, sasl: bool) {
        self.sasl = sasl;
    }

    /// Server role, inside a multi-line answer whose status line gives its size (`+OK 1234
    /// octets`, as RFC 1939 §7 shows for RETR and Dovecot sends): `(announced octets, octets of
    /// the body received so far)`. A hint for the memory budget, never trusted for framing.
    pub fn multiline_progress(&self) -> Option<(u64, u64)> {
        let State::Body { status_len, .. } = self.state else {
            return None;
        };
        let status = self.input.bytes().get(..status_len)?;
        let mut words = status.split(|&b| b == b' ' || b == b'\r' || b == b'\n');
        let (_, size, unit) = (words.next()?, words.next()?, words.next()?);
        if !unit.eq_ignore_ascii_case(b"octets") {
            return None;
        }
        let size: u64 = std::str::from_utf8(size).ok()?.parse().ok()?;
        let received = (self.input.len() - status_len) as u64;
        Some((size.min(self.limits.max_multiline), received))
    }

    /// Nothing buffered, nothing expected.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty() && self.expected.is_empty() && self.state == State::Line
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = match (self.role, self.state) {
            (_, State::Failed) => Ok(None),
            (Role::Client, _) => self.next_command(),
            (Role::Server, State::Line) => self.next_response(),
            (Role::Server, State::Body { .. }) => self.next_body(),
        };
        if let Err(error) = &result {
            self.error = Some(error.clone());
            self.state = State::Failed;
            self.input.clear();
        }
        result
    }

    /// Finds the end (exclusive) of the line starting at 0, enforcing `limit`.
    fn line_end(&mut self, limit: usize) -> Result<Option<usize>, FrameError> {
        self.input
            .line_end(limit)
            .map_err(|e| FrameError::LineTooLong(e.0))
    }

    fn take(&mut self, end: usize) -> Bytes {
        self.input.take(end)
    }

    fn next_command(&mut self) -> Result<Option<Event>, FrameError> {
        let limit = if self.sasl {
            self.limits.max_line
        } else {
            self.limits.max_command
        };
        Ok(self.line_end(limit)?.map(|end| Event::Line(self.take(end))))
    }

    fn next_response(&mut self) -> Result<Option<Event>, FrameError> {
        let Some(end) = self.line_end(self.limits.max_line)? else {
            return Ok(None);
        };
        let status = Status::of(&self.input.bytes()[..end]).ok_or(FrameError::BadResponse)?;
        let front = self.expected.front().copied();
        let answered = match (front, status) {
            (None, Status::Continue) => return Err(FrameError::BadResponse),
            (None, _) => None,
            (Some(Expect::Sasl), Status::Continue) => Some(Expect::Sasl),
            (Some(_), Status::Continue) => return Err(FrameError::BadResponse),
            (Some(Expect::MultiLine), Status::Ok) => {
                self.state = State::Body {
                    status_len: end,
                    line_start: end,
                };
                self.input.skip_to(end);
                return self.next_body();
            }
            (Some(expect), _) => {
                self.expected.pop_front();
                Some(expect)
            }
        };
        let line = self.take(end);
        Ok(Some(Event::Reply(Reply {
            line,
            status,
            answered,
        })))
    }

    fn next_body(&mut self) -> Result<Option<Event>, FrameError> {
        let State::Body {
            status_len,
            mut line_start,
        } = self.state
        else {
            return Ok(None);
        };
        let limit = self.limits.max_multiline;
        while let Some(end) = self.input.next_line_end() {
            if end as u64 > limit {
                return Err(FrameError::MultiLineTooLarge(limit));
            }
            let line = &self.input.bytes()[line_start..end];
            if line == b".\r\n" || line == b".\n" {
                let terminator_len = line.len();
                let raw = self.take(end);
                self.state = State::Line;
                self.expected.pop_front();
                return Ok(Some(Event::MultiLine(MultiLine::from_raw(
                    raw,
                    status_len,
                    terminator_len,
                ))));
            }
            line_start = end;
            self.input.skip_to(end);
        }
        if self.input.len() as u64 >= limit {
            return Err(FrameError::MultiLineTooLarge(limit));
        }
        self.state = State::Body {
            status_len,
            line_start,
        };
        Ok(None)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
