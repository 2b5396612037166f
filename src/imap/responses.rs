//! The backend half of an IMAP session: complete responses from the framer are rewritten where
//! policy says so (capabilities, RFC 9051 §7.2.2), FETCH responses go through scanning
//! ([`super::scanning`]), tagged completions update the session (login, SELECT, LOGOUT, a FETCH
//! whose messages were withheld ends `NO [UNAVAILABLE]`, RFC 5530), and the rest is relayed.

use super::capability;
use super::codec::{Event, FrameError};
use super::command::Status;
use super::fetch_response::fetch_seq;
use super::scanning::MailboxState;
use super::session::{ClientMode, Flow, Kind, Pending, Session};
use crate::session::{write_client, SessionEnd, SessionError, SessionStats};

impl Session {
    pub(super) async fn drain_backend(
        &mut self,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        while let Some(response) = self.next_backend_response()? {
            let flow = self.on_response(response, stats).await?;
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
        Ok(Flow::Continue)
    }

    /// The next complete backend response from bytes already fed, if any.
    pub(super) fn next_backend_response(&mut self) -> Result<Option<Vec<Event>>, SessionError> {
        let limit = self
            .context
            .listener
            .limits
            .max_backend_literal
            .saturating_mul(2);
        while let Some(event) = self
            .backend_framer
            .next_event()
            .map_err(|e| backend_violation(&e))?
        {
            let complete = matches!(event, Event::Line { literal: None, .. });
            self.response_size += event_len(&event);
            if self.response_size > limit {
                return Err(SessionError::BackendProtocol("response too large".into()));
            }
            self.response.push(event);
            if complete {
                self.response_size = 0;
                return Ok(Some(std::mem::take(&mut self.response)));
            }
        }
        Ok(None)
    }

    /// Remembers what the backend offers (LITERAL+, SASL-IR) from any capability list it sends.
    pub(super) fn note_capabilities(&mut self, line: &[u8]) {
        if let Some(list) = super::login::backend_list(line) {
            self.note_capability_list(&list);
        }
    }

    /// Remembers what a backend capability list offers.
    pub(super) fn note_capability_list(&mut self, list: &str) {
        let has = |name: &str| {
            list.split_ascii_whitespace()
                .any(|c| c.eq_ignore_ascii_case(name))
        };
        self.backend_literal_plus = has("LITERAL+");
        self.backend_sasl_ir = has("SASL-IR");
    }

    /// A complete backend response (a line plus any literals and continuation lines).
    pub(super) async fn on_response(
        &mut self,
        response: Vec<Event>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let first = match response.first() {
            Some(Event::Line { bytes, .. }) => bytes.clone(),
            _ => {
                return Err(SessionError::BackendProtocol(
                    "response without a line".into(),
                ))
            }
        };
        let status = Status::parse(&first);
        let mut output = concat(&response);
        if first.starts_with(b"+") && self.mode != ClientMode::Idle {
            // Continuations answer the proxy's literals (awaited where they are sent) or IDLE;
            // any other one is the backend's business, not the client's.
            tracing::debug!("unexpected backend continuation dropped");
            return Ok(Flow::Continue);
        }
        if fetch_seq(&first).is_some() {
            match self.on_fetch_response(output, stats).await? {
                Some(bytes) => output = bytes,
                None => return Ok(Flow::Continue),
            }
        } else if response.len() == 1 {
            self.observe_untagged(&first);
            self.note_capabilities(&first);
            if let Some(rewritten) = capability::rewrite_line(&first, self.policy()) {
                output = rewritten;
            }
        }
        let mut flow = Flow::Continue;
        if let Some(status) = status.filter(|s| s.tag != "*" && s.tag != "+") {
            let (next, replacement) = self.on_tagged(&status, stats);
            flow = next;
            if let Some(replacement) = replacement {
                output = replacement;
            }
        }
        stats.bytes_down += output.len() as u64;
        write_client(&mut self.client, &output).await?;
        Ok(flow)
    }

    /// Bookkeeping for a tagged completion from the backend.
    fn on_tagged(&mut self, status: &Status, stats: &mut SessionStats) -> (Flow, Option<Vec<u8>>) {
        let Some(index) = self.pending.iter().position(|p| p.tag == status.tag) else {
            return (Flow::Continue, None);
        };
        let Some(pending) = self.pending.remove(index) else {
            return (Flow::Continue, None);
        };
        if status.condition == "BAD" {
            self.errors += 1;
        }
        let withheld = pending.fetch.as_ref().map_or(0, |f| f.withheld);
        let replacement = (withheld > 0 && status.is_ok()).then(|| {
            format!(
                "{} NO [UNAVAILABLE] {withheld} message(s) could not be scanned now; try again later\r\n",
                pending.tag
            )
            .into_bytes()
        });
        (self.complete(pending, status, stats), replacement)
    }

    /// Updates session state for a completed command.
    fn complete(&mut self, pending: Pending, status: &Status, _stats: &mut SessionStats) -> Flow {
        if pending.kind == Kind::Idle {
            self.mode = ClientMode::Commands;
        }
        match pending.kind {
            Kind::Logout => return Flow::End(SessionEnd::Logout),
            Kind::Select(name) => {
                let uidvalidity = self.mailbox.selecting_uidvalidity.take();
                self.mailbox = MailboxState::default();
                if status.is_ok() {
                    self.mailbox.name = Some(name);
                    self.mailbox.uidvalidity = uidvalidity;
                }
            }
            Kind::Close if status.is_ok() => self.mailbox = MailboxState::default(),
            _ => {}
        }
        Flow::Continue
    }
}

fn backend_violation(error: &FrameError) -> SessionError {
    tracing::warn!(%error, limit = error.limit().as_str(), "backend framing error");
    SessionError::BackendProtocol(error.to_string())
}

fn event_len(event: &Event) -> u64 {
    event.bytes().len() as u64
}

fn concat(events: &[Event]) -> Vec<u8> {
    let total: u64 = events.iter().map(event_len).sum();
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for event in events {
        out.extend_from_slice(event.bytes());
    }
    out
}
