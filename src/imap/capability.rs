//! Capability rewriting (RFC 9051 §7.2.2, RFC 2595 §3.1, RFC 4959, RFC 5530).
//!
//! Capabilities are an **allow-list**: the client is offered only what the proxy parses
//! ([`super::grammar::capability_allowed`]); anything else the backend advertises is stripped,
//! since a client that used it would take the session somewhere the proxy cannot follow. The
//! proxy rewrites every capability list the backend sends — the greeting's `[CAPABILITY …]`
//! code, untagged `* CAPABILITY` responses and `[CAPABILITY …]` codes in tagged OKs:
//! * the backend's `STARTTLS`, `LOGINDISABLED`, `AUTH=*` and `SASL-IR` describe the backend
//!   link and are dropped;
//! * before login the proxy runs authentication itself, so it offers its own mechanisms
//!   (`AUTH=PLAIN AUTH=LOGIN SASL-IR`) unless logins are disabled;
//! * `STARTTLS` is advertised on a starttls listener before TLS, and `LOGINDISABLED` while TLS is
//!   required but not yet up.

use super::grammar;
use crate::sasl::MECHANISMS;

/// What the client-facing side currently allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityPolicy {
    /// Advertise STARTTLS (starttls listener, TLS not yet up).
    pub offer_starttls: bool,
    /// Advertise LOGINDISABLED (TLS required, not yet up).
    pub login_disabled: bool,
    /// The client has not logged in: advertise the proxy's SASL mechanisms.
    pub pre_login: bool,
}

/// Whether a backend capability may be shown to the client.
fn keep(capability: &str) -> bool {
    let upper = capability.to_ascii_uppercase();
    let backend_link = upper == "STARTTLS"
        || upper == "LOGINDISABLED"
        || upper == "SASL-IR"
        || upper.starts_with("AUTH=");
    !backend_link && grammar::capability_allowed(capability)
}

/// Rewrites a space-separated capability list (the text after `CAPABILITY`).
pub fn rewrite_list(list: &str, policy: CapabilityPolicy) -> String {
    let mut out: Vec<String> = list
        .split_ascii_whitespace()
        .filter(|c| keep(c))
        .map(str::to_string)
        .collect();
    if policy.pre_login && !policy.login_disabled {
        out.extend(MECHANISMS.iter().map(|m| format!("AUTH={}", m.name())));
        out.push("SASL-IR".into());
    }
    if policy.offer_starttls {
        out.push("STARTTLS".into());
    }
    if policy.login_disabled {
        out.push("LOGINDISABLED".into());
    }
    out.join(" ")
}

/// Rewrites a whole response line if it carries capabilities: `* CAPABILITY …` or any status
/// response with a `[CAPABILITY …]` code. Returns `None` when the line has none.
pub fn rewrite_line(line: &[u8], policy: CapabilityPolicy) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(line).ok()?;
    let (body, ending) = split_ending(text);
    if let Some(list) = strip_prefix_ci(body, "* CAPABILITY ") {
        return Some(format!("* CAPABILITY {}{ending}", rewrite_list(list, policy)).into_bytes());
    }
    let start = find_ci(body, "[CAPABILITY ")?;
    let list_start = start + "[CAPABILITY ".len();
    let list_end = list_start + body[list_start..].find(']')?;
    let rewritten = rewrite_list(&body[list_start..list_end], policy);
    Some(
        format!(
            "{}{}{}{ending}",
            &body[..list_start],
            rewritten,
            &body[list_end..]
        )
        .into_bytes(),
    )
}

/// Replaces the `[CAPABILITY …]` code of a greeting with `list` (used when the capabilities were
/// asked again over TLS on a STARTTLS backend), then applies the policy.
pub fn greeting_with(line: &[u8], list: Option<&str>, policy: CapabilityPolicy) -> Vec<u8> {
    let replaced = match (std::str::from_utf8(line), list) {
        (Ok(text), Some(list)) => replace_code(text, list).map(String::into_bytes),
        _ => None,
    };
    let line = replaced.as_deref().unwrap_or(line);
    rewrite_line(line, policy).unwrap_or_else(|| line.to_vec())
}

/// Extracts the list from `* CAPABILITY …` lines of a reply.
pub fn list_from_reply(reply: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(reply).ok()?;
    text.split('\n')
        .find_map(|line| strip_prefix_ci(line.trim_end_matches('\r'), "* CAPABILITY "))
        .map(str::to_string)
}

/// The list in a `[CAPABILITY …]` response code (e.g. of the greeting).
pub fn list_from_code(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let start = find_ci(text, "[CAPABILITY ")? + "[CAPABILITY ".len();
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

fn replace_code(text: &str, list: &str) -> Option<String> {
    let start = find_ci(text, "[CAPABILITY ")? + "[CAPABILITY ".len();
    let end = start + text[start..].find(']')?;
    Some(format!("{}{}{}", &text[..start], list, &text[end..]))
}

fn split_ending(text: &str) -> (&str, &str) {
    let body = text.trim_end_matches(['\r', '\n']);
    (body, &text[body.len()..])
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn find_ci(text: &str, needle: &str) -> Option<usize> {
    text.to_ascii_uppercase().find(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE_TLS: CapabilityPolicy = CapabilityPolicy {
        offer_starttls: true,
        login_disabled: true,
        pre_login: true,
    };
    const AFTER_TLS: CapabilityPolicy = CapabilityPolicy {
        offer_starttls: false,
        login_disabled: false,
        pre_login: false,
    };
    const PRE_LOGIN_TLS: CapabilityPolicy = CapabilityPolicy {
        pre_login: true,
        ..AFTER_TLS
    };

    #[test]
    fn untagged_capability_is_filtered() {
        let line = b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=SCRAM-SHA-256-PLUS COMPRESS=DEFLATE IDLE PREVIEW XUNKNOWN SASL-IR\r\n";
        assert_eq!(
            rewrite_line(line, AFTER_TLS).unwrap(),
            b"* CAPABILITY IMAP4rev1 IDLE\r\n"
        );
        assert_eq!(
            rewrite_line(line, BEFORE_TLS).unwrap(),
            b"* CAPABILITY IMAP4rev1 IDLE STARTTLS LOGINDISABLED\r\n"
        );
        assert_eq!(
            rewrite_line(line, PRE_LOGIN_TLS).unwrap(),
            b"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN AUTH=LOGIN SASL-IR\r\n"
        );
    }

    #[test]
    fn capability_code_in_tagged_ok() {
        let line = b"a1 OK [CAPABILITY IMAP4rev1 LOGINDISABLED COMPRESS=DEFLATE] Logged in\r\n";
        assert_eq!(
            rewrite_line(line, AFTER_TLS).unwrap(),
            b"a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"
        );
        assert_eq!(rewrite_line(b"a1 OK done\r\n", AFTER_TLS), None);
    }

    #[test]
    fn greeting_gets_post_tls_list() {
        let greeting = b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n";
        let out = greeting_with(greeting, Some("IMAP4rev1 AUTH=PLAIN"), BEFORE_TLS);
        assert_eq!(
            out,
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n"
        );
        assert_eq!(
            list_from_code(greeting).as_deref(),
            Some("IMAP4rev1 STARTTLS LOGINDISABLED")
        );
    }

    #[test]
    fn list_is_read_from_reply() {
        let reply = b"* CAPABILITY IMAP4rev1 IDLE\r\nP1 OK done\r\n";
        assert_eq!(list_from_reply(reply).as_deref(), Some("IMAP4rev1 IDLE"));
    }
}
