//! APPEND scanning (`scan_append`): the complete, parsed APPEND (the proxy answered the
//! client's synchronizing literals itself, RFC 9051 §7.5) is scanned message by message and
//! forwarded only if nothing blocks it; a refused message never reaches the backend.
//! Forwarding sends literals non-synchronizing when the backend has LITERAL+ (RFC 7888);
//! otherwise it waits for the backend's `+` before each literal.

use super::grammar::{Fragment, ParsedCommand};
use super::session::{Flow, Kind, Session};
use crate::scan::{OnError, OnOversize, RuleAction, Verdict};
use crate::session::{read_backend_by, SessionError, SessionStats, BACKEND_EXCHANGE_TIMEOUT};

/// What to do with an APPEND after scanning.
enum AppendDecision {
    Forward,
    Refuse(String),
}

impl Session {
    /// Scans every message of an APPEND, then forwards it or answers the refusal.
    pub(super) async fn forward_append(
        &mut self,
        command: ParsedCommand,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let tag = command.tag.clone();
        let fragments = command.encode(self.backend_literal_plus);
        if let AppendDecision::Refuse(reason) = self.decide_append(&fragments).await {
            tracing::info!(reason = %reason, "APPEND refused by scanning");
            self.reply(&format!("{tag} {reason}\r\n")).await?;
            return Ok(Flow::Continue);
        }
        self.forward(tag, Kind::Other, None, fragments, stats).await
    }

    async fn decide_append(&self, fragments: &[Fragment]) -> AppendDecision {
        let scanner = &self.context.listener.scanner;
        let config = scanner.policy();
        for fragment in fragments {
            let Fragment::Literal(message) = fragment else {
                continue;
            };
            let verdict = {
                let _permit = self.context.scan_permits.acquire().await;
                scanner.verdict(message).await
            };
            let refusal = match &verdict {
                Verdict::Clean
                | Verdict::Rule {
                    action: RuleAction::Log | RuleAction::Tag,
                    ..
                } => None,
                Verdict::Infected { signature, .. } => {
                    Some(format!("NO [CANNOT] Message rejected: {signature} found"))
                }
                Verdict::Rule { name, .. } => {
                    Some(format!("NO [CANNOT] Message rejected by rule {name}"))
                }
                Verdict::Error { cause } => match config.on_error {
                    OnError::Pass => None,
                    OnError::Tempfail => Some(format!(
                        "NO [UNAVAILABLE] Message could not be scanned: {cause}"
                    )),
                    OnError::Block => {
                        Some(format!("NO [CANNOT] Message could not be scanned: {cause}"))
                    }
                },
                Verdict::Oversize => match config.on_oversize {
                    OnOversize::Pass => None,
                    OnOversize::Tempfail => {
                        Some("NO [UNAVAILABLE] Message too large to scan".into())
                    }
                    OnOversize::Block => Some("NO [TOOBIG] Message too large to scan".into()),
                },
            };
            if let Some(reason) = refusal {
                return AppendDecision::Refuse(reason);
            }
        }
        AppendDecision::Forward
    }

    /// Waits for the backend's `+` before sending a literal; `false` if the command ended instead.
    pub(super) async fn wait_for_continuation(
        &mut self,
        tag: &str,
        stats: &mut SessionStats,
    ) -> Result<bool, SessionError> {
        let mut buffer = vec![0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT;
        loop {
            while let Some(response) = self.next_backend_response()? {
                if response
                    .first()
                    .is_some_and(|e| e.bytes().starts_with(b"+"))
                {
                    return Ok(true);
                }
                self.on_response(response, stats).await?;
                if !self.pending.iter().any(|p| p.tag == tag) {
                    return Ok(false);
                }
            }
            let n = read_backend_by(&mut self.backend, &mut buffer, deadline).await?;
            self.backend_framer.feed(&buffer[..n]);
        }
    }
}
