//! Counters for metrics: a metrics module reads them through `Scanner::stats()`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::verdict::Verdict;
use crate::metrics::{CacheResult, PolicyActionLabel, PolicyCause, ScanVerdict, WriteOutcome};

/// Upper bound on distinct rule names counted (rule names come from local files only).
const MAX_RULE_COUNTERS: usize = 1024;

/// Policy actions counted in [`ScanStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Original delivered unchanged despite an error/oversize (`pass`).
    Pass,
    /// Temporary failure returned.
    Tempfail,
    /// Replacement delivered.
    Block,
    /// Attachment stripped.
    Strip,
    /// Subject tagged.
    Tag,
}

/// Atomic counters of the scan pipeline.
#[derive(Debug, Default)]
pub struct ScanStats {
    /// Scans by verdict: clean, infected, rule, error, oversize.
    pub clean: AtomicU64,
    /// Infected verdicts.
    pub infected: AtomicU64,
    /// Rule verdicts.
    pub rule: AtomicU64,
    /// Error verdicts.
    pub error: AtomicU64,
    /// Oversize verdicts.
    pub oversize: AtomicU64,
    /// Cache hits (verdict or outcome found).
    pub cache_hits: AtomicU64,
    /// Cache misses (a scan was needed).
    pub cache_misses: AtomicU64,
    /// Originals written to the quarantine.
    pub quarantine_writes: AtomicU64,
    /// Failed quarantine writes.
    pub quarantine_failures: AtomicU64,
    /// `pass` policy actions.
    pub action_pass: AtomicU64,
    /// Temporary failures.
    pub action_tempfail: AtomicU64,
    /// Replacements.
    pub action_block: AtomicU64,
    /// Strips.
    pub action_strip: AtomicU64,
    /// Tags.
    pub action_tag: AtomicU64,
    /// Cache flushes.
    pub flushes: AtomicU64,
    rule_hits: Mutex<BTreeMap<String, u64>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ScanStats {
    /// Counts a verdict.
    pub fn count_verdict(&self, verdict: &Verdict) {
        bump(match ScanVerdict::of(verdict) {
            ScanVerdict::Clean => &self.clean,
            ScanVerdict::Infected => &self.infected,
            ScanVerdict::Rule => &self.rule,
            ScanVerdict::Error => &self.error,
            ScanVerdict::Oversize => &self.oversize,
        });
    }

    /// Counts a policy action.
    pub fn count_action(&self, action: PolicyAction) {
        bump(match action {
            PolicyAction::Pass => &self.action_pass,
            PolicyAction::Tempfail => &self.action_tempfail,
            PolicyAction::Block => &self.action_block,
            PolicyAction::Strip => &self.action_strip,
            PolicyAction::Tag => &self.action_tag,
        });
    }

    /// Counts a cache hit (`true`) or miss.
    pub fn count_cache(&self, hit: bool) {
        crate::metrics::metrics()
            .scan_cache
            .with_label_values(&[CacheResult::of(hit).as_str()])
            .inc();
        bump(if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        });
    }

    /// Counts a quarantine write result.
    pub fn count_quarantine(&self, ok: bool) {
        crate::metrics::metrics()
            .quarantine_writes
            .with_label_values(&[WriteOutcome::of(ok).as_str()])
            .inc();
        bump(if ok {
            &self.quarantine_writes
        } else {
            &self.quarantine_failures
        });
    }

    /// Counts a cache flush.
    pub fn count_flush(&self) {
        bump(&self.flushes);
    }

    /// Counts a rule hit (rule names come from the admin's rule files: a bounded label set).
    pub fn count_rule(&self, name: &str) {
        crate::metrics::metrics()
            .rule_hits
            .with_label_values(&[name])
            .inc();
        if let Ok(mut map) = self.rule_hits.lock() {
            if let Some(count) = map.get_mut(name) {
                *count += 1;
            } else if map.len() < MAX_RULE_COUNTERS {
                map.insert(name.to_string(), 1);
            }
        }
    }

    /// Snapshot of rule hits by rule name.
    pub fn rule_hits(&self) -> BTreeMap<String, u64> {
        self.rule_hits.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Counts `policy_actions_total{cause,action}` for a scanned message that was not plainly clean.
pub fn count_policy(verdict: &Verdict, disposition: &super::Disposition) {
    use super::{Disposition, RuleAction};
    let cause = match verdict {
        Verdict::Clean => return,
        Verdict::Infected { .. } => PolicyCause::Infected,
        Verdict::Rule { .. } => PolicyCause::Rule,
        Verdict::Error { .. } => PolicyCause::Error,
        Verdict::Oversize => PolicyCause::Oversize,
    };
    let action = match (disposition, verdict) {
        (Disposition::TempFail { .. }, _) => PolicyActionLabel::Tempfail,
        (Disposition::Replace { .. }, _) => PolicyActionLabel::Block,
        (
            Disposition::Deliver { modified: true, .. },
            Verdict::Rule {
                action: RuleAction::Strip,
                ..
            },
        ) => PolicyActionLabel::Strip,
        (Disposition::Deliver { modified: true, .. }, _) => PolicyActionLabel::Tag,
        (
            Disposition::Deliver { .. },
            Verdict::Rule {
                action: RuleAction::Log,
                ..
            },
        ) => PolicyActionLabel::Log,
        (Disposition::Deliver { .. }, _) => PolicyActionLabel::Pass,
    };
    crate::metrics::metrics()
        .policy_actions
        .with_label_values(&[cause.as_str(), action.as_str()])
        .inc();
}
