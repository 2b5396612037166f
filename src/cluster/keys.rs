//! The key layout in the shared store. Every key starts with `<prefix>:v1:` (the `v1` changes
//! when the layout or a value format does, so old and new replicas never read each other's
//! values):
//!
//! | key | value | TTL |
//! | --- | --- | --- |
//! | `…:verdict:<scope>:<sha256>` | verdict (+ delivered bytes when small) | `verdict_ttl` |
//! | `…:lock:<scope>:<sha256>` | replica id of the scanning replica | `lock_ttl` |
//! | `…:msg:imap:<id>` / `…:msg:pop3:<id>` | the content's SHA-256 (32 octets) | `verdict_ttl` |
//! | `…:released:<sha256>` | the release marker (JSON) | `release_ttl` |
//! | `…:authfail:<ip>` | failed logins from the address | `limits.auth_penalty_expiry` |
//!
//! `<scope>` is a digest of everything a verdict and its notice depend on besides the content:
//! engine, clamd's signature version, the rules, the policy and the notice template (see
//! `scan::shared`), so a signature update or a rules change makes every replica miss old
//! verdicts at once. Message ids are digests of their parts, so user names and mailbox names
//! never appear in keys and keys stay short whatever a client sends.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// Builds the keys of one deployment (`prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    base: String,
}

/// 16 hex digits of SHA-256 over length-prefixed `parts` (unambiguous for any bytes).
pub fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..8])
}

impl Keys {
    /// Keys under `<prefix>:v1:`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            base: format!("{prefix}:v1"),
        }
    }

    /// The verdict of content `hash` under `scope`.
    pub fn verdict(&self, scope: &str, hash: &[u8; 32]) -> String {
        format!("{}:verdict:{scope}:{}", self.base, hex::encode(hash))
    }

    /// The scan lock of content `hash` under `scope`.
    pub fn lock(&self, scope: &str, hash: &[u8; 32]) -> String {
        format!("{}:lock:{scope}:{}", self.base, hex::encode(hash))
    }

    /// A message identity of `protocol` (`imap`, `pop3`) made of `parts`.
    pub fn message(&self, protocol: &str, parts: &[&[u8]]) -> String {
        let mut id = Sha256::new();
        for part in parts {
            id.update((part.len() as u64).to_be_bytes());
            id.update(part);
        }
        format!(
            "{}:msg:{protocol}:{}",
            self.base,
            hex::encode(id.finalize())
        )
    }

    /// The release of content `hash`.
    pub fn released(&self, hash: &[u8; 32]) -> String {
        format!("{}:released:{}", self.base, hex::encode(hash))
    }

    /// The failed-login count of `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn auth_failures(&self, ip: IpAddr) -> String {
        format!("{}:authfail:{}", self.base, ip.to_canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_versioned_and_unambiguous() {
        let keys = Keys::new("pc");
        let hash = [0xab; 32];
        assert_eq!(
            keys.verdict("0123456789abcdef", &hash),
            format!("pc:v1:verdict:0123456789abcdef:{}", "ab".repeat(32))
        );
        assert!(keys.lock("s", &hash).starts_with("pc:v1:lock:s:abab"));
        assert_eq!(
            keys.released(&hash),
            format!("pc:v1:released:{}", "ab".repeat(32))
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(keys.auth_failures(mapped), "pc:v1:authfail:192.0.2.1");
        // Length prefixes: moving a byte between parts gives another key.
        let a = keys.message("imap", &[b"ab", b"c"]);
        let b = keys.message("imap", &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert!(a.starts_with("pc:v1:msg:imap:") && a.len() == "pc:v1:msg:imap:".len() + 64);
        assert_ne!(keys.message("imap", &[b"x"]), keys.message("pop3", &[b"x"]));
        // Hostile names never reach the key text.
        assert!(!keys
            .message("imap", &[b"us er\r\n*", b"INBOX"])
            .contains(' '));
        assert_eq!(digest(&[b"a", b"b"]).len(), 16);
        assert_ne!(digest(&[b"ab"]), digest(&[b"a", b"b"]));
    }
}
