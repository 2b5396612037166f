//! FETCH interception: every message a client fetches is scanned before any byte of its content
//! reaches the client (RFC 9051 §6.4.5, RFC 3516, RFC 5530 for `[UNAVAILABLE]`).
//!
//! * A FETCH/UID FETCH whose items depend on the verdict is forwarded with `BODY.PEEK[]` and
//!   `UID` added (unless the client asked for the whole message itself, or every message is in
//!   the verdict cache), so the whole message arrives in the same round trip.
//! * Each `* n FETCH` response is answered as soon as its message has a verdict: the client's
//!   items come byte-exact from the original when it is clean, are computed from the replacement
//!   (or modified message) when it is not, and are withheld on a temporary failure, which turns
//!   the tagged OK into `NO [UNAVAILABLE]`. Items the proxy added are removed.
//! * Only metadata (FLAGS, UID, INTERNALDATE, MODSEQ) goes out without a verdict. Header-class
//!   items (`BODY[HEADER…]`, `BODY[n.MIME]`, `RFC822.HEADER`, ENVELOPE, BODYSTRUCTURE) and sizes
//!   wait for it like content does, and for a blocked or modified message they are computed from
//!   the served message, never taken from the original (issue 9; rule in [`super::fetch`]).
//! * While a scan takes long, untagged `* OK` keep-alives go to the client.
//!
//! This module is pure: [`intercept`] says what a response needs, [`serve`] renders it once the
//! disposition is known; [`super::relay`] turns the needs into actions.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::fetch::{FetchRequest, ItemKind};
use super::fetch_match::Signature;
use super::fetch_response::{encode_literal_item, FetchResponse, ResponseItem, Value};
use super::section;
use super::segments::{Segments, Source};
use crate::scan::Disposition;

/// Interval between keep-alives while one message is being scanned.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Most sequence-number → UID mappings remembered per session.
pub const MAX_SEQ_MAP: usize = 100_000;
/// Most messages whose cache entries are checked before forwarding a FETCH.
pub const MAX_CACHE_PROBE: usize = 1000;

/// The selected mailbox, as far as the proxy has seen it.
#[derive(Debug, Default)]
pub struct MailboxState {
    /// Mailbox name of the last successful SELECT/EXAMINE.
    pub name: Option<String>,
    /// Its UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// UIDVALIDITY seen during a SELECT/EXAMINE still in progress.
    pub selecting_uidvalidity: Option<u32>,
    /// Sequence number → UID, learned from FETCH responses; cleared on EXPUNGE.
    pub seq_to_uid: HashMap<u32, u32>,
}

/// Bookkeeping for one FETCH command in flight.
#[derive(Debug, Clone)]
pub struct FetchContext {
    /// The command's tag.
    pub tag: String,
    /// The content items its responses carry ([`super::fetch_match`]).
    pub signature: Signature,
    /// What the client asked for.
    pub request: FetchRequest,
    /// The proxy added `BODY.PEEK[]`.
    pub added_whole: bool,
    /// The proxy added `UID`.
    pub added_uid: bool,
    /// Messages whose content was withheld (temporary failure).
    pub withheld: u32,
}

/// What to do with one response item.
enum Serve<'a> {
    /// The original's bytes are fine to deliver.
    Original,
    /// Serve content items from these bytes instead.
    From(&'a [u8]),
    /// Withhold content items.
    Withhold,
}
/// A parsed `* n FETCH` response waiting to be served.
#[derive(Debug)]
pub struct Held {
    raw: Segments,
    response: FetchResponse,
    context: Option<FetchContext>,
}

impl Held {
    /// Octets of the held response.
    pub fn len(&self) -> u64 {
        Source::len(&self.raw) as u64
    }

    /// The message sequence number.
    pub fn seq(&self) -> u32 {
        self.response.seq
    }

    /// The UID the response carries, if any.
    pub fn uid(&self) -> Option<u32> {
        self.response.uid(&self.raw)
    }

    /// The tag of the FETCH command it answers, if it answers a scanned one.
    pub fn tag(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.tag.as_str())
    }
}

/// What one `* n FETCH` response needs before it can go to the client.
#[derive(Debug)]
pub enum Interception {
    /// Relay these bytes unchanged (the framed parts, in order).
    Pass(Segments),
    /// Unparsable: withheld (counts as a withheld message).
    Unparsable,
    /// Only items the proxy added need removing: serve with no verdict.
    Ready(Held),
    /// Scan this whole message, then serve.
    Scan(Held, Bytes),
    /// The content arrived without the whole message: serve the cached disposition.
    Lookup(Held),
}

/// Classifies a complete FETCH response; `answered` names the scanned FETCH command it answers
/// given its signature ([`super::fetch_match`]), if any. Also returns its sequence number and
/// the UID it carries, if any.
pub fn intercept<'c>(
    raw: Segments,
    answered: impl FnOnce(&Signature) -> Option<&'c FetchContext>,
) -> (Interception, Option<(u32, u32)>) {
    // Items and the whole message are slices of the framed parts from here on: no copies.
    let response = match FetchResponse::parse_from(&raw) {
        Ok(Some(response)) => response,
        Ok(None) => return (Interception::Pass(raw), None),
        Err(error) => {
            tracing::warn!(%error, side = "backend", "unparsable FETCH response withheld");
            return (Interception::Unparsable, None);
        }
    };
    let uid = response.uid(&raw).map(|uid| (response.seq, uid));
    let context = answered(&Signature::of_response(&response));
    let added = |item: &ResponseItem| is_added(item, context);
    let has_content = response.items.iter().any(|i| needs_verdict(i) && !added(i));
    if !has_content && !response.items.iter().any(added) {
        return (Interception::Pass(raw), uid);
    }
    let whole = response
        .items
        .iter()
        .find(|i| is_whole(i))
        .and_then(|i| value_bytes(&raw, i));
    let held = Held {
        raw,
        response,
        context: context.cloned(),
    };
    let interception = match (has_content, whole) {
        (false, _) => Interception::Ready(held),
        (true, Some(whole)) => Interception::Scan(held, whole),
        (true, None) => Interception::Lookup(held),
    };
    (interception, uid)
}

/// The bytes for the client from a held response and its disposition (`None`: clean, serve the
/// original), as pieces to send in order; `None` sends nothing. A temporary failure withholds
/// the content items. A clean response the proxy added nothing to is sent as received, without
/// a copy; otherwise the kept items are slices of the received bytes.
pub fn serve(held: &Held, disposition: Option<&Disposition>) -> Option<Vec<Bytes>> {
    let serve = match disposition {
        None
        | Some(Disposition::Deliver {
            modified: false, ..
        }) => Serve::Original,
        Some(Disposition::Deliver { bytes, .. }) | Some(Disposition::Replace { bytes, .. }) => {
            Serve::From(bytes)
        }
        Some(Disposition::TempFail { .. }) => Serve::Withhold,
    };
    let context = held.context.as_ref();
    let items = &held.response.items;
    if matches!(serve, Serve::Original) && !items.iter().any(|i| is_added(i, context)) {
        return Some(held.raw.parts().to_vec());
    }
    let mut pieces = vec![Bytes::from(format!("* {} FETCH (", held.response.seq))];
    let mut served = 0;
    for item in items.iter().filter(|i| !is_added(i, context)) {
        if let Some(encoded) = serve_item(&held.raw, item, &serve, context) {
            if served > 0 {
                pieces.push(Bytes::from_static(b" "));
            }
            served += 1;
            pieces.extend(encoded);
        }
    }
    (served > 0).then(|| {
        pieces.push(Bytes::from_static(b")\r\n"));
        pieces
    })
}

/// An item's value as a slice of the framed parts (a copy only for a quoted string with
/// escapes, or a short value that spans parts).
fn value_bytes(raw: &Segments, item: &ResponseItem) -> Option<Bytes> {
    match &item.value {
        Value::Literal { content, .. } => raw.slice(content.clone()),
        _ => FetchResponse::value(raw, item).map(|v| Bytes::copy_from_slice(&v)),
    }
}

/// Whether the proxy added this item to the forwarded command.
fn is_added(item: &ResponseItem, context: Option<&FetchContext>) -> bool {
    let Some(context) = context else { return false };
    (context.added_uid && item.kind == ItemKind::Uid) || (context.added_whole && is_whole(item))
}

fn is_whole(item: &ResponseItem) -> bool {
    let whole_section =
        matches!(&item.kind, ItemKind::Section { binary: false, section } if section.is_empty());
    item.origin.is_none() && (whole_section || item.kind == ItemKind::Rfc822)
}

/// Whether the item's value depends on the message's octets (a `NIL` value carries none).
fn needs_verdict(item: &ResponseItem) -> bool {
    item.kind.needs_verdict() && item.value != Value::Nil
}

/// The encoded item for the client as pieces in order, or `None` to leave it out.
fn serve_item(
    raw: &Segments,
    item: &ResponseItem,
    serve: &Serve<'_>,
    context: Option<&FetchContext>,
) -> Option<Vec<Bytes>> {
    let original = || raw.pieces(item.span.clone()).unwrap_or_default();
    match serve {
        Serve::Original => Some(original()),
        Serve::Withhold if needs_verdict(item) => None,
        Serve::Withhold => Some(original()),
        Serve::From(_) if !needs_verdict(item) => Some(original()),
        Serve::From(bytes) => computed(item, bytes, context).map(|c| vec![Bytes::from(c)]),
    }
}

/// An item computed from `bytes` (the replacement or modified message); `None` leaves it out.
fn computed(item: &ResponseItem, bytes: &[u8], context: Option<&FetchContext>) -> Option<Vec<u8>> {
    let named = |value: Vec<u8>| {
        let mut out = format!("{} ", item.name).into_bytes();
        out.extend_from_slice(&value);
        out
    };
    match &item.kind {
        ItemKind::Rfc822Size => Some(format!("RFC822.SIZE {}", bytes.len()).into_bytes()),
        ItemKind::BinarySize(section) => {
            let size = section::extract(bytes, section, true).map_or(0, |c| c.len());
            Some(format!("{} {size}", item.name).into_bytes())
        }
        ItemKind::Envelope => section::structure::envelope(bytes).map(named),
        ItemKind::Structure { extensible } => {
            section::structure::body_structure(bytes, *extensible).map(named)
        }
        ItemKind::Rfc822
        | ItemKind::Rfc822Text
        | ItemKind::Rfc822Header
        | ItemKind::Section { .. } => Some(substitute(item, bytes, context)),
        ItemKind::Uid | ItemKind::Meta | ItemKind::Unknown => None,
    }
}

/// A content item computed from `bytes` (the replacement or modified message).
fn substitute(item: &ResponseItem, bytes: &[u8], context: Option<&FetchContext>) -> Vec<u8> {
    let content = match &item.kind {
        ItemKind::Rfc822 => Some(bytes.to_vec()),
        ItemKind::Rfc822Text => section::extract(bytes, "TEXT", false),
        ItemKind::Rfc822Header => section::header(bytes),
        ItemKind::Section { binary, section } => section::extract(bytes, section, *binary),
        _ => None,
    };
    let Some(content) = content else {
        return format!("{} NIL", item.name).into_bytes();
    };
    let content = match item.origin {
        Some(origin) => section::partial(&content, origin, requested_count(item, origin, context)),
        None => &content[..],
    };
    encode_literal_item(&item.name, content)
}

/// The `count` of the client's partial request matching a response item.
fn requested_count(
    item: &ResponseItem,
    origin: u64,
    context: Option<&FetchContext>,
) -> Option<u64> {
    context?
        .request
        .items
        .iter()
        .find(|r| r.kind == item.kind && r.partial.is_some_and(|(o, _)| o == origin))
        .and_then(|r| r.partial.map(|(_, count)| count))
}

/// Expands a sequence set without `*` into numbers; `None` if it has `*`, `$` or is too large.
pub fn expand_set(set: &str, limit: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for range in set.split(',') {
        let (low, high) = match range.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = range.parse::<u32>().ok()?;
                (n, n)
            }
        };
        let (low, high) = (low.min(high), low.max(high));
        if out.len() + (high - low) as usize >= limit {
            return None;
        }
        out.extend(low..=high);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_expand_within_limits() {
        assert_eq!(expand_set("1:3,7", 100), Some(vec![1, 2, 3, 7]));
        assert_eq!(expand_set("5:3", 100), Some(vec![3, 4, 5]));
        assert_eq!(expand_set("1:*", 100), None);
        assert_eq!(expand_set("1:4294967295", 100), None);
        assert_eq!(expand_set("$", 100), None);
    }
}
