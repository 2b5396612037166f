//! The AUTHORIZATION state (RFC 1939 §4, §7) answered by the proxy itself, sans I/O.
//!
//! No client byte reaches the backend before the client has authenticated: the proxy answers
//! `CAPA` (RFC 2449 §5, through [`super::capa`]), `STLS` (RFC 2595 §4: every byte pipelined after
//! it is discarded), `QUIT`, `USER`, `AUTH` without mechanism, and runs SASL PLAIN/LOGIN
//! exchanges itself (RFC 5034 §4, [`crate::sasl`]; `*` cancels). A complete login (`USER`+`PASS`,
//! `APOP`, a finished SASL exchange) becomes a [`LoginRequest`]; the driver logs in to the
//! backend with commands the proxy serialises ([`LoginRequest::plan`]) and reports the outcome
//! with [`Prelogin::login_result`]. While a login is outstanding no further client line is
//! read, so a line pipelined after `AUTH PLAIN <initial-response>` is a command of whichever
//! state the login leads to — never SASL data. `XCLIENT` is refused: the client address is
//! announced by the proxy alone. On a `require_tls` listener before TLS every login is refused
//! with `-ERR [AUTH]` (RFC 3206). Every other command gets `-ERR` and counts towards
//! `max_errors`.
//!
//! Input is bytes in any chunking ([`Prelogin::feed`]); output is a list of
//! [`PreloginAction`]s, the same for every chunking of the same bytes.

use super::capa::{CapaPolicy, Capabilities};
use super::codec::Expect;
use super::grammar::{Command, GrammarError, Secret, MAX_AUTH_LINE, MAX_LINE};
use crate::framing::InputBuffer;
use crate::sasl::{self, Credentials, Exchange, Mechanism, SaslError, Step, MECHANISMS};

/// The proxy's refusal of a login before TLS (RFC 2449 RESP-CODES, RFC 3206 `AUTH`).
pub const TLS_REQUIRED: &[u8] = b"-ERR [AUTH] TLS required: use STLS first\r\n";
/// The answer before closing a connection with too many bad commands.
pub const TOO_MANY_ERRORS: &[u8] = b"-ERR [SYS/PERM] too many errors\r\n";

/// A complete login the proxy performs on the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRequest {
    /// `USER` then `PASS`.
    UserPass(Credentials),
    /// `APOP name digest` (the digest is over the backend's own greeting timestamp).
    Apop {
        /// Mailbox name.
        user: String,
        /// Lower-case hex MD5 digest.
        digest: Secret,
    },
    /// A SASL exchange the proxy completed with the client.
    Sasl(Credentials),
}

/// One command of a backend login, in the order sent; each must be answered `+OK` before the
/// next is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCommand {
    /// The serialised line, CRLF included.
    pub line: Vec<u8>,
    /// The shape of its answer.
    pub expect: Expect,
}

/// Why a completed client login cannot be performed on this backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    /// An authorization identity, but the backend has no SASL PLAIN to carry it.
    #[error("authorization identity not supported")]
    Authzid,
    /// Credentials that do not fit a `USER`/`PASS` line.
    #[error("credentials not usable with this server")]
    Unserialisable,
}

impl LoginRequest {
    /// The login name.
    pub fn user(&self) -> &str {
        match self {
            LoginRequest::UserPass(c) | LoginRequest::Sasl(c) => &c.user,
            LoginRequest::Apop { user, .. } => user,
        }
    }

    /// The backend commands for this login: `USER`/`PASS`, `APOP`, or for SASL `AUTH PLAIN`
    /// with an initial response when the backend offers PLAIN, else `USER`/`PASS` (without an
    /// authorization identity only).
    pub fn plan(&self, backend: &Capabilities) -> Result<Vec<LoginCommand>, LoginRefused> {
        match self {
            LoginRequest::UserPass(credentials) => user_pass(credentials),
            LoginRequest::Apop { user, digest } => Ok(vec![single(Command::Apop {
                user: user.clone(),
                digest: digest.clone(),
            })]),
            LoginRequest::Sasl(credentials) if backend.sasl_plain() => {
                let line = format!("AUTH PLAIN {}\r\n", credentials.plain_response());
                Ok(vec![LoginCommand {
                    line: line.into_bytes(),
                    expect: Expect::Sasl,
                }])
            }
            LoginRequest::Sasl(credentials) if credentials.authzid.is_empty() => {
                user_pass(credentials)
            }
            LoginRequest::Sasl(_) => Err(LoginRefused::Authzid),
        }
    }
}

fn single(command: Command) -> LoginCommand {
    LoginCommand {
        line: command.to_line(),
        expect: Expect::SingleLine,
    }
}

/// `USER`/`PASS`, each re-parsed so that only a line the grammar accepts is ever sent.
fn user_pass(credentials: &Credentials) -> Result<Vec<LoginCommand>, LoginRefused> {
    let user = Command::User(credentials.user.clone()).to_line();
    let pass = Command::Pass(Secret(credentials.password.clone())).to_line();
    let valid = |line: &[u8], keyword: &str| {
        Command::parse(line).is_ok_and(|c| c.keyword() == keyword && c.to_line() == line)
    };
    if !valid(&user, "USER") || !valid(&pass, "PASS") {
        return Err(LoginRefused::Unserialisable);
    }
    Ok(vec![
        LoginCommand {
            line: user,
            expect: Expect::SingleLine,
        },
        LoginCommand {
            line: pass,
            expect: Expect::SingleLine,
        },
    ])
}

/// Why the proxy closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `QUIT`.
    Quit,
    /// `max_errors` bad commands.
    TooManyErrors,
    /// A line beyond every limit (framing is lost).
    LineTooLong,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreloginAction {
    /// Send these bytes to the client.
    ToClient(Vec<u8>),
    /// Upgrade the client stream to TLS, then call [`Prelogin::tls_started`].
    StartTls,
    /// Log in to the backend, then call [`Prelogin::login_result`].
    Login(LoginRequest),
    /// Logged in: switch to the TRANSACTION state; these client bytes were pipelined after the
    /// login and belong to it.
    Authenticated(Vec<u8>),
    /// A login was refused by policy (TLS required) without reaching the backend (counted
    /// as `refused`).
    LoginRefused,
    /// Close the connection.
    Close(CloseReason),
}

/// Where the AUTHORIZATION state is.
#[derive(Debug)]
enum Phase {
    /// Reading commands; `user` is the name a `USER` gave.
    Commands { user: Option<String> },
    /// Reading SASL response lines.
    Sasl(Exchange),
    /// A login is with the backend; client lines wait.
    AwaitingLogin,
    /// STLS accepted; input is discarded until the upgrade.
    AwaitingTls,
    /// Authenticated or closing: nothing more to do here.
    Finished,
}

/// What the pre-login core knows about its connection.
#[derive(Debug, Clone)]
pub struct PreloginConfig {
    /// The backend's capabilities as the connector learned them.
    pub capabilities: Capabilities,
    /// STLS offer and login hiding on the client side now.
    pub policy: CapaPolicy,
    /// Bad commands after which the connection is closed.
    pub max_errors: u32,
}

/// The pre-login state machine of one client connection.
#[derive(Debug)]
pub struct Prelogin {
    config: PreloginConfig,
    input: InputBuffer,
    phase: Phase,
    errors: u32,
}

impl Prelogin {
    /// A core in the AUTHORIZATION state (the greeting has been sent).
    pub fn new(config: PreloginConfig) -> Prelogin {
        Prelogin {
            config,
            input: InputBuffer::default(),
            phase: Phase::Commands { user: None },
            errors: 0,
        }
    }

    /// Bad commands so far (they count towards `max_errors` after login too).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Whether the driver should read client bytes now (not while a login or the TLS upgrade
    /// is outstanding, nor after the end).
    pub fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Commands { .. } | Phase::Sasl(_))
    }

    /// Takes client bytes; returns what to do.
    pub fn feed(&mut self, data: &[u8]) -> Vec<PreloginAction> {
        match self.phase {
            // RFC 2595 §4: plaintext after STLS is never interpreted.
            Phase::AwaitingTls | Phase::Finished => Vec::new(),
            Phase::AwaitingLogin => {
                self.input.feed(data);
                Vec::new()
            }
            Phase::Commands { .. } | Phase::Sasl(_) => {
                self.input.feed(data);
                let mut actions = Vec::new();
                self.run(&mut actions);
                actions
            }
        }
    }

    /// The backend's answer to the login: `reply` (its final line) is relayed; on success the
    /// session moves to TRANSACTION, otherwise it stays in AUTHORIZATION and the lines that
    /// waited are read as commands.
    pub fn login_result(&mut self, ok: bool, reply: &[u8]) -> Vec<PreloginAction> {
        if !matches!(self.phase, Phase::AwaitingLogin) {
            return Vec::new();
        }
        let mut actions = vec![PreloginAction::ToClient(reply.to_vec())];
        if ok {
            self.phase = Phase::Finished;
            let rest = self.input.take(self.input.len()).to_vec();
            actions.push(PreloginAction::Authenticated(rest));
        } else {
            self.phase = Phase::Commands { user: None };
            self.run(&mut actions);
        }
        actions
    }

    /// The client stream is TLS now: AUTHORIZATION starts afresh, STLS is no longer offered
    /// and logins are allowed.
    pub fn tls_started(&mut self) {
        if matches!(self.phase, Phase::AwaitingTls) {
            self.input.clear();
            self.config.policy = CapaPolicy::default();
            self.phase = Phase::Commands { user: None };
        }
    }

    /// Handles complete lines until the core has to wait.
    fn run(&mut self, actions: &mut Vec<PreloginAction>) {
        while self.wants_input() {
            let limit = match self.phase {
                Phase::Sasl(_) => sasl::MAX_RESPONSE + 2,
                _ => MAX_AUTH_LINE,
            };
            let end = match self.input.line_end(limit) {
                Ok(Some(end)) => end,
                Ok(None) => return,
                Err(_) => {
                    tracing::info!(limit, "client line too long before login");
                    actions.push(PreloginAction::ToClient(
                        b"-ERR [SYS/PERM] line too long\r\n".to_vec(),
                    ));
                    actions.push(PreloginAction::Close(CloseReason::LineTooLong));
                    self.phase = Phase::Finished;
                    return;
                }
            };
            let line = self.input.take(end);
            match std::mem::replace(&mut self.phase, Phase::Finished) {
                Phase::Sasl(exchange) => self.on_sasl_line(exchange, &line, actions),
                Phase::Commands { user } => self.on_command(user, &line, actions),
                other => self.phase = other,
            }
        }
    }

    /// One SASL response line (RFC 5034 §4): consumed here, never forwarded nor logged.
    fn on_sasl_line(&mut self, exchange: Exchange, line: &[u8], actions: &mut Vec<PreloginAction>) {
        tracing::trace!("client SASL response (hidden)");
        self.phase = Phase::Commands { user: None };
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        self.sasl_step(exchange.respond(body), actions);
    }

    fn on_command(&mut self, user: Option<String>, line: &[u8], actions: &mut Vec<PreloginAction>) {
        self.phase = Phase::Commands { user: user.clone() };
        let command = match Command::parse(line) {
            Ok(command) => command,
            Err(error) => return self.refuse(&error, actions),
        };
        tracing::debug!(command = command.keyword(), "client command (before login)");
        let is_login = matches!(
            command,
            Command::User(_) | Command::Pass(_) | Command::Apop { .. } | Command::Auth(_)
        );
        if is_login && self.config.policy.hide_login {
            tracing::info!(command = command.keyword(), "login before TLS refused");
            actions.push(PreloginAction::LoginRefused);
            return reply(actions, TLS_REQUIRED);
        }
        match command {
            Command::Capa => {
                let capa = &self.config.capabilities;
                let response =
                    capa.response(b"+OK Capability list follows\r\n", self.config.policy);
                actions.push(PreloginAction::ToClient(response));
            }
            Command::Stls => self.stls(actions),
            Command::Quit => {
                reply(actions, b"+OK Logging out\r\n");
                actions.push(PreloginAction::Close(CloseReason::Quit));
                self.phase = Phase::Finished;
            }
            Command::User(name) => {
                self.phase = Phase::Commands { user: Some(name) };
                reply(actions, b"+OK\r\n");
            }
            Command::Pass(password) => match user {
                Some(user) => {
                    let credentials = Credentials::new(user, password.0);
                    self.login(LoginRequest::UserPass(credentials), actions);
                }
                None => self.error(actions, b"-ERR No username given\r\n"),
            },
            Command::Apop { user, digest } => {
                self.login(LoginRequest::Apop { user, digest }, actions)
            }
            Command::Auth(None) => reply(actions, &self.mechanism_list()),
            Command::Auth(Some(start)) => self.auth(start.mechanism, start.initial, actions),
            _ => self.error(actions, b"-ERR not logged in\r\n"),
        }
    }

    fn stls(&mut self, actions: &mut Vec<PreloginAction>) {
        if !self.config.policy.offer_stls {
            return self.error(actions, b"-ERR STLS not available\r\n");
        }
        reply(actions, b"+OK Begin TLS negotiation\r\n");
        actions.push(PreloginAction::StartTls);
        // RFC 2595 §4 / CVE-2011-0411: nothing pipelined after STLS is ever read.
        self.input.clear();
        self.phase = Phase::AwaitingTls;
    }

    /// The multi-line answer to a bare `AUTH` (RFC 5034 §4): the mechanisms the proxy runs.
    fn mechanism_list(&self) -> Vec<u8> {
        let mut out = b"+OK\r\n".to_vec();
        if self.config.capabilities.proxy_sasl() {
            for mechanism in MECHANISMS {
                out.extend_from_slice(mechanism.name().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn auth(
        &mut self,
        mechanism: Mechanism,
        initial: Option<Secret>,
        actions: &mut Vec<PreloginAction>,
    ) {
        if !self.config.capabilities.proxy_sasl() {
            return self.error(actions, b"-ERR unsupported authentication mechanism\r\n");
        }
        let initial = initial.as_ref().map(|s| s.0.as_bytes());
        self.sasl_step(Exchange::start(mechanism, initial), actions);
    }

    fn sasl_step(
        &mut self,
        step: Result<(Exchange, Step), SaslError>,
        actions: &mut Vec<PreloginAction>,
    ) {
        match step {
            Ok((exchange, Step::Challenge(challenge))) => {
                reply(actions, format!("+ {challenge}\r\n").as_bytes());
                self.phase = Phase::Sasl(exchange);
            }
            Ok((_, Step::Done(credentials))) => {
                self.login(LoginRequest::Sasl(credentials), actions)
            }
            Err(SaslError::Cancelled) => reply(actions, b"-ERR authentication cancelled\r\n"),
            Err(error) => {
                tracing::info!(%error, "client SASL exchange failed");
                self.error(actions, format!("-ERR {error}\r\n").as_bytes());
            }
        }
    }

    fn login(&mut self, request: LoginRequest, actions: &mut Vec<PreloginAction>) {
        if let Err(refused) = request.plan(&self.config.capabilities) {
            tracing::info!(%refused, "login not possible on this backend");
            return reply(actions, format!("-ERR [AUTH] {refused}\r\n").as_bytes());
        }
        actions.push(PreloginAction::Login(request));
        self.phase = Phase::AwaitingLogin;
    }

    fn refuse(&mut self, error: &GrammarError, actions: &mut Vec<PreloginAction>) {
        tracing::info!(%error, "client command refused before login");
        self.error(actions, &refusal(error));
    }

    /// A `-ERR` that counts towards `max_errors`.
    fn error(&mut self, actions: &mut Vec<PreloginAction>, text: &[u8]) {
        reply(actions, text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            reply(actions, TOO_MANY_ERRORS);
            actions.push(PreloginAction::Close(CloseReason::TooManyErrors));
            self.phase = Phase::Finished;
        }
    }
}

/// The proxy's `-ERR` for a line that is not an acceptable command (before or after login).
pub fn refusal(error: &GrammarError) -> Vec<u8> {
    let text = match error {
        GrammarError::Xclient => "-ERR XCLIENT not permitted\r\n".to_string(),
        GrammarError::LineTooLong(_) => format!("-ERR line longer than {MAX_LINE} octets\r\n"),
        other => format!("-ERR {other}\r\n"),
    };
    text.into_bytes()
}

fn reply(actions: &mut Vec<PreloginAction>, bytes: &[u8]) {
    actions.push(PreloginAction::ToClient(bytes.to_vec()));
}

#[cfg(test)]
#[path = "prelogin_tests.rs"]
mod tests;
