//! APPEND scanning (`scan_append`): the proxy holds an APPEND command — answering the client's
//! synchronizing literals with its own `+` (RFC 9051 §7.5) — scans every message in it, and
//! forwards it only if nothing blocks it. Forwarding turns literals non-synchronizing when the
//! backend has LITERAL+ (RFC 7888); otherwise it waits for the backend's `+` before each literal.
//! A refused message never reaches the backend.

use bytes::Bytes;

use super::codec::{Announcement, Event};
use super::session::{Kind, Pending, Session};
use crate::scan::{OnError, OnOversize, RuleAction, Verdict};
use crate::session::{write_backend, SessionError, SessionStats};

/// Longest the proxy waits for the backend's `+` before sending a held literal.
const CONTINUATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An APPEND being held for scanning.
#[derive(Debug)]
pub struct HeldAppend {
    /// The command's tag.
    pub tag: String,
    /// Its fragments (lines and literals) as received.
    pub fragments: Vec<Event>,
    /// Total octets held.
    pub size: u64,
}

/// What to do with a held APPEND after scanning.
enum AppendDecision {
    Forward,
    Refuse(String),
}

impl Session {
    /// Starts holding an APPEND whose first line is `line`.
    pub(super) async fn hold_append(
        &mut self,
        tag: String,
        line: Bytes,
        literal: Option<Announcement>,
        stats: &mut SessionStats,
    ) -> Result<(), SessionError> {
        self.held = Some(HeldAppend {
            tag,
            size: line.len() as u64,
            fragments: Vec::new(),
        });
        self.on_held_event(
            Event::Line {
                bytes: line,
                first: true,
                literal,
            },
            stats,
        )
        .await
    }

    /// Adds a fragment of the held APPEND; scans and forwards once the command is complete.
    pub(super) async fn on_held_event(
        &mut self,
        event: Event,
        stats: &mut SessionStats,
    ) -> Result<(), SessionError> {
        let limit = self
            .context
            .listener
            .limits
            .max_client_literal
            .saturating_mul(2);
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        held.size += event.bytes().len() as u64;
        if held.size > limit {
            return Err(SessionError::ClientProtocol("APPEND too large".into()));
        }
        let (complete, continuation) = match &event {
            Event::Line { literal: None, .. } => (true, false),
            Event::Line {
                literal: Some(l), ..
            } => (false, l.synchronizing),
            Event::Literal(_) => (false, false),
            Event::LiteralRejected { length, .. } => {
                let tag = held.tag.clone();
                self.held = None;
                let reply =
                    format!("{tag} NO [TOOBIG] literal of {length} octets exceeds the limit\r\n");
                return self.reply(&reply).await;
            }
        };
        held.fragments.push(event);
        if continuation {
            self.reply("+ Ready for literal data\r\n").await?;
        }
        if complete {
            self.finish_append(stats).await?;
        }
        Ok(())
    }

    async fn finish_append(&mut self, stats: &mut SessionStats) -> Result<(), SessionError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let decision = self.decide_append(&held).await;
        if let AppendDecision::Refuse(reason) = decision {
            tracing::info!(reason = %reason, "APPEND refused by scanning");
            return self.reply(&format!("{} {reason}\r\n", held.tag)).await;
        }
        self.pending.push_back(Pending {
            tag: held.tag.clone(),
            kind: Kind::Other,
            fetch: None,
        });
        for fragment in &held.fragments {
            let bytes = fragment.bytes();
            let synchronizing =
                matches!(fragment, Event::Line { literal: Some(l), .. } if l.synchronizing);
            let forwarded = match synchronizing && self.backend_literal_plus {
                true => non_synchronizing(bytes),
                false => bytes.to_vec(),
            };
            stats.bytes_up += forwarded.len() as u64;
            write_backend(&mut self.backend, &forwarded).await?;
            if synchronizing
                && !self.backend_literal_plus
                && !self.wait_for_continuation(&held.tag, stats).await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn decide_append(&self, held: &HeldAppend) -> AppendDecision {
        let scanner = &self.context.listener.scanner;
        let config = scanner.policy();
        for fragment in &held.fragments {
            let Event::Literal(message) = fragment else {
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
    async fn wait_for_continuation(
        &mut self,
        tag: &str,
        stats: &mut SessionStats,
    ) -> Result<bool, SessionError> {
        let mut buffer = vec![0u8; 16 * 1024];
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
            let read = crate::session::read_backend(&mut self.backend, &mut buffer);
            let n = tokio::time::timeout(CONTINUATION_TIMEOUT, read)
                .await
                .map_err(|_| SessionError::BackendIo(std::io::ErrorKind::TimedOut.into()))??;
            if n == 0 {
                return Err(SessionError::BackendIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            self.backend_framer.feed(&buffer[..n]);
        }
    }
}

/// `… {12}\r\n` → `… {12+}\r\n` (also for literal8).
fn non_synchronizing(line: &[u8]) -> Vec<u8> {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    match body.strip_suffix(b"}") {
        Some(head) => [head, b"+}\r\n"].concat(),
        None => line.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_become_non_synchronizing() {
        assert_eq!(
            super::non_synchronizing(b"a APPEND INBOX {12}\r\n"),
            b"a APPEND INBOX {12+}\r\n"
        );
        assert_eq!(
            super::non_synchronizing(b"a APPEND INBOX ~{3}\r\n"),
            b"a APPEND INBOX ~{3+}\r\n"
        );
    }
}
