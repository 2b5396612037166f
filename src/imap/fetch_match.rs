//! Which pending FETCH command an untagged `* n FETCH` response answers (RFC 9051 §7.5.2).
//!
//! Several FETCH commands may be in flight at once (RFC 9051 §5.5 allows pipelining), and the
//! server may also send FETCH responses nobody asked for (flag changes, RFC 9051 §7.5.2;
//! `MODSEQ`, RFC 7162 §3.1.4). A response answers the command whose content items it carries,
//! so each scanned FETCH gets a [`Signature`]: the items that need a verdict, as the server names
//! them in its response (`BODY.PEEK[…]` is answered as `BODY[…]`, a partial `<o.n>` as `<o>`),
//! with header field lists left out (servers respell them). Items that may appear unsolicited
//! or carry no content (`UID`, `FLAGS`, `MODSEQ`, `INTERNALDATE`, …) are not part of it.
//!
//! The rules, applied by [`super::relay`]:
//! * a response whose signature equals a pending FETCH's answers that FETCH;
//! * a response carrying no content item answers no scanned FETCH (it is relayed unchanged);
//! * two scanned FETCHes with equal signatures are never in flight together: the later one is
//!   held until the earlier one completes, so a match is never a guess;
//! * a response that matches no signature exactly belongs to the only scanned FETCH in flight
//!   if its items are a subset of that FETCH's, and to none otherwise (it is then scanned or
//!   looked up on its own, like an unsolicited one).

use super::fetch::{FetchRequest, ItemKind};
use super::fetch_response::{FetchResponse, ResponseItem};

/// The content items of a FETCH command or response, normalised and sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature(Vec<String>);

impl Signature {
    /// The items a FETCH forwarded for `request` (plus `BODY.PEEK[]` when `added_whole`) makes
    /// the server return, as they appear in its responses.
    pub fn of_request(request: &FetchRequest, added_whole: bool) -> Signature {
        let mut keys: Vec<String> = request
            .items
            .iter()
            .filter_map(|item| key(&item.kind, item.partial.map(|(origin, _)| origin)))
            .collect();
        if added_whole {
            keys.push("BODY[]".into());
        }
        Signature::from_keys(keys)
    }

    /// The content items a response carries (a `NIL` value counts: it answers the item).
    pub fn of_response(response: &FetchResponse) -> Signature {
        let keys = response
            .items
            .iter()
            .filter_map(|item: &ResponseItem| key(&item.kind, item.origin))
            .collect();
        Signature::from_keys(keys)
    }

    fn from_keys(mut keys: Vec<String>) -> Signature {
        keys.sort();
        keys.dedup();
        Signature(keys)
    }

    /// No content item at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every item of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Signature) -> bool {
        self.0.iter().all(|key| other.0.contains(key))
    }
}

/// Chooses, among the signatures of the scanned FETCHes in flight (oldest first), the one a
/// response with `signature` answers; `None` when it answers none of them.
pub fn answered<'a>(
    signature: &Signature,
    in_flight: impl Iterator<Item = &'a Signature> + Clone,
) -> Option<usize> {
    if signature.is_empty() {
        return None;
    }
    if let Some(index) = in_flight.clone().position(|s| s == signature) {
        return Some(index);
    }
    let mut candidates = in_flight.enumerate();
    match (candidates.next(), candidates.next()) {
        (Some((index, only)), None) if signature.is_subset_of(only) => Some(index),
        _ => None,
    }
}

/// The response name of a content item, `None` for items that carry no content.
fn key(kind: &ItemKind, origin: Option<u64>) -> Option<String> {
    let name = match kind {
        ItemKind::Section { binary, section } => {
            let head = if *binary { "BINARY" } else { "BODY" };
            format!("{head}[{}]", without_field_list(section))
        }
        ItemKind::BinarySize(section) => format!("BINARY.SIZE[{section}]"),
        ItemKind::Rfc822 => "RFC822".into(),
        ItemKind::Rfc822Text => "RFC822.TEXT".into(),
        ItemKind::Rfc822Size => "RFC822.SIZE".into(),
        ItemKind::Rfc822Header => "RFC822.HEADER".into(),
        ItemKind::Envelope => "ENVELOPE".into(),
        ItemKind::Structure { extensible: true } => "BODYSTRUCTURE".into(),
        ItemKind::Structure { extensible: false } => "BODY".into(),
        ItemKind::Unknown => "?".into(),
        ItemKind::Uid | ItemKind::Meta => return None,
    };
    Some(match origin {
        Some(origin) => format!("{name}<{origin}>"),
        None => name,
    })
}

/// `HEADER.FIELDS (A B)` → `HEADER.FIELDS` (the list is spelled as the server likes).
fn without_field_list(section: &str) -> &str {
    section.split(" (").next().unwrap_or(section).trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &str, added_whole: bool) -> Signature {
        let request = FetchRequest::parse(args).expect("request");
        Signature::of_request(&request, added_whole)
    }

    fn response(raw: &[u8]) -> Signature {
        let parsed = FetchResponse::parse(raw).expect("parse").expect("fetch");
        Signature::of_response(&parsed)
    }

    #[test]
    fn responses_carry_the_signature_of_their_request() {
        let pairs: &[(&str, bool, &[u8])] = &[
            (
                "1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)] UID)",
                true,
                b"* 1 FETCH (UID 4 FLAGS () BODY[HEADER.FIELDS (\"FROM\" \"SUBJECT\")] {2}\r\n\r\n BODY[] {2}\r\n\r\n)",
            ),
            (
                "7 (BINARY.PEEK[1]<0.10> RFC822.SIZE)",
                false,
                b"* 7 FETCH (RFC822.SIZE 44 BINARY[1]<0> ~{0}\r\n)",
            ),
            ("2 FULL", false, b"* 2 FETCH (FLAGS () INTERNALDATE \"x\" RFC822.SIZE 4 ENVELOPE NIL BODY NIL)"),
        ];
        for (args, added, raw) in pairs {
            assert_eq!(request(args, *added), response(raw), "{args}");
        }
    }

    #[test]
    fn matching_prefers_equal_signatures_and_never_guesses() {
        let header = request("1 (BODY.PEEK[HEADER])", true);
        let structure = request("1 (BODYSTRUCTURE)", false);
        let flags = response(b"* 1 FETCH (FLAGS (\\Seen) UID 3)");
        assert_eq!(answered(&flags, [&header].into_iter()), None);
        let both = [&structure, &header];
        let got = response(b"* 1 FETCH (BODY[HEADER] {0}\r\n BODY[] {0}\r\n)");
        assert_eq!(answered(&got, both.into_iter()), Some(1));
        let partial = response(b"* 1 FETCH (BODY[HEADER] {0}\r\n)");
        assert_eq!(answered(&partial, both.into_iter()), None);
        assert_eq!(answered(&partial, [&header].into_iter()), Some(0));
        let stranger = response(b"* 1 FETCH (RFC822.TEXT {0}\r\n)");
        assert_eq!(answered(&stranger, [&header].into_iter()), None);
    }
}
