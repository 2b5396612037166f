//! FETCH parsing for scanning (RFC 9051 §6.4.5 / §7.5.2, RFC 3501 §6.4.5, RFC 3516 BINARY).
//!
//! Request side: which items a client asked for, which of them need a scan verdict, and the
//! rewritten item list the proxy forwards (adding `BODY.PEEK[]` and `UID` so it can scan the
//! whole message in the same round trip).
//!
//! # Which items need the verdict (one rule)
//!
//! An item needs the verdict before any byte of it reaches the client unless its value is
//! metadata that does not depend on the message's octets at all: `FLAGS`, `UID`,
//! `INTERNALDATE`, `MODSEQ` (RFC 7162), `EMAILID`/`THREADID` (RFC 8474), `SAVEDATE` (RFC 8514).
//! Everything else needs it, header-class items included:
//!
//! * every `BODY[…]`/`BODY.PEEK[…]`/`BINARY[…]`/`BINARY.PEEK[…]` section, partial or not —
//!   `HEADER`, `HEADER.FIELDS (…)`, `HEADER.FIELDS.NOT (…)`, `n.MIME`, `n.HEADER…` and `n.TEXT`
//!   as much as `TEXT` and part numbers (RFC 9051 §6.4.5): a part's MIME header carries filenames
//!   and descriptions, a nested message's header is that message's content, and a message or part
//!   without a blank line is *all* header;
//! * `RFC822`, `RFC822.TEXT`, `RFC822.HEADER`, `ENVELOPE`, `BODY`, `BODYSTRUCTURE` (which carries
//!   part parameters and the envelopes of nested messages), `RFC822.SIZE` and `BINARY.SIZE[…]`
//!   (the sizes of what is served differ for a blocked message).
//!
//! Serving top-level header items before the verdict was considered and rejected: the headers of
//! a blocked message are content too (clamd finds EICAR in a `Subject:`), and what the client
//! caches for a UID must be what the replacement gives, which the original's header block is not
//! (the replacement keeps only some headers and adds its own). The cost is that a header-only
//! mailbox sync downloads each message once; the verdict cache makes every later fetch cheap.
//! Once a message is known to be blocked or modified, every item is computed from the served
//! message ([`super::section`]); a clean one is served byte-identical from the original.
//!
//! Any item the proxy does not recognise is refused (`BAD`), never relayed unscanned; the grammar
//! already refuses `PREVIEW`/`SNIPPET` and those capabilities are not advertised.
//!
//! Response side: a `* n FETCH (…)` response is split into items with byte spans
//! ([`super::fetch_response`]), so the proxy can drop items it added, keep the client's items
//! byte-exact, or substitute their values.

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
    /// `RFC822.HEADER` (the top-level header block).
    Rfc822Header,
    /// `ENVELOPE`.
    Envelope,
    /// `BODYSTRUCTURE` (`extensible`) or `BODY` without a section.
    Structure {
        /// `BODYSTRUCTURE` rather than `BODY`.
        extensible: bool,
    },
    /// `UID`.
    Uid,
    /// Metadata independent of the message's octets: `FLAGS`, `INTERNALDATE`, `MODSEQ`,
    /// `EMAILID`, `THREADID`, `SAVEDATE`.
    Meta,
    /// An item the proxy does not know (refused in requests; needs a verdict in responses).
    Unknown,
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

    /// Whether its value depends on the verdict (see the module documentation).
    pub fn needs_verdict(&self) -> bool {
        self.kind.needs_verdict()
    }

    /// Whether its value is the whole message, unsliced.
    pub fn is_whole_message(&self) -> bool {
        let whole_section = matches!(&self.kind, ItemKind::Section { binary: false, section } if section.is_empty());
        self.partial.is_none() && (whole_section || self.kind == ItemKind::Rfc822)
    }
}

impl ItemKind {
    /// Whether a value of this kind depends on the message's octets (and so on the verdict).
    pub fn needs_verdict(&self) -> bool {
        !matches!(self, ItemKind::Uid | ItemKind::Meta)
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
        ("RFC822.HEADER", None) => ItemKind::Rfc822Header,
        ("ENVELOPE", None) => ItemKind::Envelope,
        ("BODYSTRUCTURE", None) => ItemKind::Structure { extensible: true },
        ("BODY", None) => ItemKind::Structure { extensible: false },
        ("UID", None) => ItemKind::Uid,
        ("FLAGS" | "INTERNALDATE" | "MODSEQ" | "EMAILID" | "THREADID" | "SAVEDATE", None) => {
            ItemKind::Meta
        }
        (_, None) => ItemKind::Unknown,
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
                _ => match RequestItem::parse(raw)? {
                    item if item.kind == ItemKind::Unknown => return None,
                    item => items.push(item),
                },
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
