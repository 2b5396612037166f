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

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::fetch::{FetchRequest, ItemKind};
use super::fetch_response::{encode_literal_item, render, FetchResponse, ResponseItem, Value};
use super::section;
use super::session::Session;
use crate::scan::{Cached, Disposition, MessageRef, Protocol};
use crate::session::{write_client, SessionError, SessionStats};

/// Interval between keep-alives while one message is being scanned.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Most sequence-number → UID mappings remembered per session.
const MAX_SEQ_MAP: usize = 100_000;
/// Most messages whose cache entries are checked before forwarding a FETCH.
const MAX_CACHE_PROBE: usize = 1000;

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

impl Session {
    /// Plans the forwarding of a FETCH: `Ok(Some(context))` when it needs scanning (the command
    /// line to forward is returned too), `Ok(None)` to forward as is, `Err(reply)` to refuse.
    pub(super) async fn plan_fetch(
        &self,
        tag: &str,
        name: &str,
        args: &str,
        stats: &SessionStats,
    ) -> Result<Option<(FetchContext, Vec<u8>)>, String> {
        let Some(request) = FetchRequest::parse(args) else {
            return Err(format!(
                "{tag} BAD [CLIENTBUG] FETCH arguments not understood by the proxy\r\n"
            ));
        };
        if !request.needs_verdict() {
            return Ok(None);
        }
        let uid_command = name.starts_with("UID ");
        let all_cached = self.all_cached(&request.sequence, uid_command, stats).await;
        let added_whole = !request.has_whole_message() && !all_cached;
        let added_uid = !request.has_uid() && !uid_command;
        let line = format!(
            "{tag} {name} {}\r\n",
            request.forwarded_args(added_whole, added_uid)
        );
        let context = FetchContext {
            request,
            added_whole,
            added_uid,
            withheld: 0,
        };
        Ok(Some((context, line.into_bytes())))
    }

    /// Whether every message of the set has a cached disposition (so no extra download is needed).
    async fn all_cached(&self, sequence: &str, uid_command: bool, stats: &SessionStats) -> bool {
        let Some(numbers) = expand_set(sequence, MAX_CACHE_PROBE) else {
            return false;
        };
        for number in numbers {
            let uid = if uid_command {
                Some(number)
            } else {
                self.mailbox.seq_to_uid.get(&number).copied()
            };
            let Some(uid) = uid else { return false };
            let reference = self.message_ref(stats, Some(uid), None);
            if self
                .context
                .listener
                .scanner
                .cached(&reference)
                .await
                .is_none()
            {
                return false;
            }
        }
        true
    }

    pub(super) fn message_ref(
        &self,
        stats: &SessionStats,
        uid: Option<u32>,
        seq: Option<u32>,
    ) -> MessageRef {
        MessageRef {
            client_addr: self.context.peer,
            user: stats.user.clone(),
            protocol: Protocol::Imap,
            mailbox: self.mailbox.name.clone(),
            uidvalidity: self.mailbox.uidvalidity,
            uid,
            msgno: seq,
        }
    }

    /// Handles one `* n FETCH` response; returns the bytes for the client (`None`: send nothing).
    pub(super) async fn on_fetch_response(
        &mut self,
        raw: Vec<u8>,
        stats: &mut SessionStats,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let context = self.fetch_context().cloned();
        let response = match FetchResponse::parse(&raw) {
            Ok(Some(response)) => response,
            Ok(None) => return Ok(Some(raw)),
            Err(error) => {
                tracing::warn!(%error, side = "backend", "unparsable FETCH response withheld");
                self.note_withheld();
                return Ok(None);
            }
        };
        let uid = response.uid(&raw);
        if let Some(uid) = uid {
            self.remember_uid(response.seq, uid);
        }
        let added = |item: &ResponseItem| is_added(item, context.as_ref());
        let has_content = response.items.iter().any(|i| needs_verdict(i) && !added(i));
        if !has_content && !response.items.iter().any(added) {
            return Ok(Some(raw));
        }
        let disposition = if has_content {
            self.disposition(&raw, &response, uid, stats).await?
        } else {
            None
        };
        let serve = match &disposition {
            None => Serve::Original,
            Some(Disposition::Deliver {
                modified: false, ..
            }) => Serve::Original,
            Some(Disposition::Deliver { bytes, .. }) | Some(Disposition::Replace { bytes, .. }) => {
                Serve::From(bytes)
            }
            Some(Disposition::TempFail { .. }) => Serve::Withhold,
        };
        if matches!(serve, Serve::Withhold) {
            self.note_withheld();
        }
        let mut items: Vec<Cow<'_, [u8]>> = Vec::new();
        for item in response.items.iter().filter(|i| !added(i)) {
            if let Some(encoded) = serve_item(&raw, item, &serve, context.as_ref()) {
                items.push(encoded);
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        Ok(Some(render(response.seq, &items)))
    }

    /// The verdict-driven disposition of the message in `response`; `None` means clean.
    async fn disposition(
        &mut self,
        raw: &[u8],
        response: &FetchResponse,
        uid: Option<u32>,
        stats: &mut SessionStats,
    ) -> Result<Option<Disposition>, SessionError> {
        let reference = self.message_ref(stats, uid, Some(response.seq));
        let whole = response
            .items
            .iter()
            .find(|i| is_whole(i))
            .and_then(|i| FetchResponse::value(raw, i));
        let Some(whole) = whole else {
            return Ok(
                match self.context.listener.scanner.cached(&reference).await {
                    Some(Cached::Clean) => None,
                    Some(Cached::Serve(disposition)) => Some(disposition),
                    None => Some(Disposition::TempFail {
                        reason: "message content arrived without the whole message".into(),
                    }),
                },
            );
        };
        let disposition = self
            .process_with_keepalive(Bytes::from(whole.into_owned()), reference)
            .await?;
        stats.scanned += 1;
        if !matches!(
            disposition,
            Disposition::Deliver {
                modified: false,
                ..
            }
        ) {
            stats.blocked += 1;
        }
        Ok(Some(disposition))
    }

    async fn process_with_keepalive(
        &mut self,
        message: Bytes,
        reference: MessageRef,
    ) -> Result<Disposition, SessionError> {
        let context = self.context.clone();
        let scan = crate::session::scan_with_permit(&context, message, &reference);
        tokio::pin!(scan);
        let start = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
        let mut ticker = tokio::time::interval_at(start, KEEPALIVE_INTERVAL);
        loop {
            tokio::select! {
                disposition = &mut scan => return Ok(disposition),
                _ = ticker.tick() => {
                    crate::metrics::metrics().keepalives_sent.with_label_values(&["imap"]).inc();
                    write_client(&mut self.client, b"* OK [portcullis] Scanning message, please wait\r\n").await?;
                }
            }
        }
    }

    fn fetch_context(&self) -> Option<&FetchContext> {
        self.pending.iter().find_map(|p| p.fetch.as_deref())
    }

    fn note_withheld(&mut self) {
        if let Some(context) = self.pending.iter_mut().find_map(|p| p.fetch.as_deref_mut()) {
            context.withheld += 1;
        }
    }

    fn remember_uid(&mut self, seq: u32, uid: u32) {
        if self.mailbox.seq_to_uid.len() >= MAX_SEQ_MAP {
            self.mailbox.seq_to_uid.clear();
        }
        self.mailbox.seq_to_uid.insert(seq, uid);
    }

    /// Tracks UIDVALIDITY during SELECT/EXAMINE and forgets sequence numbers on EXPUNGE.
    pub(super) fn observe_untagged(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(&line[..line.len().min(256)]).to_ascii_uppercase();
        if let Some(rest) = text.strip_prefix("* OK [UIDVALIDITY ") {
            self.mailbox.selecting_uidvalidity =
                rest.split(']').next().and_then(|n| n.trim().parse().ok());
        } else if text.ends_with(" EXPUNGE\r\n") || text.starts_with("* VANISHED") {
            self.mailbox.seq_to_uid.clear();
        }
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

/// The encoded item for the client, or `None` to leave it out.
fn serve_item<'a>(
    raw: &'a [u8],
    item: &ResponseItem,
    serve: &Serve<'_>,
    context: Option<&FetchContext>,
) -> Option<Cow<'a, [u8]>> {
    let original = || Cow::Borrowed(raw.get(item.span.clone()).unwrap_or_default());
    match serve {
        Serve::Original => Some(original()),
        Serve::Withhold if needs_verdict(item) => None,
        Serve::Withhold => Some(original()),
        Serve::From(_) if !needs_verdict(item) => Some(original()),
        Serve::From(bytes) => computed(item, bytes, context).map(Cow::Owned),
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
