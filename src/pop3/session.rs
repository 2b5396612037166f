//! One POP3 client session (RFC 1939, RFC 2449 PIPELINING): the async driver of the sans-I/O
//! pieces.
//!
//! * Before login the proxy answers everything itself ([`super::prelogin`]); the client sees the
//!   backend's greeting (APOP timestamp intact, RFC 1939 §7), and no client byte reaches the
//!   backend: the driver logs in with commands the proxy serialises (`session_prelogin.rs`).
//!   STLS (RFC 2595 §4) drops every byte pipelined after it before the TLS handshake.
//! * After login the TRANSACTION core ([`super::transaction`], sans I/O) decides everything:
//!   parsing and canonical forwarding, the in-order answer queue, CAPA rewriting, RETR/TOP
//!   scanning and `max_pipeline` back-pressure; this shell performs its actions
//!   (`session_backend.rs`) and runs the scans it asks for.
//! * A client that goes away without QUIT never causes a QUIT upstream, so nothing is deleted.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::capa::{CapaPolicy, Capabilities};
use super::codec::{FrameError, Framer, Limits, Role};
use super::command::Pop3Dialect;
use super::prelogin::{Prelogin, PreloginConfig};
use super::transaction::{Action, Transaction, BACKEND_CLOSED};
use crate::context::SessionContext;
use crate::net::Stream;
use crate::session::{
    upgrade_client, write_backend, write_client, SessionEnd, SessionError, SessionStats,
};

/// The proxy's own greeting on a router listener: no APOP timestamp (RFC 1939 §7).
const ROUTED_GREETING: &[u8] = b"+OK portcullis ready\r\n";
/// What a router listener offers before login (the backend is not known yet): the logins the
/// proxy runs itself and the response codes it answers with.
const ROUTED_CAPABILITIES: &[u8] = b"USER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n";

/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(600);

use crate::driver::Flow;

/// AUTHORIZATION (answered by the proxy) or TRANSACTION (parsed, then forwarded).
#[derive(Debug)]
enum Phase {
    Prelogin(Box<Prelogin>),
    Transaction(Box<Transaction>),
}

#[path = "session_backend.rs"]
mod backend_side;
#[path = "session_prelogin.rs"]
mod prelogin_side;

/// Runs a session on an accepted (possibly already TLS) client stream.
pub async fn run(context: SessionContext, client: Stream) {
    let mut stats = SessionStats::default();
    let end = match Box::pin(Session::start(&context, client)).await {
        Ok(session) => crate::driver::drive(session, &mut stats).await,
        Err(end) => end,
    };
    stats.log_summary(&context, &end);
}

/// The state of one client connection and its backend connection.
pub struct Session {
    pub(super) context: SessionContext,
    client: Stream,
    /// The backend; on a router listener none until the login was routed.
    backend: Option<Stream>,
    /// The backend a router chose for the login in progress (router listeners).
    route: Option<String>,
    /// Logins so far (`Auth-Login-Attempt` of an http router).
    login_attempts: u32,
    /// The backend framer while logging in; it moves into the TRANSACTION core at login.
    backend_framer: Framer,
    phase: Phase,
    /// The backend's capabilities (pre-login, as the connector or the proxy's CAPA saw them).
    capabilities: Capabilities,
    draining: bool,
}

impl Session {
    async fn start(context: &SessionContext, mut client: Stream) -> Result<Session, SessionEnd> {
        if context.listener.routed() {
            return Session::start_routed(context, client).await;
        }
        let backend = crate::session::connect_or_refuse::<Pop3Dialect>(
            context,
            &mut client,
            "-ERR [SYS/TEMP]",
        )
        .await?;
        let mut session = Session::new(context, client, Some(backend.stream));
        session.backend_framer.feed(&backend.leftover);
        let capabilities = match backend.capabilities {
            Some(reply) => Capabilities::from_reply(Some(&reply)),
            None => session
                .backend_capabilities()
                .await
                .map_err(SessionEnd::Error)?,
        };
        session.enter_prelogin(capabilities);
        write_client(&mut session.client, &backend.greeting)
            .await
            .map_err(SessionEnd::Error)?;
        Ok(session)
    }

    /// A router listener: the proxy greets the client itself (no APOP timestamp: the backend
    /// is not known before the login) and connects a backend once the login names the user.
    async fn start_routed(context: &SessionContext, client: Stream) -> Result<Session, SessionEnd> {
        let mut session = Session::new(context, client, None);
        session.enter_prelogin(Capabilities::from_body(ROUTED_CAPABILITIES));
        write_client(&mut session.client, ROUTED_GREETING)
            .await
            .map_err(SessionEnd::Error)?;
        Ok(session)
    }

    fn new(context: &SessionContext, client: Stream, backend: Option<Stream>) -> Session {
        let limits = Limits::from_config(&context.listener.limits);
        Session {
            context: context.clone(),
            client,
            backend,
            route: None,
            login_attempts: 0,
            backend_framer: Framer::new(Role::Server, limits),
            phase: Phase::Prelogin(Box::new(Prelogin::new(PreloginConfig {
                capabilities: Capabilities::default(),
                policy: CapaPolicy::default(),
                max_errors: context.listener.limits.max_errors,
            }))),
            capabilities: Capabilities::default(),
            draining: false,
        }
    }

    /// The AUTHORIZATION state with `capabilities` as the client's CAPA is built from.
    fn enter_prelogin(&mut self, capabilities: Capabilities) {
        let (offer_stls, hide_login) = self.context.tls_gate(self.client.is_tls());
        self.capabilities = capabilities.clone();
        self.phase = Phase::Prelogin(Box::new(Prelogin::new(PreloginConfig {
            capabilities,
            policy: CapaPolicy {
                offer_stls,
                hide_login,
            },
            max_errors: self.context.listener.limits.max_errors,
        })));
    }

    /// Whether more client bytes may be read now (bounded back-pressure).
    fn wants_client(&self) -> bool {
        match &self.phase {
            Phase::Prelogin(core) => core.wants_input() && !self.draining,
            Phase::Transaction(core) => core.wants_client(),
        }
    }

    fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Transaction(_))
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
            Phase::Transaction(core) => {
                // The live policy: a reload applies to running sessions.
                core.set_scan_on_structure(
                    self.context.listener.scanner.policy().scan_on_structure,
                );
                let actions = core.client(data);
                self.act(actions, stats).await
            }
        }
    }

    async fn backend_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        match &mut self.phase {
            Phase::Prelogin(_) => {
                // Nothing was asked: a notice before the backend closes. The client is told
                // when the connection goes.
                tracing::debug!(
                    side = "backend",
                    octets = data.len(),
                    "unsolicited backend bytes before login dropped"
                );
                Ok(Flow::Continue)
            }
            Phase::Transaction(core) => {
                let actions = core.backend(data);
                self.act(actions, stats).await
            }
        }
    }

    async fn backend_closed(&mut self) -> Result<Flow, SessionError> {
        let actions = match &mut self.phase {
            Phase::Prelogin(_) => {
                tracing::warn!(side = "backend", "backend closed the connection");
                vec![Action::ToClient(Bytes::from_static(BACKEND_CLOSED))]
            }
            Phase::Transaction(core) => core.backend_closed(),
        };
        for action in actions {
            if let Action::ToClient(bytes) = action {
                let _ = write_client(&mut self.client, &bytes).await;
            }
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
}

impl crate::driver::ProtocolSession for Session {
    const NOTICES: crate::driver::Notices = crate::driver::Notices {
        timeout: b"-ERR [SYS/TEMP] autologout: idle for too long\r\n",
        shutdown: b"-ERR [SYS/TEMP] server shutting down\r\n",
        too_many_errors: super::prelogin::TOO_MANY_ERRORS,
        memory: b"-ERR [SYS/TEMP] server busy (memory), try again later\r\n",
    };
    const MIN_IDLE: Duration = MIN_IDLE;

    fn context(&self) -> &SessionContext {
        &self.context
    }

    fn streams(&mut self) -> (&mut Stream, Option<&mut Stream>) {
        (&mut self.client, self.backend.as_mut())
    }

    fn logged_in(&self) -> bool {
        self.is_authenticated()
    }

    fn wants_client(&self) -> bool {
        Session::wants_client(self)
    }

    fn demand(&self) -> crate::budget::Demand {
        let mut demand = match &self.phase {
            Phase::Prelogin(_) => crate::budget::Demand::default(),
            Phase::Transaction(core) => core.demand(),
        };
        demand.held += self.backend_framer.buffered() as u64;
        demand
    }

    fn is_idle(&self) -> bool {
        match &self.phase {
            Phase::Prelogin(_) => true,
            Phase::Transaction(core) => core.is_idle(),
        }
    }

    fn errors(&self) -> u32 {
        match &self.phase {
            Phase::Prelogin(_) => 0,
            Phase::Transaction(core) => core.errors(),
        }
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn start_draining(&mut self) {
        self.draining = true;
        if let Phase::Transaction(core) = &mut self.phase {
            core.start_draining();
        }
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
