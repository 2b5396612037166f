//! Computing a verdict: the disposition cached under a message's identity (no hash taken), the
//! verdict cache, then the rules and the built-in check (on a blocking thread for large
//! messages, [`super::offload`]) and the engine (clamd).

use bytes::Bytes;

use super::cache::Outcome;
use super::clamd::EngineOutcome;
use super::engine;
use super::rules::{self, RuleAction};
use super::{cache, message_key, mime, offload, Engine, Inner, ScanEngine, Verdict};
use super::{Disposition, MessageRef};

impl Inner {
    /// The disposition cached under the message's IMAP identity, found without hashing its
    /// content (issue 10: a cached verdict costs no SHA-256 per fetch). A message's content
    /// never changes under (mailbox, UIDVALIDITY, UID) (RFC 9051 §2.3.1.1), so the hash
    /// remembered for the identity is this content's — the same trust the look-up of a partial
    /// fetch ([`super::Scanner::cached`]) places in it. Released content takes the full path.
    pub(super) async fn by_identity(
        &self,
        message: &Bytes,
        msg: &MessageRef,
    ) -> Option<Disposition> {
        let hash = self.cache.message_hash(&message_key(msg)?).await?;
        if self.released.contains(&hash) {
            return None;
        }
        let disposition = match self.cache.outcome(&hash).await? {
            Outcome::Unmodified(verdict) => Disposition::Deliver {
                bytes: message.clone(),
                modified: false,
                verdict,
            },
            Outcome::Serve(_) if self.shared_released(&hash).await => return None,
            Outcome::Serve(disposition) => disposition,
        };
        self.stats.count_cache(true);
        Some(disposition)
    }

    /// Engine + rules on a message, using and filling the verdict cache.
    pub(super) async fn verdict(
        &self,
        raw: &Bytes,
        hash: &cache::Hash,
        generation: u64,
    ) -> Verdict {
        if raw.len() as u64 > self.policy().max_size {
            return Verdict::Oversize;
        }
        if let Some(verdict) = self.cache.verdict(hash).await {
            self.stats.count_cache(true);
            return verdict;
        }
        self.stats.count_cache(false);
        let verdict = self.compute_verdict(raw).await;
        self.cache
            .put_verdict(*hash, verdict.clone(), generation)
            .await;
        verdict
    }

    async fn compute_verdict(&self, raw: &Bytes) -> Verdict {
        let rules_started = std::time::Instant::now();
        let rules = self.rules();
        let builtin = matches!(self.engine, Engine::BuiltinEicar);
        let (hits, builtin) = offload::run(raw, move |raw| {
            let parsed = mime::parse(raw);
            let hits = parsed
                .as_ref()
                .map(|m| rules.evaluate(&mime::view(m)))
                .unwrap_or_default();
            let builtin = builtin.then(|| engine::builtin_scan(raw, parsed.as_ref()));
            (hits, builtin)
        })
        .await;
        for hit in &hits {
            self.stats.count_rule(&hit.name);
        }
        let scan_seconds = &crate::metrics::metrics().scan_seconds;
        scan_seconds
            .with_label_values(&[ScanEngine::Rules.as_str()])
            .observe(rules_started.elapsed().as_secs_f64());
        let engine_started = std::time::Instant::now();
        let outcome = match (&self.engine, builtin) {
            (_, Some(outcome)) => outcome,
            (Engine::Clamd(clamd), None) => clamd.scan(raw).await,
            (Engine::BuiltinEicar, None) => EngineOutcome::Clean,
        };
        if matches!(self.engine, Engine::Clamd(_)) {
            scan_seconds
                .with_label_values(&[ScanEngine::Clamd.as_str()])
                .observe(engine_started.elapsed().as_secs_f64());
        }
        let strongest = hits
            .iter()
            .fold(None::<&rules::RuleHit>, |best, hit| match best {
                Some(b) if b.action >= hit.action => Some(b),
                _ => Some(hit),
            });
        let rule_verdict = strongest.map(|hit| Verdict::Rule {
            name: hit.name.clone(),
            action: hit.action,
        });
        match outcome {
            EngineOutcome::Found(signature) => Verdict::Infected {
                engine: self.engine.name().to_string(),
                signature,
            },
            EngineOutcome::Error(cause) => match strongest {
                Some(hit) if hit.action == RuleAction::Block => {
                    rule_verdict.unwrap_or(Verdict::Error { cause })
                }
                _ => Verdict::Error { cause },
            },
            EngineOutcome::Clean => rule_verdict.unwrap_or(Verdict::Clean),
        }
    }
}
