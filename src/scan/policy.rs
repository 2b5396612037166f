//! The policy table: what each verdict becomes under `on_error` / `on_oversize`, and the
//! block / strip / tag actions (quarantine first, then the replacement or modified bytes). The
//! replacement is built and checked by [`super::notice`] before anything is quarantined.
//!
//! A failed quarantine write always ends in `TempFail`: `pass` would hand a blocked message to the
//! client and `block` would lose the original, and nothing may ever be lost.

use bytes::Bytes;

use super::cache::Hash;
use super::config::{OnError, OnOversize};
use super::quarantine;
use super::replace::Notice;
use super::rules::RuleAction;
use super::stats::PolicyAction;
use super::verdict::{Disposition, MessageRef, Verdict};
use super::{mime, Inner};

/// What the policy decided before any bytes are produced.
enum Decision {
    Deliver,
    Pass,
    TempFail(String),
    Block,
    Strip,
    Tag(String),
}

fn decide(verdict: &Verdict, on_error: OnError, on_oversize: OnOversize) -> Decision {
    match verdict {
        Verdict::Clean => Decision::Deliver,
        Verdict::Infected { .. } => Decision::Block,
        Verdict::Rule { action, name } => match action {
            RuleAction::Block => Decision::Block,
            RuleAction::Strip => Decision::Strip,
            RuleAction::Tag => Decision::Tag(name.clone()),
            RuleAction::Log => Decision::Deliver,
        },
        Verdict::Error { cause } => match on_error {
            OnError::Tempfail => Decision::TempFail(cause.to_string()),
            OnError::Pass => Decision::Pass,
            OnError::Block => Decision::Block,
        },
        Verdict::Oversize => match on_oversize {
            OnOversize::Pass => Decision::Pass,
            OnOversize::Tempfail => Decision::TempFail("message larger than scan.max_size".into()),
            OnOversize::Block => Decision::Block,
        },
    }
}

impl Inner {
    /// Turns a verdict into a disposition for `original`.
    pub(super) async fn apply(
        &self,
        verdict: Verdict,
        original: Bytes,
        hash: Hash,
        msg: &MessageRef,
    ) -> Disposition {
        let policy = self.policy();
        match decide(&verdict, policy.on_error, policy.on_oversize) {
            Decision::Deliver => Disposition::Deliver {
                bytes: original,
                modified: false,
                verdict,
            },
            Decision::Pass => {
                self.stats.count_action(PolicyAction::Pass);
                tracing::warn!(verdict = %verdict.describe(), "delivering unscanned message (policy pass)");
                Disposition::Deliver {
                    bytes: original,
                    modified: false,
                    verdict,
                }
            }
            Decision::TempFail(reason) => self.tempfail(reason),
            Decision::Block => self.block(verdict, original, hash, msg).await,
            Decision::Strip => self.strip(verdict, original, hash, msg).await,
            Decision::Tag(rule) => {
                let tagged = mime::parse(&original).map(|m| mime::tag(&m, &rule));
                match tagged {
                    Some(bytes) => {
                        self.stats.count_action(PolicyAction::Tag);
                        Disposition::Deliver {
                            bytes: Bytes::from(bytes),
                            modified: true,
                            verdict,
                        }
                    }
                    None => self.block(verdict, original, hash, msg).await,
                }
            }
        }
    }

    fn tempfail(&self, reason: String) -> Disposition {
        self.stats.count_action(PolicyAction::Tempfail);
        Disposition::TempFail { reason }
    }

    /// Quarantines the original; on failure the `TempFail` to return.
    async fn quarantine(
        &self,
        original: &Bytes,
        hash: &Hash,
        msg: &MessageRef,
        verdict: &Verdict,
        action: &str,
        delivered: usize,
    ) -> Result<String, Disposition> {
        let record = quarantine::record(original, hash, msg, verdict, action, delivered);
        match self.quarantine.store(original.clone(), record).await {
            Ok(id) => {
                self.stats.count_quarantine(true);
                tracing::info!(quarantine_id = %id, verdict = %verdict.describe(), action, "original quarantined");
                Ok(id)
            }
            Err(e) => {
                self.stats.count_quarantine(false);
                tracing::error!(error = %e, "quarantine write failed: withholding message");
                Err(self.tempfail(format!("quarantine failed: {e}")))
            }
        }
    }

    async fn block(
        &self,
        verdict: Verdict,
        original: Bytes,
        hash: Hash,
        msg: &MessageRef,
    ) -> Disposition {
        let quarantine_id = quarantine::quarantine_id(&hash);
        let contact = self.policy().contact.clone();
        let notice = Notice {
            verdict: &verdict,
            quarantine_id: &quarantine_id,
            contact: &contact,
            template: &self.template,
        };
        let replacement = match self.safe_replacement(&original, &notice).await {
            Ok(replacement) => replacement,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a checked notice: withholding message");
                return self.tempfail(e.to_string());
            }
        };
        if let Err(tempfail) = self
            .quarantine(
                &original,
                &hash,
                msg,
                &verdict,
                "replace",
                replacement.len(),
            )
            .await
        {
            return tempfail;
        }
        self.stats.count_action(PolicyAction::Block);
        Disposition::Replace {
            bytes: Bytes::from(replacement),
            quarantine_id,
            verdict,
        }
    }

    async fn strip(
        &self,
        verdict: Verdict,
        original: Bytes,
        hash: Hash,
        msg: &MessageRef,
    ) -> Disposition {
        let stripped = {
            let parsed = mime::parse(&original);
            parsed.and_then(|m| {
                let view = mime::view(&m);
                let targets: Vec<(usize, String)> = self
                    .rules()
                    .evaluate(&view)
                    .into_iter()
                    .filter(|hit| hit.action == RuleAction::Strip)
                    .map(|hit| hit.part.map(|part| (part, hit.name)))
                    .collect::<Option<Vec<_>>>()?;
                mime::strip(&original, &view, &targets).filter(|_| !targets.is_empty())
            })
        };
        let Some(stripped) = stripped else {
            return self.block(verdict, original, hash, msg).await;
        };
        if let Err(tempfail) = self
            .quarantine(&original, &hash, msg, &verdict, "strip", stripped.len())
            .await
        {
            return tempfail;
        }
        self.stats.count_action(PolicyAction::Strip);
        Disposition::Deliver {
            bytes: Bytes::from(stripped),
            modified: true,
            verdict,
        }
    }
}
