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
use crate::session::{record_auth, write_client, SessionEnd, SessionError, SessionStats};

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

    /// Remembers whether the backend offers LITERAL+ from any capability list it sends.
    pub(super) fn note_capabilities(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).to_ascii_uppercase();
        if text.contains("CAPABILITY ") {
            self.backend_literal_plus = text
                .split_ascii_whitespace()
                .any(|c| c.trim_end_matches(']') == "LITERAL+");
        }
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
        if self.current_tag.as_deref() == Some(status.tag.as_str())
            && self.client_framer.in_literal()
        {
            // The backend refused a synchronizing literal: the client will not send it.
            self.client_framer.cancel_literal();
        }
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
    fn complete(&mut self, pending: Pending, status: &Status, stats: &mut SessionStats) -> Flow {
        if self.mode == ClientMode::Authenticate(pending.tag.clone())
            || (pending.kind == Kind::Idle && self.mode == ClientMode::Idle)
        {
            self.mode = ClientMode::Commands;
        }
        match pending.kind {
            Kind::Login(user) if status.is_ok() => {
                self.authenticated = true;
                if let Some(user) = user {
                    stats.set_user(user);
                }
                record_auth(&self.context, true);
                tracing::info!("login ok");
            }
            Kind::Authenticate if status.is_ok() => {
                self.authenticated = true;
                if let Some(user) = self.sasl_user.take() {
                    stats.set_user(user);
                }
                record_auth(&self.context, true);
                tracing::info!("authenticate ok");
            }
            Kind::Login(_) | Kind::Authenticate => {
                record_auth(&self.context, false);
                tracing::info!(condition = %status.condition, "login failed")
            }
            Kind::Logout => return Flow::End(SessionEnd::Logout),
            Kind::Select(name) => {
                let uidvalidity = self.mailbox.selecting_uidvalidity.take();
                self.mailbox = MailboxState::default();
                if status.is_ok() {
                    self.mailbox.name = name;
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
    tracing::warn!(%error, limit = error.limit_label(), "backend framing error");
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
