//! The TRANSACTION state (RFC 1939 §5–§6, RFC 2449 §6.6 PIPELINING) after login, sans I/O.
//!
//! * Every client line is framed ([`super::codec`]) and parsed
//!   ([`Command::parse_transaction`], RFC 1939 §5–§7); only the canonical serialisation of an
//!   allowed command reaches the backend. Anything else (garbage, `XCLIENT`, NUL) is answered
//!   `-ERR` by the proxy and counts towards `max_errors`.
//! * Local answers and forwarded commands share one FIFO: every answer the client is owed is a
//!   slot in command order, and a slot waiting for a verdict holds every answer behind it.
//! * CAPA answers (RFC 2449 §5) are rewritten through the allow-list ([`super::capa`]).
//! * `RETR n` and `TOP n m` (forwarded as `RETR n`, RFC 1939 §7) become an [`Action::Scan`]; the
//!   verdict comes back through [`Transaction::scanned`] and is served by
//!   [`super::scanning::serve`] (original byte for byte, dot-stuffed replacement, TOP cut).
//! * `LIST`, `STAT` and `UIDL` answers show what `RETR` serves (RFC 1939 §5, §7; issue 9,
//!   [`super::views`]): `STAT` is forwarded as `LIST` and answered from it, the cache is asked
//!   for the unique-ids listed ([`Action::Lookup`]), and with `scan_on_structure` unscanned
//!   messages are first fetched with the proxy's own `RETR` and scanned. Before the first
//!   `LIST`/`STAT` the proxy sends its own `UIDL` (unless the client's came first) to know the
//!   unique-ids; no answer to the proxy's own commands reaches the client
//!   (`transaction_views.rs`).
//! * With `max_pipeline` answers outstanding, [`Transaction::wants_client`] is false (bounded
//!   back-pressure); after `QUIT` (RFC 1939 §6) no further command is read.
//!
//! Inputs are bytes in any chunking and scan verdicts; outputs are [`Action`]s, the same for
//! every chunking of the same bytes. The async shell (`session.rs`) performs them.

use std::collections::VecDeque;

use bytes::Bytes;

use super::capa::{CapaPolicy, Capabilities};
use super::codec::{Event, FrameError, Framer, Limits, MultiLine, Reply, Role, Status};
use super::grammar::Command;
use super::scanning::{serve, MessageRequest};
use super::views::Knowledge;
use crate::scan::Disposition;
use transaction_views::{Structure, View, Viewing};

/// The answer when the backend goes away while the client is owed an answer (RFC 3206).
pub const BACKEND_CLOSED: &[u8] = b"-ERR [SYS/TEMP] mail server closed the connection\r\n";

/// Identifies one scan the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScanId(pub u64);

/// Identifies one cache lookup the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupId(pub u64);

/// Commands the proxy may have in flight on its own behalf besides the client's: one `UIDL`
/// and one `RETR` for `scan_on_structure`.
const OWN_COMMANDS: usize = 2;

/// Why the core ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The backend answered `QUIT` (its answer has been sent).
    Logout,
    /// The backend closed its side.
    BackendClosed,
    /// The client broke the framing (line too long, too many commands in flight).
    ClientFraming(FrameError),
    /// The backend broke the framing.
    BackendFraming(FrameError),
}

/// What the shell does next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the client.
    ToClient(Bytes),
    /// Send this command line to the backend.
    ToBackend(Vec<u8>),
    /// Scan `message` (unstuffed), then call [`Transaction::scanned`] with `id`.
    Scan {
        /// Names the verdict when it comes back.
        id: ScanId,
        /// The message as stored.
        message: Bytes,
        /// What the client asked for (the message number is the scanner's reference).
        request: MessageRequest,
        /// The message's unique-id (RFC 1939 §7), if known: the scanner remembers the
        /// disposition under it for [`Action::Lookup`] in later sessions.
        uidl: Option<String>,
    },
    /// Look up the cached dispositions of these messages by (user, unique-id), then call
    /// [`Transaction::looked_up`] with `id` and the answers in the same order.
    Lookup {
        /// Names the answers when they come back.
        id: LookupId,
        /// `(message number, unique-id)` of each message.
        messages: Vec<(u32, String)>,
    },
    /// End the session (after the actions before it).
    Close(Close),
}

pub use crate::session::Tally;

/// What a forwarded command means when its answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Capa,
    /// RETR or TOP n m (forwarded as RETR): a message to scan.
    Message(MessageRequest),
    /// LIST, STAT (forwarded as LIST) or UIDL: shown as what RETR serves.
    View(View),
    /// The proxy's own `UIDL`: its unique-ids are learnt, nothing reaches the client.
    Ids,
    /// The proxy's own `RETR n` for `scan_on_structure`: scanned, nothing reaches the client.
    Structure(u32),
    Quit,
    Other,
}

/// One answer the client is owed, in command order.
#[derive(Debug)]
enum Slot {
    /// Sent to the backend; its answer has not arrived.
    Forwarded(Kind),
    /// The backend's answer is with the scanner.
    Scanning {
        id: ScanId,
        response: MultiLine,
        message: Bytes,
        request: MessageRequest,
        /// A `scan_on_structure` scan: only the verdict is kept.
        own: bool,
    },
    /// A LIST/STAT answer waiting for cache lookups or `scan_on_structure` scans.
    Viewing(Box<Viewing>),
    /// A relayed answer ready to go; `quit` ends the session after it.
    Ready { bytes: Bytes, quit: bool },
    /// Answered by the proxy itself.
    Local(Bytes),
    /// The proxy's own command is done: nothing for the client.
    Done,
}

/// The TRANSACTION state of one session.
#[derive(Debug)]
pub struct Transaction {
    client_framer: Framer,
    backend_framer: Framer,
    slots: VecDeque<Slot>,
    max_pipeline: usize,
    /// QUIT forwarded: no further client command is read.
    halted: bool,
    draining: bool,
    /// The session is over: nothing more is processed.
    closed: bool,
    errors: u32,
    next_scan: u64,
    next_lookup: u64,
    /// Slots of the proxy's own commands (not counted against `max_pipeline`).
    own: usize,
    /// What the session knows about what RETR serves.
    views: Knowledge,
    structure: Structure,
    tally: Tally,
}

impl Transaction {
    /// The core after a successful login: `backend_framer` is the one the login used (it may
    /// hold bytes already), `errors` the bad commands counted before login.
    pub fn new(limits: Limits, mut backend_framer: Framer, errors: u32) -> Transaction {
        backend_framer.allow_extra(OWN_COMMANDS);
        Transaction {
            client_framer: Framer::new(Role::Client, limits),
            backend_framer,
            slots: VecDeque::new(),
            max_pipeline: limits.max_pipeline,
            halted: false,
            draining: false,
            closed: false,
            errors,
            next_scan: 0,
            next_lookup: 0,
            own: 0,
            views: Knowledge::default(),
            structure: Structure::default(),
            tally: Tally::default(),
        }
    }

    /// Whether more client bytes may be read now: not after QUIT, while draining, or with
    /// `max_pipeline` answers outstanding.
    pub fn wants_client(&self) -> bool {
        !self.halted
            && !self.draining
            && !self.closed
            && self.slots.len().saturating_sub(self.own) < self.max_pipeline
    }

    /// No answer outstanding.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty()
    }

    /// `-ERR` answers so far (the proxy's and the backend's, login included).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The process is shutting down: no new command is read.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Takes the statistics gathered since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Client bytes arrived.
    pub fn client(&mut self, data: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.closed {
            self.client_framer.feed(data);
            self.drain_client(&mut actions);
        }
        actions
    }

    /// Backend bytes arrived.
    pub fn backend(&mut self, data: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.closed {
            self.backend_framer.feed(data);
            self.drain_backend(&mut actions);
            self.drain_client(&mut actions);
        }
        actions
    }

    /// The verdict on the message of scan `id`.
    pub fn scanned(&mut self, id: ScanId, disposition: &Disposition) -> Vec<Action> {
        let mut actions = Vec::new();
        let position = self
            .slots
            .iter()
            .position(|slot| matches!(slot, Slot::Scanning { id: slot_id, .. } if *slot_id == id));
        let Some(slot) = position.and_then(|at| self.slots.get_mut(at)) else {
            return actions;
        };
        let (msgno, own) = match std::mem::replace(slot, Slot::Done) {
            Slot::Scanning {
                response,
                message,
                request,
                own,
                ..
            } => {
                let served = serve(&response, message, request, disposition);
                self.tally.scanned += 1;
                self.tally.blocked += u64::from(served.blocked);
                if !own {
                    *slot = Slot::Ready {
                        bytes: served.bytes,
                        quit: false,
                    };
                }
                (request.msgno(), own)
            }
            other => {
                *slot = other;
                return actions;
            }
        };
        self.views.record(msgno, disposition);
        if own {
            self.structure.finished(msgno);
        }
        if !self.closed {
            self.progress(&mut actions);
            self.drain_client(&mut actions);
        }
        actions
    }

    /// The backend closed its side; the client is told if it is owed an answer.
    pub fn backend_closed(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.slots.is_empty() || self.backend_framer.buffered() > 0 {
            tracing::warn!(side = "backend", "backend closed the connection");
            actions.push(Action::ToClient(Bytes::from_static(BACKEND_CLOSED)));
        }
        self.close(Close::BackendClosed, &mut actions);
        actions
    }

    fn close(&mut self, close: Close, actions: &mut Vec<Action>) {
        self.closed = true;
        actions.push(Action::Close(close));
    }

    /// Handles every complete client line the pipeline limit allows.
    fn drain_client(&mut self, actions: &mut Vec<Action>) {
        while self.wants_client() {
            match self.client_framer.next_event() {
                Ok(Some(Event::Line(line))) => self.on_command(&line, actions),
                Ok(_) => return,
                Err(error) => return self.close(Close::ClientFraming(error), actions),
            }
        }
    }

    /// A client command line: parsed, then forwarded canonically or refused.
    fn on_command(&mut self, line: &[u8], actions: &mut Vec<Action>) {
        let command = match Command::parse_transaction(line) {
            Ok(command) => command,
            Err(error) => {
                tracing::info!(%error, "client command refused");
                self.errors += 1;
                let refusal = super::prelogin::refusal(&error);
                self.slots.push_back(Slot::Local(Bytes::from(refusal)));
                return self.flush(actions);
            }
        };
        let request = MessageRequest::of(&command);
        let forwarded = match (&command, request) {
            (_, Some(request)) => request.forwarded(),
            (Command::Stat, _) => Command::List(None),
            _ => command.clone(),
        };
        if !self.ask_ids_before(&command, actions) {
            return;
        }
        let line = forwarded.to_line();
        tracing::debug!(
            command = %String::from_utf8_lossy(&line).trim_end(),
            "client command"
        );
        let kind = match (&command, request) {
            (_, Some(request)) => Kind::Message(request),
            (Command::Capa, _) => Kind::Capa,
            (Command::List(n), _) => Kind::View(View::List(*n)),
            (Command::Stat, _) => Kind::View(View::Stat),
            (Command::Uidl(n), _) => {
                if n.is_none() {
                    self.views.asked_ids();
                }
                Kind::View(View::Uidl(*n))
            }
            (Command::Quit, _) => {
                self.halted = true;
                Kind::Quit
            }
            _ => Kind::Other,
        };
        if let Err(error) = self.backend_framer.expect(forwarded.expect()) {
            return self.close(Close::ClientFraming(error), actions);
        }
        self.slots.push_back(Slot::Forwarded(kind));
        self.tally.bytes_up += line.len() as u64;
        actions.push(Action::ToBackend(line));
    }

    /// Handles every complete backend response.
    fn drain_backend(&mut self, actions: &mut Vec<Action>) {
        while !self.closed {
            match self.backend_framer.next_event() {
                Ok(None) => return,
                Ok(Some(Event::Reply(reply))) => self.on_reply(reply, actions),
                Ok(Some(Event::MultiLine(response))) => self.on_multiline(response, actions),
                Ok(Some(Event::Line(_))) => {}
                Err(error) => self.close(Close::BackendFraming(error), actions),
            }
        }
    }

    /// The oldest forwarded command still waiting for its answer (answers come in command
    /// order, RFC 2449 §6.6).
    fn answered(&mut self) -> Option<&mut Slot> {
        self.slots
            .iter_mut()
            .find(|slot| matches!(slot, Slot::Forwarded(_)))
    }

    fn on_reply(&mut self, reply: Reply, actions: &mut Vec<Action>) {
        if reply.answered.is_none() {
            // A notice the backend sends before closing: relayed at once.
            self.tally.bytes_down += reply.line.len() as u64;
            actions.push(Action::ToClient(reply.line));
            return;
        }
        let kind = match self.answered() {
            Some(Slot::Forwarded(kind)) => Some(*kind),
            _ => None,
        };
        if reply.status != Status::Ok && !kind.is_some_and(Kind::is_own) {
            self.errors += 1;
        }
        let slot = match kind {
            None => {
                self.tally.bytes_down += reply.line.len() as u64;
                actions.push(Action::ToClient(reply.line));
                return self.flush(actions);
            }
            Some(Kind::View(view)) => self.view_reply(view, reply, actions),
            Some(kind @ (Kind::Ids | Kind::Structure(_))) => self.own_refused(kind),
            Some(kind) => Slot::Ready {
                bytes: reply.line,
                quit: kind == Kind::Quit,
            },
        };
        if let Some(answered) = self.answered() {
            *answered = slot;
        }
        self.progress(actions);
    }

    fn on_multiline(&mut self, response: MultiLine, actions: &mut Vec<Action>) {
        let id = ScanId(self.next_scan);
        let kind = match self.answered() {
            Some(Slot::Forwarded(kind)) => *kind,
            _ => {
                self.tally.bytes_down += response.raw().len() as u64;
                actions.push(Action::ToClient(response.raw().clone()));
                return;
            }
        };
        let slot = match kind {
            Kind::Capa => Slot::Ready {
                bytes: Bytes::from(
                    Capabilities::from_body(&response.body())
                        .response(response.status_line(), CapaPolicy::default()),
                ),
                quit: false,
            },
            Kind::Message(request) => self.scan(id, response, request, false, actions),
            Kind::Structure(n) => self.scan(id, response, MessageRequest::Retr(n), true, actions),
            Kind::View(view) => self.view_listing(view, response, actions),
            Kind::Ids => {
                self.views.learn_listing(&response.body());
                Slot::Done
            }
            Kind::Quit | Kind::Other => Slot::Ready {
                bytes: response.raw().clone(),
                quit: false,
            },
        };
        if let Some(answered) = self.answered() {
            *answered = slot;
        }
        self.progress(actions);
    }

    /// Sends every answer that is due: everything before the first slot still waiting for the
    /// backend or the scanner.
    fn flush(&mut self, actions: &mut Vec<Action>) {
        while !self.closed {
            match self.slots.front() {
                Some(Slot::Local(_) | Slot::Ready { .. } | Slot::Done) => {}
                _ => return,
            }
            match self.slots.pop_front() {
                Some(Slot::Done) => self.own = self.own.saturating_sub(1),
                Some(Slot::Local(bytes)) => actions.push(Action::ToClient(bytes)),
                Some(Slot::Ready { bytes, quit }) => {
                    self.tally.bytes_down += bytes.len() as u64;
                    actions.push(Action::ToClient(bytes));
                    if quit {
                        self.close(Close::Logout, actions);
                    }
                }
                _ => return,
            }
        }
    }
}

#[path = "transaction_memory.rs"]
mod memory;
#[path = "transaction_views.rs"]
mod transaction_views;

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
