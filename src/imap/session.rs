//! One IMAP client session (RFC 9051 / RFC 3501), in two phases ([`Phase`]):
//! * **pre-login** is the proxy's own ([`super::prelogin`]): greeting, CAPABILITY, NOOP, ID,
//!   LOGOUT, STARTTLS (RFC 2595 §3.1: pipelined bytes dropped), LOGIN and AUTHENTICATE are
//!   answered by the proxy, which then logs in to the backend itself ([`super::login`]); no
//!   client byte reaches the backend before that;
//! * **logged in**: every client command is assembled completely ([`super::assembler`]),
//!   parsed by the grammar ([`super::grammar`]) and forwarded in its canonical form, or refused
//!   by the proxy and never forwarded; responses are rewritten and FETCH results scanned. All
//!   of that is the sans-I/O core [`super::relay`]; this shell feeds it bytes and answers and
//!   performs its actions (writes, scans, cache look-ups), as POP3's shell does.

use super::capability::{self, CapabilityPolicy};
use super::codec::{Event, FrameError, Framer, Limits, Role};
use super::command::{ImapDialect, Status};
use super::prelogin::{self, PreLogin};
use super::relay::Relay;
use crate::context::SessionContext;
use crate::metrics::{Limit, LoginOutcome};
use crate::net::Stream;
use crate::session::{
    connect_or_refuse, count_limit, count_login, upgrade_client, write_client, SessionEnd,
    SessionError, SessionStats,
};

/// The proxy's own greeting on a router listener (capabilities rewritten by the policy).
const ROUTED_GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1] portcullis ready\r\n";
/// The capabilities a router listener shows before login: the backend is not known yet.
pub(super) const ROUTED_CAPABILITIES: &str = "IMAP4rev1";

/// Most commands a client may have in flight at once.
pub(super) const MAX_PENDING: usize = 1024;
/// The shortest idle timeout an authenticated IMAP session gets (RFC 9051 §5.4).
const MIN_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The phase of the connection.
pub(super) enum Phase {
    /// The proxy answers the client itself; the backend has seen no client byte.
    PreLogin(Box<PreLogin>),
    /// Logged in (or PREAUTH): parsed commands are forwarded.
    LoggedIn,
}

pub(super) use crate::driver::Flow;

/// Runs a session on an accepted (possibly already TLS) client stream.
pub async fn run(context: SessionContext, client: Stream) {
    let mut stats = SessionStats::default();
    let end = match Box::pin(Session::start(&context, client)).await {
        Ok(session) => crate::driver::drive(session, &mut stats).await,
        Err(end) => end,
    };
    stats.log_summary(&context, &end);
}

pub(super) struct Session {
    pub(super) context: SessionContext,
    pub(super) client: Stream,
    /// The backend; on a router listener none until the login command was routed.
    pub(super) backend: Option<Stream>,
    /// The backend a router chose for the login in progress (router listeners).
    pub(super) route: Option<String>,
    /// Login commands so far (`Auth-Login-Attempt` of an http router).
    pub(super) login_attempts: u32,
    pub(super) phase: Phase,
    /// The logged-in core (set when the phase becomes [`Phase::LoggedIn`]).
    pub(super) relay: Option<Box<Relay>>,
    /// The backend's framer until login (then the core's).
    pub(super) backend_framer: Framer,
    /// The backend's capability list before login (from the connector), for the client's.
    pub(super) backend_capabilities: String,
    /// The backend advertised LITERAL+ (RFC 7888).
    pub(super) backend_literal_plus: bool,
    /// The backend advertised SASL-IR (RFC 4959).
    pub(super) backend_sasl_ir: bool,
    /// Fragments of the backend response being assembled (before login).
    pub(super) response: super::assembler::ResponseAssembler,
    pub(super) draining: bool,
    /// While a literal waits for the backend's `+`: when that wait fails
    /// ([`crate::session::BACKEND_EXCHANGE_TIMEOUT`] after the last piece sent).
    pub(super) continuation_deadline: Option<tokio::time::Instant>,
    /// Protocol errors before login and the shell's own (BAD answers); the core counts its own.
    pub(super) errors: u32,
}

impl Session {
    fn new(
        context: &SessionContext,
        client: Stream,
        backend: Option<Stream>,
        list: String,
    ) -> Self {
        let mut session = Session {
            context: context.clone(),
            client,
            backend,
            route: None,
            login_attempts: 0,
            phase: Phase::LoggedIn,
            relay: None,
            backend_framer: Framer::new(Role::Server, backend_limits(context)),
            backend_capabilities: list.clone(),
            backend_literal_plus: false,
            backend_sasl_ir: false,
            response: super::assembler::ResponseAssembler::new(
                context
                    .listener
                    .limits
                    .max_backend_literal
                    .saturating_mul(2),
            ),
            continuation_deadline: None,
            draining: false,
            errors: 0,
        };
        session.note_capability_list(&list);
        session
    }

    async fn start(context: &SessionContext, mut client: Stream) -> Result<Session, SessionEnd> {
        if context.listener.routed() {
            return Session::start_routed(context, client).await;
        }
        let backend =
            connect_or_refuse::<ImapDialect>(context, &mut client, "* BYE [UNAVAILABLE]").await?;
        let list = backend_list_of(&backend);
        let mut session = Session::new(context, client, Some(backend.stream), list.clone());
        let preauthenticated =
            Status::parse(&backend.greeting).is_some_and(|s| s.condition == "PREAUTH");
        if preauthenticated && session.policy().login_disabled {
            let _ = write_client(
                &mut session.client,
                b"* BYE [UNAVAILABLE] mail server misconfigured\r\n",
            )
            .await;
            return Err(SessionEnd::BackendClosed);
        }
        if !preauthenticated {
            let settings = session.prelogin_settings();
            session.phase =
                Phase::PreLogin(Box::new(PreLogin::new(settings, client_limits(context))));
        }
        let greeting = capability::greeting_with(&backend.greeting, Some(&list), session.policy());
        write_client(&mut session.client, &greeting)
            .await
            .map_err(SessionEnd::Error)?;
        session.backend_framer.feed(&backend.leftover);
        if preauthenticated {
            let framer = Framer::new(Role::Client, client_limits(context));
            session.enter_relay(framer, None);
        }
        Ok(session)
    }

    /// A router listener: the proxy greets the client itself and connects a backend once the
    /// login command names the user ([`crate::routing::session`]).
    async fn start_routed(context: &SessionContext, client: Stream) -> Result<Session, SessionEnd> {
        let mut session = Session::new(context, client, None, ROUTED_CAPABILITIES.into());
        let settings = session.prelogin_settings();
        session.phase = Phase::PreLogin(Box::new(PreLogin::new(settings, client_limits(context))));
        let greeting = capability::greeting_with(ROUTED_GREETING, None, session.policy());
        write_client(&mut session.client, &greeting)
            .await
            .map_err(SessionEnd::Error)?;
        Ok(session)
    }

    /// Whether the client has logged in (or the backend greeted with PREAUTH).
    pub(super) fn logged_in(&self) -> bool {
        matches!(self.phase, Phase::LoggedIn)
    }

    /// What the pre-login core offers the client right now.
    fn prelogin_settings(&self) -> prelogin::Settings {
        let policy = CapabilityPolicy {
            pre_login: true,
            ..self.policy()
        };
        prelogin::Settings {
            offer_starttls: policy.offer_starttls,
            login_disabled: policy.login_disabled,
            capabilities: capability::rewrite_list(&self.backend_capabilities, policy),
        }
    }

    /// The capability policy for the client's side: STARTTLS/LOGINDISABLED from the TLS gate
    /// (RFC 2595 §3.1), the proxy's own SASL mechanisms before login.
    pub(super) fn policy(&self) -> CapabilityPolicy {
        let (offer_starttls, login_disabled) = self.context.tls_gate(self.client.is_tls());
        CapabilityPolicy {
            offer_starttls,
            login_disabled,
            pre_login: !self.logged_in(),
        }
    }

    /// No command in flight and no partial command buffered.
    fn nothing_in_flight(&self) -> bool {
        let client_idle = match &self.phase {
            Phase::PreLogin(core) => core.is_idle(),
            Phase::LoggedIn => self.relay.as_ref().is_none_or(|relay| relay.is_idle()),
        };
        client_idle && self.response.is_empty()
    }

    /// STARTTLS (pre-login only): every byte pipelined after it is dropped (CVE-2011-0411).
    async fn upgrade_tls(mut self) -> Result<Session, SessionError> {
        self.client = upgrade_client(self.client, &self.context).await?;
        tracing::debug!(
            version = self.client.tls_version(),
            "client upgraded to TLS"
        );
        let settings = self.prelogin_settings();
        if let Phase::PreLogin(core) = &mut self.phase {
            core.tls_started(settings);
        }
        Ok(self)
    }

    /// Runs the pre-login core on buffered client bytes and performs its actions.
    async fn drive_prelogin(&mut self, stats: &mut SessionStats) -> Result<Flow, SessionError> {
        loop {
            let Phase::PreLogin(core) = &mut self.phase else {
                return self.relay_client(&[], stats).await;
            };
            let actions = core.poll().map_err(|e| prelogin_violation(&e))?;
            if actions.is_empty() {
                return Ok(Flow::Continue);
            }
            for action in actions {
                match action {
                    prelogin::Action::ToClient(bytes) => self.reply_bytes(&bytes).await?,
                    prelogin::Action::StartTls => return Ok(Flow::StartTls),
                    prelogin::Action::Logout => return Ok(Flow::End(SessionEnd::Logout)),
                    prelogin::Action::LoginRefused => {
                        count_login(&self.context, LoginOutcome::Refused)
                    }
                    prelogin::Action::Login { tag, credentials } => {
                        self.login(&tag, credentials, stats).await?
                    }
                }
            }
        }
    }

    /// Logs in to the backend; on success the connection enters the logged-in phase with
    /// whatever the client pipelined after its login command.
    async fn login(
        &mut self,
        tag: &str,
        credentials: crate::sasl::Credentials,
        stats: &mut SessionStats,
    ) -> Result<(), SessionError> {
        let ok = self.backend_login(tag, credentials, stats).await?;
        match std::mem::replace(&mut self.phase, Phase::LoggedIn) {
            Phase::PreLogin(core) if ok => self.enter_relay(core.into_framer(), stats.user.clone()),
            Phase::PreLogin(mut core) => {
                core.login_failed();
                self.phase = Phase::PreLogin(core);
            }
            Phase::LoggedIn => {}
        }
        Ok(())
    }

    /// Backend output before login answers nothing the client sent: it is logged, not relayed.
    fn discard_backend_before_login(&mut self) -> Result<Flow, SessionError> {
        while let Some(response) = self.next_backend_response()? {
            if let Some(Event::Line { bytes, .. }) = response.first() {
                tracing::debug!(line = %crate::backend::printable(bytes), "backend output before login dropped");
            }
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn reply(&mut self, text: &str) -> Result<(), SessionError> {
        self.reply_bytes(text.as_bytes()).await
    }

    /// Sends the proxy's own answer; every `BAD` counts towards `max_errors`.
    pub(super) async fn reply_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.errors += bytes
            .split(|&b| b == b'\n')
            .filter(|line| line.split(|&b| b == b' ').nth(1) == Some(b"BAD"))
            .count() as u32;
        write_client(&mut self.client, bytes).await
    }
}

/// The capability list a backend connection announced: asked over TLS on the STARTTLS path,
/// else the greeting's `[CAPABILITY …]` code, else plain IMAP4rev1.
pub(super) fn backend_list_of(backend: &crate::backend::BackendConn) -> String {
    backend
        .capabilities
        .as_deref()
        .and_then(capability::list_from_reply)
        .or_else(|| capability::list_from_code(&backend.greeting))
        .unwrap_or_else(|| "IMAP4rev1".into())
}

fn client_limits(context: &SessionContext) -> Limits {
    let limits = &context.listener.limits;
    Limits {
        max_line: limits.max_line,
        max_literal: limits.max_client_literal,
        max_nesting: limits.max_nesting,
    }
}

pub(super) fn backend_limits(context: &SessionContext) -> Limits {
    let limits = &context.listener.limits;
    Limits {
        max_line: limits.max_line,
        max_literal: limits.max_backend_literal,
        max_nesting: limits.max_nesting,
    }
}

impl crate::driver::ProtocolSession for Session {
    const NOTICES: crate::driver::Notices = crate::driver::Notices {
        timeout: b"* BYE Autologout; idle for too long\r\n",
        shutdown: b"* BYE [UNAVAILABLE] Server shutting down\r\n",
        too_many_errors: b"* BYE Too many protocol errors\r\n",
        memory: b"* BYE [UNAVAILABLE] Server busy (memory), try again later\r\n",
    };
    const MIN_IDLE: std::time::Duration = MIN_IDLE;

    fn context(&self) -> &SessionContext {
        &self.context
    }

    fn streams(&mut self) -> (&mut Stream, Option<&mut Stream>) {
        (&mut self.client, self.backend.as_mut())
    }

    fn logged_in(&self) -> bool {
        Session::logged_in(self)
    }

    fn wants_client(&self) -> bool {
        self.relay.as_ref().is_none_or(|relay| relay.wants_client())
    }

    fn demand(&self) -> crate::budget::Demand {
        let mut demand = match (&self.phase, &self.relay) {
            (Phase::LoggedIn, Some(relay)) => relay.demand(),
            (Phase::PreLogin(core), _) => crate::budget::Demand {
                held: core.buffered(),
                ..Default::default()
            },
            (Phase::LoggedIn, None) => crate::budget::Demand::default(),
        };
        demand.held += self.backend_framer.buffered() as u64 + self.response.held();
        demand
    }

    fn is_idle(&self) -> bool {
        self.nothing_in_flight()
    }

    fn exchange_deadline(&self) -> Option<tokio::time::Instant> {
        self.continuation_deadline
    }

    fn errors(&self) -> u32 {
        self.errors + self.relay.as_ref().map_or(0, |relay| relay.errors())
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn start_draining(&mut self) {
        self.draining = true;
        if let Some(relay) = &mut self.relay {
            relay.start_draining();
        }
    }

    async fn on_client_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        match &mut self.phase {
            Phase::PreLogin(core) => {
                core.feed(data);
                self.drive_prelogin(stats).await
            }
            Phase::LoggedIn => self.relay_client(data, stats).await,
        }
    }

    async fn on_backend_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        match (&self.phase, &mut self.relay) {
            (Phase::LoggedIn, Some(relay)) => {
                let actions = relay.backend(data);
                self.perform(actions, stats).await
            }
            _ => {
                self.backend_framer.feed(data);
                self.discard_backend_before_login()
            }
        }
    }

    async fn on_backend_closed(&mut self) -> Result<Flow, SessionError> {
        if self.continuation_deadline.is_some() {
            // As when the proxy reads the backend itself: the exchange failed.
            return Err(SessionError::BackendIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let _ = self
            .reply("* BYE [UNAVAILABLE] mail server closed the connection\r\n")
            .await;
        Ok(Flow::End(SessionEnd::BackendClosed))
    }

    async fn upgrade(self) -> Result<Self, SessionError> {
        self.upgrade_tls().await
    }

    async fn farewell(&mut self, error: &SessionError) -> bool {
        let text = match error {
            SessionError::ClientProtocol(reason) => format!("* BYE {reason}\r\n"),
            SessionError::BackendProtocol(_) | SessionError::BackendIo(_) => {
                "* BYE [UNAVAILABLE] mail server connection failed\r\n".into()
            }
            _ => return false,
        };
        write_client(&mut self.client, text.as_bytes())
            .await
            .is_ok()
    }
}

/// Largest complete client command after login: one of the largest literals (an APPEND
/// message; MULTIAPPEND is not offered) plus a few lines' worth of other arguments. A command is
/// held whole until it is parsed, so this is what one session can make the proxy buffer.
pub(super) fn max_command(context: &SessionContext) -> u64 {
    let limits = &context.listener.limits;
    limits
        .max_client_literal
        .saturating_add(4 * limits.max_line as u64)
}

fn prelogin_violation(error: &prelogin::PreLoginError) -> SessionError {
    match error {
        prelogin::PreLoginError::Frame(frame) => client_violation(frame),
        prelogin::PreLoginError::TooLarge(_) => {
            count_limit(Limit::LiteralSize);
            SessionError::ClientProtocol(format!("Protocol error: {error}"))
        }
    }
}

fn client_violation(error: &FrameError) -> SessionError {
    count_limit(error.limit());
    tracing::info!(%error, limit = error.limit().as_str(), "client framing error");
    SessionError::ClientProtocol(format!("Protocol error: {error}"))
}
