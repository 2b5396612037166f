//! The proxy's own login to the backend (the driver half of [`super::prelogin`]): from the
//! credentials the client gave the proxy, it builds `LOGIN` (RFC 9051 §6.2.3) — or
//! `AUTHENTICATE PLAIN` (RFC 4616, with SASL-IR per RFC 4959 when offered) when the client
//! named an authorization identity — sends it under the proxy's own tag, and relays the outcome
//! to the client under the client's tag with capabilities rewritten. The client's bytes never
//! reach the backend.

use super::capability;
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
    /// outcome to the client. Returns whether the login succeeded.
    pub(super) async fn backend_login(
        &mut self,
        tag: &str,
        credentials: Credentials,
        stats: &mut SessionStats,
    ) -> Result<bool, SessionError> {
        self.context.penalty.delay(self.context.peer.ip()).await;
        let pieces = login_command(
            &credentials,
            self.backend_sasl_ir,
            self.backend_literal_plus,
        );
        let mut pieces = pieces.into_iter();
        if let Some(first) = pieces.next() {
            write_backend(&mut self.backend, &first).await?;
        }
        let deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            while let Some(response) = self.next_backend_response()? {
                let first = first_line(&response)?;
                if first.starts_with(b"+") {
                    let Some(piece) = pieces.next() else {
                        return Err(SessionError::BackendProtocol(
                            "unexpected continuation during login".into(),
                        ));
                    };
                    write_backend(&mut self.backend, &piece).await?;
                    continue;
                }
                match Status::parse(&first) {
                    Some(status) if status.tag == LOGIN_TAG => {
                        return self
                            .finish_login(tag, &first, status.is_ok(), credentials, stats)
                            .await;
                    }
                    _ => self.relay_login_untagged(&first).await?,
                }
            }
            let n = read_backend_by(&mut self.backend, &mut buffer, deadline).await?;
            self.backend_framer.feed(&buffer[..n]);
        }
    }

    async fn finish_login(
        &mut self,
        tag: &str,
        line: &[u8],
        ok: bool,
        credentials: Credentials,
        stats: &mut SessionStats,
    ) -> Result<bool, SessionError> {
        record_auth(&self.context, ok);
        if ok {
            stats.set_user(credentials.user);
            self.note_capabilities(line);
            tracing::info!("login ok");
        } else {
            tracing::info!("login failed");
        }
        let line = retagged(line, tag);
        let policy = self.policy_after_login(ok);
        let line = capability::rewrite_line(&line, policy).unwrap_or(line);
        write_client(&mut self.client, &line).await?;
        Ok(ok)
    }

    /// An untagged response during the login (`* CAPABILITY`, `* OK [ALERT]`, ...).
    async fn relay_login_untagged(&mut self, line: &[u8]) -> Result<(), SessionError> {
        self.note_capabilities(line);
        let policy = self.policy_after_login(true);
        let line = capability::rewrite_line(line, policy).unwrap_or_else(|| line.to_vec());
        write_client(&mut self.client, &line).await
    }
}

fn first_line(response: &[Event]) -> Result<Vec<u8>, SessionError> {
    match response {
        [Event::Line { bytes, .. }] => Ok(bytes.to_vec()),
        _ => Err(SessionError::BackendProtocol(
            "unexpected literal in a login response".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_is_quoted_when_it_can_be() {
        let credentials = Credentials::new("al\"ice", "pw");
        assert_eq!(
            login_command(&credentials, false, false),
            vec![b"PCLS1 LOGIN \"al\\\"ice\" \"pw\"\r\n".to_vec()]
        );
    }

    #[test]
    fn unquotable_values_become_literals() {
        let credentials = Credentials::new("alice", "p\u{e4}ss");
        assert_eq!(
            login_command(&credentials, false, true),
            vec![b"PCLS1 LOGIN \"alice\" {5+}\r\np\xc3\xa4ss\r\n".to_vec()]
        );
        assert_eq!(
            login_command(&credentials, false, false),
            vec![
                b"PCLS1 LOGIN \"alice\" {5}\r\n".to_vec(),
                b"p\xc3\xa4ss\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn an_authorization_identity_uses_plain() {
        let credentials = Credentials {
            authzid: "boss".into(),
            user: "alice".into(),
            password: "pw".into(),
        };
        let response = credentials.plain_response();
        assert_eq!(
            login_command(&credentials, true, false),
            vec![format!("PCLS1 AUTHENTICATE PLAIN {response}\r\n").into_bytes()]
        );
        assert_eq!(login_command(&credentials, false, false).len(), 2);
    }

    #[test]
    fn answers_carry_the_client_tag() {
        assert_eq!(
            retagged(b"PCLS1 OK Logged in\r\n", "a1"),
            b"a1 OK Logged in\r\n"
        );
        assert_eq!(retagged(b"PCLS1 BAD no\r\n", "a1"), b"a1 NO no\r\n");
    }
}
