use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memory::{MemoryStore, FAILING, HANGING, WORKING};
use super::*;

pub(crate) fn config() -> ClusterConfig {
    toml::from_str::<ClusterConfig>(
        "redis = \"redis://127.0.0.1:1/0\"\ntimeout = \"50ms\"\nretry_after = \"200ms\"\n",
    )
    .unwrap()
}

#[tokio::test]
async fn failures_are_bounded_counted_and_back_off_then_recover() {
    let store = Arc::new(MemoryStore::default());
    let cluster = Cluster::with_store(store.clone(), &config());
    let errors = || {
        metrics()
            .cluster_errors
            .with_label_values(&[ClusterOp::Get.as_str()])
            .get()
    };
    assert_eq!(cluster.get(ClusterOp::Get, "k".into()).await, Ok(None));
    assert!(cluster.check().await.detail.contains("answers"));

    store.mode.store(HANGING, Ordering::SeqCst);
    let before = errors();
    let started = Instant::now();
    let err = cluster.get(ClusterOp::Get, "k".into()).await.unwrap_err();
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(errors() > before);
    // Backing off: the store is not asked at all.
    let calls = store.calls.load(Ordering::SeqCst);
    let err = cluster.get(ClusterOp::Get, "k".into()).await.unwrap_err();
    assert!(matches!(err, ClusterError::BackingOff { .. }));
    assert_eq!(store.calls.load(Ordering::SeqCst), calls);
    let check = cluster.check().await;
    assert!(check.ok, "degraded is still ready: {check:?}");
    assert!(
        check.detail.starts_with(crate::metrics::DEGRADED),
        "{check:?}"
    );
    assert!(cluster.degraded().unwrap().contains("no answer within"));

    store.mode.store(FAILING, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = cluster
        .incr("a".into(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("store incr: connection refused"),
        "{err}"
    );

    store.mode.store(WORKING, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        cluster.incr("a".into(), Duration::from_secs(1)).await,
        Ok(1)
    );
    assert_eq!(cluster.degraded(), None);
    assert!(!cluster
        .check()
        .await
        .detail
        .starts_with(crate::metrics::DEGRADED));
}

#[tokio::test]
async fn batches_locks_and_counters() {
    let store = Arc::new(MemoryStore::default());
    let cluster = Cluster::with_store(store.clone(), &config());
    let ttl = Duration::from_secs(5);
    assert_eq!(
        cluster.set_nx("l".into(), b"a".to_vec(), ttl).await,
        Ok(true)
    );
    assert_eq!(
        cluster.set_nx("l".into(), b"b".to_vec(), ttl).await,
        Ok(false)
    );
    cluster
        .write(
            ClusterOp::Set,
            Batch {
                sets: vec![("v".into(), b"1".to_vec(), ttl)],
                deletes: vec!["l".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(store.keys(), vec!["v".to_string()]);
    let values = cluster
        .get_many(ClusterOp::Get, vec!["v".into(), "l".into()])
        .await
        .unwrap();
    assert_eq!(values, vec![Some(b"1".to_vec()), None]);
    assert_eq!(cluster.incr("c".into(), ttl).await, Ok(1));
    assert_eq!(cluster.incr("c".into(), ttl).await, Ok(2));
}
