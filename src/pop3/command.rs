//! Just enough POP3 command parsing for policy (RFC 1939 §5–§7, RFC 5034): the command name,
//! the user names a login reveals, and the backend [`Dialect`] used by the shared connector.

use std::net::SocketAddr;

use crate::backend::{Dialect, GreetingKind, HandshakeLine};
use crate::config::ForwardClientIp;

use super::codec::Status;

/// A client command line split into an upper-cased name and its arguments (CRLF removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Upper-cased keyword (`USER`, `RETR`, ...); empty for an empty line.
    pub name: String,
    /// Everything after the first space, line ending removed.
    pub args: String,
}

impl Command {
    /// Parses a command line; never fails (non-UTF-8 bytes are replaced).
    pub fn parse(line: &[u8]) -> Command {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (name, args) = text.split_once(' ').unwrap_or((text, ""));
        Command {
            name: name.to_ascii_uppercase(),
            args: args.to_string(),
        }
    }

    /// Whether the line carries a credential (never logged in full).
    pub fn is_secret(&self) -> bool {
        matches!(self.name.as_str(), "USER" | "PASS" | "APOP" | "AUTH")
    }

    /// Whether it starts or performs a login.
    pub fn is_login(&self) -> bool {
        matches!(self.name.as_str(), "USER" | "PASS" | "APOP" | "AUTH")
    }

    /// The user name a `USER name` or `APOP name digest` reveals.
    pub fn user(&self) -> Option<String> {
        match self.name.as_str() {
            "USER" => Some(self.args.trim().to_string()).filter(|u| !u.is_empty()),
            "APOP" => self
                .args
                .rsplit_once(' ')
                .map(|(name, _)| name.trim().to_string())
                .filter(|u| !u.is_empty()),
            _ => None,
        }
    }

    /// `AUTH mechanism [initial-response]`: the upper-cased mechanism and the response.
    pub fn auth(&self) -> Option<(String, Option<String>)> {
        if self.name != "AUTH" {
            return None;
        }
        let mut words = self.args.split_ascii_whitespace();
        let mechanism = words.next()?.to_ascii_uppercase();
        Some((mechanism, words.next().map(str::to_string)))
    }
}

/// The POP3 side of the shared backend connector.
#[derive(Debug)]
pub struct Pop3Dialect;

impl Dialect for Pop3Dialect {
    fn greeting(line: &[u8]) -> GreetingKind {
        match Status::of(line) {
            Some(Status::Ok) => GreetingKind::Ready,
            _ => GreetingKind::Unusable,
        }
    }

    fn starttls_command() -> &'static [u8] {
        b"STLS\r\n"
    }

    fn starttls_reply(line: &[u8]) -> HandshakeLine {
        match Status::of(line) {
            Some(Status::Ok) => HandshakeLine::Done,
            _ => HandshakeLine::Refused,
        }
    }

    fn capability_command() -> &'static [u8] {
        b"CAPA\r\n"
    }

    fn capability_reply(line: &[u8]) -> HandshakeLine {
        // `-ERR` (no CAPA support) ends the reply too; the session then knows no capabilities.
        if line == b".\r\n" || line == b".\n" || Status::of(line) == Some(Status::Err) {
            HandshakeLine::Done
        } else {
            HandshakeLine::More
        }
    }

    /// XCLIENT (as Dovecot and Postfix speak it) with the client's address and port.
    fn client_address_command(
        mode: ForwardClientIp,
        client: SocketAddr,
        _local: SocketAddr,
    ) -> Option<Vec<u8>> {
        (mode == ForwardClientIp::Xclient).then(|| {
            format!("XCLIENT ADDR={} PORT={}\r\n", client.ip(), client.port()).into_bytes()
        })
    }

    fn client_address_reply(line: &[u8]) -> HandshakeLine {
        match Status::of(line) {
            Some(Status::Ok) => HandshakeLine::Done,
            _ => HandshakeLine::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_extracted() {
        assert_eq!(
            Command::parse(b"user alice\r\n").user().as_deref(),
            Some("alice")
        );
        assert_eq!(
            Command::parse(b"APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n")
                .user()
                .as_deref(),
            Some("bob")
        );
        assert_eq!(Command::parse(b"PASS secret\r\n").user(), None);
        let auth = Command::parse(b"AUTH plain AGFsaWNlAHNlY3JldA==\r\n").auth();
        assert_eq!(
            auth,
            Some(("PLAIN".into(), Some("AGFsaWNlAHNlY3JldA==".into())))
        );
    }

    #[test]
    fn dialect_replies() {
        assert_eq!(
            Pop3Dialect::greeting(b"+OK Dovecot ready. <1.2@host>\r\n"),
            GreetingKind::Ready
        );
        assert_eq!(
            Pop3Dialect::greeting(b"-ERR go away\r\n"),
            GreetingKind::Unusable
        );
        assert_eq!(
            Pop3Dialect::starttls_reply(b"+OK Begin TLS\r\n"),
            HandshakeLine::Done
        );
        assert_eq!(
            Pop3Dialect::capability_reply(b"+OK\r\n"),
            HandshakeLine::More
        );
        assert_eq!(Pop3Dialect::capability_reply(b".\r\n"), HandshakeLine::Done);
    }
}
