//! The scan pipeline's second cache level: verdicts, message identities and releases in the
//! shared store of `[cluster]` (see [`crate::cluster`]), asked only after a local miss.
//!
//! * After a local miss, [`Inner::shared_process`] reads the release and the verdict of the
//!   content in one `MGET`. A verdict found is served (with the delivered bytes stored beside
//!   it, or rebuilt locally when they were too large) and cached locally.
//! * Otherwise the replica takes the content's scan lock (`SET NX PX lock_ttl`) and scans; a
//!   replica that finds the lock taken polls for the verdict and scans itself when the lock
//!   disappears without one or after `lock_ttl` (a crashed holder blocks nobody longer).
//! * [`Inner::shared_store`] writes the verdict and the message identities and drops the lock
//!   in one pipeline.
//!
//! Every store failure means "not found": the message is scanned locally, so a store that is
//! down, slow or wiped costs scans, never a fetch and never a block.
//!
//! Verdict keys carry a *scope*: a digest of the engine, clamd's signature version, the
//! compiled rules, the policy and the notice template. Replicas that differ in any of them
//! (during a signature update, a rules rollout) simply do not share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cache::{Hash, MessageKey, Outcome};
use super::shared_codec::{self, Entry};
use super::verdict::{Cached, Disposition, MessageRef};
use super::{message_key, Inner};
use crate::cluster::{keys, Batch, Cluster};
use crate::metrics::{metrics, CacheResult, ClusterOp};

/// Longest pause between two polls of a waiting replica.
const MAX_POLL: Duration = Duration::from_millis(200);

/// The scanner's handle on the shared store.
pub(super) struct ScanShared {
    cluster: Arc<Cluster>,
    /// The lock value: which replica scans (for people reading the store).
    replica: Vec<u8>,
    /// `(cache generation, clamd version, scope)` of the last scope computed.
    scope: Mutex<Option<(u64, Option<String>, String)>>,
}

impl ScanShared {
    pub(super) fn new(cluster: Arc<Cluster>) -> ScanShared {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        ScanShared {
            cluster,
            replica: format!("pid {} ({nanos:09})", std::process::id()).into_bytes(),
            scope: Mutex::new(None),
        }
    }

    pub(super) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }
}

/// What [`Inner::shared_process`] decided.
pub(super) enum Lookup {
    /// Deliver this (found in the store).
    Done(Disposition),
    /// Scan; `locked`: this replica holds the scan lock ([`Inner::shared_store`] drops it).
    Scan { locked: bool },
}

fn lookup_counted(result: CacheResult) {
    metrics()
        .cluster_lookups
        .with_label_values(&[result.as_str()])
        .inc();
}

impl Inner {
    /// The scope of verdict keys now (see the module documentation).
    fn shared_scope(&self, shared: &ScanShared) -> String {
        let generation = self.cache.generation();
        let clamd = self.clamd_version.lock().ok().and_then(|v| v.clone());
        let mut memo = match shared.scope.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((g, c, scope)) = memo.as_ref() {
            if *g == generation && *c == clamd {
                return scope.clone();
            }
        }
        let rules = format!("{:?}", self.rules());
        let policy = format!("{:?}", self.policy());
        let scope = keys::digest(&[
            self.engine.name().as_bytes(),
            clamd.as_deref().unwrap_or_default().as_bytes(),
            rules.as_bytes(),
            policy.as_bytes(),
            self.template.as_bytes(),
        ]);
        *memo = Some((generation, clamd, scope.clone()));
        scope
    }

    fn shared_message_key(cluster: &Cluster, key: &MessageKey) -> String {
        match key {
            MessageKey::Imap {
                user,
                mailbox,
                uidvalidity,
                uid,
            } => cluster.keys().message(
                "imap",
                &[
                    user.as_bytes(),
                    mailbox.as_bytes(),
                    &uidvalidity.to_be_bytes(),
                    &uid.to_be_bytes(),
                ],
            ),
            MessageKey::Pop3 { user, uidl } => cluster
                .keys()
                .message("pop3", &[user.as_bytes(), uidl.as_bytes()]),
        }
    }

    fn decode(&self, cluster: &Cluster, key: &str, value: &[u8]) -> Option<Entry> {
        match shared_codec::decode(value, cluster.config().max_value) {
            Ok(entry) => Some(entry),
            Err(message) => {
                tracing::warn!(key, %message, "ignoring a shared verdict portcullis cannot read");
                None
            }
        }
    }

    /// After a local miss: the shared release or verdict of `hash`, else whether to scan
    /// holding the lock.
    pub(super) async fn shared_process(
        &self,
        message: &Bytes,
        msg: &MessageRef,
        key: &Option<MessageKey>,
        hash: Hash,
        generation: u64,
    ) -> Lookup {
        let Some(shared) = &self.cluster else {
            return Lookup::Scan { locked: false };
        };
        let cluster = &shared.cluster;
        let scope = self.shared_scope(shared);
        let verdict_key = cluster.keys().verdict(&scope, &hash);
        let keys = vec![cluster.keys().released(&hash), verdict_key.clone()];
        let Ok(values) = cluster.get_many(ClusterOp::Get, keys).await else {
            return Lookup::Scan { locked: false };
        };
        if values.first().is_some_and(Option::is_some) {
            let released = self
                .serve_released(message.clone(), msg, key.clone(), hash, generation)
                .await;
            return Lookup::Done(released);
        }
        if let Some(Some(value)) = values.get(1) {
            if let Some(entry) = self.decode(cluster, &verdict_key, value) {
                lookup_counted(CacheResult::Hit);
                let done = self.serve_shared(entry, message, msg, key, hash, generation);
                return Lookup::Done(done.await);
            }
        }
        lookup_counted(CacheResult::Miss);
        let lock_key = cluster.keys().lock(&scope, &hash);
        let ttl = cluster.config().lock_ttl;
        match cluster
            .set_nx(lock_key.clone(), shared.replica.clone(), ttl)
            .await
        {
            Ok(true) => {
                // The holder before us may have stored its verdict and dropped the lock (one
                // pipeline, verdict first) between our miss and our lock: look once more.
                if let Ok(Some(value)) = cluster.get(ClusterOp::Get, verdict_key.clone()).await {
                    if let Some(entry) = self.decode(cluster, &verdict_key, &value) {
                        let mut release = Batch::default();
                        release.deletes.push(lock_key);
                        let _ = cluster.write(ClusterOp::Set, release).await;
                        let done = self.serve_shared(entry, message, msg, key, hash, generation);
                        return Lookup::Done(done.await);
                    }
                }
                return Lookup::Scan { locked: true };
            }
            Ok(false) => {}
            Err(_) => return Lookup::Scan { locked: false },
        }
        tracing::debug!(key = %verdict_key, "another replica is scanning this content: waiting for its verdict");
        let deadline = Instant::now() + ttl;
        let mut pause = Duration::from_millis(10);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            let keys = vec![verdict_key.clone(), lock_key.clone()];
            let Ok(values) = cluster.get_many(ClusterOp::Get, keys).await else {
                break;
            };
            match (values.first(), values.get(1)) {
                (Some(Some(value)), _) => {
                    if let Some(entry) = self.decode(cluster, &verdict_key, value) {
                        let done = self.serve_shared(entry, message, msg, key, hash, generation);
                        return Lookup::Done(done.await);
                    }
                    break;
                }
                // The holder finished without a shareable verdict, or its lock expired.
                (Some(None), Some(None)) => break,
                _ => {}
            }
        }
        Lookup::Scan { locked: false }
    }

    /// Delivers what the store said and caches it locally (the identities are shared too).
    async fn serve_shared(
        &self,
        entry: Entry,
        message: &Bytes,
        msg: &MessageRef,
        key: &Option<MessageKey>,
        hash: Hash,
        generation: u64,
    ) -> Disposition {
        self.stats.count_cache(true);
        let (disposition, outcome) = match entry {
            Entry::Unmodified(verdict) => (
                Disposition::Deliver {
                    bytes: message.clone(),
                    modified: false,
                    verdict: verdict.clone(),
                },
                Some(Outcome::Unmodified(verdict)),
            ),
            Entry::Serve(disposition) => {
                let outcome = Outcome::Serve(disposition.clone());
                (disposition, Some(outcome))
            }
            Entry::Recompute(verdict) => {
                let disposition = self.apply(verdict, message.clone(), hash, msg).await;
                let outcome = match &disposition {
                    Disposition::TempFail { .. } => None,
                    other => Some(Outcome::Serve(other.clone())),
                };
                (disposition, outcome)
            }
        };
        if let Some(outcome) = outcome {
            self.cache.put_outcome(hash, outcome, generation).await;
            self.remember(msg, key.clone(), hash, generation).await;
            self.shared_store(msg, key, hash, None, true, false).await;
        }
        disposition
    }

    /// Shares `outcome` (when given) and, with it or when `identities`, the message's
    /// identities; drops the scan lock when `locked`. One pipeline; failures are only counted.
    pub(super) async fn shared_store(
        &self,
        msg: &MessageRef,
        key: &Option<MessageKey>,
        hash: Hash,
        outcome: Option<&Outcome>,
        identities: bool,
        locked: bool,
    ) {
        let Some(shared) = &self.cluster else {
            return;
        };
        let cluster = &shared.cluster;
        let config = cluster.config();
        let scope = self.shared_scope(shared);
        let mut batch = Batch::default();
        let value = outcome.and_then(|o| shared_codec::encode(o, config.max_value));
        let identities = identities || value.is_some();
        if let Some(value) = value {
            batch.sets.push((
                cluster.keys().verdict(&scope, &hash),
                value,
                config.verdict_ttl,
            ));
        }
        if identities {
            for identity in message_key(msg).iter().chain(key.iter()) {
                let id = Self::shared_message_key(cluster, identity);
                batch.sets.push((id, hash.to_vec(), config.verdict_ttl));
            }
        }
        if locked {
            batch.deletes.push(cluster.keys().lock(&scope, &hash));
        }
        let _ = cluster.write(ClusterOp::Set, batch).await;
    }

    /// Whether another replica shared a release of `hash` (checked before serving a cached
    /// notice, so a release through any replica is honoured by all).
    pub(super) async fn shared_released(&self, hash: &Hash) -> bool {
        let Some(shared) = &self.cluster else {
            return false;
        };
        let key = shared.cluster.keys().released(hash);
        matches!(shared.cluster.get(ClusterOp::Get, key).await, Ok(Some(_)))
    }

    /// Shares releases this replica picked up from its quarantine directory.
    pub(super) async fn shared_publish_releases(&self, hashes: &[Hash]) {
        let Some(shared) = &self.cluster else {
            return;
        };
        let cluster = &shared.cluster;
        let ttl = cluster.config().release_ttl;
        let batch = Batch {
            sets: hashes
                .iter()
                .map(|hash| (cluster.keys().released(hash), b"released".to_vec(), ttl))
                .collect(),
            deletes: Vec::new(),
        };
        let _ = cluster.write(ClusterOp::Set, batch).await;
    }

    /// After a local miss of `key`'s identity: what another replica knows about it. Clean
    /// and stored replacements are answered; anything else is left to a fetch and `process`.
    pub(super) async fn shared_cached(&self, key: &MessageKey) -> Option<Cached> {
        let shared = self.cluster.as_ref()?;
        let cluster = &shared.cluster;
        let id = Self::shared_message_key(cluster, key);
        let stored = cluster.get(ClusterOp::Get, id).await.ok()??;
        let hash: Hash = stored.as_slice().try_into().ok()?;
        let generation = self.cache.generation();
        let scope = self.shared_scope(shared);
        let verdict_key = cluster.keys().verdict(&scope, &hash);
        let keys = vec![cluster.keys().released(&hash), verdict_key.clone()];
        let values = cluster.get_many(ClusterOp::Get, keys).await.ok()?;
        if self.released.contains(&hash) || values.first().is_some_and(Option::is_some) {
            self.cache.put_message(key.clone(), hash, generation).await;
            return Some(Cached::Clean);
        }
        let entry = self.decode(cluster, &verdict_key, values.get(1)?.as_deref()?)?;
        let (cached, outcome) = match entry {
            Entry::Unmodified(verdict) => (Cached::Clean, Outcome::Unmodified(verdict)),
            Entry::Serve(disposition) => (
                Cached::Serve(disposition.clone()),
                Outcome::Serve(disposition),
            ),
            Entry::Recompute(_) => return None,
        };
        self.cache.put_outcome(hash, outcome, generation).await;
        self.cache.put_message(key.clone(), hash, generation).await;
        Some(cached)
    }
}
