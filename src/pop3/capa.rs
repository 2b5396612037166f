//! The capabilities the proxy advertises (RFC 2449 §5–§6, RFC 2595 §4, RFC 5034 §3): the
//! backend's CAPA, rewritten through an allow-list of what the proxy itself parses.
//!
//! * kept when the backend has them: `TOP`, `USER`, `UIDL`, `RESP-CODES`, `AUTH-RESP-CODE`,
//!   `PIPELINING`, `EXPIRE`, `LOGIN-DELAY` (their arguments only if they are plain tokens);
//! * `SASL` becomes `SASL PLAIN LOGIN` — the mechanisms the proxy runs itself ([`crate::sasl`]) —
//!   when the proxy can log in to the backend with the result (backend `SASL PLAIN` or `USER`);
//! * the backend's `STLS` is dropped; `STLS` is added on a starttls listener before TLS;
//! * while TLS is required but not up yet, `USER` and `SASL` are dropped (those logins are
//!   refused with `-ERR [AUTH]`, RFC 3206);
//! * everything else (`XCLIENT`, `IMPLEMENTATION`, unknown extensions) is dropped: the proxy does
//!   not advertise what it does not understand.

use crate::sasl::MECHANISMS;

/// What the client-facing side currently allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapaPolicy {
    /// Advertise STLS (starttls listener, TLS not yet up).
    pub offer_stls: bool,
    /// Hide USER and SASL (TLS required, not yet up).
    pub hide_login: bool,
}

/// Capabilities without arguments that pass when the backend has them.
const PLAIN_KEYWORDS: [&str; 6] = [
    "TOP",
    "USER",
    "UIDL",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
];
/// Capabilities whose (token) arguments pass too.
const ARGUMENT_KEYWORDS: [&str; 2] = ["EXPIRE", "LOGIN-DELAY"];

/// A backend's capability list: one `(KEYWORD, arguments)` per line, keyword upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    lines: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    /// Parses a complete CAPA reply as the connector read it (`+OK` line, body, `.` line).
    /// A backend without CAPA (`-ERR`, or nothing) is assumed to offer `USER` only (RFC 1939).
    pub fn from_reply(reply: Option<&[u8]>) -> Capabilities {
        match reply {
            Some(raw) if raw.len() >= 3 && raw[..3].eq_ignore_ascii_case(b"+OK") => {
                let body_start = raw
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(raw.len(), |i| i + 1);
                Capabilities::from_body(&raw[body_start..])
            }
            _ => Capabilities::from_body(b"USER\r\n"),
        }
    }

    /// Parses the (unstuffed) body lines of a CAPA reply; a `.` line ends it.
    pub fn from_body(body: &[u8]) -> Capabilities {
        let text = String::from_utf8_lossy(body);
        let lines = text
            .lines()
            .take_while(|line| *line != ".")
            .filter_map(|line| {
                let mut words = line.split_ascii_whitespace();
                let keyword = words.next()?.to_ascii_uppercase();
                Some((keyword, words.map(str::to_string).collect()))
            })
            .collect();
        Capabilities { lines }
    }

    /// Whether the backend lists `keyword`.
    pub fn has(&self, keyword: &str) -> bool {
        self.lines.iter().any(|(k, _)| k == keyword)
    }

    /// Whether the backend offers SASL PLAIN (the proxy then logs in with `AUTH PLAIN`).
    pub fn sasl_plain(&self) -> bool {
        self.lines
            .iter()
            .any(|(k, args)| k == "SASL" && args.iter().any(|m| m.eq_ignore_ascii_case("PLAIN")))
    }

    /// Whether the proxy can complete a SASL login of its own on this backend.
    pub fn proxy_sasl(&self) -> bool {
        self.sasl_plain() || self.has("USER")
    }

    /// The body lines (CRLF each) the client gets under `policy`.
    pub fn render(&self, policy: CapaPolicy) -> Vec<u8> {
        let mut out = String::new();
        for (keyword, args) in &self.lines {
            if let Some(line) = self.rewrite(keyword, args, policy) {
                out.push_str(&line);
                out.push_str("\r\n");
            }
        }
        if !policy.hide_login && self.proxy_sasl() && !self.has("SASL") {
            out.push_str(&sasl_line());
            out.push_str("\r\n");
        }
        if policy.offer_stls {
            out.push_str("STLS\r\n");
        }
        out.into_bytes()
    }

    /// A complete CAPA response (status line, body, terminator) for the client.
    pub fn response(&self, status_line: &[u8], policy: CapaPolicy) -> Vec<u8> {
        let mut out = status_line.to_vec();
        out.extend_from_slice(&self.render(policy));
        out.extend_from_slice(b".\r\n");
        out
    }

    fn rewrite(&self, keyword: &str, args: &[String], policy: CapaPolicy) -> Option<String> {
        match keyword {
            "USER" | "SASL" if policy.hide_login => None,
            "SASL" => self.proxy_sasl().then(sasl_line),
            k if PLAIN_KEYWORDS.contains(&k) => Some(k.to_string()),
            k if ARGUMENT_KEYWORDS.contains(&k) => {
                let tokens = args
                    .iter()
                    .all(|a| a.bytes().all(|b| b.is_ascii_alphanumeric()));
                tokens.then(|| {
                    [k.to_string()]
                        .into_iter()
                        .chain(args.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            }
            _ => None,
        }
    }
}

/// `SASL PLAIN LOGIN`: the mechanisms the proxy runs itself.
fn sasl_line() -> String {
    let names: Vec<&str> = MECHANISMS.iter().map(|m| m.name()).collect();
    format!("SASL {}", names.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN SCRAM-SHA-256-PLUS CRAM-MD5\r\nXCLIENT\r\nIMPLEMENTATION Dovecot\r\nX-UNKNOWN 1\r\nEXPIRE 30 USER\r\nLOGIN-DELAY 900\r\n.\r\n";

    #[test]
    fn after_tls_only_the_allow_list_passes() {
        let capa = Capabilities::from_reply(Some(DOVECOT));
        let out = capa.render(CapaPolicy::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\nEXPIRE 30 USER\r\nLOGIN-DELAY 900\r\n"
        );
    }

    #[test]
    fn before_required_tls_logins_are_hidden_and_stls_offered() {
        let policy = CapaPolicy {
            offer_stls: true,
            hide_login: true,
        };
        let capa = Capabilities::from_reply(Some(DOVECOT));
        let out = String::from_utf8(capa.response(b"+OK\r\n", policy)).unwrap();
        assert!(
            out.starts_with("+OK\r\nTOP\r\n") && out.ends_with("STLS\r\n.\r\n"),
            "{out}"
        );
        assert!(
            !out.lines().any(|l| l == "USER") && !out.contains("SASL"),
            "{out}"
        );
        assert_eq!(out.matches("STLS").count(), 1);
    }

    #[test]
    fn sasl_follows_what_the_proxy_can_do() {
        // A backend with USER but no SASL: the proxy still runs PLAIN/LOGIN (USER/PASS behind).
        let capa = Capabilities::from_body(b"USER\r\nTOP\r\n");
        assert_eq!(
            capa.render(CapaPolicy::default()),
            b"USER\r\nTOP\r\nSASL PLAIN LOGIN\r\n"
        );
        // Only mechanisms the proxy cannot complete, no USER: no SASL at all.
        let capa = Capabilities::from_body(b"SASL CRAM-MD5\r\nTOP\r\n");
        assert_eq!(capa.render(CapaPolicy::default()), b"TOP\r\n");
        assert!(!capa.proxy_sasl());
        // Bad arguments drop the capability; no CAPA support means USER.
        let capa = Capabilities::from_body(b"EXPIRE 3\x01\r\n");
        assert_eq!(capa.render(CapaPolicy::default()), b"");
        let capa = Capabilities::from_reply(Some(b"-ERR no\r\n"));
        assert!(capa.has("USER") && !capa.sasl_plain());
    }
}
