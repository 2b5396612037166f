//! `ENVELOPE` and `BODYSTRUCTURE`/`BODY` of a message the proxy holds itself — a replacement or a
//! modified message — so a blocked message's structure items describe what is served, never the
//! original (RFC 9051 §7.5.2 / RFC 3501 §7.4.2 `envelope`, `body`; RFC 2183 dispositions).
//!
//! Strings go out as quoted strings when they are printable US-ASCII, otherwise as literals.

use mail_parser::{Addr, Address, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// Deepest nesting of parts described; deeper parts are cut off (mail-parser limits it too).
const MAX_DEPTH: usize = 32;

/// The `ENVELOPE` value of `message`.
pub fn envelope(message: &[u8]) -> Option<Vec<u8>> {
    let parsed = MessageParser::default().parse(message)?;
    let mut out = Vec::new();
    envelope_of(&mut out, &parsed);
    Some(out)
}

/// The `BODYSTRUCTURE` (`extensible`) or `BODY` value of `message`.
pub fn body_structure(message: &[u8], extensible: bool) -> Option<Vec<u8>> {
    let parsed = MessageParser::default().parse(message)?;
    let mut out = Vec::new();
    part_structure(&mut out, &parsed, parsed.root_part(), extensible, 0);
    Some(out)
}

fn envelope_of(out: &mut Vec<u8>, message: &Message<'_>) {
    let raw = |name: &str| message.header_raw(name).map(unfold);
    out.push(b'(');
    nstring(out, raw("Date").as_deref());
    out.push(b' ');
    nstring(out, raw("Subject").as_deref());
    let from = message.from();
    for list in [
        from,
        message.sender().or(from),
        message.reply_to().or(from),
        message.to(),
        message.cc(),
        message.bcc(),
    ] {
        out.push(b' ');
        addresses(out, list);
    }
    out.push(b' ');
    nstring(out, raw("In-Reply-To").as_deref());
    out.push(b' ');
    nstring(out, raw("Message-ID").as_deref());
    out.push(b')');
}

/// A raw header value without folding and surrounding blanks.
fn unfold(value: &str) -> String {
    value.replace(['\r', '\n'], "").trim().to_string()
}

fn addresses(out: &mut Vec<u8>, list: Option<&Address<'_>>) {
    let start = out.len();
    out.push(b'(');
    match list {
        Some(Address::List(addrs)) => addrs.iter().for_each(|a| address(out, a)),
        Some(Address::Group(groups)) => {
            for group in groups {
                if let Some(name) = &group.name {
                    out.extend_from_slice(b"(NIL NIL ");
                    nstring(out, Some(name));
                    out.extend_from_slice(b" NIL)");
                    group.addresses.iter().for_each(|a| address(out, a));
                    out.extend_from_slice(b"(NIL NIL NIL NIL)");
                } else {
                    group.addresses.iter().for_each(|a| address(out, a));
                }
            }
        }
        None => {}
    }
    if out.len() == start + 1 {
        out.truncate(start);
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b')');
    }
}

fn address(out: &mut Vec<u8>, addr: &Addr<'_>) {
    let text = addr.address.as_deref().unwrap_or_default();
    let (mailbox, host) = match text.rsplit_once('@') {
        Some((mailbox, host)) => (mailbox, Some(host)),
        None => (text, None),
    };
    out.push(b'(');
    nstring(out, addr.name.as_deref());
    out.extend_from_slice(b" NIL ");
    nstring(out, Some(mailbox));
    out.push(b' ');
    nstring(out, host);
    out.push(b')');
}

fn part_structure(
    out: &mut Vec<u8>,
    owner: &Message<'_>,
    part: &MessagePart<'_>,
    extensible: bool,
    depth: usize,
) {
    let content_type = part.content_type();
    let subtype = content_type.and_then(|c| c.c_subtype.as_deref());
    out.push(b'(');
    if let PartType::Multipart(children) = &part.body {
        for child in children.iter().filter_map(|id| owner.part(*id)) {
            if depth < MAX_DEPTH {
                part_structure(out, owner, child, extensible, depth + 1);
            }
        }
        out.push(b' ');
        nstring(out, Some(subtype.unwrap_or("mixed")));
        if extensible {
            out.push(b' ');
            params(out, content_type.and_then(|c| c.attributes()));
            extension(out, part);
        }
        out.push(b')');
        return;
    }
    let (c_type, c_subtype) = match (&part.body, content_type) {
        (PartType::Message(_), _) => ("message", "rfc822"),
        (_, Some(c)) => (c.c_type.as_ref(), subtype.unwrap_or("plain")),
        (_, None) => ("text", "plain"),
    };
    nstring(out, Some(c_type));
    out.push(b' ');
    nstring(out, Some(c_subtype));
    out.push(b' ');
    match content_type.and_then(|c| c.attributes()) {
        None if c_type.eq_ignore_ascii_case("text") => {
            out.extend_from_slice(b"(\"charset\" \"us-ascii\")");
        }
        attributes => params(out, attributes),
    }
    out.push(b' ');
    // mail-parser strips the msg-id brackets (RFC 2045 §7); the item carries them.
    let id = part.content_id().map(|id| format!("<{id}>"));
    nstring(out, id.as_deref());
    out.push(b' ');
    nstring(out, part.content_description());
    out.push(b' ');
    nstring(
        out,
        Some(part.content_transfer_encoding().unwrap_or("7bit")),
    );
    let body = owner
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    // Dovecot counts line ends; the CRLF before a boundary belongs to the boundary.
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if let PartType::Message(inner) = &part.body {
        out.push(b' ');
        envelope_of(out, inner);
        out.push(b' ');
        if depth < MAX_DEPTH {
            part_structure(out, inner, inner.root_part(), extensible, depth + 1);
        } else {
            out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        }
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if c_type.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if extensible {
        out.extend_from_slice(b" NIL");
        extension(out, part);
    }
    out.push(b')');
}

/// ` disposition language location` (RFC 9051 `body-ext-1part` after the MD5).
fn extension(out: &mut Vec<u8>, part: &MessagePart<'_>) {
    out.push(b' ');
    match part.content_disposition() {
        Some(disposition) => {
            out.push(b'(');
            nstring(out, Some(&disposition.c_type));
            out.push(b' ');
            params(out, disposition.attributes());
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.extend_from_slice(b" NIL ");
    nstring(out, part.content_location());
}

fn params(out: &mut Vec<u8>, attributes: Option<&[mail_parser::Attribute<'_>]>) {
    match attributes {
        Some(list) if !list.is_empty() => {
            out.push(b'(');
            for (index, attribute) in list.iter().enumerate() {
                if index > 0 {
                    out.push(b' ');
                }
                nstring(out, Some(&attribute.name));
                out.push(b' ');
                nstring(out, Some(&attribute.value));
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

/// `NIL`, a quoted string, or a literal for text a quoted string cannot carry.
fn nstring(out: &mut Vec<u8>, text: Option<&str>) {
    let Some(text) = text else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let bytes = text.as_bytes();
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) && bytes.len() <= 1024 {
        out.push(b'"');
        for &byte in bytes {
            if byte == b'"' || byte == b'\\' {
                out.push(b'\\');
            }
            out.push(byte);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Hi \"there\"\r\nMessage-ID: <m1@example.org>\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nline1\r\nline2\r\n--b\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";

    #[test]
    fn envelope_fields() {
        let envelope = String::from_utf8(envelope(MESSAGE).unwrap()).unwrap();
        assert_eq!(
            envelope,
            "(\"Mon, 2 Mar 2026 10:00:00 +0000\" \"Hi \\\"there\\\"\" \
             ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
             ((\"Alice\" NIL \"alice\" \"example.org\")) ((NIL NIL \"bob\" \"example.org\")) NIL NIL \
             NIL \"<m1@example.org>\")"
        );
    }

    #[test]
    fn body_structure_of_multipart() {
        let structure = String::from_utf8(body_structure(MESSAGE, true).unwrap()).unwrap();
        assert!(structure.starts_with("((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)"), "{structure}");
        assert!(
            structure.contains("(\"attachment\" (\"filename\" \"a.bin\"))"),
            "{structure}"
        );
        assert!(
            structure.ends_with(" \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"),
            "{structure}"
        );
        let body = String::from_utf8(body_structure(MESSAGE, false).unwrap()).unwrap();
        assert!(body.ends_with("\"base64\" 8) \"mixed\")"), "{body}");
    }

    /// Checked against Dovecot 2.3's answer for the same part.
    #[test]
    fn content_id_keeps_brackets_and_lines_count_line_ends() {
        let part =
            b"Content-Type: text/plain; charset=utf-8\r\nContent-ID: <c1>\r\n\r\nline1\r\nline2";
        let structure = String::from_utf8(body_structure(part, false).unwrap()).unwrap();
        assert_eq!(
            structure,
            "(\"text\" \"plain\" (\"charset\" \"utf-8\") \"<c1>\" NIL \"7bit\" 12 1)"
        );
    }

    #[test]
    fn non_ascii_goes_as_literal() {
        let mut out = Vec::new();
        nstring(&mut out, Some("café"));
        assert_eq!(out, b"{5}\r\ncaf\xc3\xa9");
    }
}
