//! The store behind [`super::Cluster`]: a small trait with the handful of commands portcullis
//! needs, and its implementation on Valkey/Redis (the `redis` crate's reconnecting
//! `ConnectionManager`; `redis://`, `rediss://` with rustls, `unix://`).
//!
//! Implementations return the client's error text; [`super::Cluster`] adds the timeout, the
//! back-off and the accounting.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ClusterError;
use crate::config::ClusterConfig;

/// A boxed store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Sets (with a time to live) and deletes sent in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// `SET key value PX ttl`.
    pub sets: Vec<(String, Vec<u8>, Duration)>,
    /// `DEL key…`.
    pub deletes: Vec<String>,
}

impl Batch {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.deletes.is_empty()
    }
}

/// The commands portcullis uses; object-safe so tests can put a fake behind [`super::Cluster`].
pub trait Store: Send + Sync {
    /// `MGET`: one value (or `None`) per key, in order.
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<'_, Vec<Option<Vec<u8>>>>;
    /// A [`Batch`] in one pipeline.
    fn write(&self, batch: Batch) -> StoreFuture<'_, ()>;
    /// `SET key value NX PX ttl`: whether the key was created.
    fn set_nx(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, bool>;
    /// `MULTI; INCR key; PEXPIRE key ttl; EXEC`: the new value.
    fn incr(&self, key: String, ttl: Duration) -> StoreFuture<'_, u64>;
    /// `PING`.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// A Valkey or Redis server.
#[derive(Clone)]
pub struct RedisStore {
    manager: ConnectionManager,
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn read_pem(what: &str, path: &std::path::Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path)
        .map_err(|e| ClusterError::Config(format!("cluster.{what} {}: {e}", path.display())))
}

impl RedisStore {
    /// A lazily connecting, self-reconnecting client for `config.redis`.
    pub fn new(config: &ClusterConfig) -> Result<RedisStore, ClusterError> {
        let bad_url = |e: redis::RedisError| {
            ClusterError::Config(format!("cluster.redis {}: {e}", config.redacted()))
        };
        let client = if config.ca.is_some() || config.client_cert.is_some() {
            let root_cert = config
                .ca
                .as_deref()
                .map(|path| read_pem("ca", path))
                .transpose()?;
            let client_tls = match (&config.client_cert, &config.client_key) {
                (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                    client_cert: read_pem("client_cert", cert)?,
                    client_key: read_pem("client_key", key)?,
                }),
                _ => None,
            };
            redis::Client::build_with_tls(
                config.redis.as_str(),
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
            .map_err(bad_url)?
        } else {
            redis::Client::open(config.redis.as_str()).map_err(bad_url)?
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.retry_after);
        let manager =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(bad_url)?;
        Ok(RedisStore { manager })
    }
}

impl Store for RedisStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<'_, Vec<Option<Vec<u8>>>> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn write(&self, batch: Batch) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for (key, value, ttl) in &batch.sets {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(*ttl))
                    .ignore();
            }
            if !batch.deletes.is_empty() {
                pipe.cmd("DEL").arg(&batch.deletes).ignore();
            }
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn set_nx(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, bool> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let created: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
            Ok(created.is_some())
        })
    }

    fn incr(&self, key: String, ttl: Duration) -> StoreFuture<'_, u64> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let (count,): (u64,) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(millis(ttl))
                .ignore()
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
            Ok(count)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
