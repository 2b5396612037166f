//! One IMAP client session: greeting, then a relay loop between client and backend that is
//! byte-exact except where policy demands otherwise (RFC 9051 / RFC 3501):
//! * capability lists are rewritten ([`super::capability`]);
//! * STARTTLS (RFC 2595 §3.1) is answered by the proxy, which drops every byte the client
//!   pipelined after it and upgrades the client stream;
//! * before TLS on a `require_tls` listener only CAPABILITY, NOOP, LOGOUT, ID and STARTTLS pass;
//!   LOGIN and AUTHENTICATE get `NO [PRIVACYREQUIRED]` (RFC 5530) and are never forwarded;
//! * COMPRESS (RFC 4978) is refused, oversized synchronizing literals get `NO [TOOBIG]`;
//! * AUTHENTICATE continuations and SASL-IR (RFC 4959), IDLE/DONE (RFC 2177) and LOGOUT are
//!   tracked so the session knows which client lines are commands.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::append::HeldAppend;
use super::capability::{self, CapabilityPolicy};
use super::codec::{Event, FrameError, Framer, Limits, Role};
use super::command::{ImapDialect, Status};
use super::scanning::{FetchContext, MailboxState};
use crate::net::Stream;
use crate::server::SessionContext;
use crate::session::{
    connect_or_refuse, count_limit, linger_close, next_input, upgrade_client, write_client, Input,
    Relay, SessionEnd, SessionError, SessionStats,
};

/// Most commands a client may have in flight at once.
pub(super) const MAX_PENDING: usize = 1024;
/// The shortest idle timeout an authenticated IMAP session gets (RFC 9051 §5.4).
const MIN_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Read buffer size per direction.
const READ_BUFFER: usize = 64 * 1024;
/// Commands allowed before TLS on a listener that requires it.
pub(super) const PRE_TLS_ALLOWED: &[&str] = &["CAPABILITY", "NOOP", "LOGOUT", "ID", "STARTTLS"];

/// What a forwarded command means for the session when it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Login(Option<String>),
    Authenticate,
    Idle,
    Logout,
    /// SELECT/EXAMINE of this mailbox.
    Select(Option<String>),
    /// CLOSE/UNSELECT.
    Close,
    Other,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) tag: String,
    pub(super) kind: Kind,
    /// Set for a FETCH that is being scanned.
    pub(super) fetch: Option<Box<FetchContext>>,
}

/// How client lines are to be read right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClientMode {
    /// Lines are commands.
    Commands,
    /// Lines are SASL responses for this tag (never parsed, never logged).
    Authenticate(String),
    /// Waiting for `DONE`.
    Idle,
}

/// What the relay loop does next.
pub(super) enum Flow {
    Continue,
    StartTls,
    End(SessionEnd),
}

/// Runs a session on an accepted (possibly already TLS) client stream.
pub async fn run(context: SessionContext, client: Stream) {
    let mut stats = SessionStats::default();
    let end = match Session::start(&context, client).await {
        Ok(session) => session.run(&mut stats).await,
        Err(end) => end,
    };
    stats.log_summary(&context, &end);
}

pub(super) struct Session {
    pub(super) context: SessionContext,
    pub(super) client: Stream,
    pub(super) backend: Stream,
    pub(super) client_framer: Framer,
    pub(super) backend_framer: Framer,
    /// An APPEND held for scanning (`scan_append`).
    pub(super) held: Option<HeldAppend>,
    /// The backend advertised LITERAL+ (RFC 7888).
    pub(super) backend_literal_plus: bool,
    /// Fragments of the backend response being assembled.
    pub(super) response: Vec<Event>,
    pub(super) response_size: u64,
    pub(super) pending: VecDeque<Pending>,
    /// The selected mailbox (for scan cache keys and quarantine records).
    pub(super) mailbox: MailboxState,
    pub(super) mode: ClientMode,
    /// Tag of the client command whose fragments are still arriving.
    pub(super) current_tag: Option<String>,
    /// Drop the rest of the current client command (it was answered by the proxy).
    pub(super) discard_current: bool,
    pub(super) authenticated: bool,
    pub(super) draining: bool,
    /// Protocol errors so far (BAD answers); `max_errors` ends the session.
    pub(super) errors: u32,
    /// The user an AUTHENTICATE PLAIN in progress names.
    pub(super) sasl_user: Option<String>,
    /// The next client line is the PLAIN response of an AUTHENTICATE without SASL-IR.
    pub(super) sasl_plain_pending: bool,
    pub(super) last_activity: Instant,
}

impl Session {
    async fn start(context: &SessionContext, mut client: Stream) -> Result<Session, SessionEnd> {
        let backend =
            connect_or_refuse::<ImapDialect>(context, &mut client, "* BYE [UNAVAILABLE]").await?;
        let mut session = Session {
            context: context.clone(),
            client,
            backend: backend.stream,
            held: None,
            backend_literal_plus: false,
            client_framer: Framer::new(Role::Client, client_limits(context)),
            backend_framer: Framer::new(Role::Server, backend_limits(context)),
            response: Vec::new(),
            response_size: 0,
            pending: VecDeque::new(),
            mailbox: MailboxState::default(),
            mode: ClientMode::Commands,
            current_tag: None,
            discard_current: false,
            authenticated: false,
            draining: false,
            errors: 0,
            sasl_user: None,
            sasl_plain_pending: false,
            last_activity: Instant::now(),
        };
        let greeting_status = Status::parse(&backend.greeting);
        if greeting_status
            .as_ref()
            .is_some_and(|s| s.condition == "PREAUTH")
        {
            if session.policy().login_disabled {
                let _ = write_client(
                    &mut session.client,
                    b"* BYE [UNAVAILABLE] mail server misconfigured\r\n",
                )
                .await;
                return Err(SessionEnd::BackendClosed);
            }
            session.authenticated = true;
        }
        session.note_capabilities(&backend.greeting);
        if let Some(reply) = &backend.capabilities {
            session.note_capabilities(reply);
        }
        let list = backend
            .capabilities
            .as_deref()
            .and_then(capability::list_from_reply);
        let greeting =
            capability::greeting_with(&backend.greeting, list.as_deref(), session.policy());
        write_client(&mut session.client, &greeting)
            .await
            .map_err(SessionEnd::Error)?;
        session.backend_framer.feed(&backend.leftover);
        Ok(session)
    }

    pub(super) fn policy(&self) -> CapabilityPolicy {
        let (offer_starttls, login_disabled) = self.context.tls_gate(self.client.is_tls());
        CapabilityPolicy {
            offer_starttls,
            login_disabled,
        }
    }

    async fn run(mut self, stats: &mut SessionStats) -> SessionEnd {
        let mut client_buffer = vec![0u8; READ_BUFFER];
        let mut backend_buffer = vec![0u8; READ_BUFFER];
        loop {
            let flow = self
                .step(stats, &mut client_buffer, &mut backend_buffer)
                .await;
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::StartTls) => match self.upgrade().await {
                    Ok(upgraded) => self = upgraded,
                    Err(error) => return SessionEnd::Error(error),
                },
                Ok(Flow::End(SessionEnd::BackendClosed)) => {
                    let _ = self
                        .reply("* BYE [UNAVAILABLE] mail server closed the connection\r\n")
                        .await;
                    return SessionEnd::BackendClosed;
                }
                Ok(Flow::End(end)) => return end,
                Err(error) => {
                    if self.bye_for(&error).await.is_ok() {
                        linger_close(&mut self.client).await;
                    }
                    return SessionEnd::Error(error);
                }
            }
            if self.errors >= self.context.listener.limits.max_errors {
                count_limit("max_errors");
                let _ = write_client(&mut self.client, b"* BYE Too many protocol errors\r\n").await;
                linger_close(&mut self.client).await;
                return SessionEnd::Error(SessionError::ClientProtocol(
                    "too many protocol errors".into(),
                ));
            }
            if self.draining && self.is_idle() {
                let _ = write_client(
                    &mut self.client,
                    b"* BYE [UNAVAILABLE] Server shutting down\r\n",
                )
                .await;
                return SessionEnd::Shutdown;
            }
        }
    }

    /// Waits for one input (client bytes, backend bytes, shutdown, timeout) and handles it.
    async fn step(
        &mut self,
        stats: &mut SessionStats,
        client_buffer: &mut [u8],
        backend_buffer: &mut [u8],
    ) -> Result<Flow, SessionError> {
        let deadline = self.last_activity + self.timeout();
        let relay = Relay {
            client: &mut self.client,
            backend: &mut self.backend,
            client_buffer,
            backend_buffer,
        };
        let input =
            next_input(relay, &self.context.shutdown, self.draining, true, deadline).await?;
        match input {
            Input::Shutdown => {
                self.draining = true;
                Ok(Flow::Continue)
            }
            Input::ClientClosed => Ok(Flow::End(SessionEnd::ClientClosed)),
            Input::BackendClosed => Ok(Flow::End(SessionEnd::BackendClosed)),
            Input::Client(n) => {
                self.last_activity = Instant::now();
                self.client_framer.feed(&client_buffer[..n]);
                self.drain_client(stats).await
            }
            Input::Backend(n) => {
                self.backend_framer.feed(&backend_buffer[..n]);
                self.drain_backend(stats).await
            }
            Input::Deadline => {
                count_limit(if self.authenticated {
                    "idle_timeout"
                } else {
                    "prelogin_timeout"
                });
                let _ = write_client(&mut self.client, b"* BYE Autologout; idle for too long\r\n")
                    .await;
                Ok(Flow::End(SessionEnd::Timeout))
            }
        }
    }

    fn timeout(&self) -> std::time::Duration {
        let limits = &self.context.listener.limits;
        if self.authenticated {
            // RFC 9051 §5.4: the inactivity autologout timer is at least 30 minutes.
            limits.idle_timeout.max(MIN_IDLE)
        } else {
            limits.prelogin_timeout
        }
    }

    /// No command in flight and no partial command buffered.
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.client_framer.at_message_boundary()
            && self.response.is_empty()
    }

    async fn upgrade(mut self) -> Result<Session, SessionError> {
        // Every byte pipelined after STARTTLS is dropped with the old framer (CVE-2011-0411).
        self.client_framer = Framer::new(Role::Client, client_limits(&self.context));
        self.client = upgrade_client(self.client, &self.context).await?;
        tracing::debug!(
            version = self.client.tls_version(),
            "client upgraded to TLS"
        );
        Ok(self)
    }

    async fn bye_for(&mut self, error: &SessionError) -> Result<(), SessionError> {
        let text = match error {
            SessionError::ClientProtocol(reason) => format!("* BYE {reason}\r\n"),
            SessionError::BackendProtocol(_) | SessionError::BackendIo(_) => {
                "* BYE [UNAVAILABLE] mail server connection failed\r\n".into()
            }
            _ => return Ok(()),
        };
        write_client(&mut self.client, text.as_bytes()).await
    }

    async fn drain_client(&mut self, stats: &mut SessionStats) -> Result<Flow, SessionError> {
        loop {
            let event = self
                .client_framer
                .next_event()
                .map_err(|e| client_violation(&e))?;
            let Some(event) = event else {
                return Ok(Flow::Continue);
            };
            let flow = self.on_client_event(event, stats).await?;
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
    }

    pub(super) async fn reply(&mut self, text: &str) -> Result<(), SessionError> {
        if text.split(' ').nth(1) == Some("BAD") {
            self.errors += 1;
        }
        write_client(&mut self.client, text.as_bytes()).await
    }
}

fn client_limits(context: &SessionContext) -> Limits {
    let limits = &context.listener.limits;
    Limits {
        max_line: limits.max_line,
        max_literal: limits.max_client_literal,
        max_nesting: limits.max_nesting,
    }
}

fn backend_limits(context: &SessionContext) -> Limits {
    let limits = &context.listener.limits;
    Limits {
        max_line: limits.max_line,
        max_literal: limits.max_backend_literal,
        max_nesting: limits.max_nesting,
    }
}

fn client_violation(error: &FrameError) -> SessionError {
    count_limit(error.limit_label());
    tracing::info!(%error, limit = error.limit_label(), "client framing error");
    SessionError::ClientProtocol(format!("Protocol error: {error}"))
}
