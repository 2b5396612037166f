//! The TRANSACTION core's views (issue 9, item 2): `LIST`, `STAT` and `UIDL` answers as what
//! `RETR` serves, sans I/O ([`super::super::views`] parses and rewrites).
//!
//! * Before the first `LIST`/`STAT` (RFC 1939 §5) the proxy sends its own `UIDL` (RFC 1939 §7)
//!   unless the client's went first: the unique-ids name messages in the scanner's cache across
//!   sessions. A backend without `UIDL` only loses that; this session's scans still count.
//! * `STAT` is forwarded as `LIST` and answered from it, so its total is the sum of what each
//!   message shows.
//! * A `LIST`/`STAT` answer asks the cache about listed messages it knows nothing of
//!   ([`Action::Lookup`]); with `scan_on_structure` it then waits for scans of the messages still
//!   unknown (within [`super::super::views::STRUCTURE_SCAN_MESSAGES`] and
//!   [`super::super::views::STRUCTURE_SCAN_OCTETS`]), fetched with the proxy's own `RETR`, one
//!   at a time (so at most one such message is held in memory). None after the client's `QUIT`
//!   went to the backend: the backend answers nothing after it.
//! * `UIDL` answers are relayed unchanged (see [`super::super::views`] for why).

use std::collections::VecDeque;

use bytes::Bytes;

use super::super::codec::{MultiLine, Reply, Status};
use super::super::grammar::Command;
use super::super::views::{rewrite_listing, rewrite_scan_line, scan_listing, stat_line};
use super::{Action, Close, Kind, LookupId, MessageRequest, ScanId, Slot, Transaction};
use crate::scan::Cached;

/// A client command whose answer shows sizes or unique-ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `STAT`, forwarded as `LIST`.
    Stat,
    /// `UIDL [msg]`: relayed unchanged, its unique-ids learnt.
    Uidl(Option<u32>),
}

/// A `LIST`/`STAT` answer waiting for what the session learns before it is shown.
#[derive(Debug)]
pub(super) struct Viewing {
    view: View,
    /// The backend's answer: the `+OK` line of `LIST n`, or the `LIST` listing.
    answer: Answer,
    /// `(msgno, backend size)` of every message the answer shows.
    entries: Vec<(u32, u64)>,
    /// The lookup whose answers it waits for, and the messages asked.
    lookup: Option<(LookupId, Vec<u32>)>,
    /// Messages whose `scan_on_structure` scan it waits for.
    pending: Vec<u32>,
}

#[derive(Debug)]
enum Answer {
    Line(Bytes),
    Listing(MultiLine),
}

/// The `scan_on_structure` scans: queued, and the one whose `RETR` is out.
#[derive(Debug, Default)]
pub(super) struct Structure {
    pub(super) enabled: bool,
    queue: VecDeque<u32>,
    in_flight: Option<u32>,
}

impl Structure {
    /// The scan of `msgno` ended (verdict or `-ERR`).
    pub(super) fn finished(&mut self, msgno: u32) {
        if self.in_flight == Some(msgno) {
            self.in_flight = None;
        }
    }

    fn is_pending(&self, msgno: u32) -> bool {
        self.in_flight == Some(msgno) || self.queue.contains(&msgno)
    }
}

impl Kind {
    /// Whether the command is the proxy's own (its answer is for the proxy only).
    pub(super) fn is_own(self) -> bool {
        matches!(self, Kind::Ids | Kind::Structure(_))
    }
}

impl Transaction {
    /// `scan_on_structure`: scan unscanned messages before answering `LIST`/`STAT` (applies to
    /// the next such answer).
    pub fn set_scan_on_structure(&mut self, on: bool) {
        self.structure.enabled = on;
    }

    /// The cache's answers to [`Action::Lookup`] `id`, in the order asked.
    pub fn looked_up(&mut self, id: LookupId, answers: &[Option<Cached>]) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.answer_lookup(id, answers) && !self.closed {
            self.progress(&mut actions);
            self.drain_client(&mut actions);
        }
        actions
    }

    /// A retrieved message goes to the scanner; `own` for a `scan_on_structure` scan.
    pub(super) fn scan(
        &mut self,
        id: ScanId,
        response: MultiLine,
        request: MessageRequest,
        own: bool,
        actions: &mut Vec<Action>,
    ) -> Slot {
        self.next_scan += 1;
        let message = Bytes::from(response.body());
        actions.push(Action::Scan {
            id,
            message: message.clone(),
            request,
            uidl: self.views.uidl(request.msgno()).map(str::to_string),
        });
        Slot::Scanning {
            id,
            response,
            message,
            request,
            own,
        }
    }

    /// Sends the proxy's own `UIDL` ahead of the first `LIST`/`STAT` when nobody asked yet.
    /// False when the session closed instead.
    pub(super) fn ask_ids_before(&mut self, command: &Command, actions: &mut Vec<Action>) -> bool {
        if !matches!(command, Command::List(_) | Command::Stat) || !self.views.needs_ids() {
            return true;
        }
        self.views.asked_ids();
        self.send_own(Command::Uidl(None), Kind::Ids, actions)
    }

    /// Sends a command of the proxy's own; false when the session closed instead.
    fn send_own(&mut self, command: Command, kind: Kind, actions: &mut Vec<Action>) -> bool {
        if let Err(error) = self.backend_framer.expect(command.expect()) {
            self.close(Close::ClientFraming(error), actions);
            return false;
        }
        self.slots.push_back(Slot::Forwarded(kind));
        self.own += 1;
        actions.push(Action::ToBackend(command.to_line()));
        true
    }

    /// `-ERR` (or an unexpected single line) to a command of the proxy's own.
    pub(super) fn own_refused(&mut self, kind: Kind) -> Slot {
        match kind {
            Kind::Ids => self.views.ids_unavailable(),
            Kind::Structure(msgno) => self.structure.finished(msgno),
            _ => {}
        }
        Slot::Done
    }

    /// A single-line `+OK` answer to a view: `LIST n` waits for what is known of n.
    pub(super) fn view_reply(
        &mut self,
        view: View,
        reply: Reply,
        actions: &mut Vec<Action>,
    ) -> Slot {
        match (view, reply.status) {
            (View::List(Some(n)), Status::Ok) => {
                let size = scan_listing(reply.line.strip_prefix(b"+OK ").unwrap_or_default())
                    .first()
                    .map_or(0, |&(_, size)| size);
                self.viewing(view, Answer::Line(reply.line), vec![(n, size)], actions)
            }
            (View::Uidl(Some(_)), Status::Ok) => {
                self.views.learn_line(&reply.line);
                Slot::Ready {
                    bytes: reply.line,
                    quit: false,
                }
            }
            (View::Uidl(None), _) => {
                self.views.ids_unavailable();
                Slot::Ready {
                    bytes: reply.line,
                    quit: false,
                }
            }
            _ => Slot::Ready {
                bytes: reply.line,
                quit: false,
            },
        }
    }

    /// A multi-line answer to a view (`LIST`, `STAT` forwarded as `LIST`, `UIDL`).
    pub(super) fn view_listing(
        &mut self,
        view: View,
        response: MultiLine,
        actions: &mut Vec<Action>,
    ) -> Slot {
        if let View::Uidl(_) = view {
            self.views.learn_listing(&response.body());
            return Slot::Ready {
                bytes: response.raw().clone(),
                quit: false,
            };
        }
        let entries = scan_listing(&response.body());
        self.viewing(view, Answer::Listing(response), entries, actions)
    }

    /// A view answer waiting for lookups and scans (`LIST n` asks the cache like `LIST`).
    fn viewing(
        &mut self,
        view: View,
        answer: Answer,
        entries: Vec<(u32, u64)>,
        actions: &mut Vec<Action>,
    ) -> Slot {
        let mut viewing = Box::new(Viewing {
            view,
            answer,
            entries,
            lookup: None,
            pending: Vec::new(),
        });
        self.ask_cache(&mut viewing, actions);
        Slot::Viewing(viewing)
    }

    /// Asks the cache about the listed messages the session knows nothing of; without any,
    /// goes on to the structure scans.
    fn ask_cache(&mut self, viewing: &mut Viewing, actions: &mut Vec<Action>) {
        let messages = self
            .views
            .to_look_up(viewing.entries.iter().map(|&(n, _)| n));
        if messages.is_empty() {
            return self.plan_structure(viewing);
        }
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        viewing.lookup = Some((id, messages.iter().map(|&(n, _)| n).collect()));
        actions.push(Action::Lookup { id, messages });
    }

    /// With `scan_on_structure` (and before `QUIT`), queues the scans the view waits for.
    fn plan_structure(&mut self, viewing: &mut Viewing) {
        if !self.structure.enabled || self.halted {
            return;
        }
        for msgno in self.views.unscanned(&viewing.entries) {
            if !self.structure.is_pending(msgno) {
                self.structure.queue.push_back(msgno);
            }
            viewing.pending.push(msgno);
        }
    }

    /// Records the answers to lookup `id`; false if no view asked it.
    pub(super) fn answer_lookup(&mut self, id: LookupId, answers: &[Option<Cached>]) -> bool {
        let mut slots = std::mem::take(&mut self.slots);
        let mut found = false;
        for slot in &mut slots {
            let Slot::Viewing(viewing) = slot else {
                continue;
            };
            if !matches!(&viewing.lookup, Some((asked, _)) if *asked == id) {
                continue;
            }
            if let Some((_, msgnos)) = viewing.lookup.take() {
                for (index, msgno) in msgnos.into_iter().enumerate() {
                    let answer = answers.get(index).and_then(Option::as_ref);
                    self.views.looked_up(msgno, answer);
                }
            }
            self.plan_structure(viewing);
            found = true;
        }
        self.slots = slots;
        found
    }

    /// After anything the session learnt: the next structure scan, views that are complete,
    /// and every answer that is due.
    pub(super) fn progress(&mut self, actions: &mut Vec<Action>) {
        self.pump_structure(actions);
        self.settle_views();
        self.flush(actions);
    }

    /// Sends the proxy's `RETR` for the next queued structure scan when none is out. Messages
    /// known meanwhile (a client's `RETR`) are skipped; after `QUIT` the queue is dropped.
    fn pump_structure(&mut self, actions: &mut Vec<Action>) {
        if self.halted || self.closed {
            self.structure.queue.clear();
        }
        while self.structure.in_flight.is_none() {
            let Some(msgno) = self.structure.queue.pop_front() else {
                return;
            };
            if self.views.is_known(msgno) {
                continue;
            }
            if !self.send_own(Command::Retr(msgno), Kind::Structure(msgno), actions) {
                return;
            }
            self.structure.in_flight = Some(msgno);
        }
    }

    /// Every view no longer waiting for a lookup or a scan becomes its answer.
    fn settle_views(&mut self) {
        let mut slots = std::mem::take(&mut self.slots);
        for slot in &mut slots {
            let Slot::Viewing(viewing) = slot else {
                continue;
            };
            let structure = &self.structure;
            viewing.pending.retain(|&n| structure.is_pending(n));
            if viewing.lookup.is_some() || !viewing.pending.is_empty() {
                continue;
            }
            *slot = Slot::Ready {
                bytes: self.compose(viewing),
                quit: false,
            };
        }
        self.slots = slots;
    }

    /// The answer a view shows: sizes as what RETR serves.
    fn compose(&self, viewing: &Viewing) -> Bytes {
        let size = |n, original| self.views.size(n, original);
        match (&viewing.answer, viewing.view) {
            (Answer::Listing(_), View::Stat) => stat_line(&viewing.entries, size),
            (Answer::Listing(response), _) => rewrite_listing(response, size),
            (Answer::Line(line), _) => rewrite_scan_line(line, size),
        }
    }
}
