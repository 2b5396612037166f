//! The replacement for a blocked message: a well-formed RFC 5322 message that names the
//! original by re-encoded identifying headers (see [`super::reencode`]) and explains what was
//! found — or, when that full notice is not clean, the [`minimal`] notice with no copied content.
//!
//! Deterministic by design (IMAP clients cache bodies by UID, and partial fetches must fit
//! together): the bytes depend only on the headers passed in (themselves a pure function of the
//! original), the verdict, the quarantine id, the contact and the template — never on the current
//! time. Line endings are CRLF (RFC 5322 §2.1).

use super::reencode::SafeHeader;
use super::verdict::{verdict_label, Verdict};

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
legitimate and need it: to have it released, ask {contact}\n\
quoting id {quarantine_id}.\n";

/// Placeholder text for a header the original has but the notice does not show.
pub const WITHHELD: &str = "(withheld)";

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

/// Whether the original has a Subject / From header at all (to tell "withheld" from "none").
#[derive(Debug, Clone, Copy, Default)]
pub struct Present {
    /// A `Subject` header exists.
    pub subject: bool,
    /// A `From` header exists.
    pub from: bool,
}

/// What the `{subject}` and `{from}` placeholders show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Decoded subject, or `(none)` / [`WITHHELD`].
    pub subject: String,
    /// First sender address, or `(unknown)` / [`WITHHELD`].
    pub from: String,
}

impl Shown {
    /// The placeholders for the headers kept in the notice.
    pub fn of(headers: &[SafeHeader], present: Present) -> Shown {
        let find = |name: &str| headers.iter().find(|h| h.name == name);
        let subject = match find("Subject") {
            Some(h) => h.text.clone(),
            None if present.subject => WITHHELD.to_string(),
            None => "(none)".to_string(),
        };
        let from = match find("From") {
            Some(h) => {
                let first = h.text.split(", ").next().unwrap_or_default();
                match first.rsplit_once('<') {
                    Some((_, spec)) => spec.trim_end_matches('>').to_string(),
                    None => first.to_string(),
                }
            }
            None if present.from => WITHHELD.to_string(),
            None => "(unknown)".to_string(),
        };
        Shown { subject, from }
    }
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

/// Printable ASCII only (header values the notice itself writes).
fn ascii_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Fills the template placeholders.
pub fn render_body(shown: &Shown, notice: &Notice<'_>) -> String {
    notice
        .template
        .replace("{verdict}", &single_line(&notice.verdict.describe()))
        .replace("{quarantine_id}", &single_line(notice.quarantine_id))
        .replace("{contact}", &single_line(notice.contact))
        .replace("{subject}", &single_line(&shown.subject))
        .replace("{from}", &single_line(&shown.from))
}

fn finish(mut out: Vec<u8>, body: &str) -> Vec<u8> {
    let mut body = to_crlf(body.as_bytes());
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&body);
    out
}

/// Builds the full notice: the given re-encoded headers, then the notice's own headers and the
/// rendered template.
pub fn build(headers: &[SafeHeader], shown: &Shown, notice: &Notice<'_>) -> Vec<u8> {
    let mut out: Vec<u8> = headers
        .iter()
        .flat_map(|h| h.field.as_bytes().iter().copied())
        .collect();
    let own = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\nX-Portcullis-Verdict: {}\r\n\
         X-Portcullis-Quarantine-Id: {}\r\n\r\n",
        ascii_line(&notice.verdict.describe()),
        ascii_line(notice.quarantine_id),
    );
    out.extend_from_slice(own.as_bytes());
    finish(out, &render_body(shown, notice))
}

/// Fixed text of the minimal notice.
const MINIMAL_TEXT: &str = "This message was blocked by portcullis, the mail security gateway.\n\
\n\
Nothing of the original message is shown here. It has been kept in\n\
quarantine. If you believe it is legitimate and need it, ask for it to\n\
be released as shown below.\n\
\n";

/// The minimal notice: fixed text, the verdict's label, the quarantine id and the contact — no
/// header or text of the original, no template, no signature or rule name.
pub fn minimal(notice: &Notice<'_>) -> Vec<u8> {
    let own = format!(
        "Subject: Message blocked by portcullis\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
         X-Portcullis-Verdict: {}\r\nX-Portcullis-Quarantine-Id: {}\r\n\
         X-Portcullis-Notice: minimal\r\n\r\n",
        verdict_label(notice.verdict),
        ascii_line(notice.quarantine_id),
    );
    let (id, contact) = (
        single_line(notice.quarantine_id),
        single_line(notice.contact),
    );
    let body = format!(
        "{MINIMAL_TEXT}To have it released, ask {contact} quoting id {id}.\n\n\
         Quarantine id: {id}\nContact:       {contact}\n"
    );
    finish(own.into_bytes(), &body)
}

/// A small message carrying one header both encoded (as a header) and decoded (as its text
/// body), so rules and the antivirus judge exactly what the notice would show of it.
pub fn probe(header: &SafeHeader) -> Vec<u8> {
    let head = format!(
        "{}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        header.field
    );
    finish(head.into_bytes(), &single_line(&header.text))
}

#[cfg(test)]
#[path = "replace_tests.rs"]
mod tests;
