//! Abuse limits enforced around sessions: connection caps (in total and per client address) in
//! the accept path, and the auth-failure penalty the protocol sessions apply before relaying a
//! login (a delay that doubles per failure up to a cap, like Dovecot's `auth_penalty`).
//!
//! Every hit is logged and counted in `portcullis_limit_rejections_total{limit}`.
//!
//! With `[cluster]`, failure counts live in the shared store too (`INCR` + `PEXPIRE` per
//! failure, `DEL` on success), so failures through one replica delay logins through all; the
//! delay is computed from the larger of the shared and the local count, and the local table
//! alone is used while the store does not answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::config::LimitsConfig;
use crate::metrics::ClusterOp;
use crate::metrics::{metrics, Limit};

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// `max_connections` connections are already open.
    #[error("too many connections in total")]
    Total,
    /// `max_connections_per_ip` connections from this address are already open.
    #[error("too many connections from this address")]
    PerIp,
}

impl LimitHit {
    /// The `limit` label of `limit_rejections_total`.
    pub fn limit(self) -> Limit {
        match self {
            LimitHit::Total => Limit::MaxConnections,
            LimitHit::PerIp => Limit::PerIpConnections,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Open connections per address; an entry exists only while ≥ 1 is open, so the map is
    /// bounded by `max_connections`.
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open client connections; shared by every listener.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

impl ConnectionLimiter {
    /// A limiter with the caps of `[limits]`.
    pub fn new(limits: &LimitsConfig) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `ip`; the permit releases it when dropped.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitHit> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(LimitHit::Total);
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(LimitHit::PerIp);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections currently open.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_ip) = counts.per_ip.get_mut(&ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

/// Failed-login counts per client address, with the delay they earn. Bounded (least recently
/// used addresses are dropped beyond `auth_penalty_entries`) and self-expiring
/// (`auth_penalty_expiry` after the last failure). With a shared store its count is the one
/// that counts; the local table is the fallback while the store does not answer.
pub struct AuthPenalty {
    initial: Duration,
    max: Duration,
    expiry: Duration,
    failures: moka::future::Cache<IpAddr, u32>,
    cluster: Option<Arc<Cluster>>,
}

impl std::fmt::Debug for AuthPenalty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPenalty")
            .field("initial", &self.initial)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl AuthPenalty {
    /// A table with the settings of `[limits]`.
    pub fn new(limits: &LimitsConfig) -> Arc<AuthPenalty> {
        AuthPenalty::shared(limits, None)
    }

    /// A table with the settings of `[limits]` whose counts are shared through `cluster`.
    pub fn shared(limits: &LimitsConfig, cluster: Option<Arc<Cluster>>) -> Arc<AuthPenalty> {
        Arc::new(AuthPenalty {
            initial: limits.auth_penalty_initial,
            max: limits.auth_penalty_max,
            expiry: limits.auth_penalty_expiry,
            cluster,
            failures: moka::future::Cache::builder()
                .max_capacity(limits.auth_penalty_entries)
                .time_to_live(limits.auth_penalty_expiry)
                .build(),
        })
    }

    /// The delay `failures` earlier failures earn: 0, then `initial`, doubling, at most `max`.
    pub fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay `ip` currently earns.
    pub async fn current_delay(&self, ip: IpAddr) -> Duration {
        let failures = match self.shared_count(ip).await {
            Some(shared) => shared,
            None => self.failures.get(&ip.to_canonical()).await.unwrap_or(0),
        };
        self.delay_for(failures)
    }

    /// The shared failure count of `ip`; `None` without a store or when it does not answer
    /// (the local count applies then).
    async fn shared_count(&self, ip: IpAddr) -> Option<u32> {
        let cluster = self.cluster.as_ref()?;
        let key = cluster.keys().auth_failures(ip);
        let value = cluster.get(ClusterOp::Get, key).await.ok()?;
        Some(value.map_or(0, |value| {
            std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX))
        }))
    }

    /// Waits the delay `ip` has earned (call before relaying its login); counted when non-zero.
    pub async fn delay(&self, ip: IpAddr) {
        let delay = self.current_delay(ip).await;
        if !delay.is_zero() {
            tracing::info!(client = %ip, ?delay, "auth penalty: delaying login");
            metrics()
                .limit_rejections
                .with_label_values(&[Limit::AuthPenalty.as_str()])
                .inc();
            tokio::time::sleep(delay).await;
        }
    }

    /// Records a failed login from `ip`.
    pub async fn failed(&self, ip: IpAddr) {
        if let Some(cluster) = &self.cluster {
            let key = cluster.keys().auth_failures(ip);
            let _ = cluster.incr(key, self.expiry).await;
        }
        self.failures
            .entry(ip.to_canonical())
            .and_upsert_with(|entry| async move {
                entry.map_or(1, |e| e.into_value().saturating_add(1))
            })
            .await;
    }

    /// Forgets `ip`'s failures after a successful login.
    pub async fn succeeded(&self, ip: IpAddr) {
        self.failures.invalidate(&ip.to_canonical()).await;
        if let Some(cluster) = &self.cluster {
            let batch = crate::cluster::Batch {
                sets: Vec::new(),
                deletes: vec![cluster.keys().auth_failures(ip)],
            };
            let _ = cluster.write(ClusterOp::Set, batch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> LimitsConfig {
        LimitsConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn per_ip_and_total_caps_hold_and_release() {
        let limiter = ConnectionLimiter::new(&limits(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limiter.try_acquire(a).unwrap();
        let _a2 = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.try_acquire(a).unwrap_err(), LimitHit::PerIp);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(limiter.try_acquire(mapped).unwrap_err(), LimitHit::PerIp);
        let _b1 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.try_acquire(b).unwrap_err(), LimitHit::Total);
        drop(a1);
        assert_eq!(limiter.open(), 2);
        let _a3 = limiter.try_acquire(a).unwrap();
    }

    #[tokio::test]
    async fn penalty_doubles_up_to_the_cap_and_resets_on_success() {
        let penalty = AuthPenalty::new(&LimitsConfig::default());
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let other: IpAddr = "198.51.100.10".parse().unwrap();
        assert_eq!(penalty.current_delay(ip).await, Duration::ZERO);
        let mut seen = Vec::new();
        for _ in 0..6 {
            penalty.failed(ip).await;
            seen.push(penalty.current_delay(ip).await.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 15, 15]);
        assert_eq!(penalty.current_delay(other).await, Duration::ZERO);
        assert_eq!(penalty.delay_for(u32::MAX), Duration::from_secs(15));
        penalty.succeeded(ip).await;
        assert_eq!(penalty.current_delay(ip).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn shared_counts_delay_other_replicas_and_a_dead_store_falls_back_to_local() {
        use crate::cluster::memory::{MemoryStore, FAILING};
        let store = Arc::new(MemoryStore::default());
        let config = crate::cluster::tests::config();
        let a = AuthPenalty::shared(
            &LimitsConfig::default(),
            Some(Cluster::with_store(store.clone(), &config)),
        );
        let b = AuthPenalty::shared(
            &LimitsConfig::default(),
            Some(Cluster::with_store(store.clone(), &config)),
        );
        let ip: IpAddr = "198.51.100.77".parse().unwrap();
        a.failed(ip).await;
        a.failed(ip).await;
        assert_eq!(b.current_delay(ip).await, Duration::from_secs(2));
        b.succeeded(ip).await;
        assert_eq!(a.current_delay(ip).await, Duration::ZERO);
        store
            .mode
            .store(FAILING, std::sync::atomic::Ordering::SeqCst);
        a.failed(ip).await;
        // Without the store each replica counts what it saw itself (a: three failures).
        assert_eq!(
            a.current_delay(ip).await,
            Duration::from_secs(4),
            "local count"
        );
        assert_eq!(b.current_delay(ip).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn penalty_entries_expire() {
        let config = LimitsConfig {
            auth_penalty_expiry: Duration::from_millis(100),
            ..LimitsConfig::default()
        };
        let penalty = AuthPenalty::new(&config);
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        penalty.failed(ip).await;
        assert_eq!(penalty.current_delay(ip).await, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(penalty.current_delay(ip).await, Duration::ZERO);
    }
}
