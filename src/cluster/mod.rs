//! State shared by portcullis replicas in a Valkey or Redis store (`[cluster]`): verdicts by
//! content hash, message identities, quarantine releases and auth-failure counts.
//!
//! The store is always the *second* level: each replica keeps its local caches, and asks the
//! store only on a local miss. It is never needed for a fetch to succeed or for a blocked
//! message to stay blocked: every call is bounded by `cluster.timeout`; a failed call is
//! counted in `portcullis_cluster_errors_total{op}`, the replica goes on alone (local caches,
//! direct scanning, local penalty table) and leaves the store alone for `cluster.retry_after`,
//! and `/readyz` says `cluster: degraded (…)` (still ready) until a call succeeds again. The
//! connection manager reconnects by itself; sharing resumes with the first successful call.
//!
//! Layers: [`store`] (the [`Store`] trait and its Redis implementation), [`keys`] (the key
//! layout, `<prefix>:v1:…`) and [`Cluster`] (timeouts, back-off, health, metrics). What is
//! stored for a verdict is decided by the scan pipeline (`scan::shared`).

pub mod keys;
pub mod store;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;
use crate::metrics::{metrics, ClusterOp, ReadinessCheck};

pub use keys::Keys;
pub use store::{Batch, RedisStore, Store, StoreFuture};

/// Errors of the shared store, naming the operation and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The store did not answer within `cluster.timeout`.
    #[error("store {}: no answer within {timeout:?}", .op.as_str())]
    Timeout {
        /// The operation.
        op: ClusterOp,
        /// The deadline.
        timeout: Duration,
    },
    /// The store (or the connection to it) failed.
    #[error("store {}: {message}", .op.as_str())]
    Store {
        /// The operation.
        op: ClusterOp,
        /// The client's description.
        message: String,
    },
    /// A recent call failed: the store is left alone for a while.
    #[error("store {}: not asked (backing off after an error)", .op.as_str())]
    BackingOff {
        /// The operation.
        op: ClusterOp,
    },
    /// A stored value is not what portcullis writes.
    #[error("store value {key}: {message}")]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `[cluster]` cannot be used (unreadable CA file, bad URL).
    #[error("cluster config: {0}")]
    Config(String),
}

/// Health of the store as this replica last saw it.
#[derive(Debug, Default)]
struct Health {
    /// The last failure, while no call has succeeded since.
    failing: Option<String>,
    /// Calls are not made before this instant.
    backoff_until: Option<Instant>,
}

/// The shared store with the safety rules of this module; share it as `Arc<Cluster>`.
pub struct Cluster {
    store: Arc<dyn Store>,
    keys: Keys,
    config: ClusterConfig,
    address: String,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster on the Redis/Valkey store `config` names. Does not connect yet (the first
    /// call does): a store that is down at start only makes the replica degraded.
    pub fn connect(config: &ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        let store = RedisStore::new(config)?;
        Ok(Cluster::with_store(Arc::new(store), config))
    }

    /// A cluster on any [`Store`] (tests use an in-memory or failing one).
    pub fn with_store(store: Arc<dyn Store>, config: &ClusterConfig) -> Arc<Cluster> {
        for op in ClusterOp::ALL {
            metrics().cluster_errors.with_label_values(&[op.as_str()]);
        }
        Arc::new(Cluster {
            store,
            keys: Keys::new(&config.prefix),
            config: config.clone(),
            address: config.redacted(),
            health: Mutex::new(Health::default()),
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The `[cluster]` settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        match self.health.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The reason the store is considered degraded, if it is.
    pub fn degraded(&self) -> Option<String> {
        self.health().failing.clone()
    }

    /// Runs one store call under the rules: not during back-off, bounded by the timeout,
    /// failures counted and remembered, success clears the degraded state.
    async fn call<T, F>(&self, op: ClusterOp, call: F) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, String>>,
    {
        if self
            .health()
            .backoff_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(ClusterError::BackingOff { op });
        }
        let timeout = self.config.timeout;
        let outcome = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(ClusterError::Store { op, message }),
            Err(_) => Err(ClusterError::Timeout { op, timeout }),
        };
        match &outcome {
            Ok(_) => {
                let mut health = self.health();
                if let Some(was) = health.failing.take() {
                    tracing::info!(store = %self.address, previous = %was, "cluster store answers again: sharing resumes");
                }
                health.backoff_until = None;
            }
            Err(error) => self.failed(op, error),
        }
        outcome
    }

    fn failed(&self, op: ClusterOp, error: &ClusterError) {
        metrics()
            .cluster_errors
            .with_label_values(&[op.as_str()])
            .inc();
        let mut health = self.health();
        if health.failing.is_none() {
            tracing::warn!(store = %self.address, %error, "cluster store failed: going on without it (local caches, direct scans)");
        }
        health.failing = Some(error.to_string());
        health.backoff_until = Some(Instant::now() + self.config.retry_after);
    }

    /// Values of `keys` (missing keys are `None`).
    pub async fn get_many(
        &self,
        op: ClusterOp,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, ClusterError> {
        let expected = keys.len();
        let values = self.call(op, self.store.get_many(keys)).await?;
        if values.len() != expected {
            let error = ClusterError::Store {
                op,
                message: format!("{} values for {expected} keys", values.len()),
            };
            self.failed(op, &error);
            return Err(error);
        }
        Ok(values)
    }

    /// The value of `key`.
    pub async fn get(&self, op: ClusterOp, key: String) -> Result<Option<Vec<u8>>, ClusterError> {
        let mut values = self.get_many(op, vec![key]).await?;
        Ok(values.pop().flatten())
    }

    /// Sets and deletes keys in one round trip.
    pub async fn write(&self, op: ClusterOp, batch: Batch) -> Result<(), ClusterError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.call(op, self.store.write(batch)).await
    }

    /// `SET key value NX PX ttl`: whether this call created the key.
    pub async fn set_nx(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, ClusterError> {
        self.call(ClusterOp::Lock, self.store.set_nx(key, value, ttl))
            .await
    }

    /// `INCR key` and `PEXPIRE key ttl` in one transaction: the new count.
    pub async fn incr(&self, key: String, ttl: Duration) -> Result<u64, ClusterError> {
        self.call(ClusterOp::Incr, self.store.incr(key, ttl)).await
    }

    /// The readiness check: `cluster: ok (…)` when the store answers PING, else a *passing*
    /// check that reads `cluster: degraded (…)`: the replica serves without the store.
    pub async fn check(&self) -> ReadinessCheck {
        let probe = self.call(ClusterOp::Ping, self.store.ping()).await;
        let name = "cluster".to_string();
        match probe {
            Ok(()) => ReadinessCheck {
                name,
                ok: true,
                detail: format!("{} answers", self.address),
            },
            Err(error) => {
                let reason = match error {
                    ClusterError::BackingOff { .. } => {
                        self.degraded().unwrap_or_else(|| error.to_string())
                    }
                    other => other.to_string(),
                };
                ReadinessCheck::degraded(
                    name,
                    format!(
                        "{}: {reason}; scanning and auth penalties are local until it answers",
                        self.address
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod memory;
#[cfg(test)]
pub(crate) mod tests;
