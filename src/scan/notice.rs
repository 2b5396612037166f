//! A replacement that is safe by construction: the notice is itself scanned before it is served.
//!
//! 1. The original's identifying headers are re-encoded ([`reencode::safe_headers`]); the full
//!    notice built from them is checked — the built-in EICAR check on its raw bytes, its decoded
//!    parts and its decoded headers, every rule (any hit, whatever its action), and the antivirus.
//! 2. If that is not clean, each header is checked alone in a [`replace::probe`] message; the
//!    ones that fail are dropped and the rebuilt notice is checked again.
//! 3. If that is still not clean, the [`replace::minimal`] notice (no copied content) is served.
//!
//! An antivirus *error* while checking never picks a different notice (that would make the bytes
//! depend on clamd's availability): it fails the whole block with a temporary failure, which is
//! not cached. A blocked message whose verdict is itself an error gets the minimal notice directly.
//!
//! So the served bytes are a function of (original, verdict, quarantine id, contact, template,
//! rules, antivirus signatures) — the same inputs that decide the verdict.

use super::clamd::EngineOutcome;
use super::engine::{self, Engine};
use super::reencode::{self, SafeHeader};
use super::replace::{self, Notice, Present, Shown};
use super::verdict::{ScanError, ScanErrorCause, Verdict};
use super::{mime, Inner, ScanConfig};

/// Why a notice could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// The antivirus could not check the notice.
    #[error("checking the notice: {0}")]
    Scan(ScanErrorCause),
}

/// Whether `bytes`, its decoded parts or its decoded header values contain EICAR.
pub fn leaks_eicar(bytes: &[u8]) -> bool {
    let parsed = mime::parse(bytes);
    let found = matches!(
        engine::builtin_scan(bytes, parsed.as_ref()),
        EngineOutcome::Found(_)
    );
    let in_headers = |m: &mail_parser::Message<'_>| {
        mime::view(m).headers.iter().any(|(_, value)| {
            value
                .as_bytes()
                .windows(engine::EICAR.len())
                .any(|w| w == engine::EICAR)
        })
    };
    found || parsed.as_ref().is_some_and(in_headers)
}

/// The notice template: the file `scan.notice` names (at most 64 KiB), else the built-in one.
pub(super) fn load_template(cfg: &ScanConfig) -> Result<String, ScanError> {
    let Some(path) = &cfg.notice else {
        return Ok(replace::DEFAULT_TEMPLATE.to_string());
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| ScanError::Config(format!("scan.notice: {}: {e}", path.display())))?;
    if meta.len() > 64 << 10 {
        return Err(ScanError::Config(format!(
            "scan.notice: {}: larger than 64KiB",
            path.display()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| ScanError::Config(format!("scan.notice: {}: {e}", path.display())))
}

impl Inner {
    /// The replacement for `original` (see the module docs for the steps).
    pub(super) async fn safe_replacement(
        &self,
        original: &[u8],
        notice: &Notice<'_>,
    ) -> Result<Vec<u8>, NoticeError> {
        if matches!(notice.verdict, Verdict::Error { .. }) {
            return Ok(self.minimal(notice));
        }
        let (mut headers, present) = {
            let parsed = mime::parse(original);
            let present = Present {
                subject: reencode::has_header(parsed.as_ref(), "subject"),
                from: reencode::has_header(parsed.as_ref(), "from"),
            };
            (reencode::safe_headers(parsed.as_ref()), present)
        };
        let build =
            |headers: &[SafeHeader]| replace::build(headers, &Shown::of(headers, present), notice);
        let full = build(&headers);
        if self.is_clean(&full).await? {
            return Ok(full);
        }
        let mut kept = Vec::with_capacity(headers.len());
        for header in headers.drain(..) {
            if self.is_clean(&replace::probe(&header)).await? {
                kept.push(header);
            } else {
                tracing::info!(header = header.name, "header withheld from the notice");
            }
        }
        let rebuilt = build(&kept);
        if rebuilt != full && self.is_clean(&rebuilt).await? {
            return Ok(rebuilt);
        }
        tracing::warn!(
            quarantine_id = notice.quarantine_id,
            "notice not clean: serving the minimal notice"
        );
        Ok(self.minimal(notice))
    }

    /// The minimal notice; it carries nothing of the original, so it is served even if a rule
    /// flags its fixed text (logged, as that rule would flag every such notice).
    fn minimal(&self, notice: &Notice<'_>) -> Vec<u8> {
        let bytes = replace::minimal(notice);
        if leaks_eicar(&bytes) || self.rule_hit(&bytes) {
            tracing::warn!("the minimal notice itself matches a rule or the EICAR check");
        }
        bytes
    }

    fn rule_hit(&self, bytes: &[u8]) -> bool {
        let parsed = mime::parse(bytes);
        parsed
            .as_ref()
            .is_some_and(|m| !self.rules().evaluate(&mime::view(m)).is_empty())
    }

    /// Built-in EICAR check, every rule (any action) and the antivirus on a notice or probe.
    async fn is_clean(&self, bytes: &[u8]) -> Result<bool, NoticeError> {
        if leaks_eicar(bytes) || self.rule_hit(bytes) {
            return Ok(false);
        }
        match &self.engine {
            Engine::BuiltinEicar => Ok(true),
            Engine::Clamd(clamd) => match clamd.scan(bytes).await {
                EngineOutcome::Clean => Ok(true),
                EngineOutcome::Found(signature) => {
                    tracing::info!(%signature, "antivirus flagged notice text");
                    Ok(false)
                }
                EngineOutcome::Error(cause) => Err(NoticeError::Scan(cause)),
            },
        }
    }
}
