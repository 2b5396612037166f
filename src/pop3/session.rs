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
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::capa::{CapaPolicy, Capabilities};
use super::codec::{Event, FrameError, Framer, Limits, Role};
use super::command::Pop3Dialect;
use super::grammar::Command;
use super::prelogin::{Prelogin, PreloginConfig};
use super::scanning::MessageRequest;
use crate::context::SessionContext;
use crate::net::Stream;
use crate::session::{
    next_input, upgrade_client, write_backend, write_client, Input, Relay, SessionEnd,
    SessionError, SessionStats,
};

/// Read buffer size per direction.
const READ_BUFFER: usize = 64 * 1024;
/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(600);
/// Longest the proxy waits for a client to take its closing bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a forwarded command means when its answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Capa,
    /// RETR or TOP n m (m > 0, forwarded as RETR): a message to scan.
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

/// What the relay loop does next.
enum Flow {
    Continue,
    StartTls,
    End(SessionEnd),
}

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
        Ok(session) => session.run(&mut stats).await,
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
    last_activity: Instant,
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
            last_activity: Instant::now(),
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

    async fn run(mut self, stats: &mut SessionStats) -> SessionEnd {
        let mut client_buffer = vec![0u8; READ_BUFFER];
        let mut backend_buffer = vec![0u8; READ_BUFFER];
        let end = loop {
            let flow = self
                .step(stats, &mut client_buffer, &mut backend_buffer)
                .await;
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::StartTls) => match self.upgrade().await {
                    Ok(upgraded) => self = upgraded,
                    Err(error) => return SessionEnd::Error(error),
                },
                Ok(Flow::End(end)) => break end,
                Err(error) => {
                    self.farewell(&error).await;
                    break SessionEnd::Error(error);
                }
            }
            if self.errors >= self.context.listener.limits.max_errors && self.pending.is_empty() {
                crate::session::count_limit(crate::metrics::Limit::MaxErrors);
                let _ = write_client(&mut self.client, super::prelogin::TOO_MANY_ERRORS).await;
                break too_many_errors();
            }
            if self.draining && self.pending.is_empty() {
                let _ = write_client(
                    &mut self.client,
                    b"-ERR [SYS/TEMP] server shutting down\r\n",
                )
                .await;
                break SessionEnd::Shutdown;
            }
        };
        close_client(&mut self.client).await;
        end
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

    /// Waits for one input (client bytes, backend bytes, shutdown, timeout) and handles it.
    async fn step(
        &mut self,
        stats: &mut SessionStats,
        client_buffer: &mut [u8],
        backend_buffer: &mut [u8],
    ) -> Result<Flow, SessionError> {
        let deadline = self.last_activity + self.timeout();
        let wants_client = self.wants_client();
        let relay = Relay {
            client: &mut self.client,
            backend: &mut self.backend,
            client_buffer,
            backend_buffer,
        };
        let input = next_input(
            relay,
            &self.context.shutdown,
            self.draining,
            wants_client,
            deadline,
        )
        .await?;
        match input {
            Input::Shutdown => {
                self.draining = true;
                Ok(Flow::Continue)
            }
            Input::ClientClosed => Ok(Flow::End(SessionEnd::ClientClosed)),
            Input::BackendClosed => self.backend_closed().await,
            Input::Client(n) => {
                self.last_activity = Instant::now();
                self.on_client_bytes(&client_buffer[..n], stats).await
            }
            Input::Backend(n) => {
                self.last_activity = Instant::now();
                self.on_backend_bytes(&backend_buffer[..n], stats).await
            }
            Input::Deadline => {
                crate::session::count_limit(if self.is_authenticated() {
                    crate::metrics::Limit::IdleTimeout
                } else {
                    crate::metrics::Limit::PreloginTimeout
                });
                let _ = write_client(
                    &mut self.client,
                    b"-ERR [SYS/TEMP] autologout: idle for too long\r\n",
                )
                .await;
                Ok(Flow::End(SessionEnd::Timeout))
            }
        }
    }

    fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Transaction)
    }

    fn timeout(&self) -> Duration {
        let limits = &self.context.listener.limits;
        if self.is_authenticated() {
            limits.idle_timeout.max(MIN_IDLE)
        } else {
            limits.prelogin_timeout
        }
    }

    async fn on_client_bytes(
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

    async fn on_backend_bytes(
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

    async fn upgrade(mut self) -> Result<Session, SessionError> {
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
    async fn farewell(&mut self, error: &SessionError) {
        let text = match error {
            SessionError::ClientProtocol(reason) => format!("-ERR {reason}\r\n"),
            SessionError::BackendProtocol(_) | SessionError::BackendIo(_) => {
                "-ERR [SYS/TEMP] mail server connection failed\r\n".to_string()
            }
            _ => return,
        };
        let _ = write_client(&mut self.client, text.as_bytes()).await;
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

fn too_many_errors() -> SessionEnd {
    SessionEnd::Error(SessionError::ClientProtocol(
        "too many protocol errors".into(),
    ))
}

/// Ends the client connection cleanly (TLS close_notify, TCP FIN), bounded in time.
async fn close_client(client: &mut Stream) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.shutdown()).await;
}

fn client_violation(error: &FrameError) -> SessionError {
    tracing::info!(%error, limit = error.limit().as_str(), "client framing error");
    SessionError::ClientProtocol(format!("[SYS/PERM] protocol error: {error}"))
}

fn backend_violation(error: &FrameError) -> SessionError {
    tracing::warn!(%error, limit = error.limit().as_str(), "backend framing error");
    SessionError::BackendProtocol(error.to_string())
}
