//! Parsing and re-building `* n FETCH (…)` responses (RFC 9051 §7.5.2).
//!
//! The parser works on the complete response (line, literals and continuation lines as framed
//! by [`super::codec`]), either contiguous or as the framed parts themselves
//! ([`super::segments::Segments`], so a literal is never copied), and records each item's byte
//! span, so unchanged items are relayed byte-exact and only substituted values are re-encoded.
//! It is strict: a literal must be announced as `{n}`, `{n+}` or `~{n}` followed by CRLF, and
//! over framed parts its content must be exactly the literal the framer delivered.

use std::borrow::Cow;
use std::ops::Range;

use super::fetch::{ItemKind, RequestItem};
use super::segments::Source;

/// Why a FETCH response could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed FETCH response at octet {0}")]
pub struct FetchParseError(pub usize);

/// An item's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `NIL`.
    Nil,
    /// An atom or number.
    Atom(Range<usize>),
    /// A quoted string; the range covers the text between the quotes (still escaped).
    Quoted(Range<usize>),
    /// A literal; the range covers its content.
    Literal {
        /// Content bytes.
        content: Range<usize>,
        /// Announced as literal8 `~{n}`.
        binary: bool,
    },
    /// A parenthesized list (range includes the parentheses).
    List(Range<usize>),
}

/// One item of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseItem {
    /// The item name as sent, upper-cased (`BODY[2]<10>`).
    pub name: String,
    /// Its meaning (a partial's count is unknown in responses; `origin` holds its start).
    pub kind: ItemKind,
    /// `<origin>` of a partial response.
    pub origin: Option<u64>,
    /// The whole `NAME SP value` span.
    pub span: Range<usize>,
    /// The value.
    pub value: Value,
}

/// A parsed `* n FETCH (…)` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// The message sequence number.
    pub seq: u32,
    /// Items in order.
    pub items: Vec<ResponseItem>,
}

impl FetchResponse {
    /// Parses `raw`; `Ok(None)` when it is not an untagged FETCH response.
    pub fn parse(raw: &[u8]) -> Result<Option<FetchResponse>, FetchParseError> {
        FetchResponse::parse_from(raw)
    }

    /// Parses a response held in any [`Source`] — contiguous bytes, or the framed events of
    /// a response ([`super::segments::Segments`]), whose literals are then never copied. Item
    /// spans and value ranges are offsets into the source.
    pub fn parse_from<S: Source + ?Sized>(
        raw: &S,
    ) -> Result<Option<FetchResponse>, FetchParseError> {
        let line_end = raw.find(0, b'\n').map_or(raw.len(), |lf| lf + 1);
        let head = raw.text(0..line_end).unwrap_or_default();
        let Some(seq) = fetch_seq(&head) else {
            return Ok(None);
        };
        let open = raw.find(0, b'(').ok_or(FetchParseError(0))?;
        let mut parser = Parser { raw, pos: open + 1 };
        let mut items = Vec::new();
        loop {
            parser.skip_spaces();
            match raw.byte(parser.pos) {
                Some(b')') => break,
                Some(_) => items.push(parser.item()?),
                None => return Err(FetchParseError(parser.pos)),
            }
        }
        Ok(Some(FetchResponse { seq, items }))
    }

    /// The value of `item` as bytes (literal content, unescaped quoted text, atom text).
    pub fn value<'a, S: Source + ?Sized>(raw: &'a S, item: &ResponseItem) -> Option<Cow<'a, [u8]>> {
        match &item.value {
            Value::Nil | Value::List(_) => None,
            Value::Atom(range) | Value::Literal { content: range, .. } => raw.text(range.clone()),
            Value::Quoted(range) => raw.text(range.clone()).map(|text| match text {
                Cow::Borrowed(text) => unescape(text),
                Cow::Owned(text) => Cow::Owned(unescape(&text).into_owned()),
            }),
        }
    }

    /// The UID item's value, if present.
    pub fn uid<S: Source + ?Sized>(&self, raw: &S) -> Option<u32> {
        let item = self.items.iter().find(|i| i.kind == ItemKind::Uid)?;
        let text = FetchResponse::value(raw, item)?;
        std::str::from_utf8(&text).ok()?.parse().ok()
    }
}

/// `Some(n)` when `raw` starts with `* n FETCH `.
pub fn fetch_seq(raw: &[u8]) -> Option<u32> {
    let rest = raw.strip_prefix(b"* ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(rest.get(..digits)?)
        .ok()?
        .parse()
        .ok()?;
    let after = rest.get(digits..)?;
    after
        .get(..7)?
        .eq_ignore_ascii_case(b" FETCH ")
        .then_some(seq)
}

fn unescape(text: &[u8]) -> Cow<'_, [u8]> {
    if !text.contains(&b'\\') {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut escaped = false;
    for &byte in text {
        if !escaped && byte == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(byte);
    }
    Cow::Owned(out)
}

struct Parser<'a, S: Source + ?Sized> {
    raw: &'a S,
    pos: usize,
}

impl<S: Source + ?Sized> Parser<'_, S> {
    fn skip_spaces(&mut self) {
        while self.raw.byte(self.pos) == Some(b' ') {
            self.pos += 1;
        }
    }

    fn error(&self) -> FetchParseError {
        FetchParseError(self.pos)
    }

    fn item(&mut self) -> Result<ResponseItem, FetchParseError> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(byte) = self.raw.byte(self.pos) {
            match byte {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' if depth == 0 => break,
                b'\r' | b'\n' => return Err(self.error()),
                _ => {}
            }
            self.pos += 1;
        }
        let name = self.raw.text(start..self.pos).ok_or_else(|| self.error())?;
        let name = String::from_utf8_lossy(&name).to_ascii_uppercase();
        let (kind, origin) = response_kind(&name).ok_or_else(|| self.error())?;
        self.skip_spaces();
        let value = self.value()?;
        Ok(ResponseItem {
            name,
            kind,
            origin,
            span: start..self.pos,
            value,
        })
    }

    fn value(&mut self) -> Result<Value, FetchParseError> {
        match self.raw.byte(self.pos) {
            Some(b'"') => self.quoted(),
            Some(b'{') | Some(b'~') => self.literal(),
            Some(b'(') => {
                let start = self.pos;
                self.list()?;
                Ok(Value::List(start..self.pos))
            }
            Some(_) => {
                let start = self.pos;
                while let Some(byte) = self.raw.byte(self.pos) {
                    if matches!(byte, b' ' | b')' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                let atom = self.raw.text(start..self.pos).ok_or_else(|| self.error())?;
                if atom.is_empty() {
                    return Err(self.error());
                }
                Ok(if atom.eq_ignore_ascii_case(b"NIL") {
                    Value::Nil
                } else {
                    Value::Atom(start..self.pos)
                })
            }
            None => Err(self.error()),
        }
    }

    fn quoted(&mut self) -> Result<Value, FetchParseError> {
        let start = self.pos + 1;
        let mut index = start;
        let mut escaped = false;
        while let Some(byte) = self.raw.byte(index) {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    self.pos = index + 1;
                    return Ok(Value::Quoted(start..index));
                }
                (false, b'\r' | b'\n') => break,
                _ => {}
            }
            index += 1;
        }
        Err(self.error())
    }

    fn literal(&mut self) -> Result<Value, FetchParseError> {
        let binary = self.raw.byte(self.pos) == Some(b'~');
        let open = self.pos + usize::from(binary);
        if self.raw.byte(open) != Some(b'{') {
            return Err(self.error());
        }
        let close = self.raw.find(open, b'}').ok_or_else(|| self.error())?;
        let digits = match open < close {
            true => self.raw.text(open + 1..close),
            false => None,
        };
        let digits = digits.ok_or_else(|| self.error())?;
        let digits = digits.strip_suffix(b"+").unwrap_or(&digits);
        let length: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.error())?;
        let crlf = (self.raw.byte(close + 1), self.raw.byte(close + 2));
        if crlf != (Some(b'\r'), Some(b'\n')) {
            return Err(self.error());
        }
        let content = close + 3..close.saturating_add(3).saturating_add(length);
        if content.end > self.raw.len() || !self.raw.literal_fits(&content) {
            return Err(self.error());
        }
        self.pos = content.end;
        Ok(Value::Literal { content, binary })
    }

    fn list(&mut self) -> Result<(), FetchParseError> {
        self.pos += 1;
        loop {
            self.skip_spaces();
            match self.raw.byte(self.pos) {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\r') | Some(b'\n') | None => return Err(self.error()),
                Some(_) => {
                    self.value()?;
                }
            }
        }
    }
}

/// Kind and origin of a response item name (`BODY[2]<10>` → section "2", origin 10).
fn response_kind(name: &str) -> Option<(ItemKind, Option<u64>)> {
    let (base, origin) = match name.rfind('<') {
        Some(open) if name.ends_with('>') && name[..open].ends_with(']') => {
            let origin = name[open + 1..name.len() - 1].parse().ok()?;
            (&name[..open], Some(origin))
        }
        _ => (name, None),
    };
    let item = RequestItem::parse(base)?;
    Some((item.kind, origin))
}

/// Renders `* seq FETCH (items…)` from already-encoded items.
pub fn render(seq: u32, items: &[Cow<'_, [u8]>]) -> Vec<u8> {
    let mut out = format!("* {seq} FETCH (").into_bytes();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// Encodes `name` with `content` as a literal (literal8 when it contains NUL, RFC 3516).
pub fn encode_literal_item(name: &str, content: &[u8]) -> Vec<u8> {
    let marker = if content.contains(&0) { "~" } else { "" };
    let mut out = format!("{name} {marker}{{{}}}\r\n", content.len()).into_bytes();
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_items_with_literals_lists_and_sections() {
        let raw: &[u8] = b"* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {5}\r\nFrom\n BODY[2]<10> \"a\\\"b\" RFC822.SIZE 99 BODY[] NIL)\r\n";
        let response = FetchResponse::parse(raw).unwrap().unwrap();
        assert_eq!(response.seq, 3);
        assert_eq!(response.uid(raw), Some(7));
        let names: Vec<&str> = response.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "UID",
                "FLAGS",
                "BODY[HEADER.FIELDS (FROM)]",
                "BODY[2]<10>",
                "RFC822.SIZE",
                "BODY[]"
            ]
        );
        assert_eq!(
            FetchResponse::value(raw, &response.items[2])
                .unwrap()
                .as_ref(),
            b"From\n"
        );
        assert_eq!(
            FetchResponse::value(raw, &response.items[3])
                .unwrap()
                .as_ref(),
            b"a\"b"
        );
        assert_eq!(response.items[3].origin, Some(10));
        assert_eq!(response.items[5].value, Value::Nil);
        assert_eq!(&raw[response.items[1].span.clone()], b"FLAGS (\\Seen)");
    }

    #[test]
    fn non_fetch_and_malformed() {
        assert_eq!(FetchResponse::parse(b"* 3 EXISTS\r\n"), Ok(None));
        assert!(FetchResponse::parse(b"* 3 FETCH (BODY[] {10}\r\nabc)\r\n").is_err());
        assert!(FetchResponse::parse(b"* 3 FETCH (BODY[] \"abc)\r\n").is_err());
        assert!(FetchResponse::parse(b"* 3 FETCH (UID\r\n").is_err());
    }

    #[test]
    fn literal8_and_render() {
        let raw = b"* 1 FETCH (BINARY[1] ~{3}\r\na\0b)\r\n";
        let response = FetchResponse::parse(raw).unwrap().unwrap();
        assert!(matches!(
            response.items[0].value,
            Value::Literal { binary: true, .. }
        ));
        let item = encode_literal_item("BINARY[1]", b"a\0b");
        assert_eq!(render(1, &[Cow::Owned(item)]), raw.to_vec());
    }
}

#[cfg(test)]
#[path = "fetch_response_tests.rs"]
mod segment_tests;
