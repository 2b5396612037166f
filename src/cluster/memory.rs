//! In-memory [`Store`]s for unit tests: a working one (no expiry) and one that fails or hangs
//! on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::store::{Batch, Store, StoreFuture};

/// How [`MemoryStore`] behaves.
pub const WORKING: u8 = 0;
/// Every call fails at once.
pub const FAILING: u8 = 1;
/// Every call hangs (longer than any test timeout).
pub const HANGING: u8 = 2;

/// A map behind the [`Store`] trait; `mode` switches it between working, failing and hanging.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub map: Mutex<HashMap<String, Vec<u8>>>,
    pub mode: AtomicU8,
    pub calls: AtomicUsize,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run<'a, T: Send + 'static>(
        &'a self,
        op: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> T + Send + 'a,
    ) -> StoreFuture<'a, T> {
        // Lazy like a network call: nothing happens until the future is polled.
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.mode.load(Ordering::SeqCst) {
                WORKING => Ok(op(&mut self.map())),
                HANGING => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err("hung".to_string())
                }
                _ => Err("connection refused (test)".to_string()),
            }
        })
    }

    /// Keys currently stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl Store for MemoryStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<'_, Vec<Option<Vec<u8>>>> {
        self.run(move |map| keys.iter().map(|k| map.get(k).cloned()).collect())
    }

    fn write(&self, batch: Batch) -> StoreFuture<'_, ()> {
        self.run(move |map| {
            for (key, value, _) in batch.sets {
                map.insert(key, value);
            }
            for key in batch.deletes {
                map.remove(&key);
            }
        })
    }

    fn set_nx(&self, key: String, value: Vec<u8>, _ttl: Duration) -> StoreFuture<'_, bool> {
        self.run(move |map| match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
                true
            }
        })
    }

    fn incr(&self, key: String, _ttl: Duration) -> StoreFuture<'_, u64> {
        self.run(move |map| {
            let now = map
                .get(&key)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            map.insert(key, now.to_string().into_bytes());
            now
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|_| ())
    }
}
