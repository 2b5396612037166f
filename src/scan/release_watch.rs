//! How a running scanner honours releases (see [`super::release`]): the watcher task that picks
//! up new markers within [`release::POLL_INTERVAL`], and serving a released original.
//!
//! A released hash is checked before any cache: [`Inner::cached`](super::Inner) answers "clean"
//! for it (so sessions fetch and relay the original, with its own size), and
//! [`Inner::serve_released`] delivers the original unscanned. The caches keep whatever they
//! held for the hash; they are simply not consulted while it is released, so revoking a
//! release (removing its marker) brings the notice back.

use std::sync::Weak;

use bytes::Bytes;

use super::cache::{Hash, MessageKey};
use super::release::{self, Released};
use super::verdict::{Disposition, MessageRef, Verdict};
use super::Inner;

/// Loads the release set of `quarantine_dir` at start; a failure is logged and retried by the
/// watcher.
pub(super) fn load(quarantine_dir: &std::path::Path) -> Released {
    let released = Released::new(quarantine_dir);
    match released.refresh() {
        Ok(found) if !found.is_empty() => {
            tracing::info!(released = found.len(), "quarantine releases loaded");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read quarantine releases (retrying)"),
    }
    released
}

/// Polls the release directory every [`release::POLL_INTERVAL`] until the scanner is dropped;
/// logs and counts each release it picks up.
pub(super) async fn watch(weak: Weak<Inner>) {
    let mut ticker = tokio::time::interval(release::POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut failing = false;
    loop {
        ticker.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let released = inner.released.clone();
        drop(inner);
        let outcome = tokio::task::spawn_blocking(move || {
            let added = released.refresh()?;
            let markers: Vec<_> = added
                .iter()
                .map(|hash| (*hash, release::read_marker(released.quarantine_dir(), hash)))
                .collect();
            Ok::<_, release::ReleaseError>(markers)
        })
        .await;
        match outcome {
            Ok(Ok(markers)) => {
                failing = false;
                let hashes: Vec<Hash> = markers.iter().map(|(hash, _)| *hash).collect();
                for (hash, marker) in markers {
                    picked_up(&hash, marker);
                }
                if let (false, Some(inner)) = (hashes.is_empty(), weak.upgrade()) {
                    inner.shared_publish_releases(&hashes).await;
                }
            }
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read quarantine releases");
            }
            Ok(Err(_)) => {}
            Err(error) => tracing::error!(%error, "quarantine release watcher task failed"),
        }
    }
}

fn picked_up(hash: &Hash, marker: Result<Option<release::Marker>, release::ReleaseError>) {
    crate::metrics::metrics()
        .quarantine_releases
        .with_label_values(&[] as &[&str])
        .inc();
    let sha256 = hex::encode(hash);
    let quarantine_id = super::quarantine::quarantine_id(hash);
    match marker {
        Ok(Some(marker)) => tracing::info!(
            %quarantine_id,
            %sha256,
            released_by = %marker.by,
            released_at = %marker.time,
            "quarantine release picked up: the original is served from now on"
        ),
        Ok(None) | Err(_) => tracing::info!(
            %quarantine_id,
            %sha256,
            "quarantine release picked up: the original is served from now on"
        ),
    }
}

impl Inner {
    /// Delivers a released original as it is (no scan, nothing cached but its identity).
    pub(super) async fn serve_released(
        &self,
        message: Bytes,
        msg: &MessageRef,
        key: Option<MessageKey>,
        hash: Hash,
        generation: u64,
    ) -> Disposition {
        self.remember(msg, key, hash, generation).await;
        let protocol = crate::metrics::Protocol::from(msg.protocol);
        crate::metrics::metrics()
            .released_served
            .with_label_values(&[protocol.as_str()])
            .inc();
        tracing::debug!(
            quarantine_id = %super::quarantine::quarantine_id(&hash),
            "serving a released original"
        );
        Disposition::Deliver {
            bytes: message,
            modified: false,
            // Not scanned: the operator released this content.
            verdict: Verdict::Clean,
        }
    }
}
