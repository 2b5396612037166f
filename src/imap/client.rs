//! The client half of an IMAP session: how each client command line is classified, refused,
//! rewritten (FETCH, APPEND) or forwarded (RFC 9051 §6; RFC 2595 §3.1 for STARTTLS; RFC 5530
//! response codes; RFC 4959 SASL-IR; RFC 2177 IDLE).

use bytes::Bytes;

use super::codec::{Announcement, Event};
use super::command::CommandHead;
use super::session::{ClientMode, Flow, Kind, Pending, Session, MAX_PENDING, PRE_TLS_ALLOWED};
use crate::sasl::plain_authcid;
use crate::session::{write_backend, Redacted, SessionError, SessionStats};

impl Session {
    /// Remembers who an AUTHENTICATE PLAIN logs in as (from SASL-IR, RFC 4959, or the first
    /// continuation line), for logs and cache keys; other mechanisms stay anonymous.
    fn note_sasl_mechanism(&mut self, args: &str) {
        let mut words = args.split_ascii_whitespace();
        let plain = words
            .next()
            .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"));
        self.sasl_user = None;
        self.sasl_plain_pending = false;
        match words.next() {
            Some(initial) if plain && initial != "=" => self.sasl_user = plain_authcid(initial),
            None if plain => self.sasl_plain_pending = true,
            _ => {}
        }
    }

    pub(super) async fn on_client_event(
        &mut self,
        event: Event,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if self.held.is_some() {
            self.on_held_event(event, stats).await?;
            return Ok(Flow::Continue);
        }
        match event {
            Event::Line {
                bytes,
                first: true,
                literal,
            } if self.mode == ClientMode::Commands => {
                self.current_tag = None;
                self.discard_current = false;
                let flow = self.on_command(bytes, literal, stats).await?;
                if literal.is_some_and(|l| l.synchronizing) && self.discard_current {
                    self.client_framer.cancel_literal();
                }
                Ok(flow)
            }
            Event::Line {
                bytes, first: true, ..
            } => self.on_mode_line(bytes, stats).await,
            Event::Line { bytes, .. } | Event::Literal(bytes) => {
                if !self.discard_current {
                    stats.bytes_up += bytes.len() as u64;
                    write_backend(&mut self.backend, &bytes).await?;
                }
                Ok(Flow::Continue)
            }
            Event::LiteralRejected { bytes, length } => {
                let tag = CommandHead::parse(&bytes).map_or_else(|| "*".to_string(), |h| h.tag);
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
        }
    }

    /// A client line while in AUTHENTICATE or IDLE mode.
    async fn on_mode_line(
        &mut self,
        bytes: Bytes,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if self.mode == ClientMode::Idle && bytes.trim_ascii().eq_ignore_ascii_case(b"DONE") {
            self.mode = ClientMode::Commands;
        }
        if std::mem::take(&mut self.sasl_plain_pending) {
            self.sasl_user = std::str::from_utf8(&bytes).ok().and_then(plain_authcid);
        }
        tracing::trace!(line = %Redacted::hidden(), "client continuation");
        stats.bytes_up += bytes.len() as u64;
        write_backend(&mut self.backend, &bytes).await?;
        Ok(Flow::Continue)
    }

    /// The first line of a client command.
    async fn on_command(
        &mut self,
        bytes: Bytes,
        literal: Option<Announcement>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let Some(head) = CommandHead::parse(&bytes) else {
            self.discard_current = true;
            self.reply("* BAD Invalid command: expected a tag and a command name\r\n")
                .await?;
            return Ok(Flow::Continue);
        };
        let secret = matches!(head.name.as_str(), "LOGIN" | "AUTHENTICATE");
        tracing::debug!(command = %Redacted::new(&bytes, secret), "client command");
        self.current_tag = Some(head.tag.clone());
        if let Some(refusal) = self.refusal(&head) {
            self.discard_current = true;
            self.reply(&refusal).await?;
            return Ok(Flow::Continue);
        }
        if head.name == "STARTTLS" {
            self.discard_current = true;
            self.reply(&format!("{} OK Begin TLS negotiation now\r\n", head.tag))
                .await?;
            return Ok(Flow::StartTls);
        }
        let mut forwarded = bytes.to_vec();
        let mut fetch = None;
        if matches!(head.name.as_str(), "FETCH" | "UID FETCH") {
            let plan = match literal.is_some() {
                true => Err(format!(
                    "{} BAD [CLIENTBUG] literals in FETCH are not supported by the proxy\r\n",
                    head.tag
                )),
                false => {
                    self.plan_fetch(&head.tag, &head.name, &head.args, stats)
                        .await
                }
            };
            match plan {
                Ok(Some((context, line))) => {
                    fetch = Some(Box::new(context));
                    forwarded = line;
                }
                Ok(None) => {}
                Err(refusal) => {
                    self.discard_current = true;
                    self.reply(&refusal).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        if head.name == "APPEND" && self.context.listener.scanner.policy().scan_append {
            self.hold_append(head.tag, bytes, literal, stats).await?;
            return Ok(Flow::Continue);
        }
        let kind = command_kind(&head);
        if matches!(kind, Kind::Login(_) | Kind::Authenticate) {
            self.context.penalty.delay(self.context.peer.ip()).await;
        }
        match kind {
            Kind::Authenticate => {
                self.mode = ClientMode::Authenticate(head.tag.clone());
                self.note_sasl_mechanism(&head.args);
            }
            Kind::Idle => self.mode = ClientMode::Idle,
            _ => {}
        }
        self.pending.push_back(Pending {
            tag: head.tag,
            kind,
            fetch,
        });
        stats.bytes_up += forwarded.len() as u64;
        write_backend(&mut self.backend, &forwarded).await?;
        Ok(Flow::Continue)
    }

    /// The proxy's own answer to a command it will not forward, if any.
    fn refusal(&self, head: &CommandHead) -> Option<String> {
        let tag = &head.tag;
        let policy = self.policy();
        if self.draining {
            return Some(format!("{tag} NO [UNAVAILABLE] Server shutting down\r\n"));
        }
        if self.pending.len() >= MAX_PENDING {
            return Some(format!("{tag} NO [LIMIT] Too many commands in flight\r\n"));
        }
        match head.name.as_str() {
            "STARTTLS" if !policy.offer_starttls => {
                Some(format!("{tag} BAD STARTTLS not available now\r\n"))
            }
            "LOGIN" | "AUTHENTICATE" if policy.login_disabled => {
                crate::session::count_login(&self.context, "refused");
                Some(format!(
                    "{tag} NO [PRIVACYREQUIRED] TLS is required before authentication: use STARTTLS\r\n"
                ))
            }
            "COMPRESS" => Some(format!(
                "{tag} NO [CANNOT] COMPRESS is not available through this proxy\r\n"
            )),
            name if policy.login_disabled && !PRE_TLS_ALLOWED.contains(&name) => Some(format!(
                "{tag} BAD [PRIVACYREQUIRED] Use STARTTLS first\r\n"
            )),
            _ => None,
        }
    }
}

fn command_kind(head: &CommandHead) -> Kind {
    match head.name.as_str() {
        "LOGIN" => Kind::Login(head.login_user()),
        "AUTHENTICATE" => Kind::Authenticate,
        "IDLE" => Kind::Idle,
        "LOGOUT" => Kind::Logout,
        "SELECT" | "EXAMINE" => Kind::Select(head.first_astring()),
        "CLOSE" | "UNSELECT" => Kind::Close,
        _ => Kind::Other,
    }
}
