//! The pre-login half of a POP3 [`Session`]: performs what [`super::super::prelogin`] decides —
//! answers to the client, the STLS upgrade, and the backend login with commands the proxy
//! serialised (RFC 1939 §7 USER/PASS and APOP, RFC 5034 AUTH PLAIN with an initial response).
//! The backend learns nothing of the client before that login but its address (the
//! connector's own XCLIENT or PROXY header). The login and the proxy's own CAPA are the
//! sans-I/O cores of [`super::super::login`]; this only writes what they say and feeds them.

use super::super::login::{
    CapaExchange, CapaStep, ExchangeError, LoginExchange, LoginStep, CANCEL,
};
use super::super::prelogin::{CloseReason, LoginCommand, LoginRequest, PreloginAction};
use super::*;
use crate::session::{read_backend_by, BACKEND_EXCHANGE_TIMEOUT};

/// Longest a backend may take to answer a login (its own failure delay included).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

impl Session {
    /// Performs the core's actions in order, feeding login outcomes back.
    pub(super) async fn perform(
        &mut self,
        actions: Vec<PreloginAction>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let mut queue: VecDeque<PreloginAction> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                PreloginAction::ToClient(bytes) => write_client(&mut self.client, &bytes).await?,
                PreloginAction::StartTls => return Ok(Flow::StartTls),
                PreloginAction::Login(request) => {
                    let (ok, reply) = self.backend_login(&request, stats).await?;
                    if let Phase::Prelogin(core) = &mut self.phase {
                        queue.extend(core.login_result(ok, &reply));
                    }
                }
                PreloginAction::Authenticated(pipelined) => {
                    let errors = match &self.phase {
                        Phase::Prelogin(core) => core.errors(),
                        Phase::Transaction(core) => core.errors(),
                    };
                    let limits = Limits::from_config(&self.context.listener.limits);
                    let framer = std::mem::replace(
                        &mut self.backend_framer,
                        Framer::new(Role::Server, limits),
                    );
                    let mut core = Transaction::new(limits, framer, errors);
                    core.set_scan_on_structure(
                        self.context.listener.scanner.policy().scan_on_structure,
                    );
                    if self.draining {
                        core.start_draining();
                    }
                    let actions = core.client(&pipelined);
                    self.phase = Phase::Transaction(Box::new(core));
                    return self.act(actions, stats).await;
                }
                PreloginAction::LoginRefused => crate::session::count_login(
                    &self.context,
                    crate::metrics::LoginOutcome::Refused,
                ),
                PreloginAction::Close(reason) => return Ok(Flow::End(closed(reason))),
            }
        }
        Ok(Flow::Continue)
    }

    /// Logs in to the backend for the client: the auth penalty first, then (on a router
    /// listener) the route and its backend connection, then the planned commands. Returns
    /// whether it worked and the final line for the client.
    async fn backend_login(
        &mut self,
        request: &LoginRequest,
        stats: &mut SessionStats,
    ) -> Result<(bool, Vec<u8>), SessionError> {
        stats.set_user(request.user().to_string());
        self.context.penalty.delay(self.context.peer.ip()).await;
        let routed = self.backend.is_none() && self.context.listener.routed();
        let rewritten;
        let request = match routed {
            false => request,
            true => match self.route_login(request).await? {
                Ok(routed) => {
                    rewritten = routed;
                    &rewritten
                }
                Err(reply) => return Ok((false, reply)),
            },
        };
        let plan = match request.plan(&self.capabilities) {
            Ok(plan) => plan,
            Err(refused) => {
                self.forget_route();
                return Ok((false, format!("-ERR [AUTH] {refused}\r\n").into_bytes()));
            }
        };
        let (ok, reply) = self.run_login(plan, stats).await?;
        crate::session::record_auth(&self.context, ok);
        let backend = self
            .route
            .clone()
            .or_else(|| self.context.single_backend().map(str::to_string));
        if let Some(backend) = &backend {
            crate::routing::session::count_backend_login(backend, ok);
        }
        if ok {
            tracing::info!(route = backend.as_deref(), "login ok");
            stats.route = backend;
        } else {
            crate::login_log::login_failed(
                request.user(),
                self.context.peer.ip(),
                crate::config::Protocol::Pop3,
            );
            tracing::debug!(route = backend.as_deref(), "login failed");
            self.forget_route();
        }
        Ok((ok, reply))
    }

    /// Routes the login and connects its backend (its capabilities asked with CAPA when the
    /// connector did not): the login request for that backend, or the client's `-ERR`.
    async fn route_login(
        &mut self,
        request: &LoginRequest,
    ) -> Result<Result<LoginRequest, Vec<u8>>, SessionError> {
        use crate::routing::session::{connect_for_login, Refusal};
        let credentials = match request {
            LoginRequest::UserPass(c) | LoginRequest::Sasl(c) => c,
            LoginRequest::Apop { .. } => {
                crate::session::count_login(&self.context, crate::metrics::LoginOutcome::Refused);
                let reply = b"-ERR [AUTH] APOP is not available on this server\r\n";
                return Ok(Err(reply.to_vec()));
            }
        };
        self.login_attempts = self.login_attempts.saturating_add(1);
        let tls = self.client.is_tls();
        let attempt = self.login_attempts;
        let routed = match connect_for_login::<Pop3Dialect>(
            &self.context,
            credentials,
            attempt,
            tls,
        )
        .await
        {
            Ok(routed) => routed,
            Err(Refusal::AuthFailed(text)) => {
                return Ok(Err(format!("-ERR [AUTH] {text}\r\n").into_bytes()))
            }
            Err(Refusal::Unavailable(text)) => {
                return Ok(Err(format!("-ERR [SYS/TEMP] {text}\r\n").into_bytes()))
            }
        };
        let limits = Limits::from_config(&self.context.listener.limits);
        self.backend_framer = Framer::new(Role::Server, limits);
        self.backend_framer.feed(&routed.conn.leftover);
        self.backend = Some(routed.conn.stream);
        self.route = Some(routed.backend);
        self.capabilities = match routed.conn.capabilities {
            Some(reply) => Capabilities::from_reply(Some(&reply)),
            None => self.backend_capabilities().await?,
        };
        Ok(Ok(match request {
            LoginRequest::Sasl(_) => LoginRequest::Sasl(routed.credentials),
            _ => LoginRequest::UserPass(routed.credentials),
        }))
    }

    /// After a failed login on a router listener the next one is routed afresh.
    fn forget_route(&mut self) {
        if self.context.listener.routed() {
            self.backend = None;
            self.route = None;
        }
    }

    /// Performs the planned login through [`LoginExchange`] over the backend framer (given
    /// back afterwards, even on timeout, with later backend bytes still buffered).
    async fn run_login(
        &mut self,
        plan: Vec<LoginCommand>,
        stats: &mut SessionStats,
    ) -> Result<(bool, Vec<u8>), SessionError> {
        let mut exchange = LoginExchange::new(plan, self.take_backend_framer());
        let result = tokio::time::timeout(LOGIN_TIMEOUT, self.login_steps(&mut exchange, stats))
            .await
            .map_err(|_| SessionError::BackendIo(std::io::ErrorKind::TimedOut.into()));
        self.backend_framer = exchange.into_framer();
        result?
    }

    /// Writes what the login core says and feeds it backend bytes, each answer awaited for at
    /// most [`BACKEND_EXCHANGE_TIMEOUT`].
    async fn login_steps(
        &mut self,
        exchange: &mut LoginExchange,
        stats: &mut SessionStats,
    ) -> Result<(bool, Vec<u8>), SessionError> {
        let mut buffer = [0u8; 4096];
        let mut deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        loop {
            while let Some(step) = exchange.poll().map_err(|e| exchange_violation(&e))? {
                let bytes = match step {
                    LoginStep::Command(line) => {
                        stats.bytes_up += line.len() as u64;
                        line
                    }
                    LoginStep::Cancel => CANCEL.to_vec(),
                    LoginStep::Done { ok, reply } => return Ok((ok, reply)),
                };
                write_backend(crate::session::connected(&mut self.backend)?, &bytes).await?;
                deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
            }
            let n = read_backend_by(
                crate::session::connected(&mut self.backend)?,
                &mut buffer,
                deadline,
            )
            .await?;
            exchange.feed(&buffer[..n]);
        }
    }

    /// Asks the backend's capabilities with the proxy's own CAPA (before any client byte) when
    /// the connector did not; a backend without CAPA (`-ERR`) is assumed to offer USER.
    pub(super) async fn backend_capabilities(&mut self) -> Result<Capabilities, SessionError> {
        let mut exchange = CapaExchange::new(self.take_backend_framer());
        let result = self.capa_steps(&mut exchange).await;
        self.backend_framer = exchange.into_framer();
        result
    }

    async fn capa_steps(
        &mut self,
        exchange: &mut CapaExchange,
    ) -> Result<Capabilities, SessionError> {
        let mut buffer = [0u8; 4096];
        let mut deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        loop {
            while let Some(step) = exchange.poll().map_err(|e| exchange_violation(&e))? {
                match step {
                    CapaStep::Send(line) => {
                        write_backend(crate::session::connected(&mut self.backend)?, &line).await?
                    }
                    CapaStep::Done(capabilities) => return Ok(capabilities),
                }
                deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
            }
            let n = read_backend_by(
                crate::session::connected(&mut self.backend)?,
                &mut buffer,
                deadline,
            )
            .await?;
            exchange.feed(&buffer[..n]);
        }
    }

    /// The backend framer, for an exchange core to own while it runs.
    fn take_backend_framer(&mut self) -> Framer {
        let limits = Limits::from_config(&self.context.listener.limits);
        std::mem::replace(&mut self.backend_framer, Framer::new(Role::Server, limits))
    }
}

/// The session error for a backend that broke an exchange the proxy runs itself.
fn exchange_violation(error: &ExchangeError) -> SessionError {
    match error {
        ExchangeError::Frame(frame) => backend_violation(frame),
        other => SessionError::BackendProtocol(other.to_string()),
    }
}

/// How the session ends when the core closes it.
fn closed(reason: CloseReason) -> SessionEnd {
    match reason {
        CloseReason::Quit => SessionEnd::Logout,
        CloseReason::TooManyErrors => {
            crate::session::count_limit(crate::metrics::Limit::MaxErrors);
            too_many_errors()
        }
        CloseReason::LineTooLong => {
            crate::session::count_limit(crate::metrics::Limit::LineLength);
            SessionEnd::Error(SessionError::ClientProtocol("line too long".into()))
        }
    }
}
