//! The proxy's own login to the backend (the backend half of [`super::prelogin`]), sans I/O:
//! from the credentials the client gave the proxy, [`LoginExchange`] builds `LOGIN`
//! (RFC 9051 §6.2.3) — or `AUTHENTICATE PLAIN` (RFC 9051 §6.2.2, RFC 4616, with an initial
//! response per RFC 4959 SASL-IR when the backend offers it) when the client named an
//! authorization identity — under the proxy's own tag, hands out the next piece whenever the
//! backend answers `+` (synchronizing literals without LITERAL+, an AUTHENTICATE without
//! SASL-IR), relays untagged responses rewritten, and gives the outcome back under the client's
//! tag with capabilities rewritten. The client's bytes never reach the backend.
//!
//! The core sees only complete backend responses and returns [`LoginStep`]s; the async shell
//! (`Session::backend_login`) writes what it is told, records the capability lists the core
//! reports, and feeds it the next response until [`LoginStep::Done`], all under
//! `BACKEND_EXCHANGE_TIMEOUT`.

use std::collections::VecDeque;

use super::capability::{self, CapabilityPolicy};
use super::codec::Event;
use super::command::Status;
use super::session::Session;
use crate::sasl::Credentials;
use crate::session::SessionStats;
use crate::session::{
    read_backend_by, record_auth, write_backend, write_client, SessionError,
    BACKEND_EXCHANGE_TIMEOUT,
};

/// Tag of the proxy's login command.
const LOGIN_TAG: &str = "PCLS1";

/// What the backend did wrong during the proxy's login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The backend sent `+` when the proxy had nothing left to send.
    #[error("unexpected continuation during login")]
    UnexpectedContinuation,
    /// A backend response during login carried a literal.
    #[error("unexpected literal in a login response")]
    LiteralInResponse,
}

/// What the shell does after a backend response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send the next piece of the login command to the backend (it answered `+`).
    Send(Vec<u8>),
    /// Send this untagged response, rewritten, to the client.
    ToClient {
        /// The rewritten line.
        line: Vec<u8>,
        /// The backend capability list the line carried, for the session to record.
        capabilities: Option<String>,
    },
    /// The login is over: send `reply` to the client.
    Done {
        /// Whether the backend accepted the login.
        ok: bool,
        /// The backend's tagged answer under the client's tag (`BAD` turned into `NO`),
        /// capabilities rewritten.
        reply: Vec<u8>,
        /// The backend capability list a successful answer carried, for the session to record.
        capabilities: Option<String>,
    },
}

/// The proxy's login exchange with the backend.
#[derive(Debug)]
pub struct LoginExchange {
    /// The client's tag, for the final answer.
    tag: String,
    /// Pieces still to send, each after a `+`.
    pieces: VecDeque<Vec<u8>>,
    /// The client side's capability policy (its `pre_login` is set from the outcome).
    policy: CapabilityPolicy,
}

impl LoginExchange {
    /// Starts the login for the client command `tag`: returns the core and the first bytes
    /// for the backend. `policy` is the client side's capability policy; `sasl_ir` and
    /// `literal_plus` are what the backend offers.
    pub fn start(
        tag: &str,
        credentials: &Credentials,
        sasl_ir: bool,
        literal_plus: bool,
        policy: CapabilityPolicy,
    ) -> (LoginExchange, Vec<u8>) {
        let mut pieces: VecDeque<Vec<u8>> =
            login_command(credentials, sasl_ir, literal_plus).into();
        let first = pieces.pop_front().unwrap_or_default();
        let exchange = LoginExchange {
            tag: tag.to_string(),
            pieces,
            policy,
        };
        (exchange, first)
    }

    /// One complete backend response (a line, or a line with literals).
    pub fn backend(&mut self, response: &[Event]) -> Result<LoginStep, LoginError> {
        let line = match response {
            [Event::Line { bytes, .. }] => bytes.as_ref(),
            _ => return Err(LoginError::LiteralInResponse),
        };
        if line.starts_with(b"+") {
            return self
                .pieces
                .pop_front()
                .map(LoginStep::Send)
                .ok_or(LoginError::UnexpectedContinuation);
        }
        match Status::parse(line) {
            Some(status) if status.tag == LOGIN_TAG => {
                let ok = status.is_ok();
                let reply = retagged(line, &self.tag);
                let reply =
                    capability::rewrite_line(&reply, self.policy_after(ok)).unwrap_or(reply);
                let capabilities = if ok { backend_list(line) } else { None };
                Ok(LoginStep::Done {
                    ok,
                    reply,
                    capabilities,
                })
            }
            _ => Ok(LoginStep::ToClient {
                line: capability::rewrite_line(line, self.policy_after(true))
                    .unwrap_or_else(|| line.to_vec()),
                capabilities: backend_list(line),
            }),
        }
    }

    /// The client side's policy once the login ended with `ok`.
    fn policy_after(&self, ok: bool) -> CapabilityPolicy {
        CapabilityPolicy {
            pre_login: !ok,
            ..self.policy
        }
    }
}

/// The backend capability list `line` carries: a `[CAPABILITY …]` response code, else a
/// `* CAPABILITY` response.
pub fn backend_list(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    capability::list_from_code(line).or_else(|| capability::list_from_reply(text.as_bytes()))
}

/// The login command as pieces: after each piece but the last, the backend's `+` is awaited
/// (synchronizing literals, or an AUTHENTICATE without SASL-IR).
pub fn login_command(credentials: &Credentials, sasl_ir: bool, literal_plus: bool) -> Vec<Vec<u8>> {
    if !credentials.authzid.is_empty() {
        let response = credentials.plain_response();
        return match sasl_ir {
            true => vec![format!("{LOGIN_TAG} AUTHENTICATE PLAIN {response}\r\n").into_bytes()],
            false => vec![
                format!("{LOGIN_TAG} AUTHENTICATE PLAIN\r\n").into_bytes(),
                format!("{response}\r\n").into_bytes(),
            ],
        };
    }
    let mut pieces = Vec::new();
    let mut current = format!("{LOGIN_TAG} LOGIN").into_bytes();
    for value in [&credentials.user, &credentials.password] {
        current.push(b' ');
        match quoted(value) {
            Some(quoted) => current.extend_from_slice(quoted.as_bytes()),
            None if literal_plus => {
                current.extend_from_slice(format!("{{{}+}}\r\n", value.len()).as_bytes());
                current.extend_from_slice(value.as_bytes());
            }
            None => {
                current.extend_from_slice(format!("{{{}}}\r\n", value.len()).as_bytes());
                pieces.push(std::mem::replace(&mut current, value.as_bytes().to_vec()));
            }
        }
    }
    current.extend_from_slice(b"\r\n");
    pieces.push(current);
    pieces
}

/// `value` as an IMAP quoted string (RFC 9051 §4.3) when it is printable ASCII; other values
/// travel as literals.
fn quoted(value: &str) -> Option<String> {
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The backend's answer to a login, with its tag replaced by the client's and a `BAD` (the
/// proxy's command was refused) turned into `NO`.
fn retagged(line: &[u8], tag: &str) -> Vec<u8> {
    let rest = line.get(LOGIN_TAG.len() + 1..).unwrap_or(b"NO \r\n");
    let rest = match rest.get(..4) {
        Some(head) if head.eq_ignore_ascii_case(b"BAD ") => [b"NO ", &rest[4..]].concat(),
        _ => rest.to_vec(),
    };
    [tag.as_bytes(), b" ", &rest].concat()
}

impl Session {
    /// Logs in to the backend with `credentials` for the client command `tag`; relays the
    /// outcome to the client. Returns whether the login succeeded. On a router listener the
    /// login is routed and its backend connected first ([`Session::route_login`]).
    pub(super) async fn backend_login(
        &mut self,
        tag: &str,
        credentials: Credentials,
        stats: &mut SessionStats,
    ) -> Result<bool, SessionError> {
        self.context.penalty.delay(self.context.peer.ip()).await;
        let client_user = credentials.user.clone();
        let credentials = match self.backend.is_none() && self.context.listener.routed() {
            true => match self.route_login(tag, &credentials).await? {
                Some(routed) => routed,
                None => return Ok(false),
            },
            false => credentials,
        };
        let ok = self.login_exchange(tag, &credentials).await?;
        let backend = self
            .route
            .clone()
            .or_else(|| self.context.single_backend().map(str::to_string));
        if let Some(backend) = &backend {
            crate::routing::session::count_backend_login(backend, ok);
        }
        if ok {
            stats.set_user(client_user);
            stats.route = backend;
        } else if self.context.listener.routed() {
            // The next login is routed afresh (it may be another user).
            self.backend = None;
            self.route = None;
            self.backend_capabilities = super::session::ROUTED_CAPABILITIES.into();
            self.note_capability_list(super::session::ROUTED_CAPABILITIES);
        }
        Ok(ok)
    }

    /// Routes the login and connects its backend; `None` when the client was already told
    /// why not (`NO [AUTHENTICATIONFAILED]` / `NO [UNAVAILABLE]`).
    async fn route_login(
        &mut self,
        tag: &str,
        credentials: &Credentials,
    ) -> Result<Option<Credentials>, SessionError> {
        use crate::routing::session::{connect_for_login, Refusal};
        self.login_attempts = self.login_attempts.saturating_add(1);
        let tls = self.client.is_tls();
        let routed = connect_for_login::<super::command::ImapDialect>(
            &self.context,
            credentials,
            self.login_attempts,
            tls,
        )
        .await;
        let routed = match routed {
            Ok(routed) => routed,
            Err(Refusal::AuthFailed(text)) => {
                let line = format!("{tag} NO [AUTHENTICATIONFAILED] {text}\r\n");
                write_client(&mut self.client, line.as_bytes()).await?;
                return Ok(None);
            }
            Err(Refusal::Unavailable(text)) => {
                let line = format!("{tag} NO [UNAVAILABLE] {text}\r\n");
                write_client(&mut self.client, line.as_bytes()).await?;
                return Ok(None);
            }
        };
        if Status::parse(&routed.conn.greeting).is_some_and(|s| s.condition == "PREAUTH") {
            tracing::warn!(route = %routed.backend, side = "backend", "routed backend greeted PREAUTH: refused");
            let line = format!("{tag} NO [UNAVAILABLE] mail server misconfigured\r\n");
            write_client(&mut self.client, line.as_bytes()).await?;
            return Ok(None);
        }
        let list = super::session::backend_list_of(&routed.conn);
        self.backend_capabilities = list.clone();
        self.note_capability_list(&list);
        self.backend_framer = super::codec::Framer::new(
            super::codec::Role::Server,
            super::session::backend_limits(&self.context),
        );
        self.backend_framer.feed(&routed.conn.leftover);
        self.backend = Some(routed.conn.stream);
        self.route = Some(routed.backend);
        Ok(Some(routed.credentials))
    }

    /// Runs the login command on the connected backend; relays the outcome to the client.
    async fn login_exchange(
        &mut self,
        tag: &str,
        credentials: &Credentials,
    ) -> Result<bool, SessionError> {
        let (mut exchange, first) = LoginExchange::start(
            tag,
            credentials,
            self.backend_sasl_ir,
            self.backend_literal_plus,
            self.policy(),
        );
        if !first.is_empty() {
            write_backend(crate::session::connected(&mut self.backend)?, &first).await?;
        }
        let deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            while let Some(response) = self.next_backend_response()? {
                let step = exchange
                    .backend(&response)
                    .map_err(|e| SessionError::BackendProtocol(e.to_string()))?;
                match step {
                    LoginStep::Send(piece) => {
                        write_backend(crate::session::connected(&mut self.backend)?, &piece).await?
                    }
                    LoginStep::ToClient { line, capabilities } => {
                        self.note_list(capabilities.as_deref());
                        write_client(&mut self.client, &line).await?;
                    }
                    LoginStep::Done {
                        ok,
                        reply,
                        capabilities,
                    } => {
                        record_auth(&self.context, ok);
                        if ok {
                            self.note_list(capabilities.as_deref());
                            tracing::info!(route = self.route.as_deref(), "login ok");
                        } else {
                            crate::login_log::login_failed(
                                &credentials.user,
                                self.context.peer.ip(),
                                crate::config::Protocol::Imap,
                            );
                            tracing::debug!(route = self.route.as_deref(), "login failed");
                        }
                        write_client(&mut self.client, &reply).await?;
                        return Ok(ok);
                    }
                }
            }
            let backend = crate::session::connected(&mut self.backend)?;
            let n = read_backend_by(backend, &mut buffer, deadline).await?;
            self.backend_framer.feed(&buffer[..n]);
        }
    }

    /// Records a capability list the backend sent during login.
    fn note_list(&mut self, list: Option<&str>) {
        if let Some(list) = list {
            self.note_capability_list(list);
        }
    }
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
