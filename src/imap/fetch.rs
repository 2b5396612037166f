//! FETCH parsing for scanning (RFC 9051 §6.4.5 / §7.5.2, RFC 3501 §6.4.5, RFC 3516 BINARY).
//!
//! Request side: which items a client asked for, which of them carry message content
//! (`BODY[…]`/`BODY.PEEK[…]` except HEADER, HEADER.FIELDS(.NOT) and MIME sections, `RFC822`,
//! `RFC822.TEXT`, `BINARY[…]`, `BINARY.PEEK[…]`, each with or without `<origin.count>`), and the
//! rewritten item list the proxy forwards (adding `BODY.PEEK[]` and `UID` so it can scan the
//! whole message in the same round trip).
//!
//! Response side: a `* n FETCH (…)` response split into items with byte spans, so the proxy can
//! drop items it added, keep the client's items byte-exact, or substitute their values.

/// What a requested or returned item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// `BODY[section]<partial>`, `BODY.PEEK[…]`, `BINARY[…]`, `BINARY.PEEK[…]`.
    Section {
        /// `BINARY` (content-transfer-decoded) rather than `BODY`.
        binary: bool,
        /// Upper-cased section text between the brackets.
        section: String,
    },
    /// `RFC822` (the whole message; sets \Seen).
    Rfc822,
    /// `RFC822.TEXT` (the body).
    Rfc822Text,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `BINARY.SIZE[section]`.
    BinarySize(String),
    /// `UID`.
    Uid,
    /// Anything else (FLAGS, ENVELOPE, BODYSTRUCTURE, RFC822.HEADER, INTERNALDATE, ...).
    Other,
}

/// One requested item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestItem {
    /// The item as the client wrote it.
    pub raw: String,
    /// Its meaning.
    pub kind: ItemKind,
    /// `<origin.count>` of a partial fetch.
    pub partial: Option<(u64, u64)>,
}

impl RequestItem {
    /// Parses one item (`BODY.PEEK[1.2]<0.100>`, `FLAGS`, ...).
    pub fn parse(raw: &str) -> Option<RequestItem> {
        let upper = raw.to_ascii_uppercase();
        let (kind, partial) = classify(&upper)?;
        Some(RequestItem {
            raw: raw.to_string(),
            kind,
            partial,
        })
    }

    /// Whether it returns message content.
    pub fn carries_content(&self) -> bool {
        match &self.kind {
            ItemKind::Section { section, .. } => !is_header_only(section),
            ItemKind::Rfc822 | ItemKind::Rfc822Text => true,
            _ => false,
        }
    }

    /// Whether its value depends on the verdict (content or a content size).
    pub fn needs_verdict(&self) -> bool {
        self.carries_content() || matches!(self.kind, ItemKind::BinarySize(_))
    }

    /// Whether its value is the whole message, unsliced.
    pub fn is_whole_message(&self) -> bool {
        let whole_section = matches!(&self.kind, ItemKind::Section { binary: false, section } if section.is_empty());
        self.partial.is_none() && (whole_section || self.kind == ItemKind::Rfc822)
    }
}

/// Classifies an upper-cased item name; `None` if malformed.
fn classify(upper: &str) -> Option<(ItemKind, Option<(u64, u64)>)> {
    let (head, section, partial_text) = split_item(upper)?;
    let partial = match partial_text {
        Some(text) => Some(parse_partial(text)?),
        None => None,
    };
    let kind = match (head, section) {
        ("BODY" | "BODY.PEEK", Some(section)) => ItemKind::Section {
            binary: false,
            section: section.to_string(),
        },
        ("BINARY" | "BINARY.PEEK", Some(section)) => ItemKind::Section {
            binary: true,
            section: section.to_string(),
        },
        ("BINARY.SIZE", Some(section)) => ItemKind::BinarySize(section.to_string()),
        ("RFC822", None) => ItemKind::Rfc822,
        ("RFC822.TEXT", None) => ItemKind::Rfc822Text,
        ("RFC822.SIZE", None) => ItemKind::Rfc822Size,
        ("UID", None) => ItemKind::Uid,
        (_, None) => ItemKind::Other,
        (_, Some(_)) => return None,
    };
    Some((kind, partial))
}

/// Splits `NAME[SECTION]<PARTIAL>` into its three parts.
fn split_item(item: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let Some(open) = item.find('[') else {
        return Some((item, None, None));
    };
    let close = open + item[open..].find(']')?;
    let rest = &item[close + 1..];
    let partial = match rest {
        "" => None,
        _ => Some(rest.strip_prefix('<')?.strip_suffix('>')?),
    };
    Some((&item[..open], Some(&item[open + 1..close]), partial))
}

fn parse_partial(text: &str) -> Option<(u64, u64)> {
    let (origin, count) = text.split_once('.')?;
    Some((origin.parse().ok()?, count.parse().ok()?))
}

/// Sections whose content is headers only (never delayed, never scanned): `HEADER`,
/// `HEADER.FIELDS (…)`, `HEADER.FIELDS.NOT (…)` and `MIME`, after any part number.
pub fn is_header_only(section: &str) -> bool {
    let mut rest = section;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    rest.starts_with("HEADER") || rest == "MIME"
}

/// A parsed FETCH / UID FETCH command (the part after the command name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The sequence set (or UID set) as written.
    pub sequence: String,
    /// Requested items, macros expanded.
    pub items: Vec<RequestItem>,
    /// Whatever follows the item list (e.g. `(CHANGEDSINCE 12)`), with its leading space.
    pub modifiers: String,
}

impl FetchRequest {
    /// Parses `sequence SP (items) [SP modifiers]`; `None` if it is not understood.
    pub fn parse(args: &str) -> Option<FetchRequest> {
        let (sequence, rest) = args.split_once(' ')?;
        if sequence.is_empty()
            || !sequence
                .bytes()
                .all(|b| b.is_ascii_digit() || b":,*$".contains(&b))
        {
            return None;
        }
        let (list, modifiers) = if let Some(inner) = rest.strip_prefix('(') {
            let close = matching_paren(inner)?;
            (&inner[..close], &inner[close + 1..])
        } else {
            let end = top_level_space(rest).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let mut items = Vec::new();
        for raw in split_top_level(list) {
            match raw.to_ascii_uppercase().as_str() {
                "ALL" => items.extend(expand(&[
                    "FLAGS",
                    "INTERNALDATE",
                    "RFC822.SIZE",
                    "ENVELOPE",
                ])),
                "FAST" => items.extend(expand(&["FLAGS", "INTERNALDATE", "RFC822.SIZE"])),
                "FULL" => items.extend(expand(&[
                    "FLAGS",
                    "INTERNALDATE",
                    "RFC822.SIZE",
                    "ENVELOPE",
                    "BODY",
                ])),
                _ => items.push(RequestItem::parse(raw)?),
            }
        }
        if items.is_empty() {
            return None;
        }
        Some(FetchRequest {
            sequence: sequence.to_string(),
            items,
            modifiers: modifiers.to_string(),
        })
    }

    /// Whether any item's value depends on a scan verdict.
    pub fn needs_verdict(&self) -> bool {
        self.items.iter().any(RequestItem::needs_verdict)
    }

    /// Whether the client itself asked for the unsliced whole message.
    pub fn has_whole_message(&self) -> bool {
        self.items.iter().any(RequestItem::is_whole_message)
    }

    /// Whether the client asked for UID.
    pub fn has_uid(&self) -> bool {
        self.items.iter().any(|i| i.kind == ItemKind::Uid)
    }

    /// The argument text to forward: the client's items plus `BODY.PEEK[]` / `UID` as asked.
    pub fn forwarded_args(&self, add_whole: bool, add_uid: bool) -> String {
        let mut items: Vec<&str> = self.items.iter().map(|i| i.raw.as_str()).collect();
        if add_whole {
            items.push("BODY.PEEK[]");
        }
        if add_uid {
            items.push("UID");
        }
        format!("{} ({}){}", self.sequence, items.join(" "), self.modifiers)
    }
}

fn expand(names: &[&str]) -> Vec<RequestItem> {
    names.iter().filter_map(|n| RequestItem::parse(n)).collect()
}

/// Index of the `)` closing an already-opened parenthesis, honouring brackets.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'(' | b'[' | b'<' => depth += 1,
            b']' | b'>' => depth = depth.checked_sub(1)?,
            b')' if depth == 0 => return Some(index),
            b')' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn top_level_space(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'(' | b'[' | b'<' => depth += 1,
            b')' | b']' | b'>' => depth = depth.saturating_sub(1),
            b' ' if depth == 0 => return Some(index),
            _ => {}
        }
    }
    None
}

fn split_top_level(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let end = top_level_space(rest).unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    out
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
