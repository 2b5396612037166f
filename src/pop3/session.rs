//! One POP3 client session (RFC 1939, RFC 2449 PIPELINING): the async driver of the sans-I/O
//! pieces.
//!
//! * Before login the proxy answers everything itself ([`super::prelogin`]); the client sees the
//!   backend's greeting (APOP timestamp intact, RFC 1939 §7), and no client byte reaches the
//!   backend: the driver logs in with commands the proxy serialises (`session_prelogin.rs`).
//!   STLS (RFC 2595 §4) drops every byte pipelined after it before the TLS handshake.
//! * After login every client line is parsed ([`super::grammar`], RFC 1939 §5–§7) and only the
//!   canonical serialisation of an allowed command is forwarded; anything else is answered
//!   `-ERR` by the proxy and counts towards `max_errors`.
//! * CAPA responses are rewritten through an allow-list ([`super::capa`]); RETR/TOP responses
//!   are scanned as one complete unit ([`super::scanning`]).
//! * A client that goes away without QUIT never causes a QUIT upstream, so nothing is deleted.
//!
//! Commands answered by the proxy and forwarded commands share one FIFO, so every client sees
//! its answers in command order. When `max_pipeline` answers are outstanding the client is not
//! read any more until the backend catches up (bounded back-pressure).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::capa::{CapaPolicy, Capabilities};
use super::codec::{Event, FrameError, Framer, Limits, Role};
use super::command::Pop3Dialect;
use super::grammar::Command;
use super::prelogin::{Prelogin, PreloginConfig};
use super::scanning::MessageRequest;
use crate::context::SessionContext;
use crate::net::Stream;
use crate::session::{
    upgrade_client, write_backend, write_client, SessionEnd, SessionError, SessionStats,
};

/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(600);

/// What a forwarded command means when its answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Capa,
    /// RETR or TOP n m (any m, forwarded as RETR): a message to scan.
    Message(MessageRequest),
    Quit,
    Other,
}

/// One entry of the in-order answer queue.
#[derive(Debug)]
enum Pending {
    /// Sent to the backend; its answer is relayed.
    Forwarded(Kind),
    /// Answered by the proxy itself.
    Local(Bytes),
}

use crate::driver::Flow;

/// AUTHORIZATION (answered by the proxy) or TRANSACTION (parsed, then forwarded).
#[derive(Debug)]
enum Phase {
    Prelogin(Box<Prelogin>),
    Transaction,
}

#[path = "session_backend.rs"]
mod backend_side;
#[path = "session_prelogin.rs"]
mod prelogin_side;

/// Runs a session on an accepted (possibly already TLS) client stream.
pub async fn run(context: SessionContext, client: Stream) {
    let mut stats = SessionStats::default();
    let end = match Session::start(&context, client).await {
        Ok(session) => crate::driver::drive(session, &mut stats).await,
        Err(end) => end,
    };
    stats.log_summary(&context, &end);
}

/// The state of one client connection and its backend connection.
pub struct Session {
    pub(super) context: SessionContext,
    client: Stream,
    backend: Stream,
    client_framer: Framer,
    backend_framer: Framer,
    pending: VecDeque<Pending>,
    phase: Phase,
    /// The backend's capabilities (pre-login, as the connector or the proxy's CAPA saw them).
    capabilities: Capabilities,
    /// QUIT forwarded: no further client command is read.
    halted: bool,
    draining: bool,
    /// `-ERR` answers so far; `max_errors` ends the session.
    pub(super) errors: u32,
}

impl Session {
    async fn start(context: &SessionContext, mut client: Stream) -> Result<Session, SessionEnd> {
        let backend = crate::session::connect_or_refuse::<Pop3Dialect>(
            context,
            &mut client,
            "-ERR [SYS/TEMP]",
        )
        .await?;
        let limits = Limits::from_config(&context.listener.limits);
        let (offer_stls, hide_login) = context.tls_gate(client.is_tls());
        let mut session = Session {
            context: context.clone(),
            client,
            backend: backend.stream,
            client_framer: Framer::new(Role::Client, limits),
            backend_framer: Framer::new(Role::Server, limits),
            pending: VecDeque::new(),
            phase: Phase::Transaction,
            capabilities: Capabilities::default(),
            halted: false,
            draining: false,
            errors: 0,
        };
        session.backend_framer.feed(&backend.leftover);
        let capabilities = match backend.capabilities {
            Some(reply) => Capabilities::from_reply(Some(&reply)),
            None => session
                .backend_capabilities()
                .await
                .map_err(SessionEnd::Error)?,
        };
        session.capabilities = capabilities.clone();
        session.phase = Phase::Prelogin(Box::new(Prelogin::new(PreloginConfig {
            capabilities,
            policy: CapaPolicy {
                offer_stls,
                hide_login,
            },
            max_errors: context.listener.limits.max_errors,
        })));
        write_client(&mut session.client, &backend.greeting)
            .await
            .map_err(SessionEnd::Error)?;
        Ok(session)
    }

    /// Whether more client bytes may be read now (bounded back-pressure).
    fn wants_client(&self) -> bool {
        let ready = match &self.phase {
            Phase::Prelogin(core) => core.wants_input(),
            Phase::Transaction => {
                !self.halted && self.pending.len() < self.context.listener.limits.max_pipeline
            }
        };
        ready && !self.draining
    }

    fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Transaction)
    }

    async fn client_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        match &mut self.phase {
            Phase::Prelogin(core) => {
                let actions = core.feed(data);
                self.perform(actions, stats).await
            }
            Phase::Transaction => {
                self.client_framer.feed(data);
                self.drain_client(stats).await
            }
        }
    }

    async fn backend_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if !self.is_authenticated() {
            // Nothing was asked: a notice before the backend closes. The client is told when
            // the connection goes.
            tracing::debug!(
                side = "backend",
                octets = data.len(),
                "unsolicited backend bytes before login dropped"
            );
            return Ok(Flow::Continue);
        }
        self.backend_framer.feed(data);
        match self.drain_backend(stats).await? {
            Flow::Continue => self.drain_client(stats).await,
            flow => Ok(flow),
        }
    }

    async fn backend_closed(&mut self) -> Result<Flow, SessionError> {
        if !self.is_authenticated()
            || !self.pending.is_empty()
            || self.backend_framer.buffered() > 0
        {
            tracing::warn!(side = "backend", "backend closed the connection");
            let _ = write_client(
                &mut self.client,
                b"-ERR [SYS/TEMP] mail server closed the connection\r\n",
            )
            .await;
        }
        Ok(Flow::End(SessionEnd::BackendClosed))
    }

    async fn upgrade_tls(mut self) -> Result<Session, SessionError> {
        // Every byte pipelined after STLS was dropped by the core (RFC 2595 §4, CVE-2011-0411).
        self.client = upgrade_client(self.client, &self.context).await?;
        if let Phase::Prelogin(core) = &mut self.phase {
            core.tls_started();
        }
        tracing::debug!(
            version = self.client.tls_version(),
            "client upgraded to TLS"
        );
        Ok(self)
    }

    /// The last words to the client after a failure.
    async fn last_words(&mut self, error: &SessionError) -> bool {
        let text = match error {
            SessionError::ClientProtocol(reason) => format!("-ERR {reason}\r\n"),
            SessionError::BackendProtocol(_) | SessionError::BackendIo(_) => {
                "-ERR [SYS/TEMP] mail server connection failed\r\n".to_string()
            }
            _ => return false,
        };
        write_client(&mut self.client, text.as_bytes())
            .await
            .is_ok()
    }

    /// Handles every complete client line the pipeline limit allows.
    async fn drain_client(&mut self, stats: &mut SessionStats) -> Result<Flow, SessionError> {
        while self.wants_client() {
            let event = self
                .client_framer
                .next_event()
                .map_err(|e| client_violation(&e))?;
            let Some(Event::Line(line)) = event else {
                break;
            };
            let flow = self.on_command(&line, stats).await?;
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
        Ok(Flow::Continue)
    }

    /// A client command line in TRANSACTION: parsed, then forwarded canonically or refused.
    async fn on_command(
        &mut self,
        line: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let command = match Command::parse_transaction(line) {
            Ok(command) => command,
            Err(error) => {
                tracing::info!(%error, "client command refused");
                self.errors += 1;
                self.pending
                    .push_back(Pending::Local(Bytes::from(super::prelogin::refusal(
                        &error,
                    ))));
                return self.flush_local().await;
            }
        };
        let request = MessageRequest::of(&command);
        let forwarded = request.map_or_else(|| command.clone(), MessageRequest::forwarded);
        let line = forwarded.to_line();
        tracing::debug!(
            command = %String::from_utf8_lossy(&line).trim_end(),
            "client command"
        );
        let kind = match (&command, request) {
            (_, Some(request)) => Kind::Message(request),
            (Command::Capa, _) => Kind::Capa,
            (Command::Quit, _) => {
                self.halted = true;
                Kind::Quit
            }
            _ => Kind::Other,
        };
        self.backend_framer
            .expect(forwarded.expect())
            .map_err(|e| client_violation(&e))?;
        self.pending.push_back(Pending::Forwarded(kind));
        stats.bytes_up += line.len() as u64;
        write_backend(&mut self.backend, &line).await?;
        Ok(Flow::Continue)
    }

    /// Sends the proxy's own answers that are due (everything before the next forwarded one).
    async fn flush_local(&mut self) -> Result<Flow, SessionError> {
        while let Some(Pending::Local(reply)) = self.pending.front() {
            let reply = reply.clone();
            self.pending.pop_front();
            write_client(&mut self.client, &reply).await?;
        }
        Ok(Flow::Continue)
    }
}

impl crate::driver::ProtocolSession for Session {
    const NOTICES: crate::driver::Notices = crate::driver::Notices {
        timeout: b"-ERR [SYS/TEMP] autologout: idle for too long\r\n",
        shutdown: b"-ERR [SYS/TEMP] server shutting down\r\n",
        too_many_errors: super::prelogin::TOO_MANY_ERRORS,
    };
    const MIN_IDLE: Duration = MIN_IDLE;

    fn context(&self) -> &SessionContext {
        &self.context
    }

    fn streams(&mut self) -> (&mut Stream, &mut Stream) {
        (&mut self.client, &mut self.backend)
    }

    fn logged_in(&self) -> bool {
        self.is_authenticated()
    }

    fn wants_client(&self) -> bool {
        Session::wants_client(self)
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn errors(&self) -> u32 {
        self.errors
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn start_draining(&mut self) {
        self.draining = true;
    }

    async fn on_client_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        self.client_bytes(data, stats).await
    }

    async fn on_backend_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        self.backend_bytes(data, stats).await
    }

    async fn on_backend_closed(&mut self) -> Result<Flow, SessionError> {
        self.backend_closed().await
    }

    async fn upgrade(self) -> Result<Self, SessionError> {
        self.upgrade_tls().await
    }

    async fn farewell(&mut self, error: &SessionError) -> bool {
        self.last_words(error).await
    }
}

fn too_many_errors() -> SessionEnd {
    SessionEnd::Error(SessionError::ClientProtocol(
        "too many protocol errors".into(),
    ))
}

fn client_violation(error: &FrameError) -> SessionError {
    tracing::info!(%error, limit = error.limit().as_str(), "client framing error");
    SessionError::ClientProtocol(format!("[SYS/PERM] protocol error: {error}"))
}

fn backend_violation(error: &FrameError) -> SessionError {
    tracing::warn!(%error, limit = error.limit().as_str(), "backend framing error");
    SessionError::BackendProtocol(error.to_string())
}
