//! Antivirus engines: clamd, or the built-in EICAR test-string check used when no clamd is
//! configured (so the pipeline can be exercised end to end without an antivirus).

use mail_parser::Message;

use super::clamd::{ClamdEngine, EngineOutcome};

/// The 68-byte EICAR anti-malware test string.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Engine name of the built-in check.
pub const BUILTIN_NAME: &str = "builtin-eicar";

/// Signature name reported by the built-in check.
pub const BUILTIN_SIGNATURE: &str = "Eicar-Test-Signature";

/// The configured antivirus engine.
#[derive(Debug, Clone)]
pub enum Engine {
    /// clamd over INSTREAM.
    Clamd(ClamdEngine),
    /// The built-in EICAR check (no real antivirus).
    BuiltinEicar,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Looks for EICAR in the raw message and in every decoded part (base64, quoted-printable).
pub fn builtin_scan(raw: &[u8], parsed: Option<&Message<'_>>) -> EngineOutcome {
    let in_parts =
        |message: &Message<'_>| message.parts.iter().any(|p| contains(p.contents(), EICAR));
    let found = contains(raw, EICAR) || parsed.is_some_and(in_parts);
    match found {
        true => EngineOutcome::Found(BUILTIN_SIGNATURE.to_string()),
        false => EngineOutcome::Clean,
    }
}

impl Engine {
    /// Name used in verdicts.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Clamd(_) => super::clamd::ENGINE_NAME,
            Engine::BuiltinEicar => BUILTIN_NAME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_eicar_in_base64_attachment() {
        assert_eq!(EICAR.len(), 68);
        let encoded = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=";
        let raw = format!(
            "Subject: t\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n"
        );
        let parsed = super::super::mime::parse(raw.as_bytes());
        assert!(matches!(
            builtin_scan(raw.as_bytes(), parsed.as_ref()),
            EngineOutcome::Found(_)
        ));
        assert_eq!(
            builtin_scan(b"Subject: x\r\n\r\nclean\r\n", None),
            EngineOutcome::Clean
        );
    }
}
