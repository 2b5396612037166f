//! The proxy's own FETCH: when a response needs a verdict that is not cached and does not carry
//! the whole message (the cache probe said "cached", then sequence numbers moved, the entry was
//! evicted or the mailbox changed), the core fetches the message itself instead of failing the
//! client's FETCH (issue 9: no tempfail for healthy mail).
//!
//! * It sends `<tag> UID FETCH <uid> (UID BODY.PEEK[])` (RFC 9051 §6.4.9; `.PEEK` so `\Seen` is
//!   not set, §6.4.5) with a tag no pending command uses; the client never sees its responses.
//! * Backend responses that arrive before its answer belong to commands sent earlier (the
//!   server answers in order, RFC 9051 §5.5); they are set aside — bounded by `max_response`
//!   octets — and processed in order once the held response has been served, so the client's
//!   view keeps the server's order.
//! * The untagged `* n FETCH (UID <uid> BODY[] …)` that arrives once every command sent before
//!   it has completed is the proxy's; its tagged answer ends the exchange. The message is then
//!   scanned and the held response served from the verdict. If the message is gone (the server
//!   answers without it), or too much arrives in between, the held response is withheld as
//!   before (`NO [UNAVAILABLE]`), and the proxy's own responses are still dropped when they come.
//! * Not during IDLE or while a literal waits for the backend's `+` (the backend would read the
//!   command as part of them), nor behind a pipelined LOGOUT (the server closes before
//!   answering it). The held response is withheld then.

use bytes::Bytes;

use super::codec::Event;
use super::command::Status;
use super::fetch::ItemKind;
use super::fetch_response::{fetch_seq, FetchResponse, Value};
use super::relay::{Action, ClientMode, Close, Kind, Relay};
use super::relay_client::Waiting;
use super::relay_fetch::Held;
use super::segments::Segments;
use crate::scan::Disposition;

/// The proxy's own FETCH in flight.
#[derive(Debug)]
pub(super) struct OwnFetch {
    /// Its tag.
    tag: String,
    /// The message asked for.
    uid: u32,
    /// Tags of commands sent before it that have not completed yet.
    ahead: Vec<String>,
    /// The message, once its response has arrived.
    message: Option<Bytes>,
}

impl OwnFetch {
    /// Octets of the message held, once it arrived.
    pub(super) fn held(&self) -> u64 {
        self.message.as_ref().map_or(0, |m| m.len() as u64)
    }
}

impl Relay {
    /// The cached verdict for `held` is missing: fetch the message, or withhold the response.
    pub(super) fn fetch_own(&mut self, held: Held) {
        let logging_out = self.pending.iter().any(|p| p.kind == Kind::Logout);
        let can_send = self.own.is_none()
            && self.continuation.is_none()
            && self.mode != ClientMode::Idle
            && !logging_out;
        let uid = match held.uid() {
            Some(uid) if can_send => uid,
            _ => return self.withhold(&held, "message content arrived without the whole message"),
        };
        self.own_count += 1;
        let mut tag = format!("PCL{}", self.own_count);
        while self.pending.iter().any(|p| p.tag == tag) {
            tag.push('X');
        }
        tracing::info!(uid, "verdict not cached: fetching the message for the scan");
        self.send_backend(format!("{tag} UID FETCH {uid} (UID BODY.PEEK[])\r\n").as_bytes());
        self.own = Some(OwnFetch {
            tag,
            uid,
            ahead: self.pending.iter().map(|p| p.tag.clone()).collect(),
            message: None,
        });
        self.wait_for(Waiting::Own(held));
    }

    /// Whether the held response waits for the proxy's own FETCH.
    pub(super) fn awaiting_own(&self) -> bool {
        matches!(self.waiting, Some((_, Waiting::Own(_))))
    }

    /// Whether a command of the client's uses the tag of the proxy's own FETCH.
    pub(super) fn is_own_tag(&self, tag: &str) -> bool {
        self.own.as_ref().is_some_and(|own| own.tag == tag)
    }

    /// While the own FETCH is awaited: the next backend response is claimed or set aside;
    /// `false` when none is buffered.
    pub(super) fn next_own_step(&mut self) -> bool {
        let (response, fresh) = match self.next_response() {
            Ok(Some(next)) => next,
            Ok(None) => return false,
            Err(reason) => {
                self.close(Close::Backend(reason));
                return false;
            }
        };
        if !self.own_claims(&response, fresh) {
            self.set_aside(response);
        }
        true
    }

    /// Takes what belongs to the own FETCH (its untagged FETCH and tagged answer); `fresh` is
    /// false for a response that was set aside and is processed now.
    pub(super) fn own_claims(&mut self, response: &[Event], fresh: bool) -> bool {
        let Some(own) = &self.own else {
            return false;
        };
        let Some(Event::Line { bytes: first, .. }) = response.first() else {
            return false;
        };
        if let Some(status) = Status::parse(first).filter(|s| s.tag != "*" && s.tag != "+") {
            if fresh && status.tag == own.tag {
                self.finish_own(status.is_ok());
                return true;
            }
            if let Some(own) = &mut self.own {
                own.ahead.retain(|tag| *tag != status.tag);
            }
            return false;
        }
        if !fresh || !own.ahead.is_empty() || fetch_seq(first).is_none() {
            return false;
        }
        let raw = Segments::of_events(response);
        let Some(message) = whole_message_of(&raw, own.uid) else {
            return false;
        };
        if let Some(own) = &mut self.own {
            own.message = Some(message);
        }
        true
    }

    /// The own FETCH completed: scan the message and serve the held response, then process
    /// what was set aside.
    fn finish_own(&mut self, ok: bool) {
        let message = self.own.take().and_then(|own| own.message.filter(|_| ok));
        if !self.awaiting_own() {
            return;
        }
        let Some((_, Waiting::Own(held))) = self.waiting.take() else {
            return;
        };
        self.replay_set_aside();
        match message {
            Some(message) => {
                let reference = self.message_ref(held.uid(), Some(held.seq()));
                let id = self.wait_for(Waiting::Scan(held));
                self.out.push(Action::Scan {
                    id,
                    message,
                    reference,
                });
            }
            None => self.withhold(&held, "the message is no longer on the server"),
        }
    }

    /// Sets a response aside until the held one is served; beyond `max_response` octets the
    /// held response is withheld and processing goes on.
    fn set_aside(&mut self, response: Vec<Event>) {
        self.set_aside_octets += response.iter().map(|e| e.bytes().len() as u64).sum::<u64>();
        self.set_aside.push_back(response);
        if self.set_aside_octets > self.settings.max_response {
            if let Some((_, Waiting::Own(held))) = self.waiting.take() {
                tracing::warn!("too much arrived before the proxy's own FETCH: response withheld");
                self.replay_set_aside();
                self.withhold(&held, "the message could not be fetched for scanning");
            }
        }
    }

    /// What was set aside is processed next, before anything read later.
    fn replay_set_aside(&mut self) {
        let mut rest = std::mem::take(&mut self.set_aside);
        rest.append(&mut self.replay);
        self.replay = rest;
        self.set_aside_octets = 0;
    }

    fn withhold(&mut self, held: &Held, reason: &str) {
        let disposition = Disposition::TempFail {
            reason: reason.into(),
        };
        self.served(held, Some(&disposition));
    }
}

/// The whole message in a `* n FETCH` response carrying `UID uid` and `BODY[]`.
fn whole_message_of(raw: &Segments, uid: u32) -> Option<Bytes> {
    let response = FetchResponse::parse_from(raw).ok()??;
    if response.uid(raw) != Some(uid) {
        return None;
    }
    let item = response.items.iter().find(|item| {
        item.origin.is_none()
            && matches!(&item.kind, ItemKind::Section { binary: false, section } if section.is_empty())
    })?;
    match &item.value {
        Value::Literal { content, .. } => raw.slice(content.clone()),
        _ => FetchResponse::value(raw, item).map(|value| Bytes::copy_from_slice(&value)),
    }
}
