//! Bounded caches (moka, async): content hash → verdict, a message's identity (IMAP: user,
//! mailbox, UIDVALIDITY, UID; POP3: user, unique-id) → content hash, and content hash → what was
//! delivered (bounded by bytes with a weigher).
//!
//! A generation counter guards against a scan that started before a flush inserting a stale
//! result after it: inserts carry the generation read before scanning and are dropped if it moved.

use std::sync::atomic::{AtomicU64, Ordering};

use moka::future::Cache;

use super::verdict::{Disposition, Verdict};

/// A content hash (SHA-256).
pub type Hash = [u8; 32];

/// The stable identity of a message, plus the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKey {
    /// An IMAP message (RFC 9051 §2.3.1.1).
    Imap {
        /// User.
        user: String,
        /// Mailbox.
        mailbox: String,
        /// UIDVALIDITY.
        uidvalidity: u32,
        /// UID.
        uid: u32,
    },
    /// A POP3 message by its unique-id (RFC 1939 §7 `UIDL`: the same for the same message in
    /// every session).
    Pop3 {
        /// User.
        user: String,
        /// The unique-id the backend's `UIDL` gives the message.
        uidl: String,
    },
}

/// What was delivered for a content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The original, unchanged, with the verdict behind that.
    Unmodified(Verdict),
    /// A replacement or a modified version.
    Serve(Disposition),
}

fn outcome_weight(outcome: &Outcome) -> u32 {
    let len = match outcome {
        Outcome::Unmodified(_) => 0,
        Outcome::Serve(Disposition::Deliver { bytes, .. } | Disposition::Replace { bytes, .. }) => {
            bytes.len()
        }
        Outcome::Serve(Disposition::TempFail { reason }) => reason.len(),
    };
    u32::try_from(len.saturating_add(64)).unwrap_or(u32::MAX)
}

/// The scan caches.
pub struct ScanCache {
    verdicts: Cache<Hash, Verdict>,
    messages: Cache<MessageKey, Hash>,
    outcomes: Cache<Hash, Outcome>,
    generation: AtomicU64,
}

impl std::fmt::Debug for ScanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanCache")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl ScanCache {
    /// Caches bounded to `entries` entries each, and `max_bytes` of delivered bytes.
    pub fn new(entries: u64, max_bytes: u64) -> ScanCache {
        ScanCache {
            verdicts: Cache::new(entries),
            messages: Cache::new(entries),
            outcomes: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &Hash, value: &Outcome| outcome_weight(value))
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation (bumped by every flush).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Drops every entry (clamd signatures changed, rules reloaded).
    pub fn flush(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.verdicts.invalidate_all();
        self.messages.invalidate_all();
        self.outcomes.invalidate_all();
    }

    /// Cached verdict for a content hash.
    pub async fn verdict(&self, hash: &Hash) -> Option<Verdict> {
        self.verdicts.get(hash).await
    }

    /// Remembers a verdict computed in `generation`. Error verdicts are never cached.
    pub async fn put_verdict(&self, hash: Hash, verdict: Verdict, generation: u64) {
        if matches!(verdict, Verdict::Error { .. }) || generation != self.generation() {
            return;
        }
        self.verdicts.insert(hash, verdict).await;
    }

    /// Cached outcome for a content hash.
    pub async fn outcome(&self, hash: &Hash) -> Option<Outcome> {
        self.outcomes.get(hash).await
    }

    /// Remembers an outcome computed in `generation`.
    pub async fn put_outcome(&self, hash: Hash, outcome: Outcome, generation: u64) {
        if generation == self.generation() {
            self.outcomes.insert(hash, outcome).await;
        }
    }

    /// Content hash previously seen for a message identity.
    pub async fn message_hash(&self, key: &MessageKey) -> Option<Hash> {
        self.messages.get(key).await
    }

    /// Remembers the content hash of a message identity.
    pub async fn put_message(&self, key: MessageKey, hash: Hash, generation: u64) {
        if generation == self.generation() {
            self.messages.insert(key, hash).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flush_and_generation() {
        let cache = ScanCache::new(10, 1 << 20);
        let generation = cache.generation();
        cache.put_verdict([1; 32], Verdict::Clean, generation).await;
        assert_eq!(cache.verdict(&[1; 32]).await, Some(Verdict::Clean));
        cache.flush();
        assert_eq!(cache.verdict(&[1; 32]).await, None);
        // a scan that started before the flush does not repopulate the cache
        cache.put_verdict([1; 32], Verdict::Clean, generation).await;
        assert_eq!(cache.verdict(&[1; 32]).await, None);
    }

    #[tokio::test]
    async fn errors_not_cached() {
        let cache = ScanCache::new(10, 1 << 20);
        let cause = crate::scan::verdict::ScanErrorCause::Timeout;
        cache
            .put_verdict([2; 32], Verdict::Error { cause }, cache.generation())
            .await;
        assert_eq!(cache.verdict(&[2; 32]).await, None);
    }
}
