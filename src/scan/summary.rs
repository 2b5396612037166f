//! What a quarantine record shows of the original: its Subject and first From address, decoded
//! by mail-parser (RFC 2047 encoded-words included) and made safe to print on a terminal —
//! control and bidirectional-formatting characters escaped, length capped.
//!
//! Pure: the result depends only on the bytes passed in.

use mail_parser::{Address, Message};

/// Longest text kept (in characters, escapes included), before the `…` marking a cut.
pub const MAX_CHARS: usize = 200;

/// Whether `c` must not reach a terminal as itself: C0/C1 controls and DEL, and the Unicode
/// formatting characters that reorder or hide text (bidi embeddings, overrides and isolates,
/// zero-width marks, the BOM).
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// `text` on one line: backslash, tab, CR, LF and every character of [`must_escape`] written as
/// an escape (`\\`, `\t`, `\r`, `\n`, `\u{…}`), cut to `max_chars` characters plus `…`.
/// Unambiguous: the original text can be read back.
pub fn escape(text: &str, max_chars: usize) -> String {
    escape_with(text, max_chars, true)
}

/// Like [`escape`] but backslashes stay as they are: for printing text that is already
/// escaped (record fields) while still neutralizing anything added to it by hand.
pub fn neutralize(text: &str, max_chars: usize) -> String {
    escape_with(text, max_chars, false)
}

fn escape_with(text: &str, max_chars: usize, backslash: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut used = 0;
    for c in text.chars() {
        let piece = match c {
            '\\' if backslash => "\\\\".to_string(),
            '\t' => "\\t".to_string(),
            '\r' => "\\r".to_string(),
            '\n' => "\\n".to_string(),
            c if must_escape(c) => format!("\\u{{{:x}}}", u32::from(c)),
            c => c.to_string(),
        };
        let len = piece.chars().count();
        if used + len > max_chars {
            out.push('…');
            return out;
        }
        used += len;
        out.push_str(&piece);
    }
    out
}

/// Subject and sender of an original, ready for a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The decoded Subject, escaped and capped; `None` without a Subject header.
    pub subject: Option<String>,
    /// The first From address as `Name <addr>` (or the bare address), escaped and capped;
    /// `None` without a From header or address.
    pub from: Option<String>,
}

fn first_from(message: &Message<'_>) -> Option<String> {
    let addr = match message.from()? {
        Address::List(list) => list.first()?,
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).next()?,
    };
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let address = addr
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    match (name, address) {
        (Some(name), Some(address)) => Some(format!("{name} <{address}>")),
        (None, Some(address)) => Some(address.to_string()),
        (Some(name), None) => Some(name.to_string()),
        (None, None) => None,
    }
}

/// The [`Summary`] of `raw` (empty when it does not parse as a message).
pub fn of(raw: &[u8]) -> Summary {
    let Some(message) = super::mime::parse(raw) else {
        return Summary::default();
    };
    Summary {
        subject: message.subject().map(|s| escape(s, MAX_CHARS)),
        from: first_from(&message).map(|f| escape(&f, MAX_CHARS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(escape("a\tb\r\nc\\d", 100), "a\\tb\\r\\nc\\\\d");
        assert_eq!(escape("x\u{1b}[31my", 100), "x\\u{1b}[31my");
        assert_eq!(escape("abc\u{202e}fdp.exe", 100), "abc\\u{202e}fdp.exe");
        assert_eq!(escape("\u{7f}\u{85}", 100), "\\u{7f}\\u{85}");
        assert_eq!(escape("grüße 日本", 100), "grüße 日本");
    }

    #[test]
    fn neutralize_keeps_escapes_readable() {
        let stored = escape("a\u{1b}b\\c", 100);
        assert_eq!(neutralize(&stored, 100), stored);
        assert_eq!(neutralize("x\u{1b}\\y", 100), "x\\u{1b}\\y");
    }

    #[test]
    fn caps_length_without_splitting_an_escape() {
        assert_eq!(escape("abcdef", 4), "abcd…");
        assert_eq!(escape("abcdef", 6), "abcdef");
        assert_eq!(escape("ab\u{1b}", 6), "ab…");
        let long = "x".repeat(1000);
        assert_eq!(escape(&long, MAX_CHARS).chars().count(), MAX_CHARS + 1);
    }

    #[test]
    fn decodes_subject_and_first_sender() {
        let raw = b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>, b@example.org\r\n\
Subject: =?utf-8?b?SW52b2ljZSDwn5Kw?=\r\n\r\nbody\r\n";
        let summary = of(raw);
        assert_eq!(summary.subject.as_deref(), Some("Invoice 💰"));
        assert_eq!(summary.from.as_deref(), Some("Jörg <joerg@example.org>"));
    }

    #[test]
    fn hostile_headers_are_escaped() {
        let raw = b"From: evil@example.org\r\nSubject: =?utf-8?q?a=1B]0;pwned=07b=E2=80=AE?=\r\n\r\nx\r\n";
        let summary = of(raw);
        assert_eq!(
            summary.subject.as_deref(),
            Some("a\\u{1b}]0;pwned\\u{7}b\\u{202e}")
        );
        assert_eq!(summary.from.as_deref(), Some("evil@example.org"));
    }

    #[test]
    fn missing_headers_are_none() {
        assert_eq!(of(b"X-Other: 1\r\n\r\nbody\r\n"), Summary::default());
        assert_eq!(of(b""), Summary::default());
    }
}
