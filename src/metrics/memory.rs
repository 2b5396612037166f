//! The memory budget's families (see [`crate::budget`]): the configured budget, what sessions
//! reserve of it now, and how often a session had to wait for it.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use super::MetricsError;

/// `portcullis_memory_*`.
#[derive(Debug)]
pub struct MemoryMetrics {
    /// `portcullis_memory_budget_bytes`: the configured budget (`[limits] memory`).
    pub budget_bytes: IntGauge,
    /// `portcullis_memory_reserved_bytes`: octets sessions have reserved of it now.
    pub reserved_bytes: IntGauge,
    /// `portcullis_memory_waits_total`: times a session stopped reading a peer to wait for
    /// budget.
    pub waits: IntCounter,
}

impl MemoryMetrics {
    /// Creates and registers the families in `registry`.
    pub(super) fn register(registry: &Registry) -> Result<MemoryMetrics, MetricsError> {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("portcullis");
        let metrics = MemoryMetrics {
            budget_bytes: IntGauge::with_opts(opts(
                "memory_budget_bytes",
                "The memory budget for everything sessions buffer ([limits] memory).",
            ))?,
            reserved_bytes: IntGauge::with_opts(opts(
                "memory_reserved_bytes",
                "Octets of the memory budget reserved by sessions now.",
            ))?,
            waits: IntCounter::with_opts(opts(
                "memory_waits_total",
                "Times a session stopped reading a peer to wait for memory budget.",
            ))?,
        };
        registry.register(Box::new(metrics.budget_bytes.clone()))?;
        registry.register(Box::new(metrics.reserved_bytes.clone()))?;
        registry.register(Box::new(metrics.waits.clone()))?;
        Ok(metrics)
    }
}
