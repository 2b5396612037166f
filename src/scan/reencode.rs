//! Re-encoding of the original's identifying headers for a replacement notice.
//!
//! Nothing is copied as raw bytes: each header is decoded by mail-parser, validated and written
//! anew — unstructured text as folded ASCII or RFC 2047 `B` encoded-words (UTF-8), addresses as
//! strict `addr-spec`s with encoded display names, message ids as `<dot-atom@…>`, dates through
//! [`mail_parser::DateTime::to_rfc822`]. A header is dropped (never repaired) when its raw form
//! is too long or holds NUL / bare CR / other controls, when it does not decode into the expected
//! structure, or when its decoded value is too long. Output lines are CRLF-folded at 76 columns.
//!
//! Pure and deterministic: the result depends only on the original's bytes.

use base64::Engine as _;
use mail_parser::{Addr, Address, Header, HeaderValue, Message};

/// Headers considered, in output order (RFC 5322 §3.6), with their canonical spelling.
const KEPT: [&str; 8] = [
    "Date",
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
];

/// Longest raw header (name, value and folding) that is considered at all.
pub const MAX_RAW_HEADER: usize = 8 << 10;
/// Longest decoded text value copied (UTF-8 bytes); keeps notice body lines under 998 octets.
pub const MAX_TEXT_BYTES: usize = 900;
/// Longest re-encoded header (all folded lines).
pub const MAX_ENCODED: usize = 4 << 10;
/// Most addresses copied from one address header.
const MAX_ADDRESSES: usize = 50;
/// Most message ids copied from `References` (first one plus the most recent ones).
const MAX_IDS: usize = 20;
/// Longest message id or address.
const MAX_ID_LEN: usize = 250;
/// Folding column (RFC 5322 §2.1.1 recommends 78; encoded-words are at most 75).
const FOLD_AT: usize = 76;
/// UTF-8 bytes per encoded-word: 45 bytes are 60 base64 characters, 72 with `=?utf-8?b?` `?=`.
const WORD_BYTES: usize = 45;

/// One re-encoded header of the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeHeader {
    /// Canonical name (`Subject`, `From`, ...).
    pub name: &'static str,
    /// The complete header field: `Name: value`, folded with CRLF SP, ending in CRLF.
    pub field: String,
    /// The decoded value as a reader sees it (single line), for probes and placeholders.
    pub text: String,
}

/// The re-encoded headers of `message`, in [`KEPT`] order, first occurrence of each only.
pub fn safe_headers(message: Option<&Message<'_>>) -> Vec<SafeHeader> {
    let Some(message) = message else {
        return Vec::new();
    };
    let raw = message.raw_message();
    KEPT.iter()
        .filter_map(|name| {
            let header = message
                .headers()
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(name))?;
            let span = raw.get(header.offset_field as usize..header.offset_end as usize)?;
            if !raw_is_acceptable(span) {
                return None;
            }
            let (words, text) = reencode(name, header)?;
            let field = fold(name, &words);
            (field.len() <= MAX_ENCODED).then_some(SafeHeader { name, field, text })
        })
        .collect()
}

/// Whether a header name appears in the original at all (to tell "dropped" from "absent").
pub fn has_header(message: Option<&Message<'_>>, name: &str) -> bool {
    message.is_some_and(|m| {
        m.headers()
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case(name))
    })
}

/// Bounded, and no NUL, bare CR or controls other than HTAB and line-ending LF / CRLF.
fn raw_is_acceptable(span: &[u8]) -> bool {
    if span.len() > MAX_RAW_HEADER {
        return false;
    }
    span.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => span.get(i + 1) == Some(&b'\n'),
        b'\n' | b'\t' => true,
        0..=0x1f | 0x7f => false,
        _ => true,
    })
}

/// The words of the new value (to be folded) and its decoded text.
fn reencode(name: &str, header: &Header<'_>) -> Option<(Vec<String>, String)> {
    match (name, header.value()) {
        ("Date", HeaderValue::DateTime(date)) if date.is_valid() => {
            let text = date.to_rfc822();
            Some((vec![text.clone()], text))
        }
        ("From" | "To" | "Cc", HeaderValue::Address(address)) => addresses(address),
        ("Subject", HeaderValue::Text(text)) => {
            let text = clean_text(text)?;
            Some((unstructured_words(&text), text))
        }
        ("Message-ID" | "In-Reply-To" | "References", value) => message_ids(name, value),
        _ => None,
    }
}

/// Decoded text as one line: tabs become spaces, whitespace runs collapse; `None` if it holds
/// any other control character, is empty or is longer than [`MAX_TEXT_BYTES`].
fn clean_text(text: &str) -> Option<String> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return None;
    }
    // CR and LF can only come from folding here (raw bare CR was refused), or from an
    // encoded-word: refuse the latter by refusing any CR/LF not followed by whitespace.
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() != Some(&'\n') {
            return None;
        }
        if c == '\n' && !matches!(chars.peek(), Some(' ' | '\t')) {
            return None;
        }
    }
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty() && joined.len() <= MAX_TEXT_BYTES).then_some(joined)
}

/// Words of an unstructured value: plain ASCII words when that is unambiguous, else
/// encoded-words (RFC 2047 §5 (1)), each at most 75 characters.
fn unstructured_words(text: &str) -> Vec<String> {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.contains("=?")
        && text.split(' ').all(|w| w.len() + 2 < FOLD_AT);
    if plain {
        return text.split(' ').map(str::to_string).collect();
    }
    encoded_words(text)
}

/// `=?utf-8?b?…?=` words covering `text` exactly, split on character boundaries.
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > WORD_BYTES {
            words.push(encode_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encode_word(&chunk));
    }
    words
}

fn encode_word(chunk: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(chunk.as_bytes());
    format!("=?utf-8?b?{b64}?=")
}

/// The header field `Name: w1 w2 …` ending in CRLF: words are separated by a space, or by
/// CRLF SP (folding, RFC 5322 §2.2.3) where the line would pass [`FOLD_AT`] — also before the
/// first word (`Name:` CRLF SP word), so no line is longer than needed.
fn fold(name: &str, words: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut column = out.len();
    for word in words {
        if column > 1 && column + 1 + word.len() > FOLD_AT {
            out.push_str("\r\n ");
            column = 1;
        } else {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.len();
    }
    out.push_str("\r\n");
    out
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_atom(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// A strict ASCII `local@domain` with a dot-atom local part and LDH domain labels.
fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    address.len() <= MAX_ID_LEN
        && local.len() <= 64
        && is_dot_atom(local)
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Display name words: plain when only letters, digits and single spaces, else encoded-words
/// (allowed in a phrase by RFC 2047 §5 (3)).
fn phrase_words(name: &str) -> Option<Vec<String>> {
    let name = clean_text(name)?;
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') {
        return Some(name.split(' ').map(str::to_string).collect());
    }
    Some(encoded_words(&name))
}

/// From/To/Cc: every address must be valid (else the header is dropped); group names are
/// dropped and their members kept.
fn addresses(address: &Address<'_>) -> Option<(Vec<String>, String)> {
    let list: Vec<&Addr<'_>> = match address {
        Address::List(list) => list.iter().collect(),
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    if list.is_empty() || list.len() > MAX_ADDRESSES {
        return None;
    }
    let mut words = Vec::new();
    let mut texts = Vec::new();
    for (index, addr) in list.iter().enumerate() {
        let spec = addr.address.as_deref()?;
        if !valid_address(spec) {
            return None;
        }
        let name = match addr.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() && name != spec => Some(name),
            _ => None,
        };
        let mut item = match name {
            Some(name) => {
                let mut item = phrase_words(name)?;
                item.push(format!("<{spec}>"));
                texts.push(format!("{} <{spec}>", clean_text(name)?));
                item
            }
            None => {
                texts.push(spec.to_string());
                vec![spec.to_string()]
            }
        };
        if index + 1 < list.len() {
            if let Some(last) = item.last_mut() {
                last.push(',');
            }
        }
        words.append(&mut item);
    }
    let text = texts.join(", ");
    (text.len() <= MAX_TEXT_BYTES * 4).then_some((words, text))
}

/// `id-left@id-right` without the brackets: dot-atom text on both sides.
fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN
        && match id.split_once('@') {
            Some((left, right)) => is_dot_atom(left) && is_dot_atom(right),
            None => false,
        }
}

/// Message-ID (exactly one id), In-Reply-To and References (each id valid; References keeps
/// its first id and the most recent ones).
fn message_ids(name: &str, value: &HeaderValue<'_>) -> Option<(Vec<String>, String)> {
    let ids: Vec<&str> = match value {
        HeaderValue::Text(id) => vec![id.as_ref()],
        HeaderValue::TextList(list) if name != "Message-ID" => {
            list.iter().map(|id| id.as_ref()).collect()
        }
        _ => return None,
    };
    if ids.is_empty() || !ids.iter().all(|id| valid_id(id)) {
        return None;
    }
    let kept: Vec<&str> = if ids.len() > MAX_IDS {
        let tail = ids.get(ids.len() - (MAX_IDS - 1)..)?;
        ids.first().into_iter().chain(tail).copied().collect()
    } else {
        ids
    };
    let bracketed: Vec<String> = kept.iter().map(|id| format!("<{id}>")).collect();
    let text = bracketed.join(" ");
    Some((bracketed, text))
}
