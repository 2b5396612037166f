//! Serving FETCH items from a message the proxy holds itself (a replacement or a modified
//! message): body sections (RFC 9051 §6.4.5 `section-spec`), BINARY decoding (RFC 3516) and
//! partial slices (`<origin.count>`).
//!
//! MIME structure comes from mail-parser. Sections that do not exist yield `None` (sent as `NIL`);
//! parts inside an attached message/rfc822 are not addressed (also `None`).

use mail_parser::{MessageParser, MessagePart, PartType};

/// The content of `section` of `message`; `binary` decodes the content-transfer-encoding.
pub fn extract(message: &[u8], section: &str, binary: bool) -> Option<Vec<u8>> {
    let upper = section.to_ascii_uppercase();
    if upper.is_empty() {
        return Some(message.to_vec());
    }
    let parsed = MessageParser::default().parse(message)?;
    let (path, suffix) = split_section(&upper)?;
    let root = parsed.root_part();
    if path.is_empty() {
        return match suffix {
            "TEXT" => slice(message, root.offset_body, root.offset_end),
            "HEADER" => slice(message, root.offset_header, root.offset_body),
            _ => None,
        };
    }
    let part = navigate(&parsed, root, &path)?;
    match suffix {
        "" if binary => decoded(part),
        "" => slice(message, part.offset_body, part.offset_end),
        "MIME" => slice(message, part.offset_header, part.offset_body),
        _ => None,
    }
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

fn navigate<'a>(
    message: &'a mail_parser::Message<'a>,
    root: &'a MessagePart<'a>,
    path: &[usize],
) -> Option<&'a MessagePart<'a>> {
    let mut part = root;
    for (depth, &number) in path.iter().enumerate() {
        part = match &part.body {
            PartType::Multipart(children) => message.part(*children.get(number - 1)?)?,
            // RFC 9051 §6.4.5: a non-multipart message has exactly part 1, its body.
            _ if number == 1 && depth == 0 => part,
            _ => return None,
        };
    }
    Some(part)
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
