//! Protocol lines for logs with secrets left out (LOGIN, AUTHENTICATE, PASS, APOP, AUTH).

use std::fmt;

/// A protocol line for logs: commands that carry secrets show only their first two words.
pub struct Redacted<'a> {
    line: &'a [u8],
    secret: bool,
}

impl<'a> Redacted<'a> {
    /// Wraps a line; `secret` hides everything after the command name (and the whole line if
    /// no known secret-bearing command is recognised).
    pub fn new(line: &'a [u8], secret: bool) -> Redacted<'a> {
        Redacted { line, secret }
    }
}

/// Command names after which everything on the line is secret (IMAP and POP3).
const SECRET_COMMANDS: &[&str] = &["LOGIN", "AUTHENTICATE", "PASS", "APOP", "AUTH"];

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = crate::backend::printable(self.line);
        if !self.secret {
            return f.write_str(&text);
        }
        // Show the words up to and including the secret-bearing command name, nothing after.
        let words: Vec<&str> = text.split(' ').take(2).collect();
        let visible = words
            .iter()
            .position(|w| SECRET_COMMANDS.iter().any(|c| w.eq_ignore_ascii_case(c)))
            .map_or(0, |index| index + 1);
        write!(f, "{} <redacted>", words[..visible].join(" "))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let shown = Redacted::new(b"a1 LOGIN alice hunter2\r\n", true).to_string();
        assert_eq!(shown, "a1 LOGIN <redacted>");
        assert!(!format!("{:?}", Redacted::new(b"PASS hunter2\r\n", true)).contains("hunter2"));
        assert_eq!(Redacted::new(b"a2 NOOP\r\n", false).to_string(), "a2 NOOP");
        assert_eq!(
            Redacted::new(b"PASS hunter2\r\n", true).to_string(),
            "PASS <redacted>"
        );
        assert_eq!(
            Redacted::new(b"dGVzdA==\r\n", true).to_string(),
            " <redacted>"
        );
    }
}
