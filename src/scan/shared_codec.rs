//! The value stored for a verdict in the shared store: a one-line JSON header (the verdict and
//! how it was served), a newline, then the delivered bytes of a replacement or modified message
//! when they are at most `cluster.max_value` octets. Without them a replica that finds the
//! verdict rebuilds the notice locally (replacements are deterministic for a content hash and a
//! scope, see `scan::shared`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::cache::Outcome;
use super::rules::RuleAction;
use super::verdict::{Disposition, Verdict};

/// What a stored value gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// Deliver the original.
    Unmodified(Verdict),
    /// Deliver this.
    Serve(Disposition),
    /// The verdict only: apply the policy locally.
    Recompute(Verdict),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum SharedVerdict {
    Clean,
    Infected { engine: String, signature: String },
    Rule { name: String, action: String },
    Oversize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Served {
    /// The quarantine id of a replacement; `None` for a modified (tagged, stripped) message.
    replace: Option<String>,
    /// Whether the delivered bytes follow the header.
    stored: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    verdict: SharedVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
}

fn action(text: &str) -> Option<RuleAction> {
    [
        RuleAction::Log,
        RuleAction::Tag,
        RuleAction::Strip,
        RuleAction::Block,
    ]
    .into_iter()
    .find(|a| a.as_str() == text)
}

fn to_shared(verdict: &Verdict) -> Option<SharedVerdict> {
    Some(match verdict {
        Verdict::Clean => SharedVerdict::Clean,
        Verdict::Infected { engine, signature } => SharedVerdict::Infected {
            engine: engine.clone(),
            signature: signature.clone(),
        },
        Verdict::Rule { name, action } => SharedVerdict::Rule {
            name: name.clone(),
            action: action.as_str().to_string(),
        },
        Verdict::Oversize => SharedVerdict::Oversize,
        Verdict::Error { .. } => return None,
    })
}

fn from_shared(verdict: SharedVerdict) -> Result<Verdict, String> {
    Ok(match verdict {
        SharedVerdict::Clean => Verdict::Clean,
        SharedVerdict::Infected { engine, signature } => Verdict::Infected { engine, signature },
        SharedVerdict::Rule { name, action: text } => Verdict::Rule {
            name,
            action: action(&text).ok_or_else(|| format!("unknown rule action {text:?}"))?,
        },
        SharedVerdict::Oversize => Verdict::Oversize,
    })
}

/// The value for `outcome`; `None` for what is never shared (errors, temporary failures).
pub(super) fn encode(outcome: &Outcome, max_value: usize) -> Option<Vec<u8>> {
    let (verdict, served, bytes) = match outcome {
        Outcome::Unmodified(verdict) => (verdict, None, None),
        Outcome::Serve(Disposition::Replace {
            bytes,
            quarantine_id,
            verdict,
        }) => (verdict, Some(Some(quarantine_id.clone())), Some(bytes)),
        Outcome::Serve(Disposition::Deliver { bytes, verdict, .. }) => {
            (verdict, Some(None), Some(bytes))
        }
        Outcome::Serve(Disposition::TempFail { .. }) => return None,
    };
    let stored = bytes.filter(|b| b.len() <= max_value);
    let header = Header {
        verdict: to_shared(verdict)?,
        served: served.map(|replace| Served {
            replace,
            stored: stored.is_some(),
        }),
    };
    let mut value = serde_json::to_vec(&header).ok()?;
    value.push(b'\n');
    if let Some(bytes) = stored {
        value.extend_from_slice(bytes);
    }
    Some(value)
}

/// Reads a value written by [`encode`]; `max_value` bounds the delivered bytes accepted.
pub(super) fn decode(value: &[u8], max_value: usize) -> Result<Entry, String> {
    let newline = value
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header: Header = serde_json::from_slice(&value[..newline]).map_err(|e| e.to_string())?;
    let payload = &value[newline + 1..];
    if payload.len() > max_value {
        return Err(format!(
            "{} octets of content exceed max_value",
            payload.len()
        ));
    }
    let verdict = from_shared(header.verdict)?;
    Ok(match header.served {
        None => Entry::Unmodified(verdict),
        Some(Served { stored: false, .. }) => Entry::Recompute(verdict),
        Some(Served { .. }) if payload.is_empty() => return Err("stored content missing".into()),
        Some(Served {
            replace: Some(quarantine_id),
            ..
        }) => Entry::Serve(Disposition::Replace {
            bytes: Bytes::copy_from_slice(payload),
            quarantine_id,
            verdict,
        }),
        Some(Served { replace: None, .. }) => Entry::Serve(Disposition::Deliver {
            bytes: Bytes::copy_from_slice(payload),
            modified: true,
            verdict,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::verdict::ScanErrorCause;

    fn infected() -> Verdict {
        Verdict::Infected {
            engine: "clamd".into(),
            signature: "Test.EICAR".into(),
        }
    }

    #[test]
    fn round_trips_and_size_limit() {
        let clean = Outcome::Unmodified(Verdict::Clean);
        let value = encode(&clean, 100).unwrap();
        assert_eq!(value, b"{\"verdict\":{\"kind\":\"clean\"}}\n");
        assert_eq!(decode(&value, 100), Ok(Entry::Unmodified(Verdict::Clean)));
        let replace = Disposition::Replace {
            bytes: Bytes::from_static(b"Subject: blocked\r\n\r\nnotice\r\n"),
            quarantine_id: "0123456789abcdef".into(),
            verdict: infected(),
        };
        let value = encode(&Outcome::Serve(replace.clone()), 100).unwrap();
        assert_eq!(decode(&value, 100), Ok(Entry::Serve(replace.clone())));
        // Too large to store: the verdict alone, rebuilt locally.
        let value = encode(&Outcome::Serve(replace), 10).unwrap();
        assert_eq!(decode(&value, 10), Ok(Entry::Recompute(infected())));
        let tagged = Disposition::Deliver {
            bytes: Bytes::from_static(b"Subject: [tag] x\r\n\r\n"),
            modified: true,
            verdict: Verdict::Rule {
                name: "r".into(),
                action: RuleAction::Tag,
            },
        };
        let value = encode(&Outcome::Serve(tagged.clone()), 100).unwrap();
        assert_eq!(decode(&value, 100), Ok(Entry::Serve(tagged)));
    }

    #[test]
    fn errors_are_never_shared_and_garbage_is_refused() {
        let error = Verdict::Error {
            cause: ScanErrorCause::Timeout,
        };
        assert_eq!(encode(&Outcome::Unmodified(error), 100), None);
        let tempfail = Disposition::TempFail { reason: "x".into() };
        assert_eq!(encode(&Outcome::Serve(tempfail), 100), None);
        assert!(decode(b"", 100).is_err());
        assert!(decode(b"{\"verdict\":{\"kind\":\"bogus\"}}\n", 100).is_err());
        assert!(decode(
            b"{\"verdict\":{\"kind\":\"rule\",\"name\":\"r\",\"action\":\"zap\"}}\n",
            100
        )
        .is_err());
        let served =
            b"{\"verdict\":{\"kind\":\"clean\"},\"served\":{\"replace\":null,\"stored\":true}}\n";
        assert!(decode(served, 100).is_err(), "stored but empty");
        let mut big = served.to_vec();
        big.extend_from_slice(&[b'x'; 11]);
        assert!(decode(&big, 10).is_err());
    }
}
