//! The client half of an IMAP session after login: parse, then forward (RFC 9051 §6).
//!
//! Every command is assembled completely ([`super::assembler`]; the proxy itself answers
//! synchronizing literals with `+`, RFC 9051 §7.5), parsed by the strict grammar
//! ([`super::grammar`]) and then either answered by the proxy or forwarded in its canonical
//! serialisation — never as the client's bytes ([`super::decide`] says which). FETCH and APPEND
//! go through scanning; IDLE (RFC 2177) accepts only `DONE`.

use super::assembler::Assembled;
use super::codec::Event;
use super::command::CommandHead;
use super::decide::{decide, Decision, Situation};
use super::grammar::{CommandKind, Fragment, ParsedCommand};
use super::session::{ClientMode, Flow, Kind, Pending, Session, MAX_PENDING};
use crate::metrics::Limit;
use crate::session::{write_backend, Redacted, SessionError, SessionStats};

impl Session {
    pub(super) async fn on_client_event(
        &mut self,
        event: Event,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if self.mode == ClientMode::Idle {
            return self.on_idle_line(event, stats).await;
        }
        let assembled = self.assembler.push(event).map_err(|error| {
            crate::session::count_limit(Limit::LiteralSize);
            SessionError::ClientProtocol(format!("Protocol error: {error}"))
        })?;
        match assembled {
            Assembled::Pending => Ok(Flow::Continue),
            Assembled::SendContinuation => {
                self.reply("+ Ready for literal data\r\n").await?;
                Ok(Flow::Continue)
            }
            Assembled::LiteralTooLarge { line, length } => {
                let tag = CommandHead::parse(&line).map_or_else(|| "*".to_string(), |h| h.tag);
                tracing::info!(
                    length,
                    limit = self.context.listener.limits.max_client_literal,
                    "client literal too large"
                );
                self.reply(&format!(
                    "{tag} NO [TOOBIG] literal of {length} octets exceeds the limit\r\n"
                ))
                .await?;
                Ok(Flow::Continue)
            }
            Assembled::Complete(bytes) => self.on_command(&bytes, stats).await,
        }
    }

    /// A client line during IDLE: only `DONE` (RFC 2177 §3) is valid; anything else ends the
    /// session, since the backend would read it as a command the proxy did not parse.
    async fn on_idle_line(
        &mut self,
        event: Event,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let done = matches!(&event, Event::Line { bytes, first: true, literal: None }
            if bytes.strip_suffix(b"\r\n").is_some_and(|b| b.eq_ignore_ascii_case(b"DONE")));
        if !done {
            return Err(SessionError::ClientProtocol(
                "Expected DONE to end IDLE".into(),
            ));
        }
        self.mode = ClientMode::IdleDone;
        stats.bytes_up += 6;
        write_backend(&mut self.backend, b"DONE\r\n").await?;
        Ok(Flow::Continue)
    }

    /// A complete client command: decided by [`super::decide`], then answered or forwarded.
    async fn on_command(
        &mut self,
        bytes: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let situation = Situation {
            draining: self.draining,
            pipeline_full: self.pending.len() >= MAX_PENDING,
        };
        let command = match decide(bytes, situation) {
            Decision::Reply(reply) => {
                self.reply(&reply).await?;
                return Ok(Flow::Continue);
            }
            Decision::Forward(command) => *command,
        };
        tracing::debug!(command = %Redacted::new(bytes, false), "client command");
        match &command.kind {
            CommandKind::Fetch { .. } => self.forward_fetch(command, stats).await,
            CommandKind::Append if self.context.listener.scanner.policy().scan_append => {
                self.forward_append(command, stats).await
            }
            _ => {
                let kind = command_kind(&command.kind);
                let fragments = command.encode(self.backend_literal_plus);
                self.forward(command.tag, kind, None, fragments, stats)
                    .await
            }
        }
    }

    /// FETCH / UID FETCH: the canonical line goes through the scanning rewrite.
    async fn forward_fetch(
        &mut self,
        command: ParsedCommand,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let tag = command.tag.clone();
        let fragments = command.encode(self.backend_literal_plus);
        let [Fragment::Line(line)] = fragments.as_slice() else {
            let refusal = format!(
                "{tag} BAD [CLIENTBUG] literals in FETCH are not supported by the proxy\r\n"
            );
            self.reply(&refusal).await?;
            return Ok(Flow::Continue);
        };
        let Some(head) = CommandHead::parse(line) else {
            return Err(SessionError::ClientProtocol(
                "unparsable canonical FETCH".into(),
            ));
        };
        match self
            .plan_fetch(&head.tag, &head.name, &head.args, stats)
            .await
        {
            Ok(Some((context, rewritten))) => {
                let fragments = vec![Fragment::Line(rewritten)];
                self.forward(tag, Kind::Other, Some(Box::new(context)), fragments, stats)
                    .await
            }
            Ok(None) => {
                let fragments = vec![Fragment::Line(line.clone())];
                self.forward(tag, Kind::Other, None, fragments, stats).await
            }
            Err(refusal) => {
                self.reply(&refusal).await?;
                Ok(Flow::Continue)
            }
        }
    }

    /// Sends a parsed command's fragments to the backend and records it as pending. Without
    /// LITERAL+ at the backend, the backend's `+` is awaited before each literal.
    pub(super) async fn forward(
        &mut self,
        tag: String,
        kind: Kind,
        fetch: Option<Box<super::scanning::FetchContext>>,
        fragments: Vec<Fragment>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if kind == Kind::Idle {
            self.mode = ClientMode::Idle;
        }
        self.pending.push_back(Pending {
            tag: tag.clone(),
            kind,
            fetch,
        });
        let mut fragments = fragments.into_iter().peekable();
        while let Some(fragment) = fragments.next() {
            let bytes = match &fragment {
                Fragment::Line(bytes) | Fragment::Literal(bytes) => bytes,
            };
            stats.bytes_up += bytes.len() as u64;
            write_backend(&mut self.backend, bytes).await?;
            let literal_follows = matches!(fragments.peek(), Some(Fragment::Literal(_)));
            if literal_follows
                && !self.backend_literal_plus
                && !self.wait_for_continuation(&tag, stats).await?
            {
                break;
            }
        }
        Ok(Flow::Continue)
    }
}

/// What a forwarded command means for the session when its tagged answer arrives.
fn command_kind(kind: &CommandKind) -> Kind {
    match kind {
        CommandKind::Idle => Kind::Idle,
        CommandKind::Logout => Kind::Logout,
        CommandKind::Select { mailbox, .. } => Kind::Select(mailbox.clone()),
        CommandKind::Close | CommandKind::Unselect => Kind::Close,
        _ => Kind::Other,
    }
}
