//! Capability rewriting (RFC 9051 §7.2.2, RFC 2595 §3.1, RFC 4978, RFC 5802).
//!
//! The proxy terminates TLS and must see plaintext, so it rewrites every capability list the
//! backend sends — the greeting's `[CAPABILITY …]` code, untagged `* CAPABILITY` responses and
//! `[CAPABILITY …]` codes in tagged OKs:
//! * the backend's own `STARTTLS` and `LOGINDISABLED` are dropped (they describe the backend link);
//! * `STARTTLS` is advertised on a starttls listener before TLS, and `LOGINDISABLED` while TLS is
//!   required but not yet up;
//! * `COMPRESS=*` is dropped (compressed traffic could not be scanned);
//! * `AUTH=*-PLUS` is dropped (channel binding cannot survive TLS termination).

/// What the client-facing side currently allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityPolicy {
    /// Advertise STARTTLS (starttls listener, TLS not yet up).
    pub offer_starttls: bool,
    /// Advertise LOGINDISABLED (TLS required, not yet up).
    pub login_disabled: bool,
}

/// Whether a backend capability may be shown to the client.
fn keep(capability: &str) -> bool {
    let upper = capability.to_ascii_uppercase();
    !(upper == "STARTTLS"
        || upper == "LOGINDISABLED"
        || upper.starts_with("COMPRESS=")
        || (upper.starts_with("AUTH=") && upper.ends_with("-PLUS")))
}

/// Rewrites a space-separated capability list (the text after `CAPABILITY`).
pub fn rewrite_list(list: &str, policy: CapabilityPolicy) -> String {
    let mut out: Vec<&str> = list.split_ascii_whitespace().filter(|c| keep(c)).collect();
    if policy.offer_starttls {
        out.push("STARTTLS");
    }
    if policy.login_disabled {
        out.push("LOGINDISABLED");
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
    };
    const AFTER_TLS: CapabilityPolicy = CapabilityPolicy {
        offer_starttls: false,
        login_disabled: false,
    };

    #[test]
    fn untagged_capability_is_filtered() {
        let line = b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=SCRAM-SHA-256-PLUS COMPRESS=DEFLATE IDLE\r\n";
        assert_eq!(
            rewrite_line(line, AFTER_TLS).unwrap(),
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n"
        );
        assert_eq!(
            rewrite_line(line, BEFORE_TLS).unwrap(),
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE STARTTLS LOGINDISABLED\r\n"
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
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS LOGINDISABLED] Dovecot ready.\r\n"
        );
    }

    #[test]
    fn list_is_read_from_reply() {
        let reply = b"* CAPABILITY IMAP4rev1 IDLE\r\nP1 OK done\r\n";
        assert_eq!(list_from_reply(reply).as_deref(), Some("IMAP4rev1 IDLE"));
    }
}
