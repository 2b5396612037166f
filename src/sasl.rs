//! SASL exchanges the proxy runs itself, shared by IMAP AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR
//! RFC 4959) and POP3 AUTH (RFC 5034): PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login). Sans-I/O: the protocol session feeds the client's base64 lines
//! and sends the challenges this module returns, in its own framing (`+ x` for both).
//!
//! The proxy never relays a client's SASL line to the backend: it decodes the credentials here
//! and logs in to the backend with a command it builds itself.

use std::fmt;

use base64::Engine;

/// Longest SASL response line accepted (base64, without CRLF).
pub const MAX_RESPONSE: usize = 8 * 1024;

/// The mechanisms the proxy terminates itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The LOGIN mechanism (user name and password as two challenges).
    Login,
}

impl Mechanism {
    /// Parses a mechanism name (case-insensitive); `None` for mechanisms the proxy does not run.
    pub fn parse(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The name as advertised (`AUTH=PLAIN`, `SASL PLAIN LOGIN`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Every mechanism the proxy runs, in the order it advertises them.
pub const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// A user's credentials, decoded by the proxy. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authorization identity (empty when the client asked for none).
    pub authzid: String,
    /// Authentication identity: the login name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials without an authorization identity.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            authzid: String::new(),
            user: user.into(),
            password: password.into(),
        }
    }

    /// The base64 PLAIN message `authzid NUL authcid NUL passwd` (RFC 4616 §2).
    pub fn plain_response(&self) -> String {
        let message = format!("{}\0{}\0{}", self.authzid, self.user, self.password);
        base64::engine::general_purpose::STANDARD.encode(message)
    }
}

/// Why a SASL exchange failed (all on the client's side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*` (RFC 4422 §3.5; RFC 9051 §6.2.2; RFC 5034 §4).
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// The response was not valid base64.
    #[error("invalid base64 in the SASL response")]
    Base64,
    /// The decoded message does not have the mechanism's shape.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// The response line is longer than [`MAX_RESPONSE`].
    #[error("SASL response too long")]
    TooLong,
}

/// What the session does next in a SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this base64 challenge (`+ <challenge>`) and feed the client's next line.
    Challenge(&'static str),
    /// The exchange is complete.
    Done(Credentials),
}

/// One SASL exchange with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN, waiting for the single response.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPassword(String),
}

/// `Username:` in base64 (LOGIN mechanism).
const USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// `Password:` in base64 (LOGIN mechanism).
const PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

impl Exchange {
    /// Starts an exchange. `initial` is the initial response from the command line (SASL-IR,
    /// RFC 4959; RFC 5034 §4), where `=` stands for an empty response.
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
    ) -> Result<(Exchange, Step), SaslError> {
        let exchange = match mechanism {
            Mechanism::Plain => Exchange::Plain,
            Mechanism::Login => Exchange::LoginUser,
        };
        match initial {
            Some(response) => exchange.respond(response),
            None => {
                let challenge = match mechanism {
                    Mechanism::Plain => "",
                    Mechanism::Login => USERNAME_CHALLENGE,
                };
                Ok((exchange, Step::Challenge(challenge)))
            }
        }
    }

    /// Feeds one client response line (CRLF removed).
    pub fn respond(self, line: &[u8]) -> Result<(Exchange, Step), SaslError> {
        if line == b"*" {
            return Err(SaslError::Cancelled);
        }
        let decoded = decode(line)?;
        match self {
            Exchange::Plain => {
                let credentials = parse_plain(&decoded)?;
                Ok((Exchange::Plain, Step::Done(credentials)))
            }
            Exchange::LoginUser => {
                let user = text(decoded, "LOGIN")?;
                Ok((
                    Exchange::LoginPassword(user),
                    Step::Challenge(PASSWORD_CHALLENGE),
                ))
            }
            Exchange::LoginPassword(user) => {
                let password = text(decoded, "LOGIN")?;
                let credentials = Credentials::new(user.clone(), password);
                Ok((Exchange::LoginPassword(user), Step::Done(credentials)))
            }
        }
    }
}

/// Decodes a base64 response; `=` is the empty response (RFC 4959 §3).
fn decode(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line.len() > MAX_RESPONSE {
        return Err(SaslError::TooLong);
    }
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| SaslError::Base64)
}

/// A decoded field as UTF-8 without NUL or line breaks.
fn text(bytes: Vec<u8>, mechanism: &'static str) -> Result<String, SaslError> {
    let text = String::from_utf8(bytes).map_err(|_| SaslError::Malformed(mechanism))?;
    if text.is_empty() || text.contains(['\0', '\r', '\n']) {
        return Err(SaslError::Malformed(mechanism));
    }
    Ok(text)
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616 §2): exactly two NULs, non-empty user and
/// password.
fn parse_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authzid, user, password] = parts.as_slice() else {
        return Err(SaslError::Malformed("PLAIN"));
    };
    let field = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .ok()
            .filter(|s| !s.contains(['\r', '\n']))
            .ok_or(SaslError::Malformed("PLAIN"))
    };
    let credentials = Credentials {
        authzid: field(authzid)?,
        user: field(user)?,
        password: field(password)?,
    };
    if credentials.user.is_empty() || credentials.password.is_empty() {
        return Err(SaslError::Malformed("PLAIN"));
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(text)
            .into_bytes()
    }

    #[test]
    fn plain_with_initial_response() {
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64("\0alice\0pw"))).unwrap();
        assert_eq!(step, Step::Done(Credentials::new("alice", "pw")));
    }

    #[test]
    fn plain_with_authzid_round_trips() {
        let credentials = Credentials {
            authzid: "boss".into(),
            user: "alice".into(),
            password: "pw".into(),
        };
        let response = credentials.plain_response();
        let (_, step) = Exchange::start(Mechanism::Plain, Some(response.as_bytes())).unwrap();
        assert_eq!(step, Step::Done(credentials));
    }

    #[test]
    fn plain_without_initial_response_asks_first() {
        let (exchange, step) = Exchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(step, Step::Challenge(""));
        let (_, step) = exchange.respond(&b64("\0bob\0secret")).unwrap();
        assert_eq!(step, Step::Done(Credentials::new("bob", "secret")));
    }

    #[test]
    fn login_asks_user_then_password() {
        let (exchange, step) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(step, Step::Challenge(USERNAME_CHALLENGE));
        let (exchange, step) = exchange.respond(&b64("carol")).unwrap();
        assert_eq!(step, Step::Challenge(PASSWORD_CHALLENGE));
        let (_, step) = exchange.respond(&b64("pw")).unwrap();
        assert_eq!(step, Step::Done(Credentials::new("carol", "pw")));
    }

    #[test]
    fn cancel_and_garbage_are_errors() {
        let (exchange, _) = Exchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(exchange.clone().respond(b"*"), Err(SaslError::Cancelled));
        assert_eq!(exchange.clone().respond(b"!!"), Err(SaslError::Base64));
        assert_eq!(
            exchange.clone().respond(&b64("alice")),
            Err(SaslError::Malformed("PLAIN"))
        );
        assert_eq!(
            exchange.clone().respond(&b64("\0alice\0")),
            Err(SaslError::Malformed("PLAIN"))
        );
        assert_eq!(
            exchange.respond(&vec![b'A'; MAX_RESPONSE + 4]),
            Err(SaslError::TooLong)
        );
        let (exchange, _) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(
            exchange.respond(&b64("a\0b")),
            Err(SaslError::Malformed("LOGIN"))
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("alice", "hunter2"));
        assert!(shown.contains("alice") && !shown.contains("hunter2"));
    }
}
