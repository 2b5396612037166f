//! CAPA rewriting (RFC 2449 §5–§6, RFC 2595 §4, RFC 5034 §3, RFC 5802 §6).
//!
//! The proxy terminates TLS, so the backend's view of TLS is wrong for the client:
//! * the backend's `STLS` is dropped; `STLS` is added on a starttls listener before TLS;
//! * while TLS is required but not yet up, `USER` and `SASL` are dropped (the proxy refuses those
//!   logins with `-ERR [AUTH]`);
//! * SASL `*-PLUS` mechanisms are dropped (channel binding cannot survive TLS termination);
//! * everything else (`PIPELINING`, `TOP`, `UIDL`, `RESP-CODES`, ...) passes unchanged.

use super::codec::MultiLine;

/// What the client-facing side currently allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapaPolicy {
    /// Advertise STLS (starttls listener, TLS not yet up).
    pub offer_stls: bool,
    /// Hide USER and SASL (TLS required, not yet up).
    pub hide_login: bool,
}

/// Rewrites one capability line (without line ending); `None` drops it.
fn rewrite_line(line: &str, policy: CapaPolicy) -> Option<String> {
    let mut words = line.split_ascii_whitespace();
    let keyword = words.next()?.to_ascii_uppercase();
    match keyword.as_str() {
        "STLS" => None,
        "USER" if policy.hide_login => None,
        "SASL" if policy.hide_login => None,
        "SASL" => {
            let mechanisms = sasl_mechanisms(words);
            (!mechanisms.is_empty()).then(|| format!("SASL {mechanisms}"))
        }
        _ => Some(line.to_string()),
    }
}

/// Drops `*-PLUS` mechanisms from a space-separated mechanism list.
fn sasl_mechanisms<'a>(words: impl Iterator<Item = &'a str>) -> String {
    words
        .filter(|m| !m.to_ascii_uppercase().ends_with("-PLUS"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rewrites a complete `+OK` CAPA response for the client.
pub fn rewrite_capa(response: &MultiLine, policy: CapaPolicy) -> MultiLine {
    let body = response.body();
    let text = String::from_utf8_lossy(&body);
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        if let Some(kept) = rewrite_line(line, policy) {
            out.push_str(&kept);
            out.push_str("\r\n");
        }
    }
    if policy.offer_stls {
        out.push_str("STLS\r\n");
    }
    MultiLine::from_parts(response.status_line(), out.as_bytes())
}

/// Rewrites the mechanism list a bare `AUTH` returns (one mechanism per line): drops `*-PLUS`.
pub fn rewrite_auth_list(response: &MultiLine) -> MultiLine {
    let body = response.body();
    let text = String::from_utf8_lossy(&body);
    let mut out = String::with_capacity(text.len());
    for line in text
        .lines()
        .filter(|l| !l.trim().to_ascii_uppercase().ends_with("-PLUS"))
    {
        out.push_str(line);
        out.push_str("\r\n");
    }
    MultiLine::from_parts(response.status_line(), out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &[u8] = b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN SCRAM-SHA-256-PLUS SCRAM-SHA-256\r\n";

    fn capa(body: &[u8]) -> MultiLine {
        MultiLine::from_parts(b"+OK\r\n", body)
    }

    #[test]
    fn after_tls_only_backend_specifics_go() {
        let policy = CapaPolicy {
            offer_stls: false,
            hide_login: false,
        };
        let out = rewrite_capa(&capa(DOVECOT), policy);
        assert_eq!(
            out.body(),
            b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n"
        );
        assert_eq!(out.status_line(), b"+OK\r\n");
    }

    #[test]
    fn before_required_tls_logins_are_hidden() {
        let policy = CapaPolicy {
            offer_stls: true,
            hide_login: true,
        };
        let out = rewrite_capa(&capa(DOVECOT), policy);
        assert_eq!(
            out.body(),
            b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n"
        );
    }

    #[test]
    fn auth_list_drops_channel_binding() {
        let list = MultiLine::from_parts(b"+OK\r\n", b"PLAIN\r\nSCRAM-SHA-1-PLUS\r\n");
        assert_eq!(rewrite_auth_list(&list).body(), b"PLAIN\r\n");
    }
}
