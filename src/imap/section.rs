//! Serving FETCH items from a message the proxy holds itself (a replacement or a modified
//! message): body sections (RFC 9051 §6.4.5 / RFC 3501 §6.4.5 `section-spec`: part numbers,
//! `HEADER`, `HEADER.FIELDS (…)`, `HEADER.FIELDS.NOT (…)`, `TEXT`, `MIME`, also of parts that are
//! encapsulated messages), BINARY decoding (RFC 3516), partial slices (`<origin.count>`), and
//! `ENVELOPE`/`BODYSTRUCTURE` ([`structure`]).
//!
//! MIME structure comes from mail-parser. Sections that do not exist yield `None` (sent as `NIL`).

use mail_parser::{Message, MessageParser, MessagePart, PartType};

#[path = "structure.rs"]
pub mod structure;

/// The content of `section` of `message`; `binary` decodes the content-transfer-encoding.
pub fn extract(message: &[u8], section: &str, binary: bool) -> Option<Vec<u8>> {
    let upper = section.to_ascii_uppercase();
    if upper.is_empty() {
        return Some(message.to_vec());
    }
    let parsed = MessageParser::default().parse(message)?;
    let (path, suffix) = split_section(&upper)?;
    let (owner, part) = navigate(&parsed, &path)?;
    if suffix.is_empty() {
        return if binary {
            decoded(part)
        } else {
            slice(&owner.raw_message, part.offset_body, part.offset_end)
        };
    }
    if suffix == "MIME" {
        return match path.is_empty() {
            true => None,
            false => slice(&owner.raw_message, part.offset_header, part.offset_body),
        };
    }
    // HEADER… and TEXT address a message: the top level, or a message/rfc822 part.
    let inner = match (&part.body, path.is_empty()) {
        (_, true) => owner,
        (PartType::Message(inner), false) => inner,
        _ => return None,
    };
    // Part offsets index the `raw_message` field (not the accessor, which starts at the part).
    let raw = &inner.raw_message;
    let root = inner.root_part();
    let header = slice(raw, root.offset_header, root.offset_body)?;
    match suffix {
        "TEXT" => slice(raw, root.offset_body, root.offset_end),
        "HEADER" => Some(header),
        _ => {
            let (not, list) = match suffix.strip_prefix("HEADER.FIELDS.NOT") {
                Some(list) => (true, list),
                None => (false, suffix.strip_prefix("HEADER.FIELDS")?),
            };
            Some(header_fields(&header, &field_names(list)?, not))
        }
    }
}

/// The top-level header block (`RFC822.HEADER`, `BODY[HEADER]`).
pub fn header(message: &[u8]) -> Option<Vec<u8>> {
    extract(message, "HEADER", false)
}

/// `(SUBJECT "FROM")` → ["SUBJECT", "FROM"].
fn field_names(list: &str) -> Option<Vec<String>> {
    let inner = list.trim().strip_prefix('(')?.strip_suffix(')')?;
    let names: Vec<String> = inner
        .split_ascii_whitespace()
        .map(|n| n.trim_matches('"').replace('\\', ""))
        .filter(|n| !n.is_empty())
        .collect();
    (!names.is_empty()).then_some(names)
}

/// The fields of `header` named (or, with `not`, not named) in `names`, then a blank line
/// (RFC 9051 §6.4.5: the subset of the header, followed by the delimiting blank line).
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_uppercase();
            keep = names.contains(&name) != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Applies `<origin.count>` (count `None`: to the end), clamped to the content.
pub fn partial(content: &[u8], origin: u64, count: Option<u64>) -> &[u8] {
    let start = usize::try_from(origin)
        .unwrap_or(usize::MAX)
        .min(content.len());
    let end = match count {
        Some(count) => start.saturating_add(usize::try_from(count).unwrap_or(usize::MAX)),
        None => content.len(),
    };
    &content[start..end.min(content.len())]
}

/// `1.2.TEXT` → ([1, 2], "TEXT").
fn split_section(section: &str) -> Option<(Vec<usize>, &str)> {
    let mut path = Vec::new();
    let mut rest = section;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        let number: usize = rest[..digits].parse().ok()?;
        if number == 0 {
            return None;
        }
        path.push(number);
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    Some((path, rest))
}

/// The part a path addresses and the message whose raw bytes its offsets refer to. A number
/// after a message/rfc822 part addresses the encapsulated message's parts (RFC 9051 §6.4.5);
/// a non-multipart message has exactly part 1, its body.
fn navigate<'a, 'x>(
    message: &'a Message<'x>,
    path: &[usize],
) -> Option<(&'a Message<'x>, &'a MessagePart<'x>)> {
    let mut owner = message;
    let mut part = message.root_part();
    let mut at_message = true;
    for &number in path {
        if !at_message {
            if let PartType::Message(inner) = &part.body {
                owner = inner;
                part = inner.root_part();
                at_message = true;
            }
        }
        part = match &part.body {
            PartType::Multipart(children) => owner.part(*children.get(number - 1)?)?,
            _ if number == 1 && at_message => part,
            _ => return None,
        };
        at_message = false;
    }
    Some((owner, part))
}

fn decoded(part: &MessagePart<'_>) -> Option<Vec<u8>> {
    match &part.body {
        PartType::Text(text) | PartType::Html(text) => Some(text.as_bytes().to_vec()),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => Some(bytes.to_vec()),
        PartType::Message(_) | PartType::Multipart(_) => None,
    }
}

fn slice(message: &[u8], start: u32, end: u32) -> Option<Vec<u8>> {
    let start = usize::try_from(start).ok()?;
    let end = usize::try_from(end).ok()?;
    message.get(start..end).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: &[u8] = b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nbody text\r\n";
    const MULTI: &[u8] = b"Subject: m\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";

    #[test]
    fn single_part_sections() {
        assert_eq!(extract(SINGLE, "", false).unwrap(), SINGLE);
        assert_eq!(extract(SINGLE, "TEXT", false).unwrap(), b"body text\r\n");
        assert_eq!(extract(SINGLE, "1", false).unwrap(), b"body text\r\n");
        assert_eq!(extract(SINGLE, "2", false), None);
        assert!(extract(SINGLE, "HEADER", false)
            .unwrap()
            .starts_with(b"Subject: hi"));
    }

    #[test]
    fn multipart_sections_and_binary() {
        assert_eq!(extract(MULTI, "1", false).unwrap(), b"first");
        assert_eq!(extract(MULTI, "2", false).unwrap(), b"aGVsbG8=");
        assert_eq!(extract(MULTI, "2", true).unwrap(), b"hello");
        assert!(extract(MULTI, "2.MIME", false)
            .unwrap()
            .starts_with(b"Content-Type: application/octet-stream"));
        assert_eq!(extract(MULTI, "3", false), None);
        assert_eq!(extract(MULTI, "0", false), None);
        assert_eq!(extract(MULTI, "1.1", false), None);
        assert_eq!(extract(MULTI, "MIME", false), None);
    }

    #[test]
    fn header_sections() {
        assert_eq!(
            extract(SINGLE, "HEADER", false).unwrap(),
            b"Subject: hi\r\nContent-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            extract(SINGLE, "HEADER.FIELDS (SUBJECT \"FROM\")", false).unwrap(),
            b"Subject: hi\r\n\r\n"
        );
        assert_eq!(
            extract(SINGLE, "HEADER.FIELDS.NOT (SUBJECT)", false).unwrap(),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(extract(MULTI, "2.HEADER", false), None);
    }

    const NESTED: &[u8] = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-Fold: a\r\n b\r\n\r\ninner body\r\n--b--\r\n";

    #[test]
    fn encapsulated_message_sections() {
        assert_eq!(
            extract(NESTED, "2.HEADER", false).unwrap(),
            b"Subject: inner\r\nX-Fold: a\r\n b\r\n\r\n"
        );
        assert_eq!(
            extract(NESTED, "2.HEADER.FIELDS (X-FOLD)", false).unwrap(),
            b"X-Fold: a\r\n b\r\n\r\n"
        );
        assert_eq!(extract(NESTED, "2.TEXT", false).unwrap(), b"inner body");
        assert_eq!(extract(NESTED, "2.1", false).unwrap(), b"inner body");
        assert_eq!(
            extract(NESTED, "2.MIME", false).unwrap(),
            b"Content-Type: message/rfc822\r\n\r\n"
        );
        assert_eq!(extract(NESTED, "1.HEADER", false), None);
    }

    #[test]
    fn partial_slices_are_clamped() {
        assert_eq!(partial(b"0123456789", 2, Some(3)), b"234");
        assert_eq!(partial(b"0123456789", 8, Some(10)), b"89");
        assert_eq!(partial(b"0123456789", 20, Some(1)), b"");
        assert_eq!(partial(b"0123456789", 7, None), b"789");
        assert_eq!(partial(b"0123", u64::MAX, Some(u64::MAX)), b"");
    }
}
