//! The logged-in IMAP session (RFC 9051 §6.3–§6.4, §7) as a sans-I/O core: bytes, verdicts and
//! cache answers in, [`Action`]s out; the async shell (`session.rs`) performs them in order.
//!
//! * Client half ([`super::relay_client`]): every command is assembled completely
//!   ([`super::assembler`], the proxy answers synchronizing literals with `+` itself, RFC 9051
//!   §7.5), decided ([`super::decide`]) and answered by the proxy or forwarded in its canonical
//!   form. Without LITERAL+ at the backend (RFC 7888) each literal waits for the backend's `+`
//!   (RFC 9051 §7.5) — a state of the core during which no further client command is read.
//!   IDLE (RFC 2177) accepts only `DONE`. APPEND messages are verified first ([`Action::Verify`])
//!   when `scan_append` is on; a FETCH needing a verdict asks whether the cache holds every
//!   message ([`Action::Probe`]) to decide whether `BODY.PEEK[]` is added.
//! * Backend half: responses are framed whole, capability lists rewritten (RFC 9051 §7.2.2),
//!   `* n FETCH` responses (RFC 9051 §7.5.2) intercepted ([`super::relay_fetch`]): one needing a
//!   verdict becomes [`Action::Scan`] (or [`Action::Lookup`] of the cached disposition), and
//!   nothing behind it — no response, no answer of the proxy's — goes out before it is served.
//!   While a scan is waited for, [`Relay::tick`] yields `* OK` keep-alives. A FETCH whose
//!   messages were withheld completes `NO [UNAVAILABLE]` (RFC 5530) instead of OK; tagged
//!   completions update the selected mailbox (SELECT/EXAMINE/CLOSE/UNSELECT) and LOGOUT ends
//!   the session ([`Close::Logout`]) after its answer.
//!
//! Output is one ordered stream: the core stops at every external wait (scan, lookup, probe,
//! verify) and resumes when its answer is fed, so the actions for the same inputs are the same
//! for every chunking of the bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

use super::capability::CapabilityPolicy;
use super::codec::{Event, Framer};
use super::grammar::Fragment;
use super::relay_client::{Continuation, PlannedFetch, Waiting};
use super::relay_fetch::{FetchContext, MailboxState};
use super::relay_own::OwnFetch;
use crate::metrics::Limit;
use crate::scan::{Cached, Disposition, MessageRef, Protocol};

/// The keep-alive sent while a message is being scanned.
pub const KEEPALIVE: &[u8] = b"* OK [portcullis] Scanning message, please wait\r\n";

/// Identifies one request the core made of the shell (scan, lookup, probe, verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitId(pub u64);

/// Why the core ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// LOGOUT completed (its answer has been sent).
    Logout,
    /// The client broke the protocol: `reason` goes into `* BYE`; `limit` was hit, if any.
    Client {
        /// The text for the client and the log.
        reason: String,
        /// The limit to count.
        limit: Option<Limit>,
    },
    /// The backend broke the protocol.
    Backend(String),
}

/// What the shell does next, in order. A request (`Scan`, `Lookup`, `Probe`, `Verify`) is
/// always the last action of a batch: the core waits for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the client.
    ToClient(Bytes),
    /// Send these bytes to the backend.
    ToBackend(Bytes),
    /// Scan `message` with the full pipeline, then call [`Relay::scanned`].
    Scan {
        /// Names the answer.
        id: WaitId,
        /// The whole message.
        message: Bytes,
        /// Where it is stored (cache key, quarantine record).
        reference: MessageRef,
    },
    /// Look up the cached disposition of `reference`, then call [`Relay::looked_up`].
    Lookup {
        /// Names the answer.
        id: WaitId,
        /// The message.
        reference: MessageRef,
    },
    /// Whether every message has a cached disposition (ask in order, stop at the first miss),
    /// then call [`Relay::probed`].
    Probe {
        /// Names the answer.
        id: WaitId,
        /// The messages.
        references: Vec<MessageRef>,
    },
    /// The raw verdict on an APPEND message, then call [`Relay::verified`].
    Verify {
        /// Names the answer.
        id: WaitId,
        /// The message.
        message: Bytes,
    },
    /// A clean message this session appended was stored under `reference` (`APPENDUID`,
    /// RFC 4315): remember its disposition there, so FETCHes of it need no second download.
    /// Nothing to answer.
    Remember {
        /// Where the server stored it.
        reference: MessageRef,
        /// The message as verified.
        message: Bytes,
    },
    /// End the session (after the actions before it).
    Close(Close),
}

pub use crate::session::Tally;

/// What the session knows when it logs in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The client's address (for message references).
    pub peer: SocketAddr,
    /// The login name, if known (not after PREAUTH).
    pub user: Option<String>,
    /// The `[[backend]]` logged in to (scopes cache keys).
    pub backend: Option<String>,
    /// How capability lists are rewritten for the client.
    pub policy: CapabilityPolicy,
    /// The backend advertised LITERAL+.
    pub literal_plus: bool,
    /// Largest complete client command.
    pub max_command: u64,
    /// Largest complete backend response.
    pub max_response: u64,
}

/// What a forwarded command means for the session when it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Idle,
    Logout,
    /// SELECT/EXAMINE of this mailbox.
    Select(String),
    /// CLOSE/UNSELECT.
    Close,
    /// EXPUNGE/MOVE (and their UID forms): sequence numbers move (RFC 9051 §7.5.1).
    Renumber,
    /// An APPEND of one verified, clean message to this mailbox.
    Append(Box<Appended>),
    Other,
}

/// An APPEND whose message was verified clean, waiting for its tagged answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Appended {
    /// The mailbox appended to (as SELECT names it: INBOX upper-case).
    pub(super) mailbox: String,
    /// The message as verified.
    pub(super) message: Bytes,
}

/// A forwarded command whose tagged answer has not arrived.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) tag: String,
    pub(super) kind: Kind,
    /// Set for a FETCH that is being scanned.
    pub(super) fetch: Option<Box<FetchContext>>,
}

/// How client lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientMode {
    /// Lines are commands.
    Commands,
    /// IDLE is in progress: the only valid line is `DONE`.
    Idle,
    /// `DONE` was sent; the IDLE command is not complete yet.
    IdleDone,
}

/// The logged-in session of one connection.
#[derive(Debug)]
pub struct Relay {
    pub(super) settings: Settings,
    pub(super) client_framer: Framer,
    pub(super) assembler: super::assembler::Assembler,
    pub(super) backend_framer: Framer,
    /// The backend response being assembled.
    pub(super) response: super::assembler::ResponseAssembler,
    pub(super) pending: VecDeque<Pending>,
    pub(super) mailbox: MailboxState,
    pub(super) mode: ClientMode,
    /// A command being sent piece by piece (waiting for the backend's `+`).
    pub(super) continuation: Option<Continuation>,
    /// The shell's answer the core waits for.
    pub(super) waiting: Option<(WaitId, Waiting)>,
    /// A FETCH held back until one with the same signature completes ([`super::fetch_match`]).
    pub(super) held_fetch: Option<PlannedFetch>,
    /// The proxy's own FETCH in flight ([`super::relay_own`]).
    pub(super) own: Option<OwnFetch>,
    pub(super) own_count: u64,
    /// Backend responses set aside while the own FETCH is awaited, and their size.
    pub(super) set_aside: VecDeque<Vec<Event>>,
    pub(super) set_aside_octets: u64,
    /// Responses set aside earlier, processed before anything read later.
    pub(super) replay: VecDeque<Vec<Event>>,
    pub(super) draining: bool,
    pub(super) scan_append: bool,
    pub(super) errors: u32,
    next_id: u64,
    pub(super) tally: Tally,
    pub(super) out: Vec<Action>,
    pub(super) closed: bool,
}

impl Relay {
    /// The core after login; the framers may already hold bytes (pipelined after login).
    pub fn new(settings: Settings, client_framer: Framer, backend_framer: Framer) -> Relay {
        let max_command = settings.max_command;
        let max_response = settings.max_response;
        Relay {
            settings,
            client_framer,
            assembler: super::assembler::Assembler::new(max_command),
            backend_framer,
            response: super::assembler::ResponseAssembler::new(max_response),
            pending: VecDeque::new(),
            mailbox: MailboxState::default(),
            mode: ClientMode::Commands,
            continuation: None,
            waiting: None,
            held_fetch: None,
            own: None,
            own_count: 0,
            set_aside: VecDeque::new(),
            set_aside_octets: 0,
            replay: VecDeque::new(),
            draining: false,
            scan_append: false,
            errors: 0,
            next_id: 0,
            tally: Tally::default(),
            out: Vec::new(),
            closed: false,
        }
    }

    /// Client bytes arrived.
    pub fn client(&mut self, data: &[u8]) -> Vec<Action> {
        self.client_framer.feed(data);
        self.pump()
    }

    /// Backend bytes arrived.
    pub fn backend(&mut self, data: &[u8]) -> Vec<Action> {
        self.backend_framer.feed(data);
        self.pump()
    }

    /// The scan of [`Action::Scan`] `id` finished.
    pub fn scanned(&mut self, id: WaitId, disposition: Disposition) -> Vec<Action> {
        if let Some(Waiting::Scan(held)) = self.take_waiting(id) {
            self.tally.scanned += 1;
            if !matches!(
                disposition,
                Disposition::Deliver {
                    modified: false,
                    ..
                }
            ) {
                self.tally.blocked += 1;
            }
            self.served(&held, Some(&disposition));
        }
        self.pump()
    }

    /// The cache answered [`Action::Lookup`] `id`.
    pub fn looked_up(&mut self, id: WaitId, cached: Option<Cached>) -> Vec<Action> {
        if let Some(Waiting::Lookup(held)) = self.take_waiting(id) {
            match cached {
                Some(Cached::Clean) => self.served(&held, None),
                Some(Cached::Serve(disposition)) => self.served(&held, Some(&disposition)),
                None => self.fetch_own(held),
            }
        }
        self.pump()
    }

    /// Every `* OK` keep-alive owed while a scan is waited for (the shell calls this every
    /// [`super::relay_fetch::KEEPALIVE_INTERVAL`]).
    pub fn tick(&mut self) -> Vec<Action> {
        match &self.waiting {
            Some((_, Waiting::Scan(_))) => vec![Action::ToClient(Bytes::from_static(KEEPALIVE))],
            _ => Vec::new(),
        }
    }

    /// The process is shutting down: new commands are refused.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Whether APPEND messages are scanned (the live policy; set before feeding bytes).
    pub fn set_scan_append(&mut self, on: bool) {
        self.scan_append = on;
    }

    /// No command in flight, none partly received, nothing waited for.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.client_framer.at_message_boundary()
            && self.assembler.is_empty()
            && self.response.is_empty()
            && self.waiting.is_none()
            && self.continuation.is_none()
            && self.held_fetch.is_none()
            && self.own.is_none()
            && self.replay.is_empty()
    }

    /// Whether client bytes may be read (not while a command waits for the backend's `+`, a
    /// FETCH is held back, or an answer of the shell or the backend is waited for).
    pub fn wants_client(&self) -> bool {
        self.continuation.is_none() && self.waiting.is_none() && self.held_fetch.is_none()
    }

    /// Whether the core waits for the backend in an exchange of its own: a literal waiting for
    /// the backend's `+`, or the proxy's own FETCH.
    pub fn awaiting_backend(&self) -> bool {
        self.continuation.is_some() || self.awaiting_own()
    }

    /// `BAD` answers so far (the proxy's and the backend's).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The statistics since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// A fresh id for a request to the shell; the core waits for its answer.
    pub(super) fn wait_for(&mut self, waiting: Waiting) -> WaitId {
        self.next_id += 1;
        let id = WaitId(self.next_id);
        self.waiting = Some((id, waiting));
        id
    }

    pub(super) fn take_waiting(&mut self, id: WaitId) -> Option<Waiting> {
        match &self.waiting {
            Some((current, _)) if *current == id => self.waiting.take().map(|(_, w)| w),
            _ => None,
        }
    }

    /// Processes what is buffered until a wait, or nothing is left; returns the actions.
    pub(super) fn pump(&mut self) -> Vec<Action> {
        // Backend responses first: they were received before anything the client sends now.
        while !self.closed {
            if self.awaiting_own() {
                if self.next_own_step() {
                    continue;
                }
                break;
            }
            if self.waiting.is_some() {
                break;
            }
            if self.next_backend_step() || self.release_held_fetch() {
                continue;
            }
            let blocked = self.continuation.is_some() || self.held_fetch.is_some();
            if self.closed || blocked || !self.next_client_step() {
                break;
            }
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn close(&mut self, close: Close) {
        self.closed = true;
        self.out.push(Action::Close(close));
    }

    /// The proxy's own answer; every `BAD` line counts towards `max_errors`.
    pub(super) fn reply(&mut self, text: &str) {
        self.errors += text
            .split('\n')
            .filter(|line| line.split(' ').nth(1) == Some("BAD"))
            .count() as u32;
        self.out
            .push(Action::ToClient(Bytes::copy_from_slice(text.as_bytes())));
    }

    pub(super) fn send_backend(&mut self, bytes: &[u8]) {
        self.tally.bytes_up += bytes.len() as u64;
        self.out
            .push(Action::ToBackend(Bytes::copy_from_slice(bytes)));
    }

    pub(super) fn relay(&mut self, bytes: Vec<u8>) {
        self.relay_bytes(Bytes::from(bytes));
    }

    /// Relays a response's framed parts as they are (no copy).
    pub(super) fn relay_parts(&mut self, parts: &super::segments::Segments) {
        for part in parts.parts() {
            self.relay_bytes(part.clone());
        }
    }

    pub(super) fn relay_bytes(&mut self, bytes: Bytes) {
        self.tally.bytes_down += bytes.len() as u64;
        self.out.push(Action::ToClient(bytes));
    }

    /// A reference to a message of the selected mailbox.
    pub(super) fn message_ref(&self, uid: Option<u32>, seq: Option<u32>) -> MessageRef {
        MessageRef {
            client_addr: self.settings.peer,
            user: self.settings.user.clone(),
            protocol: Protocol::Imap,
            mailbox: self.mailbox.name.clone(),
            uidvalidity: self.mailbox.uidvalidity,
            uid,
            msgno: seq,
            backend: self.settings.backend.clone(),
        }
    }

    /// The UID learned for a sequence number.
    pub(super) fn uid_of(&self, seq: u32) -> Option<u32> {
        self.mailbox.seq_to_uid.get(&seq).copied()
    }

    /// Sends the next pieces of the command waiting for the backend's `+`.
    pub(super) fn continue_command(&mut self) {
        let Some(mut continuation) = self.continuation.take() else {
            return;
        };
        while let Some(fragment) = continuation.fragments.pop_front() {
            let bytes = match &fragment {
                Fragment::Line(bytes) | Fragment::Literal(bytes) => bytes.clone(),
            };
            self.send_backend(&bytes);
            let literal_follows =
                matches!(continuation.fragments.front(), Some(Fragment::Literal(_)));
            if literal_follows && !self.settings.literal_plus {
                self.continuation = Some(continuation);
                return;
            }
        }
    }
}

/// Whether a capability list names `name`.
pub(super) fn has_capability(list: &str, name: &str) -> bool {
    list.split_ascii_whitespace()
        .any(|c| c.eq_ignore_ascii_case(name))
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
