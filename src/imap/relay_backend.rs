//! The backend half of the logged-in core ([`super::relay`]): complete responses (RFC 9051
//! §7) are rewritten where policy says so (capabilities, §7.2.2), `* n FETCH` responses
//! (§7.5.2) intercepted for scanning ([`super::relay_fetch`]), tagged completions update the
//! session (SELECT/EXAMINE/CLOSE/UNSELECT, IDLE, LOGOUT; a FETCH whose messages were withheld
//! ends `NO [UNAVAILABLE]`, RFC 5530), and the rest is relayed unchanged.

use super::assembler::ResponseError;
use super::capability;
use super::codec::Event;
use super::command::Status;
use super::fetch_match::answered;
use super::fetch_response::fetch_seq;
use super::relay::{has_capability, Action, Appended, ClientMode, Close, Kind, Relay};
use super::relay_client::Waiting;
use super::relay_fetch::{self, FetchContext, Held, Interception, MailboxState, MAX_SEQ_MAP};
use super::segments::Segments;
use crate::scan::Disposition;

impl Relay {
    /// Handles the next complete backend response; `false` if none is buffered.
    pub(super) fn next_backend_step(&mut self) -> bool {
        match self.next_response() {
            Ok(Some((response, fresh))) => {
                if !self.own_claims(&response, fresh) {
                    self.on_response(response);
                }
                true
            }
            Ok(None) => false,
            Err(reason) => {
                self.close(Close::Backend(reason));
                false
            }
        }
    }

    /// The next complete response: one set aside earlier first (`false`), else a fresh one
    /// from the backend (`true`).
    pub(super) fn next_response(&mut self) -> Result<Option<(Vec<Event>, bool)>, String> {
        if let Some(response) = self.replay.pop_front() {
            return Ok(Some((response, false)));
        }
        let fresh = self
            .response
            .next(&mut self.backend_framer)
            .map_err(|error| backend_violation(&error))?;
        Ok(fresh.map(|response| (response, true)))
    }

    /// A complete backend response (a line plus any literals and continuation lines).
    fn on_response(&mut self, response: Vec<Event>) {
        let first = match response.first() {
            Some(Event::Line { bytes, .. }) => bytes.clone(),
            _ => return self.close(Close::Backend("response without a line".into())),
        };
        if first.starts_with(b"+") {
            if self.continuation.is_some() {
                return self.continue_command();
            }
            if self.mode != ClientMode::Idle {
                // Continuations answer the proxy's literals or IDLE; any other one is the
                // backend's business, not the client's.
                tracing::debug!("unexpected backend continuation dropped");
                return;
            }
        }
        let segments = Segments::of_events(&response);
        if fetch_seq(&first).is_some() {
            return self.on_fetch_response(segments);
        }
        let mut rewritten = None;
        if response.len() == 1 {
            self.observe_untagged(&first);
            if let Some(list) = super::login::backend_list(&first) {
                self.settings.literal_plus = has_capability(&list, "LITERAL+");
            }
            rewritten = capability::rewrite_line(&first, self.settings.policy);
        }
        let status = Status::parse(&first).filter(|s| s.tag != "*" && s.tag != "+");
        let (logout, replaced) = match status {
            Some(status) => self.on_tagged(&status, &first),
            None => (false, None),
        };
        match replaced.or(rewritten) {
            Some(output) => self.relay(output),
            None => self.relay_parts(&segments),
        }
        if logout {
            self.close(Close::Logout);
        }
        self.end_continuation_if_done();
    }

    /// Bookkeeping for a tagged completion: whether LOGOUT completed, and the line to send
    /// instead of the backend's, if any.
    fn on_tagged(&mut self, status: &Status, line: &[u8]) -> (bool, Option<Vec<u8>>) {
        let Some(index) = self.pending.iter().position(|p| p.tag == status.tag) else {
            return (false, None);
        };
        let Some(pending) = self.pending.remove(index) else {
            return (false, None);
        };
        if status.condition == "BAD" {
            self.errors += 1;
        }
        let withheld = pending.fetch.as_ref().map_or(0, |f| f.withheld);
        let replaced = (withheld > 0 && status.is_ok()).then(|| {
            format!(
                "{} NO [UNAVAILABLE] {withheld} message(s) could not be scanned now; try again later\r\n",
                pending.tag
            )
            .into_bytes()
        });
        if pending.kind == Kind::Idle {
            self.mode = ClientMode::Commands;
        }
        match pending.kind {
            Kind::Logout => return (true, replaced),
            Kind::Select(name) => {
                let uidvalidity = self.mailbox.selecting_uidvalidity.take();
                self.mailbox = MailboxState::default();
                if status.is_ok() {
                    self.mailbox.name = Some(name);
                    self.mailbox.uidvalidity = uidvalidity;
                }
            }
            Kind::Close if status.is_ok() => self.mailbox = MailboxState::default(),
            Kind::Append(appended) if status.is_ok() => self.remember_appended(*appended, line),
            _ => {}
        }
        (false, replaced)
    }

    /// A verified APPEND completed: where the server says it stored the message (`OK
    /// [APPENDUID uidvalidity uid]`, RFC 4315 §3), its disposition is remembered. Without the
    /// code (a server without UIDPLUS) nothing is remembered and FETCHes scan as before.
    fn remember_appended(&mut self, appended: Appended, line: &[u8]) {
        let Some((uidvalidity, uid)) = append_uid(line) else {
            return;
        };
        let mut reference = self.message_ref(Some(uid), None);
        reference.mailbox = Some(appended.mailbox);
        reference.uidvalidity = Some(uidvalidity);
        self.out.push(Action::Remember {
            reference,
            message: appended.message,
        });
    }

    /// A command being sent piece by piece ends when its tagged answer arrives first.
    fn end_continuation_if_done(&mut self) {
        let ended = self
            .continuation
            .as_ref()
            .is_some_and(|c| !self.pending.iter().any(|p| p.tag == c.tag));
        if ended {
            self.continuation = None;
        }
    }

    /// One `* n FETCH` response: relayed, withheld, or waited for.
    fn on_fetch_response(&mut self, raw: Segments) {
        let in_flight: Vec<&FetchContext> = self
            .pending
            .iter()
            .filter_map(|p| p.fetch.as_deref())
            .collect();
        let (interception, known) = relay_fetch::intercept(raw, |signature| {
            let signatures = in_flight.iter().map(|context| &context.signature);
            answered(signature, signatures).and_then(|index| in_flight.get(index).copied())
        });
        if let Some((seq, uid)) = known {
            self.remember_uid(seq, uid);
        }
        let uid = known.map(|(_, uid)| uid);
        match interception {
            Interception::Pass(raw) => self.relay_parts(&raw),
            Interception::Unparsable => self.note_withheld(None),
            Interception::Ready(held) => self.served(&held, None),
            Interception::Scan(held, message) => {
                let reference = self.message_ref(uid, Some(held.seq()));
                let id = self.wait_for(Waiting::Scan(held));
                self.out.push(Action::Scan {
                    id,
                    message,
                    reference,
                });
            }
            Interception::Lookup(held) => {
                let reference = self.message_ref(uid, Some(held.seq()));
                let id = self.wait_for(Waiting::Lookup(held));
                self.out.push(Action::Lookup { id, reference });
            }
        }
    }

    /// Serves a held response now that its disposition is known.
    pub(super) fn served(&mut self, held: &Held, disposition: Option<&Disposition>) {
        if matches!(disposition, Some(Disposition::TempFail { .. })) {
            self.note_withheld(held.tag());
        }
        for piece in relay_fetch::serve(held, disposition).unwrap_or_default() {
            self.relay_bytes(piece);
        }
    }

    /// Counts a withheld message against the FETCH `tag` answers; against every scanned FETCH
    /// in flight when the response answers none of them (the client learns something is
    /// missing either way).
    fn note_withheld(&mut self, tag: Option<&str>) {
        let contexts = self
            .pending
            .iter_mut()
            .filter_map(|p| p.fetch.as_deref_mut());
        for context in contexts.filter(|c| tag.is_none_or(|tag| c.tag == tag)) {
            context.withheld += 1;
        }
    }

    pub(super) fn remember_uid(&mut self, seq: u32, uid: u32) {
        if self.mailbox.seq_to_uid.len() >= MAX_SEQ_MAP {
            self.mailbox.seq_to_uid.clear();
        }
        self.mailbox.seq_to_uid.insert(seq, uid);
    }

    /// Tracks UIDVALIDITY during SELECT/EXAMINE and forgets sequence numbers on EXPUNGE.
    fn observe_untagged(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(&line[..line.len().min(256)]).to_ascii_uppercase();
        if let Some(rest) = text.strip_prefix("* OK [UIDVALIDITY ") {
            self.mailbox.selecting_uidvalidity =
                rest.split(']').next().and_then(|n| n.trim().parse().ok());
        } else if text.ends_with(" EXPUNGE\r\n") || text.starts_with("* VANISHED") {
            self.mailbox.seq_to_uid.clear();
        }
    }
}

fn backend_violation(error: &ResponseError) -> String {
    if let ResponseError::Frame(frame) = error {
        tracing::warn!(%error, limit = frame.limit().as_str(), "backend framing error");
    }
    error.to_string()
}

/// `(uidvalidity, uid)` of a tagged `OK [APPENDUID uidvalidity uid] …` (RFC 4315 §3) for one
/// message; `None` without the code or with a UID set.
fn append_uid(line: &[u8]) -> Option<(u32, u32)> {
    let text = String::from_utf8_lossy(&line[..line.len().min(512)]);
    // The tag has no space; the code follows the condition (RFC 9051 §7.1).
    let (_tag, rest) = text.split_once(' ')?;
    let (condition, rest) = rest.split_once(' ')?;
    let code = rest.strip_prefix('[')?.split_once(']')?.0;
    let mut words = code.split(' ');
    let name = words.next()?;
    if !condition.eq_ignore_ascii_case("OK") || !name.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let uidvalidity = words.next()?.parse().ok().filter(|v| *v > 0)?;
    let uid = words.next()?.parse().ok().filter(|u| *u > 0)?;
    words.next().is_none().then_some((uidvalidity, uid))
}

#[cfg(test)]
mod append_uid_tests {
    use super::append_uid;

    #[test]
    fn appenduid_of_one_message_is_read_and_anything_else_is_not() {
        assert_eq!(
            append_uid(b"a OK [APPENDUID 38505 3955] APPEND completed\r\n"),
            Some((38505, 3955))
        );
        assert_eq!(append_uid(b"a ok [appenduid 7 1] done\r\n"), Some((7, 1)));
        for line in [
            &b"a OK APPEND completed\r\n"[..],
            b"a OK [APPENDUID 38505 3955:3957] done\r\n",
            b"a OK [APPENDUID 0 1] done\r\n",
            b"a OK [APPENDUID 1 0] done\r\n",
            b"a NO [APPENDUID 1 2] no\r\n",
            b"a OK [COPYUID 1 2 3] done\r\n",
            b"x[APPENDUID OK [APPENDUID 5 7 9] done\r\n",
            b"a OK done [APPENDUID 5 7]\r\n",
        ] {
            assert_eq!(append_uid(line), None, "{}", String::from_utf8_lossy(line));
        }
    }
}
