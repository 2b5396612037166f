//! SASL helpers shared by IMAP AUTHENTICATE and POP3 AUTH: reading the user name out of a
//! PLAIN message (RFC 4616 §2) so sessions can log it and key the verdict cache by it.

use base64::Engine;

/// The authentication identity of a base64-encoded SASL PLAIN message (`authzid NUL authcid NUL
/// passwd`); `None` if it does not decode. The password is never returned.
pub fn plain_authcid(encoded: &str) -> Option<String> {
    let message = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let mut parts = message.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let authcid = parts.next()?;
    parts.next()?;
    String::from_utf8(authcid.to_vec())
        .ok()
        .filter(|user| !user.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authcid_is_read_and_garbage_refused() {
        // "\0alice\0secret"
        assert_eq!(
            plain_authcid("AGFsaWNlAHNlY3JldA==").as_deref(),
            Some("alice")
        );
        assert_eq!(plain_authcid("not base64!"), None);
        // "alice" without NULs
        assert_eq!(plain_authcid("YWxpY2U="), None);
    }
}
