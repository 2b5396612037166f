//! MIME decoding (mail-parser 0.11) into a flat view for rules, and the two byte-preserving
//! rewrites: `strip` (replace attachment parts by a notice part) and `tag` (Subject prefix plus an
//! `X-Portcullis-Rule` header). Everything outside the changed spans stays byte-identical.
//!
//! Header syntax: RFC 5322 §2.2; MIME structure: RFC 2045/2046; parameters: RFC 2231;
//! encoded words: RFC 2047.

use mail_parser::{Address, Encoding, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Deepest nesting of message/rfc822 parts that is inspected.
const MAX_DEPTH: usize = 8;

/// One MIME part as rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartView {
    /// `type/subtype`, lower case (`text/plain` when absent).
    pub content_type: String,
    /// Decoded file names (Content-Disposition `filename`, Content-Type `name`).
    pub filenames: Vec<String>,
    /// Decoded text of `text/*` parts.
    pub text: Option<String>,
    /// Raw byte span `[header start, body end)` when this part can be spliced out.
    pub span: Option<(usize, usize)>,
}

/// The decoded message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MimeView {
    /// Top-level headers: (lower-case name, decoded value).
    pub headers: Vec<(String, String)>,
    /// All parts, depth first, including parts of nested messages. Index 0 is the root.
    pub parts: Vec<PartView>,
}

/// Parses `raw`; `None` if mail-parser finds no message at all.
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

fn address_text(address: &Address<'_>) -> String {
    let items: Vec<String> = address
        .iter()
        .map(|addr| match (&addr.name, &addr.address) {
            (Some(name), Some(a)) => format!("{name} <{a}>"),
            (None, Some(a)) => a.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => String::new(),
        })
        .collect();
    items.join(", ")
}

/// The decoded value of a header, or its unfolded raw text.
fn header_text(value: &HeaderValue<'_>, raw: &[u8]) -> String {
    match value {
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(list) => list.join(", "),
        HeaderValue::Address(address) => address_text(address),
        _ => String::from_utf8_lossy(raw)
            .replace(['\r', '\n'], "")
            .trim()
            .to_string(),
    }
}

/// Builds the rule view of a parsed message.
pub fn view(message: &Message<'_>) -> MimeView {
    let raw = message.raw_message();
    let headers = message
        .headers()
        .iter()
        .map(|h| {
            let span = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            (h.name().to_ascii_lowercase(), header_text(&h.value, span))
        })
        .collect();
    let mut view = MimeView {
        headers,
        parts: Vec::new(),
    };
    collect_parts(message, true, 0, raw.len(), &mut view.parts);
    view
}

fn collect_parts(
    message: &Message<'_>,
    spliceable: bool,
    depth: usize,
    limit: usize,
    out: &mut Vec<PartView>,
) {
    for (index, part) in message.parts.iter().enumerate() {
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "text/plain".to_string())
            .to_ascii_lowercase();
        let mut filenames = Vec::new();
        let disposition = part
            .content_disposition()
            .and_then(|d| d.attribute("filename"));
        let ct_name = part.content_type().and_then(|c| c.attribute("name"));
        for name in [disposition, ct_name].into_iter().flatten() {
            if !filenames.iter().any(|n: &String| n == name) {
                filenames.push(name.to_string());
            }
        }
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => Some(text.to_string()),
            _ => None,
        };
        let (start, end) = (part.offset_header as usize, part.offset_end as usize);
        let root = depth == 0 && index == 0;
        let span = (spliceable && !root && start < end && end <= limit).then_some((start, end));
        out.push(PartView {
            content_type,
            filenames,
            text,
            span,
        });
        if let (PartType::Message(nested), true) = (&part.body, depth < MAX_DEPTH) {
            let inner_ok = spliceable && part.encoding == Encoding::None;
            collect_parts(nested, inner_ok, depth + 1, limit, out);
        }
    }
}

/// The line ending used by the message's first header line.
pub fn line_ending(raw: &[u8]) -> &'static str {
    let first_lf = raw.iter().position(|&b| b == b'\n');
    match first_lf {
        Some(pos) if pos > 0 && raw.get(pos - 1) == Some(&b'\r') => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A text/plain part that replaces a stripped attachment.
fn notice_part(rule: &str, filename: &str, eol: &str) -> String {
    let filename = one_line(filename);
    format!(
        "Content-Type: text/plain; charset=utf-8{eol}Content-Disposition: inline{eol}\
         Content-Transfer-Encoding: 8bit{eol}X-Portcullis-Stripped: {rule}{eol}{eol}\
         The attachment \"{filename}\" was removed by portcullis (rule {rule})."
    )
}

/// Replaces each `(part index, rule)` span by a notice part. `None` when a part cannot be
/// spliced (root part, inside an encoded nested message): the caller must block instead.
pub fn strip(raw: &[u8], view: &MimeView, targets: &[(usize, String)]) -> Option<Vec<u8>> {
    let eol = line_ending(raw);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (index, rule) in targets {
        let part = view.parts.get(*index)?;
        let (start, end) = part.span?;
        let name = part
            .filenames
            .first()
            .map(String::as_str)
            .unwrap_or("unnamed");
        edits.push((start, end, notice_part(rule, name, eol)));
    }
    edits.sort_by_key(|(start, end, _)| (*start, std::cmp::Reverse(*end)));
    let mut out = Vec::with_capacity(raw.len());
    let mut cursor = 0;
    for (start, end, notice) in edits {
        if start < cursor {
            continue; // nested inside a part already replaced
        }
        out.extend_from_slice(raw.get(cursor..start)?);
        out.extend_from_slice(notice.as_bytes());
        cursor = end;
    }
    out.extend_from_slice(raw.get(cursor..)?);
    Some(out)
}

/// Prefixes the Subject with `[portcullis: RULE]` and prepends `X-Portcullis-Rule: RULE`.
pub fn tag(message: &Message<'_>, rule: &str) -> Vec<u8> {
    let raw = message.raw_message();
    let eol = line_ending(raw);
    let marker = format!("[portcullis: {rule}]");
    let subject = message
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("subject"));
    let mut out = Vec::with_capacity(raw.len() + 2 * marker.len() + 64);
    out.extend_from_slice(format!("X-Portcullis-Rule: {rule}{eol}").as_bytes());
    match subject {
        Some(header) => {
            let mut at = header.offset_start as usize;
            while matches!(raw.get(at), Some(b' ' | b'\t')) {
                at += 1;
            }
            let (head, tail) = raw.split_at_checked(at).unwrap_or((raw, &[]));
            out.extend_from_slice(head);
            out.extend_from_slice(format!("{marker} ").as_bytes());
            out.extend_from_slice(tail);
        }
        None => {
            out.extend_from_slice(format!("Subject: {marker}{eol}").as_bytes());
            out.extend_from_slice(raw);
        }
    }
    out
}
