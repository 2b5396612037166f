//! What a POP3 client sees of a message besides its content — `LIST` sizes, the `STAT` total
//! and `UIDL` unique-ids (RFC 1939 §5, §7) — kept consistent with what `RETR` serves once the
//! verdict is known (issue 9, item 2). Sans I/O: parsing, rewriting and what the session knows.
//!
//! * A message whose disposition the session knows — scanned in this session (`RETR`, `TOP`, a
//!   `scan_on_structure` scan), or found in the scanner's cache by its unique-id — is listed with
//!   the octets `RETR` serves: the original's size when it is delivered unmodified, else the
//!   size of the replacement or modified message as served (CRLF line endings, before
//!   dot-stuffing, the last line completed: [`served_len`]). RFC 1939 §5: `LIST` gives the
//!   "exact size" of the message, `STAT` the size of the maildrop, i.e. their sum.
//! * A message not scanned yet shows the backend's values: its original size. That is what a
//!   client can see before the first scan (unless `scan_on_structure` is on).
//! * A scan listing line that does not parse is relayed as it came; anything after the size is
//!   kept (RFC 1939 §5 makes no requirement on it).
//!
//! ## UIDL
//!
//! `UIDL` shows the backend's unique-id for every message, blocked ones included; the proxy
//! never rewrites it. RFC 1939 §7 requires that a unique-id never changes for a message across
//! sessions. A message is listed (`UIDL`) before anyone scans it, so an id derived from the
//! verdict or the served content would change at the first scan of every blocked message: a
//! "leave mail on server" client would take it for a new message and download the notice a
//! second time, and again whenever the verdict changes (new signatures, a release). With the
//! original id the client keeps its state: it has the notice, and a released original reaches
//! the user from the quarantine, not by a new download.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

pub use super::multiline::served_len;
use super::multiline::MultiLine;
use crate::scan::{Cached, Disposition};

/// At most this many messages are scanned for one `LIST`/`STAT` with `scan_on_structure`; the
/// others show their original size until scanned (by `RETR`, or by a later `LIST`/`STAT`).
pub const STRUCTURE_SCAN_MESSAGES: usize = 100;

/// At most this many octets (original sizes as the backend lists them) are retrieved for the
/// scans of one `LIST`/`STAT` with `scan_on_structure`; a message that would pass the budget is
/// skipped.
pub const STRUCTURE_SCAN_OCTETS: u64 = 64 << 20;

/// Longest unique-id (RFC 1939 §7: 1 to 70 characters).
const MAX_UIDL: usize = 70;

/// What `RETR` serves for a message whose disposition is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The original, byte for byte: the backend's size is right.
    Original,
    /// A replacement or a modified message of this many octets.
    Octets(u64),
}

impl Served {
    /// What `RETR` serves for `disposition`; `None` for a temporary failure (nothing is served,
    /// so nothing is known).
    pub fn of(disposition: &Disposition) -> Option<Served> {
        match disposition {
            Disposition::Deliver {
                modified: false, ..
            } => Some(Served::Original),
            Disposition::Deliver { bytes, .. } | Disposition::Replace { bytes, .. } => {
                Some(Served::Octets(served_len(bytes)))
            }
            Disposition::TempFail { .. } => None,
        }
    }

    /// What `RETR` serves for a disposition found in the cache.
    pub fn of_cached(cached: &Cached) -> Option<Served> {
        match cached {
            Cached::Clean => Some(Served::Original),
            Cached::Serve(disposition) => Served::of(disposition),
        }
    }

    /// The size to list, given the backend's.
    pub fn size(self, original: u64) -> u64 {
        match self {
            Served::Original => original,
            Served::Octets(octets) => octets,
        }
    }
}

/// Whether the session has the backend's unique-ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Ids {
    /// Nobody asked yet.
    #[default]
    NotAsked,
    /// A `UIDL` listing is on its way.
    Asked,
    /// A listing arrived.
    Have,
    /// The backend refused `UIDL` (it is optional, RFC 1939 §7): only this session's scans count.
    Unavailable,
}

/// What one session knows about its messages (message numbers are stable for the session,
/// RFC 1939 §5; `DELE` only marks).
#[derive(Debug, Default)]
pub struct Knowledge {
    served: HashMap<u32, Served>,
    /// Looked up in the cache without an answer: not asked again (a scan in this session fills
    /// [`Knowledge::served`] instead).
    missed: HashSet<u32>,
    uidls: HashMap<u32, String>,
    ids: Ids,
}

impl Knowledge {
    /// Whether nobody has asked for the unique-ids yet.
    pub fn needs_ids(&self) -> bool {
        self.ids == Ids::NotAsked
    }

    /// A full `UIDL` went to the backend.
    pub fn asked_ids(&mut self) {
        if self.ids == Ids::NotAsked {
            self.ids = Ids::Asked;
        }
    }

    /// The backend refused a full `UIDL`.
    pub fn ids_unavailable(&mut self) {
        if self.ids != Ids::Have {
            self.ids = Ids::Unavailable;
        }
    }

    /// Learns the unique-ids of a `UIDL` listing body (RFC 1939 §7: `msgno SP unique-id`).
    pub fn learn_listing(&mut self, body: &[u8]) {
        for (msgno, uidl) in lines(body).filter_map(|(line, _)| unique_id(line)) {
            self.uidls.insert(msgno, uidl);
        }
        self.ids = Ids::Have;
    }

    /// Learns the unique-id of a `+OK msgno unique-id` answer to `UIDL msgno`.
    pub fn learn_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some((msgno, uidl)) = line.strip_prefix(b"+OK ").and_then(unique_id) {
            self.uidls.insert(msgno, uidl);
        }
    }

    /// The unique-id of message `msgno`, if known.
    pub fn uidl(&self, msgno: u32) -> Option<&str> {
        self.uidls.get(&msgno).map(String::as_str)
    }

    /// A scan of message `msgno` ended with `disposition`.
    pub fn record(&mut self, msgno: u32, disposition: &Disposition) {
        if let Some(served) = Served::of(disposition) {
            self.served.insert(msgno, served);
        }
    }

    /// The cache's answer for message `msgno`.
    pub fn looked_up(&mut self, msgno: u32, cached: Option<&Cached>) {
        match cached.and_then(Served::of_cached) {
            Some(served) => {
                self.served.insert(msgno, served);
            }
            None => {
                self.missed.insert(msgno);
            }
        }
    }

    /// Whether what `RETR` serves for `msgno` is known.
    pub fn is_known(&self, msgno: u32) -> bool {
        self.served.contains_key(&msgno)
    }

    /// The size to list for `msgno`, given the backend's.
    pub fn size(&self, msgno: u32, original: u64) -> u64 {
        self.served
            .get(&msgno)
            .map_or(original, |served| served.size(original))
    }

    /// The messages of `msgnos` worth asking the cache about (not known, not asked before, with
    /// a unique-id), with their unique-ids.
    pub fn to_look_up(&self, msgnos: impl IntoIterator<Item = u32>) -> Vec<(u32, String)> {
        let mut seen = HashSet::new();
        msgnos
            .into_iter()
            .filter(|n| !self.is_known(*n) && !self.missed.contains(n) && seen.insert(*n))
            .filter_map(|n| Some((n, self.uidl(n)?.to_string())))
            .collect()
    }

    /// The messages of a listing (`(msgno, original size)`) to scan for `scan_on_structure`: not
    /// known, in listing order, within [`STRUCTURE_SCAN_MESSAGES`] and
    /// [`STRUCTURE_SCAN_OCTETS`].
    pub fn unscanned(&self, entries: &[(u32, u64)]) -> Vec<u32> {
        let mut budget = STRUCTURE_SCAN_OCTETS;
        let mut chosen = Vec::new();
        for &(msgno, size) in entries {
            if chosen.len() == STRUCTURE_SCAN_MESSAGES {
                break;
            }
            if self.is_known(msgno) || chosen.contains(&msgno) || size > budget {
                continue;
            }
            budget -= size;
            chosen.push(msgno);
        }
        chosen
    }
}

/// The lines of a multi-line body: each line's content and its line ending.
fn lines(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    body.split_inclusive(|&b| b == b'\n').map(|line| {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        (content, &line[content.len()..])
    })
}

/// A decimal number of plain digits.
fn number<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `msgno SP size [rest]` (RFC 1939 §5 scan listing): the number, the size, and what follows
/// the size (kept as it is).
fn scan_entry(line: &[u8]) -> Option<(u32, u64, &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let msgno = number(&line[..space])?;
    let size_part = &line[space + 1..];
    let end = size_part
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(size_part.len());
    let size = number(&size_part[..end])?;
    Some((msgno, size, &size_part[end..]))
}

/// `msgno SP unique-id` (RFC 1939 §7): a unique-id of 1 to 70 characters 0x21–0x7E.
fn unique_id(line: &[u8]) -> Option<(u32, String)> {
    let space = line.iter().position(|&b| b == b' ')?;
    let msgno = number(&line[..space])?;
    let id = &line[space + 1..];
    let valid = (1..=MAX_UIDL).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b));
    valid.then(|| (msgno, String::from_utf8_lossy(id).into_owned()))
}

/// The `(msgno, size)` entries of a `LIST` answer's body, in order.
pub fn scan_listing(body: &[u8]) -> Vec<(u32, u64)> {
    lines(body)
        .filter_map(|(line, _)| scan_entry(line))
        .map(|(msgno, size, _)| (msgno, size))
        .collect()
}

/// A `LIST` answer with every entry's size as `size(msgno, original)` says; the `(N octets)`
/// total some servers put in the status line (RFC 1939 §5's example) follows. Relayed as it
/// came when nothing changes.
pub fn rewrite_listing(response: &MultiLine, size: impl Fn(u32, u64) -> u64) -> Bytes {
    let body = response.body();
    let mut out = Vec::with_capacity(body.len());
    let mut total = 0u64;
    let mut changed = false;
    for (line, ending) in lines(&body) {
        match scan_entry(line) {
            Some((msgno, original, rest)) => {
                let served = size(msgno, original);
                changed |= served != original;
                total = total.saturating_add(served);
                out.extend_from_slice(format!("{msgno} {served}").as_bytes());
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(line),
        }
        out.extend_from_slice(ending);
    }
    if !changed {
        return response.raw().clone();
    }
    let status = octets_total(response.status_line(), total);
    MultiLine::from_parts(&status, &out).raw().clone()
}

/// A status line with its `(N octets)` total, if it has one, replaced by `total`.
fn octets_total(status: &[u8], total: u64) -> Vec<u8> {
    const SUFFIX: &[u8] = b" octets)";
    let found = status.windows(SUFFIX.len()).position(|w| w == SUFFIX);
    let Some(end) = found else {
        return status.to_vec();
    };
    let digits = status[..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let start = end - digits;
    if digits == 0 || start == 0 || status[start - 1] != b'(' {
        return status.to_vec();
    }
    let mut out = status[..start].to_vec();
    out.extend_from_slice(total.to_string().as_bytes());
    out.extend_from_slice(&status[end..]);
    out
}

/// The answer to `LIST msgno` (`+OK msgno size [rest]`) with the size `size` says; relayed as
/// it came when that is the backend's or the line does not parse.
pub fn rewrite_scan_line(line: &Bytes, size: impl Fn(u32, u64) -> u64) -> Bytes {
    let Some(listing) = line.strip_prefix(b"+OK ") else {
        return line.clone();
    };
    let Some((msgno, original, rest)) = scan_entry(listing) else {
        return line.clone();
    };
    let served = size(msgno, original);
    if served == original {
        return line.clone();
    }
    let mut out = format!("+OK {msgno} {served}").into_bytes();
    out.extend_from_slice(rest);
    Bytes::from(out)
}

/// The answer to `STAT` (RFC 1939 §5: `+OK count octets`) computed from a `LIST` body: every
/// listed message, with the size `size` says.
pub fn stat_line(entries: &[(u32, u64)], size: impl Fn(u32, u64) -> u64) -> Bytes {
    let total = entries.iter().fold(0u64, |sum, &(n, original)| {
        sum.saturating_add(size(n, original))
    });
    Bytes::from(format!("+OK {} {total}\r\n", entries.len()))
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
