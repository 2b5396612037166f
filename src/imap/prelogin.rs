//! The IMAP pre-login phase, answered entirely by the proxy (sans-I/O): client bytes in,
//! [`Action`]s out. No client byte ever reaches the backend from here; a successful
//! `LOGIN`/`AUTHENTICATE` becomes [`Action::Login`] with decoded credentials, and the session
//! logs in to the backend with a command it builds itself (as nginx mail and Dovecot's proxy do).
//!
//! Answered locally (RFC 9051 §6.1, §6.2): CAPABILITY, NOOP, LOGOUT, ID (RFC 2971, answered
//! `NIL`: nothing of the client's ID is forwarded), STARTTLS (RFC 2595 §3.1 / RFC 9051 §6.2.1:
//! every byte pipelined after it is dropped), LOGIN, AUTHENTICATE PLAIN/LOGIN with SASL-IR
//! (RFC 4959) and `*` cancel (RFC 9051 §6.2.2). LOGIN and AUTHENTICATE get
//! `NO [PRIVACYREQUIRED]` (RFC 5530) while TLS is required but not up. COMPRESS is refused
//! (RFC 4978); every other command is not valid before login. A command is acted on only once
//! it is complete and parsed by [`super::grammar`].

use super::assembler::{Assembled, Assembler, CommandTooLarge};
use super::codec::{FrameError, Framer, Limits, Role};
use super::grammar::{self, CommandKind, GrammarError};
use crate::sasl::{Credentials, Exchange, Mechanism, SaslError, Step};

/// Largest literal accepted before login (RFC 7888 §5 LITERAL- bound): user names and
/// passwords only.
pub const PRELOGIN_MAX_LITERAL: u64 = 4096;
/// Largest complete command accepted before login.
const PRELOGIN_MAX_COMMAND: u64 = 16 * 1024;

/// What the client-facing side offers right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// STARTTLS is available (a starttls listener before TLS).
    pub offer_starttls: bool,
    /// Logins are refused until TLS is up (`require_tls`, not yet TLS).
    pub login_disabled: bool,
    /// The capability list the client is shown (already rewritten).
    pub capabilities: String,
}

/// What the driver does for the pre-login phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the client.
    ToClient(Vec<u8>),
    /// Upgrade the client stream to TLS, then call [`PreLogin::tls_started`].
    StartTls,
    /// Log in to the backend for the command tagged `tag`; then call
    /// [`PreLogin::login_failed`] or take the framer with [`PreLogin::into_framer`].
    Login {
        /// The client's tag for the login command.
        tag: String,
        /// The credentials the client gave.
        credentials: Credentials,
    },
    /// A login was refused by policy without reaching the backend (counted as `refused`).
    LoginRefused,
    /// The client logged out; the `BYE` and tagged `OK` were sent. Close the connection.
    Logout,
}

/// Why the pre-login phase ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreLoginError {
    /// The client's bytes broke the framing (over-long line, NUL, nesting, bad literal).
    #[error("client framing: {0}")]
    Frame(#[from] FrameError),
    /// A client command exceeded the pre-login size limit.
    #[error("client command: {0}")]
    TooLarge(#[from] CommandTooLarge),
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// An AUTHENTICATE exchange: client lines are SASL responses.
    Sasl { tag: String, exchange: Exchange },
    /// Waiting for the driver: a login is in progress.
    AwaitingLogin,
    /// Waiting for the driver: the TLS handshake is in progress.
    AwaitingTls,
    /// The client logged out.
    Closed,
}

/// The pre-login state machine of one connection.
#[derive(Debug)]
pub struct PreLogin {
    settings: Settings,
    framer: Framer,
    limits: Limits,
    assembler: Assembler,
    state: State,
}

impl PreLogin {
    /// Starts the phase; `limits` are the client framing limits (the literal limit is lowered to
    /// [`PRELOGIN_MAX_LITERAL`] until login).
    pub fn new(settings: Settings, limits: Limits) -> PreLogin {
        let prelogin_limits = Limits {
            max_literal: limits.max_literal.min(PRELOGIN_MAX_LITERAL),
            ..limits
        };
        PreLogin {
            settings,
            framer: Framer::new(Role::Client, prelogin_limits),
            limits,
            assembler: Assembler::new(PRELOGIN_MAX_COMMAND),
            state: State::Commands,
        }
    }

    /// Octets received and not yet framed (the memory budget's view).
    pub fn buffered(&self) -> u64 {
        self.framer.buffered() as u64
    }

    /// Adds client bytes; call [`Self::poll`] to act on them.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.framer.feed(bytes);
    }

    /// Whether no command is partly received (for a graceful shutdown).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Commands)
            && self.assembler.is_empty()
            && self.framer.at_message_boundary()
    }

    /// Processes buffered client bytes until more are needed or the driver must act (login,
    /// TLS, logout). Bytes after such a command stay buffered.
    pub fn poll(&mut self) -> Result<Vec<Action>, PreLoginError> {
        let mut actions = Vec::new();
        while matches!(self.state, State::Commands | State::Sasl { .. }) {
            let Some(event) = self.framer.next_event()? else {
                break;
            };
            match self.assembler.push(event)? {
                Assembled::Pending => {}
                Assembled::SendContinuation => self.on_continuation(&mut actions),
                Assembled::LiteralTooLarge { line, length } => {
                    let tag = tag_of(&line);
                    actions.push(reply(format!(
                        "{tag} NO [TOOBIG] literal of {length} octets is too large before login\r\n"
                    )));
                    self.state = State::Commands;
                }
                Assembled::Complete(bytes) => {
                    match std::mem::replace(&mut self.state, State::Commands) {
                        State::Sasl { tag, exchange } => {
                            self.on_sasl_line(tag, exchange, &bytes, &mut actions)
                        }
                        _ => self.on_command(&bytes, &mut actions),
                    }
                }
            }
        }
        Ok(actions)
    }

    /// The backend refused the login: the client may try again.
    pub fn login_failed(&mut self) {
        self.state = State::Commands;
    }

    /// The client stream is TLS now: every byte received before the handshake is dropped
    /// (RFC 2595 §3.1, CVE-2011-0411) and the policy changes.
    pub fn tls_started(&mut self, settings: Settings) {
        let limits = Limits {
            max_literal: self.limits.max_literal.min(PRELOGIN_MAX_LITERAL),
            ..self.limits
        };
        self.framer = Framer::new(Role::Client, limits);
        self.assembler.clear();
        self.settings = settings;
        self.state = State::Commands;
    }

    /// After a successful login: the client framer, holding whatever the client pipelined after
    /// the login command, with the post-login limits.
    pub fn into_framer(self) -> Framer {
        let mut framer = self.framer;
        framer.set_limits(self.limits);
        framer
    }

    fn on_continuation(&mut self, actions: &mut Vec<Action>) {
        if let State::Sasl { tag, .. } = std::mem::replace(&mut self.state, State::Commands) {
            // A literal is not a SASL response: refuse it and do not wait for its bytes.
            self.framer.cancel_literal();
            self.assembler.clear();
            actions.push(reply(format!(
                "{tag} BAD Invalid SASL response: authentication cancelled\r\n"
            )));
            return;
        }
        if self.settings.login_disabled {
            // Before TLS nothing needs a literal: refuse at once instead of inviting the data.
            let head = super::command::CommandHead::parse(self.assembler.partial());
            self.framer.cancel_literal();
            self.assembler.clear();
            let Some(head) = head else {
                return actions.push(reply(refusal_text(&GrammarError::NoTag)));
            };
            let tag = head.tag;
            if matches!(head.name.as_str(), "LOGIN" | "AUTHENTICATE") {
                self.refuse_before_tls(&tag, actions);
            } else {
                actions.push(reply(format!(
                    "{tag} BAD [PRIVACYREQUIRED] Use STARTTLS first\r\n"
                )));
            }
            return;
        }
        actions.push(Action::ToClient(b"+ Ready for literal data\r\n".to_vec()));
    }

    fn on_command(&mut self, bytes: &[u8], actions: &mut Vec<Action>) {
        let command = match grammar::parse_command(bytes) {
            Ok(command) => command,
            Err(error) => return actions.push(reply(refusal_text(&error))),
        };
        let tag = command.tag.clone();
        match command.kind {
            CommandKind::Capability => actions.push(reply(format!(
                "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed\r\n",
                self.settings.capabilities
            ))),
            CommandKind::Noop => actions.push(reply(format!("{tag} OK NOOP completed\r\n"))),
            CommandKind::Id(_) => {
                actions.push(reply(format!("* ID NIL\r\n{tag} OK ID completed\r\n")))
            }
            CommandKind::Logout => {
                actions.push(reply(format!(
                    "* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"
                )));
                actions.push(Action::Logout);
                self.state = State::Closed;
            }
            CommandKind::StartTls => self.on_starttls(tag, actions),
            CommandKind::Login(credentials) => self.login(tag, credentials, actions),
            CommandKind::Authenticate { mechanism, initial } => {
                self.on_authenticate(tag, &mechanism, initial.as_deref(), actions)
            }
            CommandKind::Compress => actions.push(reply(format!(
                "{tag} NO [CANNOT] COMPRESS is not available through this proxy\r\n"
            ))),
            _ if self.settings.login_disabled => actions.push(reply(format!(
                "{tag} BAD [PRIVACYREQUIRED] Use STARTTLS first\r\n"
            ))),
            _ => actions.push(reply(format!(
                "{tag} BAD {} is not valid before login\r\n",
                command.name()
            ))),
        }
    }

    fn on_starttls(&mut self, tag: String, actions: &mut Vec<Action>) {
        if !self.settings.offer_starttls {
            return actions.push(reply(format!("{tag} BAD STARTTLS not available now\r\n")));
        }
        actions.push(reply(format!("{tag} OK Begin TLS negotiation now\r\n")));
        actions.push(Action::StartTls);
        self.state = State::AwaitingTls;
    }

    fn on_authenticate(
        &mut self,
        tag: String,
        mechanism: &str,
        initial: Option<&[u8]>,
        actions: &mut Vec<Action>,
    ) {
        if self.refuse_before_tls(&tag, actions) {
            return;
        }
        let Some(mechanism) = Mechanism::parse(mechanism.as_bytes()) else {
            return actions.push(reply(format!(
                "{tag} NO [CANNOT] Unsupported authentication mechanism\r\n"
            )));
        };
        match Exchange::start(mechanism, initial) {
            Ok((exchange, step)) => self.sasl_step(tag, exchange, step, actions),
            Err(error) => actions.push(reply(sasl_refusal(&tag, &error))),
        }
    }

    fn on_sasl_line(
        &mut self,
        tag: String,
        exchange: Exchange,
        bytes: &[u8],
        actions: &mut Vec<Action>,
    ) {
        let line = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        match exchange.respond(line) {
            Ok((exchange, step)) => self.sasl_step(tag, exchange, step, actions),
            Err(error) => actions.push(reply(sasl_refusal(&tag, &error))),
        }
    }

    fn sasl_step(
        &mut self,
        tag: String,
        exchange: Exchange,
        step: Step,
        actions: &mut Vec<Action>,
    ) {
        match step {
            Step::Challenge(challenge) => {
                actions.push(reply(format!("+ {challenge}\r\n")));
                self.state = State::Sasl { tag, exchange };
            }
            Step::Done(credentials) => self.login(tag, credentials, actions),
        }
    }

    fn login(&mut self, tag: String, credentials: Credentials, actions: &mut Vec<Action>) {
        if self.refuse_before_tls(&tag, actions) {
            return;
        }
        actions.push(Action::Login { tag, credentials });
        self.state = State::AwaitingLogin;
    }

    /// `NO [PRIVACYREQUIRED]` for a login while TLS is required but not up (RFC 5530).
    fn refuse_before_tls(&self, tag: &str, actions: &mut Vec<Action>) -> bool {
        if !self.settings.login_disabled {
            return false;
        }
        actions.push(Action::LoginRefused);
        actions.push(reply(format!(
            "{tag} NO [PRIVACYREQUIRED] TLS is required before authentication: use STARTTLS\r\n"
        )));
        true
    }
}

fn reply(text: String) -> Action {
    Action::ToClient(text.into_bytes())
}

/// The proxy's answer to a command the grammar refused (never forwarded).
pub fn refusal_text(error: &GrammarError) -> String {
    match error {
        GrammarError::NoTag => {
            "* BAD Invalid command: expected a tag and a command name\r\n".into()
        }
        GrammarError::Syntax { tag } => format!("{tag} BAD Invalid command syntax\r\n"),
        GrammarError::TrailingBytes { tag } => {
            format!("{tag} BAD Unexpected data after the command\r\n")
        }
        GrammarError::NotAllowed { tag, name } => {
            format!("{tag} NO [CANNOT] {name} is not available through this proxy\r\n")
        }
    }
}

fn sasl_refusal(tag: &str, error: &SaslError) -> String {
    match error {
        SaslError::Cancelled => format!("{tag} BAD Authentication cancelled\r\n"),
        _ => format!("{tag} BAD Invalid SASL response: {error}\r\n"),
    }
}

/// The tag of a command line, `*` when it has none.
fn tag_of(line: &[u8]) -> String {
    super::command::CommandHead::parse(line).map_or_else(|| "*".into(), |head| head.tag)
}

#[cfg(test)]
#[path = "prelogin_tests.rs"]
mod tests;
