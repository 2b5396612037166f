//! The scan pipeline: clamd (or a built-in EICAR check) plus regex rules on decoded MIME, the
//! `on_error`/`on_oversize` policy, quarantine of originals, deterministic replacements and
//! bounded caches. Protocol-agnostic: IMAP and POP3 sessions call [`Scanner::process`] and
//! deliver what the returned [`Disposition`] says.
//!
//! Guarantees: a blocked message never comes back as `Deliver` (unless an operator released its
//! content, see [`release`]); its replacement is itself checked
//! (EICAR, rules, antivirus) and carries nothing the checks flag; clean mail is delivered
//! byte-identical; a temporary failure never carries substitute content; originals are
//! quarantined before a replacement is returned, and a failed quarantine write is a `TempFail`.

pub mod cache;
pub mod clamd;
pub mod cli;
mod compute;
pub mod config;
pub mod engine;
pub mod mime;
mod notice;
mod offload;
mod policy;
pub mod quarantine;
pub mod quarantine_cli;
pub mod quarantine_dir;
pub mod reencode;
pub mod release;
mod release_watch;
pub mod replace;
pub mod rules;
mod shared;
mod shared_codec;
pub mod stats;
pub mod summary;
pub mod verdict;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::metrics::{ScanEngine, ScanVerdict};

pub use config::{OnError, OnOversize, ScanConfig};
pub use rules::RuleAction;
pub use stats::ScanStats;
pub use verdict::{
    scoped_user, verdict_label, Cached, Disposition, MessageRef, Protocol, ScanError,
    ScanErrorCause, Verdict,
};

pub use cache::MessageKey;
use cache::{Outcome, ScanCache};
use clamd::ClamdEngine;
use engine::Engine;
use quarantine::Quarantine;
use rules::RuleSet;

/// State shared by the scanner and its version watcher.
struct Inner {
    cfg: ScanConfig,
    /// The parts of `[scan]` a reload may change live.
    policy: RwLock<Arc<Policy>>,
    engine: Engine,
    rules: RwLock<Arc<RuleSet>>,
    cache: ScanCache,
    quarantine: Quarantine,
    /// Content hashes the operator released (checked before every cache).
    released: Arc<release::Released>,
    template: String,
    stats: ScanStats,
    clamd_version: Mutex<Option<String>>,
    /// The shared store of `[cluster]`: the second cache level.
    cluster: Option<shared::ScanShared>,
}

/// The parts of `[scan]` that can change while running (SIGHUP reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What to do when scanning fails.
    pub on_error: OnError,
    /// What to do with messages over `max_size`.
    pub on_oversize: OnOversize,
    /// Largest message scanned, in octets.
    pub max_size: u64,
    /// Whom notices name.
    pub contact: String,
    /// Scan IMAP APPEND uploads.
    pub scan_append: bool,
    /// Scan POP3 messages before answering LIST/STAT with their sizes.
    pub scan_on_structure: bool,
}

impl Policy {
    /// The policy part of a `[scan]` section.
    pub fn from_config(cfg: &ScanConfig) -> Policy {
        Policy {
            on_error: cfg.on_error,
            on_oversize: cfg.on_oversize,
            max_size: cfg.max_size.0,
            contact: cfg.contact.clone(),
            scan_append: cfg.scan_append,
            scan_on_structure: cfg.scan_on_structure,
        }
    }
}

impl Inner {
    fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The scanner; share it as `Arc<Scanner>`.
pub struct Scanner {
    inner: Arc<Inner>,
    watcher: Option<JoinHandle<()>>,
    release_watcher: JoinHandle<()>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("engine", &self.inner.engine.name())
            .finish_non_exhaustive()
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        self.release_watcher.abort();
    }
}

impl Scanner {
    /// Validates the configuration, compiles the rules, reads the notice template and checks
    /// clamd's version (a clamd that is down is only a warning here).
    pub async fn new(cfg: &ScanConfig) -> Result<Scanner, ScanError> {
        Scanner::with_cluster(cfg, None).await
    }

    /// [`Scanner::new`] with the shared store of `[cluster]` as second cache level.
    pub async fn with_cluster(
        cfg: &ScanConfig,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Result<Scanner, ScanError> {
        cfg.validate()?;
        let rules = RuleSet::load(cfg.rules_dir.as_deref())
            .map_err(|e| ScanError::Config(format!("scan.rules_dir: {e}")))?;
        let endpoints = cfg.endpoints()?;
        let engine = if endpoints.is_empty() {
            tracing::warn!(
                "no antivirus engine configured: only the built-in EICAR test check runs"
            );
            Engine::BuiltinEicar
        } else {
            let chunk = usize::try_from(cfg.chunk_size.0).unwrap_or(64 << 10);
            Engine::Clamd(ClamdEngine::new(
                endpoints,
                cfg.connect_timeout.0,
                cfg.timeout.0,
                chunk,
            ))
        };
        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            policy: RwLock::new(Arc::new(Policy::from_config(cfg))),
            engine,
            rules: RwLock::new(Arc::new(rules)),
            cache: ScanCache::new(cfg.cache_entries, cfg.cache_bytes.0),
            quarantine: Quarantine::new(cfg.quarantine_dir.clone()),
            released: Arc::new(release_watch::load(&cfg.quarantine_dir)),
            template: notice::load_template(cfg)?,
            stats: ScanStats::default(),
            clamd_version: Mutex::new(None),
            cluster: cluster.map(shared::ScanShared::new),
        });
        let watcher = match inner.engine {
            Engine::Clamd(_) => {
                inner.check_version().await;
                Some(tokio::spawn(watch_version(
                    Arc::downgrade(&inner),
                    cfg.version_check_interval.0,
                )))
            }
            Engine::BuiltinEicar => None,
        };
        let release_watcher = tokio::spawn(release_watch::watch(Arc::downgrade(&inner)));
        Ok(Scanner {
            inner,
            watcher,
            release_watcher,
        })
    }

    /// Scan + policy (`on_error`/`on_oversize`) + quarantine + replacement, using the caches.
    pub async fn process(&self, message: Bytes, msg: &MessageRef) -> Disposition {
        self.inner.process(message, msg, None).await
    }

    /// The raw verdict only (no quarantine); used by `portcullis scan` and APPEND scanning.
    pub async fn verdict(&self, message: Bytes) -> Verdict {
        let generation = self.inner.cache.generation();
        let hash = offload::run(&message, quarantine::sha256).await;
        self.inner.verdict(&message, &hash, generation).await
    }

    /// The cached disposition of (user, mailbox, UIDVALIDITY, UID) if it was processed before.
    pub async fn cached(&self, msg: &MessageRef) -> Option<Cached> {
        let key = message_key(msg)?;
        let outcome = self.inner.cached(&key).await;
        self.inner.stats.count_cache(outcome.is_some());
        outcome
    }

    /// Like [`Scanner::process`], and the content hash is also remembered under `key` (a POP3
    /// message's unique-id, which a [`MessageRef`] does not carry), so [`Scanner::peek`] finds
    /// the disposition later, in any session.
    pub async fn process_as(
        &self,
        message: Bytes,
        msg: &MessageRef,
        key: Option<MessageKey>,
    ) -> Disposition {
        self.inner.process(message, msg, key).await
    }

    /// The cached disposition of the message `key` names, if it was processed before. Not
    /// counted as a cache hit or miss: it is asked for every message a POP3 `LIST` shows, not
    /// for a message about to be delivered.
    pub async fn peek(&self, key: &MessageKey) -> Option<Cached> {
        self.inner.cached(key).await
    }

    /// Readiness: Ok if at least one clamd answers PONG (always Ok for the built-in check).
    pub async fn ping(&self) -> Result<(), ScanError> {
        match &self.inner.engine {
            Engine::Clamd(clamd) => clamd.ping().await.map_err(ScanError::Scanner),
            Engine::BuiltinEicar => Ok(()),
        }
    }

    /// Compiles the rules in `rules_dir` (the built-in rules when `None`), swaps them in
    /// atomically and flushes the caches. On error the old rules stay active.
    pub fn reload_rules(&self, rules_dir: Option<&Path>) -> Result<(), ScanError> {
        let rules = RuleSet::load(rules_dir)
            .map_err(|e| ScanError::Config(format!("scan.rules_dir: {e}")))?;
        let count = rules.len();
        match self.inner.rules.write() {
            Ok(mut slot) => *slot = Arc::new(rules),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(rules),
        }
        self.flush();
        let dir = rules_dir.map_or_else(
            || rules::BUILTIN_RULES_NAME.to_string(),
            |d| d.display().to_string(),
        );
        tracing::info!(rules = count, %dir, "scan rules reloaded");
        Ok(())
    }

    /// The configuration the scanner was built with (see [`Scanner::policy`] for the parts a
    /// reload changes).
    pub fn config(&self) -> &ScanConfig {
        &self.inner.cfg
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy()
    }

    /// Swaps the live policy (`on_error`, `on_oversize`, `max_size`, `contact`, `scan_append`)
    /// and flushes the caches, whose entries were decided under the old policy.
    pub fn reload_policy(&self, cfg: &ScanConfig) {
        let policy = Arc::new(Policy::from_config(cfg));
        match self.inner.policy.write() {
            Ok(mut guard) => *guard = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
        self.flush();
        tracing::info!("scan policy reloaded");
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ScanStats {
        &self.inner.stats
    }

    /// The shared store, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<Arc<crate::cluster::Cluster>> {
        self.inner.cluster.as_ref().map(|c| c.cluster().clone())
    }

    /// Name of the antivirus engine (`clamd` or `builtin-eicar`).
    pub fn engine_name(&self) -> &'static str {
        self.inner.engine.name()
    }

    /// The last clamd VERSION string seen.
    pub fn clamd_version(&self) -> Option<String> {
        self.inner.clamd_version.lock().ok().and_then(|v| v.clone())
    }

    /// Drops every cached verdict and disposition.
    pub fn flush(&self) {
        self.inner.flush();
    }

    /// Polls clamd's version now (also done periodically); a change flushes the caches.
    pub async fn check_version(&self) {
        self.inner.check_version().await;
    }
}

/// The cache key of an IMAP message, when every part of it is known.
fn message_key(msg: &MessageRef) -> Option<MessageKey> {
    Some(MessageKey::Imap {
        user: scoped_user(msg.backend.as_deref(), msg.user.as_deref()?),
        mailbox: msg.mailbox.clone()?,
        uidvalidity: msg.uidvalidity?,
        uid: msg.uid?,
    })
}

async fn watch_version(inner: Weak<Inner>, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.check_version().await;
    }
}

impl Inner {
    fn rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(rules) => rules.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The disposition remembered for `key`, if any.
    async fn cached(&self, key: &MessageKey) -> Option<Cached> {
        let Some(hash) = self.cache.message_hash(key).await else {
            return self.shared_cached(key).await;
        };
        if self.released.contains(&hash) {
            return Some(Cached::Clean);
        }
        match self.cache.outcome(&hash).await? {
            Outcome::Unmodified(_) => Some(Cached::Clean),
            Outcome::Serve(_) if self.shared_released(&hash).await => Some(Cached::Clean),
            Outcome::Serve(disposition) => Some(Cached::Serve(disposition)),
        }
    }

    fn flush(&self) {
        self.cache.flush();
        self.stats.count_flush();
    }

    async fn check_version(&self) {
        let Engine::Clamd(clamd) = &self.engine else {
            return;
        };
        let version = match clamd.version().await {
            Ok(version) => version,
            Err(cause) => {
                tracing::warn!(%cause, "clamd version check failed");
                return;
            }
        };
        let changed = match self.clamd_version.lock() {
            Ok(mut last) => {
                let changed = last.as_ref().is_some_and(|old| *old != version);
                *last = Some(version.clone());
                changed
            }
            Err(_) => false,
        };
        if changed {
            tracing::info!(%version, "clamd signatures changed: flushing scan caches");
            self.flush();
        }
    }

    async fn process(
        &self,
        message: Bytes,
        msg: &MessageRef,
        key: Option<MessageKey>,
    ) -> Disposition {
        if key.is_none() {
            if let Some(disposition) = self.by_identity(&message, msg).await {
                return disposition;
            }
        }
        let generation = self.cache.generation();
        let hash = offload::run(&message, quarantine::sha256).await;
        if self.released.contains(&hash) {
            return self
                .serve_released(message, msg, key, hash, generation)
                .await;
        }
        if let Some(outcome) = self.cache.outcome(&hash).await {
            if matches!(outcome, Outcome::Serve(_)) && self.shared_released(&hash).await {
                return self
                    .serve_released(message, msg, key, hash, generation)
                    .await;
            }
            self.stats.count_cache(true);
            self.remember(msg, key, hash, generation).await;
            return match outcome {
                Outcome::Unmodified(verdict) => Disposition::Deliver {
                    bytes: message,
                    modified: false,
                    verdict,
                },
                Outcome::Serve(disposition) => disposition,
            };
        }
        let locked = match self
            .shared_process(&message, msg, &key, hash, generation)
            .await
        {
            shared::Lookup::Done(disposition) => return disposition,
            shared::Lookup::Scan { locked } => locked,
        };
        let verdict = self.verdict(&message, &hash, generation).await;
        self.stats.count_verdict(&verdict);
        let protocol = crate::metrics::Protocol::from(msg.protocol);
        crate::metrics::metrics()
            .messages_scanned
            .with_label_values(&[protocol.as_str(), ScanVerdict::of(&verdict).as_str()])
            .inc();
        let disposition = self.apply(verdict.clone(), message, hash, msg).await;
        stats::count_policy(&verdict, &disposition);
        let cacheable = !matches!(verdict, Verdict::Error { .. })
            && !matches!(disposition, Disposition::TempFail { .. });
        let outcome = cacheable.then(|| match &disposition {
            Disposition::Deliver {
                modified: false, ..
            } => Outcome::Unmodified(verdict),
            other => Outcome::Serve(other.clone()),
        });
        self.shared_store(msg, &key, hash, outcome.as_ref(), false, locked)
            .await;
        if let Some(outcome) = outcome {
            self.cache.put_outcome(hash, outcome, generation).await;
            self.remember(msg, key, hash, generation).await;
        }
        disposition
    }

    /// Remembers `hash` under the message's IMAP identity and under `key`, where given.
    async fn remember(
        &self,
        msg: &MessageRef,
        key: Option<MessageKey>,
        hash: cache::Hash,
        generation: u64,
    ) {
        for key in message_key(msg).into_iter().chain(key) {
            self.cache.put_message(key, hash, generation).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
