//! One POP3 client session: the backend's greeting (APOP timestamp intact, RFC 1939 §7), then an
//! in-order relay between client and backend (RFC 1939, RFC 2449 PIPELINING):
//! * CAPA responses are rewritten ([`super::capa`]);
//! * STLS (RFC 2595 §4) is answered by the proxy once every earlier command is answered; every
//!   byte the client pipelined after it is dropped with the old framer before the TLS handshake;
//! * before TLS on a `require_tls` listener USER/PASS/APOP/AUTH get `-ERR [AUTH]` (RFC 3206)
//!   and are never forwarded;
//! * AUTH exchanges (RFC 5034) switch the client side to SASL lines, which are never parsed as
//!   commands nor logged;
//! * RETR/TOP responses are scanned as one complete unit ([`super::scanning`]);
//! * a client that goes away without QUIT never causes a QUIT upstream, so nothing is deleted.
//!
//! Commands answered by the proxy and forwarded commands share one FIFO, so every client sees
//! its answers in command order. When `max_pipeline` answers are outstanding the client is not
//! read any more until the backend catches up (bounded back-pressure).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::capa::{self, CapaPolicy};
use super::codec::{Event, Expect, FrameError, Framer, Limits, MultiLine, Reply, Role, Status};
use super::command::{Command, Pop3Dialect};
use super::scanning::MessageRequest;
use crate::net::Stream;
use crate::sasl::plain_authcid;
use crate::server::SessionContext;
use crate::session::{
    next_input, upgrade_client, write_backend, write_client, Input, Redacted, Relay, SessionEnd,
    SessionError, SessionStats,
};

/// Read buffer size per direction.
const READ_BUFFER: usize = 64 * 1024;
/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(600);
/// Longest the proxy waits for a client to take its closing bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The proxy's refusal of a login before TLS (RFC 2449 RESP-CODES, RFC 3206 `AUTH`).
const TLS_REQUIRED: &[u8] = b"-ERR [AUTH] TLS required: use STLS first\r\n";

/// What a forwarded command means when its answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Capa,
    AuthList,
    /// RETR or TOP n m (m > 0, forwarded as RETR): a message to scan.
    Message(MessageRequest),
    /// USER (does not log in by itself).
    User,
    /// PASS or APOP.
    Login,
    Auth,
    Quit,
    Other,
}

/// One entry of the in-order answer queue.
#[derive(Debug)]
enum Pending {
    /// Sent to the backend; its answer is relayed.
    Forwarded(Kind),
    /// Answered by the proxy itself.
    Local(&'static [u8]),
    /// STLS accepted: answer, then upgrade.
    Stls,
}

/// What the relay loop does next.
enum Flow {
    Continue,
    StartTls,
    End(SessionEnd),
}

#[path = "session_backend.rs"]
mod backend_side;

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
    /// Client lines are SASL responses.
    sasl: bool,
    /// The next SASL line is a PLAIN message (its authcid names the user).
    plain_next: bool,
    /// STLS or QUIT accepted: no further client command is read.
    halted: bool,
    authenticated: bool,
    draining: bool,
    last_activity: Instant,
    /// `-ERR` answers to non-login commands so far; `max_errors` ends the session.
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
        let mut session = Session {
            context: context.clone(),
            client,
            backend: backend.stream,
            client_framer: Framer::new(Role::Client, limits),
            backend_framer: Framer::new(Role::Server, limits),
            pending: VecDeque::new(),
            sasl: false,
            plain_next: false,
            halted: false,
            authenticated: false,
            draining: false,
            last_activity: Instant::now(),
            errors: 0,
        };
        write_client(&mut session.client, &backend.greeting)
            .await
            .map_err(SessionEnd::Error)?;
        session.backend_framer.feed(&backend.leftover);
        Ok(session)
    }

    fn policy(&self) -> CapaPolicy {
        let (offer_stls, hide_login) = self.context.tls_gate(self.client.is_tls());
        CapaPolicy {
            offer_stls,
            hide_login,
        }
    }

    async fn run(mut self, stats: &mut SessionStats) -> SessionEnd {
        let mut client_buffer = vec![0u8; READ_BUFFER];
        let mut backend_buffer = vec![0u8; READ_BUFFER];
        // Bytes the connector read past the greeting are handled like any later response.
        let mut first = Some(self.drain_backend(stats).await);
        let end = loop {
            let flow = match first.take() {
                Some(flow) => flow,
                None => {
                    self.step(stats, &mut client_buffer, &mut backend_buffer)
                        .await
                }
            };
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
                crate::session::count_limit("max_errors");
                let _ =
                    write_client(&mut self.client, b"-ERR [SYS/PERM] too many errors\r\n").await;
                break SessionEnd::Error(SessionError::ClientProtocol(
                    "too many protocol errors".into(),
                ));
            }
            if self.draining && self.pending.is_empty() && !self.sasl {
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
        !self.halted
            && !self.draining
            && self.pending.len() < self.context.listener.limits.max_pipeline
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
                self.client_framer.feed(&client_buffer[..n]);
                self.drain_client(stats).await
            }
            Input::Backend(n) => {
                self.last_activity = Instant::now();
                self.backend_framer.feed(&backend_buffer[..n]);
                match self.drain_backend(stats).await? {
                    Flow::Continue => self.drain_client(stats).await,
                    flow => Ok(flow),
                }
            }
            Input::Deadline => {
                crate::session::count_limit(if self.authenticated {
                    "idle_timeout"
                } else {
                    "prelogin_timeout"
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

    fn timeout(&self) -> Duration {
        let limits = &self.context.listener.limits;
        if self.authenticated {
            limits.idle_timeout.max(MIN_IDLE)
        } else {
            limits.prelogin_timeout
        }
    }

    async fn backend_closed(&mut self) -> Result<Flow, SessionError> {
        if !self.pending.is_empty() || self.backend_framer.buffered() > 0 {
            tracing::warn!(
                side = "backend",
                "backend closed the connection mid-response"
            );
            let _ = write_client(
                &mut self.client,
                b"-ERR [SYS/TEMP] mail server closed the connection\r\n",
            )
            .await;
        }
        Ok(Flow::End(SessionEnd::BackendClosed))
    }

    async fn upgrade(mut self) -> Result<Session, SessionError> {
        // Every byte pipelined after STLS goes with the old framer (RFC 2595 §4, CVE-2011-0411).
        self.client_framer = Framer::new(
            Role::Client,
            Limits::from_config(&self.context.listener.limits),
        );
        self.client = upgrade_client(self.client, &self.context).await?;
        self.halted = false;
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
            let flow = if self.sasl {
                self.on_sasl_line(line, stats).await?
            } else {
                self.on_command(line, stats).await?
            };
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
        Ok(Flow::Continue)
    }

    /// A client SASL response (RFC 5034 §4): forwarded verbatim, never logged.
    async fn on_sasl_line(
        &mut self,
        line: Bytes,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        tracing::trace!(line = %Redacted::hidden(), "client SASL response");
        if std::mem::take(&mut self.plain_next) {
            if let Some(user) = std::str::from_utf8(&line).ok().and_then(plain_authcid) {
                stats.set_user(user);
            }
        }
        stats.bytes_up += line.len() as u64;
        write_backend(&mut self.backend, &line).await?;
        Ok(Flow::Continue)
    }

    /// A client command line.
    async fn on_command(
        &mut self,
        line: Bytes,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let command = Command::parse(&line);
        if command.is_secret() {
            // `Redacted` keeps two words, which for `PASS secret` would be the password.
            tracing::debug!(command = %command.name, "client command (arguments redacted)");
        } else {
            tracing::debug!(command = %Redacted::new(&line, false), "client command");
        }
        if command.name == "STLS" {
            if self.policy().offer_stls && !self.authenticated {
                self.halted = true;
                self.pending.push_back(Pending::Stls);
            } else {
                self.pending
                    .push_back(Pending::Local(b"-ERR STLS not available now\r\n"));
            }
            return self.flush_local().await;
        }
        if command.is_login() && self.policy().hide_login {
            tracing::info!(command = %command.name, "login before TLS refused");
            self.pending.push_back(Pending::Local(TLS_REQUIRED));
            return self.flush_local().await;
        }
        if command.is_login() && command.name != "USER" {
            self.context.penalty.delay(self.context.peer.ip()).await;
        }
        let request = super::scanning::message_request(&command.name, &command.args);
        let line = match request {
            Some(MessageRequest::Top(..)) => Bytes::from(format!(
                "RETR {}\r\n",
                command.args.split(' ').next().unwrap_or("")
            )),
            _ => line,
        };
        let expect = Expect::for_command(&line);
        let mut kind = self.classify(&command, expect, stats);
        if let Some(request) = request {
            kind = Kind::Message(request);
        }
        self.backend_framer
            .expect(expect)
            .map_err(|e| client_violation(&e))?;
        self.pending.push_back(Pending::Forwarded(kind));
        stats.bytes_up += line.len() as u64;
        write_backend(&mut self.backend, &line).await?;
        Ok(Flow::Continue)
    }

    /// Bookkeeping for a command about to be forwarded.
    fn classify(&mut self, command: &Command, expect: Expect, stats: &mut SessionStats) -> Kind {
        if let Some(user) = command.user() {
            stats.set_user(user);
        }
        match command.name.as_str() {
            "CAPA" => Kind::Capa,
            "AUTH" if expect == Expect::MultiLine => Kind::AuthList,
            "AUTH" => {
                self.sasl = true;
                self.client_framer.set_sasl(true);
                if let Some((mechanism, initial)) = command.auth() {
                    let plain = mechanism == "PLAIN";
                    match initial {
                        Some(initial) if plain => {
                            if let Some(user) = plain_authcid(&initial) {
                                stats.set_user(user);
                            }
                        }
                        None => self.plain_next = plain,
                        Some(_) => {}
                    }
                }
                Kind::Auth
            }
            "USER" => Kind::User,
            "PASS" | "APOP" => Kind::Login,
            "QUIT" => {
                self.halted = true;
                Kind::Quit
            }
            _ => Kind::Other,
        }
    }

    /// Sends the proxy's own answers that are due (everything before the next forwarded one).
    async fn flush_local(&mut self) -> Result<Flow, SessionError> {
        while let Some(front) = self.pending.front() {
            match front {
                Pending::Forwarded(_) => break,
                Pending::Local(reply) => {
                    let reply = *reply;
                    self.pending.pop_front();
                    write_client(&mut self.client, reply).await?;
                }
                Pending::Stls => {
                    self.pending.pop_front();
                    write_client(&mut self.client, b"+OK Begin TLS negotiation\r\n").await?;
                    return Ok(Flow::StartTls);
                }
            }
        }
        Ok(Flow::Continue)
    }
}

/// Ends the client connection cleanly (TLS close_notify, TCP FIN), bounded in time.
async fn close_client(client: &mut Stream) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.shutdown()).await;
}

fn client_violation(error: &FrameError) -> SessionError {
    tracing::info!(%error, limit = error.limit_label(), "client framing error");
    SessionError::ClientProtocol(format!("[SYS/PERM] protocol error: {error}"))
}

fn backend_violation(error: &FrameError) -> SessionError {
    tracing::warn!(%error, limit = error.limit_label(), "backend framing error");
    SessionError::BackendProtocol(error.to_string())
}
