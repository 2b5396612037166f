//! The pre-login half of a POP3 [`Session`]: performs what [`super::super::prelogin`] decides —
//! answers to the client, the STLS upgrade, and the backend login with commands the proxy
//! serialised (RFC 1939 §7 USER/PASS and APOP, RFC 5034 AUTH PLAIN with an initial response).
//! The backend learns nothing of the client before that login but its address (the
//! connector's own XCLIENT or PROXY header).

use super::super::codec::{Reply, Status};
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

    /// Logs in to the backend for the client: the auth penalty first, then the planned
    /// commands. Returns whether it worked and the backend's final line for the client.
    async fn backend_login(
        &mut self,
        request: &LoginRequest,
        stats: &mut SessionStats,
    ) -> Result<(bool, Vec<u8>), SessionError> {
        stats.set_user(request.user().to_string());
        self.context.penalty.delay(self.context.peer.ip()).await;
        let plan = match request.plan(&self.capabilities) {
            Ok(plan) => plan,
            Err(refused) => return Ok((false, format!("-ERR [AUTH] {refused}\r\n").into_bytes())),
        };
        let (ok, reply) = tokio::time::timeout(LOGIN_TIMEOUT, self.run_login(&plan, stats))
            .await
            .map_err(|_| SessionError::BackendIo(std::io::ErrorKind::TimedOut.into()))??;
        crate::session::record_auth(&self.context, ok);
        if ok {
            tracing::info!("login ok");
        } else {
            tracing::info!("login failed");
        }
        Ok((ok, reply))
    }

    /// Sends each command after the previous one was accepted; the first `-ERR` ends it. A SASL
    /// continuation (the backend wants more than the initial response) is cancelled with `*`.
    async fn run_login(
        &mut self,
        plan: &[LoginCommand],
        stats: &mut SessionStats,
    ) -> Result<(bool, Vec<u8>), SessionError> {
        let mut last = Vec::new();
        for command in plan {
            self.backend_framer
                .expect(command.expect)
                .map_err(|e| backend_violation(&e))?;
            stats.bytes_up += command.line.len() as u64;
            write_backend(&mut self.backend, &command.line).await?;
            let mut reply = self.backend_reply().await?;
            if reply.status == Status::Continue {
                write_backend(&mut self.backend, b"*\r\n").await?;
                reply = self.backend_reply().await?;
                if reply.status == Status::Continue {
                    return Err(SessionError::BackendProtocol(
                        "SASL continuation after cancel".into(),
                    ));
                }
            }
            if reply.status != Status::Ok {
                return Ok((false, reply.line.to_vec()));
            }
            last = reply.line.to_vec();
        }
        Ok((!last.is_empty(), last))
    }

    /// The backend's answer line to the command just sent.
    async fn backend_reply(&mut self) -> Result<Reply, SessionError> {
        let mut buffer = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        loop {
            match self
                .backend_framer
                .next_event()
                .map_err(|e| backend_violation(&e))?
            {
                Some(Event::Reply(reply)) if reply.answered.is_some() => return Ok(reply),
                Some(_) => {
                    return Err(SessionError::BackendProtocol(
                        "unexpected response during login".into(),
                    ))
                }
                None => {}
            }
            let n = read_backend_by(&mut self.backend, &mut buffer, deadline).await?;
            self.backend_framer.feed(&buffer[..n]);
        }
    }

    /// Asks the backend's capabilities with the proxy's own CAPA (before any client byte) when
    /// the connector did not; a backend without CAPA (`-ERR`) is assumed to offer USER.
    pub(super) async fn backend_capabilities(&mut self) -> Result<Capabilities, SessionError> {
        self.backend_framer
            .expect(Command::Capa.expect())
            .map_err(|e| backend_violation(&e))?;
        write_backend(&mut self.backend, &Command::Capa.to_line()).await?;
        let mut buffer = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        loop {
            match self
                .backend_framer
                .next_event()
                .map_err(|e| backend_violation(&e))?
            {
                Some(Event::MultiLine(response)) => {
                    return Ok(Capabilities::from_body(&response.body()))
                }
                Some(Event::Reply(_)) => return Ok(Capabilities::from_reply(None)),
                Some(Event::Line(_)) => {
                    return Err(SessionError::BackendProtocol("bad CAPA response".into()))
                }
                None => {}
            }
            let n = read_backend_by(&mut self.backend, &mut buffer, deadline).await?;
            self.backend_framer.feed(&buffer[..n]);
        }
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
