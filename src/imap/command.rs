//! Just enough IMAP command and response parsing for policy: tags, command names, the LOGIN user
//! name, tagged status, and the backend [`Dialect`] used by the shared connector.

use crate::backend::{Dialect, GreetingKind, HandshakeLine};

/// The start of a client command line (RFC 9051 §2.2.1): `tag SP command [SP args]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHead {
    /// The client's tag.
    pub tag: String,
    /// Upper-cased command name; `UID FETCH` etc. keep the `UID ` prefix.
    pub name: String,
    /// The rest of the first line after the name (CRLF removed).
    pub args: String,
}

impl CommandHead {
    /// Parses the first line of a command; `None` for lines that are not `tag SP name`.
    pub fn parse(line: &[u8]) -> Option<CommandHead> {
        let text = std::str::from_utf8(line)
            .ok()?
            .trim_end_matches(['\r', '\n']);
        let (tag, rest) = text.split_once(' ')?;
        if tag.is_empty() || !tag.bytes().all(is_tag_char) {
            return None;
        }
        let (mut name, mut args) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut name_upper = name.to_ascii_uppercase();
        if name_upper == "UID" {
            let (sub, sub_args) = args.split_once(' ').unwrap_or((args, ""));
            name = sub;
            args = sub_args;
            name_upper = format!("UID {}", name.to_ascii_uppercase());
        }
        if name.is_empty() {
            return None;
        }
        Some(CommandHead {
            tag: tag.to_string(),
            name: name_upper,
            args: args.to_string(),
        })
    }

    /// The user name of `LOGIN user pass` when it is an atom or quoted string on this line.
    pub fn login_user(&self) -> Option<String> {
        if self.name != "LOGIN" {
            return None;
        }
        first_astring(&self.args)
    }

    /// The first argument when it is an atom or quoted string (e.g. a SELECT mailbox).
    pub fn first_astring(&self) -> Option<String> {
        first_astring(&self.args)
    }
}

/// Tag characters: ASTRING-CHAR except `+` (RFC 9051 §9 `tag`).
fn is_tag_char(byte: u8) -> bool {
    byte.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&byte)
}

fn first_astring(args: &str) -> Option<String> {
    if let Some(quoted) = args.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        return None;
    }
    let atom = args.split(' ').next()?;
    (!atom.is_empty() && !atom.starts_with('{')).then(|| atom.to_string())
}

/// A response's tag and second word (`OK`, `NO`, `BAD`, `BYE`, `PREAUTH`, a number, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `*` for untagged, `+` for continuation, else the tag.
    pub tag: String,
    /// Upper-cased second word.
    pub condition: String,
}

impl Status {
    /// Splits the first 512 octets of a response line into tag and second word.
    pub fn parse(line: &[u8]) -> Option<Status> {
        let head = String::from_utf8_lossy(&line[..line.len().min(512)]);
        let text = head.trim_end_matches(['\r', '\n']);
        let mut words = text.split(' ');
        let tag = words.next().filter(|t| !t.is_empty())?.to_string();
        let condition = words.next().unwrap_or("").to_ascii_uppercase();
        Some(Status { tag, condition })
    }

    /// Whether the condition is OK.
    pub fn is_ok(&self) -> bool {
        self.condition == "OK"
    }
}

/// The IMAP side of the shared backend connector.
#[derive(Debug)]
pub struct ImapDialect;

/// Tag the proxy uses for its own commands to a backend.
pub const PROXY_TAG: &str = "PCLS0";

impl Dialect for ImapDialect {
    fn greeting(line: &[u8]) -> GreetingKind {
        match Status::parse(line) {
            Some(s) if s.tag == "*" && s.condition == "OK" => GreetingKind::Ready,
            Some(s) if s.tag == "*" && s.condition == "PREAUTH" => GreetingKind::Preauthenticated,
            _ => GreetingKind::Unusable,
        }
    }

    fn starttls_command() -> &'static [u8] {
        b"PCLS0 STARTTLS\r\n"
    }

    fn starttls_reply(line: &[u8]) -> HandshakeLine {
        tagged_reply(line)
    }

    fn capability_command() -> &'static [u8] {
        b"PCLS0 CAPABILITY\r\n"
    }

    fn capability_reply(line: &[u8]) -> HandshakeLine {
        tagged_reply(line)
    }
}

fn tagged_reply(line: &[u8]) -> HandshakeLine {
    match Status::parse(line) {
        Some(s) if s.tag == PROXY_TAG && s.is_ok() => HandshakeLine::Done,
        Some(s) if s.tag == PROXY_TAG => HandshakeLine::Refused,
        Some(s) if s.tag == "*" && s.condition == "BYE" => HandshakeLine::Refused,
        Some(s) if s.tag == "*" => HandshakeLine::More,
        _ => HandshakeLine::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let head = CommandHead::parse(b"a1 uid fetch 1:* (FLAGS)\r\n").unwrap();
        assert_eq!(
            (head.tag.as_str(), head.name.as_str(), head.args.as_str()),
            ("a1", "UID FETCH", "1:* (FLAGS)")
        );
        assert_eq!(CommandHead::parse(b"a2 NOOP\r\n").unwrap().name, "NOOP");
        assert_eq!(CommandHead::parse(b"\r\n"), None);
        assert_eq!(CommandHead::parse(b"a+ NOOP\r\n"), None);
    }

    #[test]
    fn login_user_forms() {
        let user = |line: &[u8]| CommandHead::parse(line).unwrap().login_user();
        assert_eq!(user(b"a LOGIN alice secret\r\n").as_deref(), Some("alice"));
        assert_eq!(
            user(b"a LOGIN \"al \\\"ice\" secret\r\n").as_deref(),
            Some("al \"ice")
        );
        assert_eq!(user(b"a LOGIN {5}\r\n"), None);
    }

    #[test]
    fn dialect_replies() {
        assert_eq!(
            tagged_reply(b"* CAPABILITY IMAP4rev1\r\n"),
            HandshakeLine::More
        );
        assert_eq!(tagged_reply(b"PCLS0 OK Begin TLS\r\n"), HandshakeLine::Done);
        assert_eq!(tagged_reply(b"PCLS0 BAD no\r\n"), HandshakeLine::Refused);
        assert_eq!(
            ImapDialect::greeting(b"* PREAUTH hi\r\n"),
            GreetingKind::Preauthenticated
        );
        assert_eq!(
            ImapDialect::greeting(b"HTTP/1.1 200\r\n"),
            GreetingKind::Unusable
        );
    }
}
