//! The capability allow-list: which backend capabilities the proxy passes through to clients
//! (see the module documentation of [`super`]).

use super::is_astring_char;

/// Capabilities whose commands and responses the proxy parses; anything else a backend
/// advertises is stripped. Case-insensitive. `AUTH=` mechanisms and `STARTTLS`/`LOGINDISABLED`
/// are decided by the session, so this returns false for them.
pub fn capability_allowed(capability: &str) -> bool {
    const ALLOWED: [&str; 15] = [
        "IMAP4rev1",   // RFC 3501
        "LITERAL+",    // RFC 7888
        "LITERAL-",    // RFC 7888
        "SASL-IR",     // RFC 4959
        "ID",          // RFC 2971
        "IDLE",        // RFC 2177
        "NAMESPACE",   // RFC 2342
        "UNSELECT",    // RFC 3691
        "MOVE",        // RFC 6851
        "UIDPLUS",     // RFC 4315
        "CHILDREN",    // RFC 3348
        "SPECIAL-USE", // RFC 6154 (LIST attributes only; LIST-EXTENDED is stripped)
        "BINARY",      // RFC 3516
        "QUOTA",       // RFC 9208 (GETQUOTA/GETQUOTAROOT)
        "SORT",        // RFC 5256
    ];
    const ALLOWED_PREFIXES: [&str; 2] = [
        "QUOTA=RES-", // RFC 9208 resource types
        "THREAD=",    // RFC 5256 threading algorithms
    ];
    ALLOWED.iter().any(|c| c.eq_ignore_ascii_case(capability))
        || ALLOWED_PREFIXES.iter().any(|p| {
            capability.len() > p.len()
                && capability.is_char_boundary(p.len())
                && capability[..p.len()].eq_ignore_ascii_case(p)
                && capability[p.len()..]
                    .bytes()
                    .all(|b| is_astring_char(b) && b != b']')
        })
}
