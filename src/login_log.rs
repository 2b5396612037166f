//! The one log line of a failed login, shared by IMAP and POP3, in a fixed format that
//! log watchers such as fail2ban (`deploy/fail2ban/portcullis.conf`) can match:
//!
//! ```text
//! login failed user=<name> client=<ip> protocol=<imap|pop3>
//! ```
//!
//! The line is the whole message of a `WARN` event with target `portcullis::login`, so it
//! is the end of a text or journald line and the `message` of a JSON line. The user name is
//! what the client sent, so it is [sanitized](sanitize_user): never a space, quote, backslash,
//! control or non-ASCII character, at most [`MAX_USER_CHARS`] characters; a client cannot
//! forge a second `client=` in the line.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::Protocol;

/// Characters of a user name logged; longer names are cut and end in `...`.
pub const MAX_USER_CHARS: usize = 64;

/// `user` with every character that is not printable ASCII, and space, `"` and `\`, written
/// as `\xNN` (`\u{NNNN}` beyond ASCII), cut to [`MAX_USER_CHARS`] input characters; an empty
/// name is `-`.
pub fn sanitize_user(user: &str) -> String {
    if user.is_empty() {
        return "-".to_string();
    }
    let mut out = String::new();
    for (count, c) in user.chars().enumerate() {
        if count == MAX_USER_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' | ' ' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_ascii_graphic() => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
        }
    }
    out
}

/// The message of the failed-login line.
pub fn failed_line(user: &str, client: IpAddr, protocol: Protocol) -> String {
    format!(
        "login failed user={} client={} protocol={}",
        sanitize_user(user),
        client.to_canonical(),
        protocol.as_str()
    )
}

/// Logs a login the backend refused: one `WARN` line in the [fixed format](self).
pub fn login_failed(user: &str, client: IpAddr, protocol: Protocol) {
    tracing::warn!(target: "portcullis::login", "{}", failed_line(user, client, protocol));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_the_fixed_format() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            failed_line("alice@example.org", ip, Protocol::Pop3),
            "login failed user=alice@example.org client=192.0.2.7 protocol=pop3"
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(failed_line("a", mapped, Protocol::Imap).contains(" client=192.0.2.7 "));
    }

    #[test]
    fn hostile_names_cannot_forge_fields_or_lines() {
        let forged = sanitize_user("x client=10.0.0.1 protocol=imap\r\nlogin failed \"\\\u{7f}é");
        assert!(!forged.contains([' ', '\r', '\n', '"']), "{forged}");
        assert_eq!(
            forged,
            "x\\x20client=10.0.0.1\\x20protocol=imap\\x0d\\x0alogin\\x20failed\\x20\\x22\\x5c\\x7f\\u{00e9}"
        );
        assert_eq!(sanitize_user(""), "-");
        let long = sanitize_user(&"a".repeat(500));
        assert_eq!(long.len(), MAX_USER_CHARS + 3);
        assert!(long.ends_with("..."));
    }
}
