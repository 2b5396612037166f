//! The replacement for a blocked message: a well-formed RFC 5322 message that keeps the
//! original's identifying headers (raw lines, folding included) and explains what was found.
//!
//! Deterministic by design (IMAP clients cache bodies by UID, and partial fetches must fit
//! together): the bytes depend only on the original, the verdict, the quarantine id, the contact
//! and the template — never on the current time. Line endings are CRLF (RFC 5322 §2.1).

use mail_parser::Message;

use super::verdict::Verdict;

/// Headers copied from the original, in this order (RFC 5322 §3.6).
const KEPT_HEADERS: [&str; 8] = [
    "date",
    "from",
    "to",
    "cc",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
];

/// Built-in notice used when no template is configured (same placeholders as a template file).
pub const DEFAULT_TEMPLATE: &str =
    "This message was blocked by portcullis, the mail security gateway.\n\
\n\
Reason:          {verdict}\n\
Original subject: {subject}\n\
Original sender:  {from}\n\
Quarantine id:   {quarantine_id}\n\
\n\
The original message has been kept in quarantine. If you believe it is\n\
legitimate and need it, contact {contact} and quote the quarantine id.\n";

/// Inputs of a replacement besides the original.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    /// The verdict that blocked the message.
    pub verdict: &'a Verdict,
    /// Quarantine id of the original.
    pub quarantine_id: &'a str,
    /// Whom to contact.
    pub contact: &'a str,
    /// Body template with `{verdict}`, `{quarantine_id}`, `{contact}`, `{subject}`, `{from}`.
    pub template: &'a str,
}

/// Converts bare LF and bare CR to CRLF.
fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\r' if bytes.get(index + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                index += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            other => out.push(other),
        }
        index += 1;
    }
    out
}

fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The raw header lines of the original worth keeping (exact bytes, folding included).
fn kept_header_lines(message: Option<&Message<'_>>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(message) = message else {
        return out;
    };
    let raw = message.raw_message();
    for wanted in KEPT_HEADERS {
        for header in message.headers() {
            if !header.name().eq_ignore_ascii_case(wanted) {
                continue;
            }
            let span = raw.get(header.offset_field as usize..header.offset_end as usize);
            if let Some(line) = span {
                let mut line = to_crlf(line);
                if !line.ends_with(b"\r\n") {
                    line.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(&line);
            }
        }
    }
    out
}

/// `X-Portcullis-Verdict` value: label and detail, single line, ASCII only.
fn verdict_header(verdict: &Verdict) -> String {
    let text = verdict.describe();
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Fills the template placeholders.
pub fn render_body(message: Option<&Message<'_>>, notice: &Notice<'_>) -> String {
    let subject = message.and_then(|m| m.subject()).unwrap_or("(none)");
    let from = message
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        .unwrap_or("(unknown)");
    notice
        .template
        .replace("{verdict}", &single_line(&notice.verdict.describe()))
        .replace("{quarantine_id}", &single_line(notice.quarantine_id))
        .replace("{contact}", &single_line(notice.contact))
        .replace("{subject}", &single_line(subject))
        .replace("{from}", &single_line(from))
}

/// Builds the replacement message bytes.
pub fn build(message: Option<&Message<'_>>, notice: &Notice<'_>) -> Vec<u8> {
    let mut out = kept_header_lines(message);
    let headers = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\nX-Portcullis-Verdict: {}\r\n\
         X-Portcullis-Quarantine-Id: {}\r\n\r\n",
        verdict_header(notice.verdict),
        single_line(notice.quarantine_id),
    );
    out.extend_from_slice(headers.as_bytes());
    let mut body = to_crlf(render_body(message, notice).as_bytes());
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::mime;

    const ORIGINAL: &[u8] = b"Received: from x\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
From: Alice <alice@example.org>\r\nTo: bob@example.org,\r\n\tcarol@example.org\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= invoice\r\nMessage-ID: <m1@example.org>\r\n\
References: <a@x>\r\n <b@x>\r\nX-Other: drop me\r\n\r\nbody\r\n";

    fn infected() -> Verdict {
        Verdict::Infected {
            engine: "clamd".into(),
            signature: "Eicar-Test-Signature".into(),
        }
    }

    fn notice(verdict: &Verdict) -> Notice<'_> {
        Notice {
            verdict,
            quarantine_id: "0123456789abcdef",
            contact: "postmaster@example.org",
            template: DEFAULT_TEMPLATE,
        }
    }

    #[test]
    fn keeps_headers_exactly_and_is_deterministic() {
        let verdict = infected();
        let parsed = mime::parse(ORIGINAL);
        let first = build(parsed.as_ref(), &notice(&verdict));
        let second = build(mime::parse(ORIGINAL).as_ref(), &notice(&verdict));
        assert_eq!(first, second);
        let text = String::from_utf8(first).unwrap();
        assert!(text.starts_with(
            "Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nFrom: Alice <alice@example.org>\r\n"
        ));
        assert!(text.contains("To: bob@example.org,\r\n\tcarol@example.org\r\n"));
        assert!(text.contains("References: <a@x>\r\n <b@x>\r\n"));
        assert!(text.contains("Subject: =?utf-8?q?Caf=C3=A9?= invoice\r\n"));
        assert!(!text.contains("X-Other") && !text.contains("Received"));
        assert!(text.contains("X-Portcullis-Verdict: infected: Eicar-Test-Signature (clamd)\r\n"));
        assert!(text.contains("Quarantine id:   0123456789abcdef"));
        assert!(text.contains("Original subject: Café invoice"));
        assert!(text.contains("contact postmaster@example.org"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        let reparsed = mime::parse(text.as_bytes()).unwrap();
        assert_eq!(reparsed.message_id(), Some("m1@example.org"));
    }

    #[test]
    fn lf_original_and_template() {
        let original = b"Subject: hi\nFrom: a@b\n\nx\n";
        let verdict = Verdict::Rule {
            name: "exe".into(),
            action: crate::scan::rules::RuleAction::Block,
        };
        let mut n = notice(&verdict);
        n.template = "{verdict}|{quarantine_id}|{contact}|{subject}|{from}";
        let text = String::from_utf8(build(mime::parse(original).as_ref(), &n)).unwrap();
        assert!(text.starts_with("From: a@b\r\nSubject: hi\r\n"));
        assert!(text.ends_with(
            "\r\n\r\nrule exe (block)|0123456789abcdef|postmaster@example.org|hi|a@b\r\n"
        ));
    }
}
