//! The client half of the logged-in core ([`super::relay`]): parse, then forward (RFC 9051 §6).
//!
//! Every command is assembled completely ([`super::assembler`]; the proxy itself answers
//! synchronizing literals with `+`, RFC 9051 §7.5), parsed by the strict grammar and then either
//! answered by the proxy or forwarded in its canonical serialisation — never as the client's
//! bytes ([`super::decide`] says which). A FETCH needing a verdict (RFC 9051 §6.4.5) is planned
//! after a cache probe; an APPEND (RFC 9051 §6.3.12) is verified message by message first when
//! `scan_append` is on; IDLE (RFC 2177 §3) accepts only `DONE`.

use std::collections::VecDeque;

use bytes::Bytes;

use super::assembler::Assembled;
use super::codec::Event;
use super::command::CommandHead;
use super::decide::{decide, Decision, Situation};
use super::fetch::FetchRequest;
use super::fetch_match::Signature;
use super::grammar::{CommandKind, Fragment, ParsedCommand};
use super::relay::{Action, Appended, ClientMode, Close, Kind, Pending, Relay, WaitId};
use super::relay_fetch::{expand_set, FetchContext, MAX_CACHE_PROBE};
use super::session::MAX_PENDING;
use crate::metrics::Limit;
use crate::scan::{OnError, OnOversize, Policy, RuleAction, Verdict};
use crate::session::Redacted;

/// A command being sent to a backend without LITERAL+: the rest goes after its `+`.
#[derive(Debug)]
pub struct Continuation {
    /// The command's tag (its tagged answer ends the wait).
    pub tag: String,
    /// What is still to be sent.
    pub fragments: VecDeque<Fragment>,
}

/// A FETCH ready to be forwarded, held back while one with the same signature is in flight.
#[derive(Debug)]
pub struct PlannedFetch {
    context: Box<FetchContext>,
    line: Vec<u8>,
}

/// An APPEND on its way through verification.
struct AppendInFlight {
    tag: String,
    fragments: Vec<Fragment>,
    /// The mailbox appended to, when known.
    mailbox: Option<String>,
    /// The message, once verified clean.
    clean: Option<Bytes>,
}

/// What the core waits for from the shell.
#[derive(Debug)]
pub enum Waiting {
    /// The verdict on a fetched message.
    Scan(super::relay_fetch::Held),
    /// The cached disposition of a fetched message.
    Lookup(super::relay_fetch::Held),
    /// The proxy's own FETCH of a message whose verdict was not cached
    /// ([`super::relay_own`]); answered by the backend, not the shell.
    Own(super::relay_fetch::Held),
    /// Whether every message of a FETCH is cached.
    Probe {
        /// The FETCH's tag.
        tag: String,
        /// `FETCH` or `UID FETCH`.
        name: String,
        /// What the client asked for.
        request: FetchRequest,
    },
    /// The verdict on literal `index` of an APPEND.
    Verify {
        /// The APPEND's tag.
        tag: String,
        /// Its canonical fragments.
        fragments: Vec<Fragment>,
        /// The literal being verified.
        index: usize,
        /// The mailbox appended to, when known.
        mailbox: Option<String>,
        /// The message being verified.
        message: Bytes,
    },
}

impl Relay {
    /// The core's answer to [`Action::Probe`] `id`: whether every message is cached.
    pub fn probed(&mut self, id: WaitId, all_cached: bool) -> Vec<Action> {
        if let Some(Waiting::Probe { tag, name, request }) = self.take_waiting(id) {
            self.forward_planned_fetch(tag, &name, request, all_cached);
        }
        self.pump()
    }

    /// The verdict for [`Action::Verify`] `id`, judged under the live scan `policy`.
    pub fn verified(&mut self, id: WaitId, verdict: &Verdict, policy: &Policy) -> Vec<Action> {
        if let Some(Waiting::Verify {
            tag,
            fragments,
            index,
            mailbox,
            message,
        }) = self.take_waiting(id)
        {
            match append_refusal(verdict, policy) {
                Some(reason) => {
                    tracing::info!(reason = %reason, "APPEND refused by scanning");
                    self.reply(&format!("{tag} {reason}\r\n"));
                }
                None => {
                    let append = AppendInFlight {
                        tag,
                        fragments,
                        mailbox,
                        clean: (*verdict == Verdict::Clean).then_some(message),
                    };
                    self.verify_append(append, index + 1)
                }
            }
        }
        self.pump()
    }

    /// Handles the next client event; `false` if none is buffered.
    pub(super) fn next_client_step(&mut self) -> bool {
        let event = match self.client_framer.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return false,
            Err(error) => {
                tracing::info!(%error, limit = error.limit().as_str(), "client framing error");
                self.close(Close::Client {
                    reason: format!("Protocol error: {error}"),
                    limit: Some(error.limit()),
                });
                return false;
            }
        };
        if self.mode == ClientMode::Idle {
            self.on_idle_line(&event);
            return true;
        }
        let assembled = match self.assembler.push(event) {
            Ok(assembled) => assembled,
            Err(error) => {
                self.close(Close::Client {
                    reason: format!("Protocol error: {error}"),
                    limit: Some(Limit::LiteralSize),
                });
                return false;
            }
        };
        match assembled {
            Assembled::Pending => {}
            Assembled::SendContinuation => self.reply("+ Ready for literal data\r\n"),
            Assembled::LiteralTooLarge { line, length } => {
                let tag = CommandHead::parse(&line).map_or_else(|| "*".to_string(), |h| h.tag);
                tracing::info!(length, "client literal too large");
                self.reply(&format!(
                    "{tag} NO [TOOBIG] literal of {length} octets exceeds the limit\r\n"
                ));
            }
            Assembled::Complete(bytes) => self.on_command(&bytes),
        }
        true
    }

    /// During IDLE only `DONE` (RFC 2177 §3) is valid; anything else ends the session, since
    /// the backend would read it as a command the proxy did not parse.
    fn on_idle_line(&mut self, event: &Event) {
        let done = matches!(event, Event::Line { bytes, first: true, literal: None }
            if bytes.strip_suffix(b"\r\n").is_some_and(|b| b.eq_ignore_ascii_case(b"DONE")));
        if !done {
            return self.close(Close::Client {
                reason: "Expected DONE to end IDLE".into(),
                limit: None,
            });
        }
        self.mode = ClientMode::IdleDone;
        self.send_backend(b"DONE\r\n");
    }

    /// A complete command: decided, then answered, planned or forwarded.
    fn on_command(&mut self, bytes: &[u8]) {
        let situation = Situation {
            draining: self.draining,
            pipeline_full: self.pending.len() >= MAX_PENDING,
        };
        let command = match decide(bytes, situation) {
            Decision::Reply(reply) => return self.reply(&reply),
            Decision::Forward(command) => *command,
        };
        if self.is_own_tag(&command.tag) {
            let tag = &command.tag;
            return self.reply(&format!(
                "{tag} BAD [CLIENTBUG] tag in use, try another\r\n"
            ));
        }
        tracing::debug!(command = %Redacted::new(bytes, false), "client command");
        match &command.kind {
            CommandKind::Fetch { .. } => self.plan_fetch(command),
            CommandKind::Append if self.scan_append => {
                let append = AppendInFlight {
                    fragments: command.encode(self.settings.literal_plus),
                    mailbox: command.append_mailbox(),
                    tag: command.tag,
                    clean: None,
                };
                self.verify_append(append, 0);
            }
            _ => {
                let kind = command_kind(&command.kind);
                let fragments = command.encode(self.settings.literal_plus);
                self.forward(command.tag, kind, None, fragments);
            }
        }
    }

    /// FETCH / UID FETCH: forwarded as is, or rewritten for scanning after a cache probe.
    fn plan_fetch(&mut self, command: ParsedCommand) {
        let tag = command.tag.clone();
        let fragments = command.encode(self.settings.literal_plus);
        let [Fragment::Line(line)] = fragments.as_slice() else {
            return self.reply(&format!(
                "{tag} BAD [CLIENTBUG] literals in FETCH are not supported by the proxy\r\n"
            ));
        };
        let Some(head) = CommandHead::parse(line) else {
            return self.close(Close::Client {
                reason: "unparsable canonical FETCH".into(),
                limit: None,
            });
        };
        let Some(request) = FetchRequest::parse(&head.args) else {
            return self.reply(&format!(
                "{} BAD [CLIENTBUG] FETCH arguments not understood by the proxy\r\n",
                head.tag
            ));
        };
        if !request.needs_verdict() {
            return self.forward(tag, Kind::Other, None, fragments);
        }
        let uid_command = head.name.starts_with("UID ");
        let unsettled = self.pending.iter().any(|p| match p.kind {
            Kind::Select(_) | Kind::Close => true,
            Kind::Renumber => !uid_command,
            _ => false,
        });
        if unsettled || request.has_whole_message() {
            // The mailbox or the sequence numbers the FETCH will see are not known yet, or the
            // whole message comes anyway: nothing to probe.
            return self.forward_planned_fetch(head.tag, &head.name, request, false);
        }
        let references = expand_set(&request.sequence, MAX_CACHE_PROBE).and_then(|numbers| {
            numbers
                .into_iter()
                .map(|n| match uid_command {
                    true => Some(n),
                    false => self.uid_of(n),
                })
                .map(|uid| uid.map(|uid| self.message_ref(Some(uid), None)))
                .collect::<Option<Vec<_>>>()
        });
        match references {
            Some(references) => {
                let waiting = Waiting::Probe {
                    tag: head.tag,
                    name: head.name,
                    request,
                };
                let id = self.wait_for(waiting);
                self.out.push(Action::Probe { id, references });
            }
            None => self.forward_planned_fetch(head.tag, &head.name, request, false),
        }
    }

    /// Forwards a FETCH needing a verdict with `BODY.PEEK[]` (unless every message is cached
    /// or the client asked for it) and `UID` added.
    fn forward_planned_fetch(
        &mut self,
        tag: String,
        name: &str,
        request: FetchRequest,
        all_cached: bool,
    ) {
        let added_whole = !request.has_whole_message() && !all_cached;
        let added_uid = !request.has_uid() && !name.starts_with("UID ");
        let line = format!(
            "{tag} {name} {}\r\n",
            request.forwarded_args(added_whole, added_uid)
        );
        let context = Box::new(FetchContext {
            tag,
            signature: Signature::of_request(&request, added_whole),
            request,
            added_whole,
            added_uid,
            withheld: 0,
        });
        let planned = PlannedFetch {
            context,
            line: line.into_bytes(),
        };
        match self.signature_in_flight(&planned.context.signature) {
            true => self.held_fetch = Some(planned),
            false => self.forward_fetch(planned),
        }
    }

    /// Forwards the held FETCH once no FETCH with its signature is in flight; `true` if sent.
    pub(super) fn release_held_fetch(&mut self) -> bool {
        let ready = self
            .held_fetch
            .as_ref()
            .is_some_and(|held| !self.signature_in_flight(&held.context.signature));
        match self.held_fetch.take() {
            Some(planned) if ready => {
                self.forward_fetch(planned);
                true
            }
            held => {
                self.held_fetch = held;
                false
            }
        }
    }

    fn signature_in_flight(&self, signature: &Signature) -> bool {
        self.pending
            .iter()
            .filter_map(|p| p.fetch.as_deref())
            .any(|context| context.signature == *signature)
    }

    fn forward_fetch(&mut self, planned: PlannedFetch) {
        let tag = planned.context.tag.clone();
        let fragments = vec![Fragment::Line(planned.line)];
        self.forward(tag, Kind::Other, Some(planned.context), fragments);
    }

    /// Verifies the APPEND's literals from `index` on; forwards it when none is left.
    fn verify_append(&mut self, append: AppendInFlight, index: usize) {
        let next = append
            .fragments
            .iter()
            .enumerate()
            .skip(index)
            .find_map(|(i, f)| match f {
                Fragment::Literal(message) => Some((i, Bytes::copy_from_slice(message))),
                Fragment::Line(_) => None,
            });
        let AppendInFlight {
            tag,
            fragments,
            mailbox,
            clean,
        } = append;
        match next {
            Some((index, message)) => {
                let id = self.wait_for(Waiting::Verify {
                    tag,
                    fragments,
                    index,
                    mailbox,
                    message: message.clone(),
                });
                self.out.push(Action::Verify { id, message });
            }
            None => {
                // The one message of the APPEND (RFC 9051 §6.3.12) was found clean: its
                // disposition can be remembered under the APPENDUID the server answers with.
                let kind = match (mailbox, clean) {
                    (Some(mailbox), Some(message)) => {
                        Kind::Append(Box::new(Appended { mailbox, message }))
                    }
                    _ => Kind::Other,
                };
                self.forward(tag, kind, None, fragments)
            }
        }
    }

    /// Sends a command's fragments and records it as pending; without LITERAL+ at the backend
    /// the rest waits for its `+` ([`Relay::continue_command`]).
    fn forward(
        &mut self,
        tag: String,
        kind: Kind,
        fetch: Option<Box<FetchContext>>,
        fragments: Vec<Fragment>,
    ) {
        if kind == Kind::Idle {
            self.mode = ClientMode::Idle;
        }
        self.pending.push_back(Pending {
            tag: tag.clone(),
            kind,
            fetch,
        });
        self.continuation = Some(Continuation {
            tag,
            fragments: fragments.into(),
        });
        self.continue_command();
    }
}

/// What a forwarded command means for the session when its tagged answer arrives.
fn command_kind(kind: &CommandKind) -> Kind {
    match kind {
        CommandKind::Idle => Kind::Idle,
        CommandKind::Logout => Kind::Logout,
        CommandKind::Select { mailbox, .. } => Kind::Select(mailbox.clone()),
        CommandKind::Close | CommandKind::Unselect => Kind::Close,
        CommandKind::Other("EXPUNGE" | "UID EXPUNGE" | "MOVE" | "UID MOVE") => Kind::Renumber,
        _ => Kind::Other,
    }
}

/// The refusal of an APPEND message under `policy`, if the verdict refuses it.
pub fn append_refusal(verdict: &Verdict, policy: &Policy) -> Option<String> {
    match verdict {
        Verdict::Clean
        | Verdict::Rule {
            action: RuleAction::Log | RuleAction::Tag,
            ..
        } => None,
        Verdict::Infected { signature, .. } => {
            Some(format!("NO [CANNOT] Message rejected: {signature} found"))
        }
        Verdict::Rule { name, .. } => Some(format!("NO [CANNOT] Message rejected by rule {name}")),
        Verdict::Error { cause } => match policy.on_error {
            OnError::Pass => None,
            OnError::Tempfail => Some(format!(
                "NO [UNAVAILABLE] Message could not be scanned: {cause}"
            )),
            OnError::Block => Some(format!("NO [CANNOT] Message could not be scanned: {cause}")),
        },
        Verdict::Oversize => match policy.on_oversize {
            OnOversize::Pass => None,
            OnOversize::Tempfail => Some("NO [UNAVAILABLE] Message too large to scan".into()),
            OnOversize::Block => Some("NO [TOOBIG] Message too large to scan".into()),
        },
    }
}
