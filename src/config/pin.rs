//! `pin_sha256` of a `[[backend]]`: SHA-256 hashes of a backend certificate (the DER of the
//! whole certificate) or of its SubjectPublicKeyInfo, written as hex. Lowercase without
//! separators is canonical; uppercase and colons (`AB:12:…`, as `openssl x509 -fingerprint
//! -sha256` prints it) are accepted on input.
//!
//! The verifier that uses them is [`crate::backend::trust`]; here is only the value type and the
//! checks of how it combines with the other trust keys.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{BackendConfig, BackendTls, ConfigError};

/// Why a `pin_sha256` entry is not a SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// A character other than a hex digit or `:`.
    #[error("{0:?} is not a hex digit (write the SHA-256 as 64 hex digits, colons allowed)")]
    NotHex(char),
    /// Not 32 bytes.
    #[error("{0} hex digits: a SHA-256 hash has 64")]
    Length(usize),
}

/// One SHA-256 pin (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Pin(pub [u8; 32]);

impl Sha256Pin {
    /// Parses `ab12…`, `AB12…` or `AB:12:…` (64 hex digits, colons ignored).
    pub fn parse(text: &str) -> Result<Sha256Pin, PinError> {
        let mut digits = Vec::with_capacity(64);
        for c in text.trim().chars() {
            match c {
                ':' => continue,
                c if c.is_ascii_hexdigit() => digits.push(c.to_ascii_lowercase() as u8),
                other => return Err(PinError::NotHex(other)),
            }
        }
        if digits.len() != 64 {
            return Err(PinError::Length(digits.len()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| PinError::Length(digits.len()))?;
        Ok(Sha256Pin(bytes))
    }
}

impl fmt::Display for Sha256Pin {
    /// The canonical spelling: 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Pin({self})")
    }
}

impl<'de> Deserialize<'de> for Sha256Pin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sha256Pin::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("pin_sha256 {text:?}: {e}")))
    }
}

impl Serialize for Sha256Pin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `pin_sha256` replaces certificate-chain verification, so it makes no sense beside `ca`,
/// `verify = false` or a plaintext backend; `key` is `backend[i]`.
pub(super) fn validate_backend_trust(
    key: &str,
    backend: &BackendConfig,
) -> Result<(), ConfigError> {
    if backend.pin_sha256.is_empty() {
        return Ok(());
    }
    let conflict = if backend.ca.is_some() {
        Some("set either `ca` or `pin_sha256`, not both (a pinned certificate is trusted by its hash alone)")
    } else if !backend.verify {
        Some("`verify = false` accepts any certificate: remove it to use the pins")
    } else if backend.tls == BackendTls::None {
        Some("has no effect with tls = \"none\"")
    } else {
        None
    };
    match conflict {
        Some(reason) => Err(ConfigError::invalid(format!("{key}.pin_sha256"), reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_lowercase_uppercase_and_colons_to_the_same_pin() {
        let pin = Sha256Pin::parse(HEX).unwrap();
        assert_eq!(pin.to_string(), HEX);
        assert_eq!(Sha256Pin::parse(&HEX.to_ascii_uppercase()).unwrap(), pin);
        let colons: Vec<String> = HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
            .collect();
        assert_eq!(Sha256Pin::parse(&colons.join(":")).unwrap(), pin);
        assert_eq!(Sha256Pin::parse(&format!("  {HEX}\n")).unwrap(), pin);
    }

    #[test]
    fn rejects_wrong_lengths_and_non_hex() {
        assert_eq!(Sha256Pin::parse(&HEX[..62]), Err(PinError::Length(62)));
        assert_eq!(
            Sha256Pin::parse(&format!("{HEX}00")),
            Err(PinError::Length(66))
        );
        assert_eq!(Sha256Pin::parse(""), Err(PinError::Length(0)));
        let bad = format!("{}g", &HEX[..63]);
        assert_eq!(Sha256Pin::parse(&bad), Err(PinError::NotHex('g')));
        assert_eq!(
            Sha256Pin::parse(&format!("sha256/{HEX}")),
            Err(PinError::NotHex('s'))
        );
        // Base64 (HPKP style) is refused, not misread.
        assert!(Sha256Pin::parse("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=").is_err());
    }

    fn config(backend_lines: &str) -> Result<super::super::Config, ConfigError> {
        super::super::Config::parse(&format!(
            "[[listener]]\nname = \"l\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\n\n\
             [[backend]]\nname = \"b\"\naddress = \"127.0.0.1:993\"\n{backend_lines}\n"
        ))
    }

    #[test]
    fn pins_parse_in_a_backend_and_conflicts_name_the_key() {
        let upper = HEX.to_ascii_uppercase();
        let ok = config(&format!(
            "tls = \"implicit\"\npin_sha256 = [\"{HEX}\", \"{upper}\"]"
        ))
        .unwrap();
        assert_eq!(ok.backends[0].pin_sha256.len(), 2);
        assert_eq!(ok.backends[0].pin_sha256[1].to_string(), HEX);

        let bad = config("tls = \"implicit\"\npin_sha256 = [\"abcd\"]").unwrap_err();
        assert!(
            bad.to_string()
                .contains("pin_sha256 \"abcd\": 4 hex digits"),
            "{bad}"
        );

        for (lines, says) in [
            (
                "tls = \"implicit\"\nca = \"/etc/ssl/legacy.pem\"",
                "either `ca` or `pin_sha256`",
            ),
            ("tls = \"implicit\"\nverify = false", "`verify = false`"),
            ("tls = \"none\"", "no effect with tls = \"none\""),
        ] {
            let error = config(&format!("{lines}\npin_sha256 = [\"{HEX}\"]")).unwrap_err();
            let text = error.to_string();
            assert!(
                text.starts_with("backend[0].pin_sha256: ") && text.contains(says),
                "{text}"
            );
        }
    }
}
