//! Just enough POP3 command parsing for policy (RFC 1939 §5–§7, RFC 5034): the command name,
//! the user names a login reveals, and the backend [`Dialect`] used by the shared connector.

use crate::backend::{Dialect, GreetingKind, HandshakeLine};

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

/// The authentication identity of a SASL PLAIN message (RFC 4616 §2), base64-encoded as it
/// crosses POP3 (RFC 5034 §4); `None` if it does not decode.
pub fn plain_authcid(base64: &str) -> Option<String> {
    let message = decode_base64(base64.trim())?;
    let mut parts = message.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let authcid = parts.next()?;
    parts.next()?;
    String::from_utf8(authcid.to_vec())
        .ok()
        .filter(|u| !u.is_empty())
}

/// Decodes standard base64 with padding; `None` on any invalid character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for group in trimmed.chunks(4) {
        let mut accumulator = 0u32;
        for (i, &c) in group.iter().enumerate() {
            accumulator |= value(c)? << (18 - 6 * i);
        }
        let bytes = accumulator.to_be_bytes();
        let count = match group.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&bytes[1..1 + count]);
    }
    Some(out)
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
        assert_eq!(
            plain_authcid("AGFsaWNlAHNlY3JldA==").as_deref(),
            Some("alice")
        );
        assert_eq!(plain_authcid("not base64!"), None);
        assert_eq!(plain_authcid("YWxpY2U="), None);
    }

    #[test]
    fn base64_forms() {
        assert_eq!(decode_base64("TWFu").unwrap(), b"Man");
        assert_eq!(decode_base64("TWE=").unwrap(), b"Ma");
        assert_eq!(decode_base64("TQ==").unwrap(), b"M");
        assert_eq!(decode_base64("T"), None);
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
