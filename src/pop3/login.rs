//! The proxy's own exchanges with a POP3 backend before the client is let through, sans I/O:
//!
//! * [`LoginExchange`] performs a planned login ([`super::prelogin::LoginRequest::plan`]):
//!   `USER`/`PASS` or `APOP` (RFC 1939 §7), or `AUTH PLAIN` with an initial response
//!   (RFC 5034). Each command is sent only after the previous one was answered `+OK`; the first
//!   `-ERR` ends the login. A SASL continuation (the backend wants more than the initial
//!   response) is cancelled with `*` (RFC 5034 §4), and the answer to the cancel ends it.
//! * [`CapaExchange`] asks the backend's capabilities with the proxy's own `CAPA`
//!   (RFC 2449 §5); a backend without CAPA (`-ERR`) is assumed to offer `USER`.
//!
//! Both own the backend [`Framer`] while they run and give it back with `into_framer`, so bytes
//! the backend sent after the exchange stay buffered for what follows. They return steps; the
//! async shell (`session_prelogin.rs`) writes what it is told and feeds backend bytes, under
//! `BACKEND_EXCHANGE_TIMEOUT` per answer as before.

use super::capa::Capabilities;
use super::codec::{Event, FrameError, Framer, Status};
use super::grammar::Command;
use super::prelogin::LoginCommand;

/// What the proxy sends to cancel a SASL exchange (RFC 5034 §4).
pub const CANCEL: &[u8] = b"*\r\n";

/// What the backend did wrong during an exchange the proxy runs itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The backend broke the framing.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Something other than the answer to the proxy's command.
    #[error("unexpected response during login")]
    UnexpectedResponse,
    /// The backend asked for more after the proxy cancelled the SASL exchange.
    #[error("SASL continuation after cancel")]
    ContinuationAfterCancel,
    /// A CAPA answer that is neither a reply nor a multi-line response.
    #[error("bad CAPA response")]
    BadCapa,
}

/// What the shell does next during a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this planned command line to the backend.
    Command(Vec<u8>),
    /// Send [`CANCEL`]: the backend wanted more than the initial response.
    Cancel,
    /// The login is over.
    Done {
        /// Whether every command was answered `+OK`.
        ok: bool,
        /// The backend's last answer line (the `-ERR` that ended it, or the final `+OK`).
        reply: Vec<u8>,
    },
}

/// Where a login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The command with this index is to be sent.
    Send(usize),
    /// The command with this index was sent; `cancelled` once `*` went out.
    Awaiting { index: usize, cancelled: bool },
    /// `Done` was returned.
    Finished,
}

/// The proxy's login on the backend.
#[derive(Debug)]
pub struct LoginExchange {
    plan: Vec<LoginCommand>,
    framer: Framer,
    state: State,
    /// The last `+OK` line.
    last: Vec<u8>,
}

impl LoginExchange {
    /// A login performing `plan` over the backend's `framer`.
    pub fn new(plan: Vec<LoginCommand>, framer: Framer) -> LoginExchange {
        LoginExchange {
            plan,
            framer,
            state: State::Send(0),
            last: Vec::new(),
        }
    }

    /// Backend bytes arrived.
    pub fn feed(&mut self, data: &[u8]) {
        self.framer.feed(data);
    }

    /// The next step; `Ok(None)` when backend bytes are needed (or the login is over).
    pub fn poll(&mut self) -> Result<Option<LoginStep>, ExchangeError> {
        loop {
            match self.state {
                State::Finished => return Ok(None),
                State::Send(index) => {
                    let Some(command) = self.plan.get(index) else {
                        self.state = State::Finished;
                        let reply = std::mem::take(&mut self.last);
                        let ok = !reply.is_empty();
                        return Ok(Some(LoginStep::Done { ok, reply }));
                    };
                    self.framer.expect(command.expect)?;
                    self.state = State::Awaiting {
                        index,
                        cancelled: false,
                    };
                    return Ok(Some(LoginStep::Command(command.line.clone())));
                }
                State::Awaiting { index, cancelled } => {
                    let reply = match self.framer.next_event()? {
                        None => return Ok(None),
                        Some(Event::Reply(reply)) if reply.answered.is_some() => reply,
                        Some(_) => return Err(ExchangeError::UnexpectedResponse),
                    };
                    match reply.status {
                        Status::Continue if cancelled => {
                            return Err(ExchangeError::ContinuationAfterCancel)
                        }
                        Status::Continue => {
                            self.state = State::Awaiting {
                                index,
                                cancelled: true,
                            };
                            return Ok(Some(LoginStep::Cancel));
                        }
                        Status::Err => {
                            self.state = State::Finished;
                            let reply = reply.line.to_vec();
                            return Ok(Some(LoginStep::Done { ok: false, reply }));
                        }
                        Status::Ok => {
                            self.last = reply.line.to_vec();
                            self.state = State::Send(index + 1);
                        }
                    }
                }
            }
        }
    }

    /// The backend framer, with whatever the backend sent after the login still buffered.
    pub fn into_framer(self) -> Framer {
        self.framer
    }
}

/// What the shell does next while asking CAPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapaStep {
    /// Send this line (`CAPA`) to the backend.
    Send(Vec<u8>),
    /// The backend's capabilities.
    Done(Capabilities),
}

/// The proxy's own `CAPA` on the backend.
#[derive(Debug)]
pub struct CapaExchange {
    framer: Framer,
    sent: bool,
    finished: bool,
}

impl CapaExchange {
    /// Asks CAPA over the backend's `framer`.
    pub fn new(framer: Framer) -> CapaExchange {
        CapaExchange {
            framer,
            sent: false,
            finished: false,
        }
    }

    /// Backend bytes arrived.
    pub fn feed(&mut self, data: &[u8]) {
        self.framer.feed(data);
    }

    /// The next step; `Ok(None)` when backend bytes are needed (or the exchange is over).
    pub fn poll(&mut self) -> Result<Option<CapaStep>, ExchangeError> {
        if self.finished {
            return Ok(None);
        }
        if !self.sent {
            self.framer.expect(Command::Capa.expect())?;
            self.sent = true;
            return Ok(Some(CapaStep::Send(Command::Capa.to_line())));
        }
        let capabilities = match self.framer.next_event()? {
            None => return Ok(None),
            Some(Event::MultiLine(response)) => Capabilities::from_body(&response.body()),
            Some(Event::Reply(_)) => Capabilities::from_reply(None),
            Some(Event::Line(_)) => return Err(ExchangeError::BadCapa),
        };
        self.finished = true;
        Ok(Some(CapaStep::Done(capabilities)))
    }

    /// The backend framer, with whatever the backend sent after the answer still buffered.
    pub fn into_framer(self) -> Framer {
        self.framer
    }
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
