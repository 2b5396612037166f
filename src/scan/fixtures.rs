//! Dispositions for the session cores' unit tests (IMAP relay, POP3 transaction): what the
//! scan pipeline hands back for a clean, a blocked and an unscannable message.

use bytes::Bytes;

use super::{Disposition, Verdict};

/// The message is clean: deliver it as it is.
pub(crate) fn clean(message: &[u8]) -> Disposition {
    Disposition::Deliver {
        bytes: Bytes::copy_from_slice(message),
        modified: false,
        verdict: Verdict::Clean,
    }
}

/// The message is infected: serve `replacement` instead.
pub(crate) fn blocked(replacement: &[u8]) -> Disposition {
    Disposition::Replace {
        bytes: Bytes::copy_from_slice(replacement),
        quarantine_id: "q-1".into(),
        verdict: Verdict::Infected {
            engine: "clamd".into(),
            signature: "Eicar-Test-Signature".into(),
        },
    }
}

/// The message could not be scanned now.
pub(crate) fn tempfail() -> Disposition {
    Disposition::TempFail {
        reason: "clamd down".into(),
    }
}
