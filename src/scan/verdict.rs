//! Verdicts, dispositions and error types shared by the scan pipeline and its callers.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use super::config::ConfigError;
use super::rules::RuleAction;
use crate::metrics::ScanVerdict;

/// Why a message could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanErrorCause {
    /// No clamd endpoint could be reached.
    ScannerUnavailable,
    /// Connecting or scanning took longer than configured.
    Timeout,
    /// clamd answered something that is neither `OK` nor `FOUND`.
    BadReply(String),
    /// clamd refused the stream as too large (`INSTREAM size limit exceeded`).
    SizeLimit,
    /// I/O error talking to clamd after connecting.
    Io(String),
    /// The original could not be quarantined.
    Quarantine(String),
    /// The message could not be parsed or rewritten.
    Internal(String),
}

impl fmt::Display for ScanErrorCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanErrorCause::ScannerUnavailable => write!(f, "scanner unavailable"),
            ScanErrorCause::Timeout => write!(f, "scanner timeout"),
            ScanErrorCause::BadReply(reply) => write!(f, "bad scanner reply: {reply}"),
            ScanErrorCause::SizeLimit => write!(f, "scanner size limit exceeded"),
            ScanErrorCause::Io(e) => write!(f, "scanner i/o error: {e}"),
            ScanErrorCause::Quarantine(e) => write!(f, "quarantine failed: {e}"),
            ScanErrorCause::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

/// Errors of the scan module.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner side failed (clamd).
    #[error("scanner: {0}")]
    Scanner(ScanErrorCause),
    /// Something inside portcullis failed (file system, quarantine).
    #[error("internal: {0}")]
    Internal(String),
    /// Configuration or rule files are invalid.
    #[error("config: {0}")]
    Config(String),
}

impl From<ConfigError> for ScanError {
    fn from(e: ConfigError) -> Self {
        ScanError::Config(e.to_string())
    }
}

/// The verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// An antivirus engine found something.
    Infected {
        /// Engine name (`clamd`, `builtin-eicar`).
        engine: String,
        /// Signature name reported by the engine.
        signature: String,
    },
    /// A rule matched.
    Rule {
        /// Rule name.
        name: String,
        /// The rule's action.
        action: RuleAction,
    },
    /// Scanning failed.
    Error {
        /// Why.
        cause: ScanErrorCause,
    },
    /// Larger than `max_size`; not scanned.
    Oversize,
}

impl Verdict {
    /// One-line description used in notices, headers and the CLI (no CR/LF).
    pub fn describe(&self) -> String {
        let text = match self {
            Verdict::Clean => "clean".to_string(),
            Verdict::Infected { engine, signature } => format!("infected: {signature} ({engine})"),
            Verdict::Rule { name, action } => format!("rule {name} ({})", action.as_str()),
            Verdict::Error { cause } => format!("error: {cause}"),
            Verdict::Oversize => "oversize: not scanned".to_string(),
        };
        text.replace(['\r', '\n'], " ")
    }

    /// The signature or rule name (empty for other verdicts).
    pub fn detail(&self) -> String {
        match self {
            Verdict::Infected { signature, .. } => signature.clone(),
            Verdict::Rule { name, .. } => name.clone(),
            Verdict::Error { cause } => cause.to_string(),
            Verdict::Clean | Verdict::Oversize => String::new(),
        }
    }
}

/// Label for metrics: `clean`, `infected`, `rule`, `error`, `oversize`.
pub fn verdict_label(verdict: &Verdict) -> &'static str {
    ScanVerdict::of(verdict).as_str()
}

impl ScanVerdict {
    /// The `verdict` label of a scan verdict.
    pub fn of(verdict: &Verdict) -> ScanVerdict {
        match verdict {
            Verdict::Clean => ScanVerdict::Clean,
            Verdict::Infected { .. } => ScanVerdict::Infected,
            Verdict::Rule { .. } => ScanVerdict::Rule,
            Verdict::Error { .. } => ScanVerdict::Error,
            Verdict::Oversize => ScanVerdict::Oversize,
        }
    }
}

/// The protocol a message was fetched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1/rev2.
    Imap,
    /// POP3.
    Pop3,
}

/// Where a message came from (for quarantine records and the UID cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// The client's address.
    pub client_addr: SocketAddr,
    /// Authenticated user, if known.
    pub user: Option<String>,
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// IMAP mailbox name.
    pub mailbox: Option<String>,
    /// IMAP UIDVALIDITY of the mailbox.
    pub uidvalidity: Option<u32>,
    /// IMAP UID.
    pub uid: Option<u32>,
    /// Message sequence number (IMAP) or POP3 message number.
    pub msgno: Option<u32>,
    /// The `[[backend]]` the session is logged in to: the same user, mailbox and UID on two
    /// backends are two messages, so cache keys are scoped by it.
    pub backend: Option<String>,
}

/// The user part of a cache key: `user`, scoped by the backend it lives on (NUL cannot occur in
/// a login name, so no two scopes collide).
pub fn scoped_user(backend: Option<&str>, user: &str) -> String {
    match backend {
        Some(backend) => format!("{backend}\0{user}"),
        None => user.to_string(),
    }
}

/// What the session must deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver these bytes (the original, or a tagged/stripped version); `modified` says whether they
    /// differ from the original.
    Deliver {
        /// Bytes to deliver.
        bytes: Bytes,
        /// Whether `bytes` differ from the original.
        modified: bool,
        /// The verdict behind it.
        verdict: Verdict,
    },
    /// Blocked: deliver this replacement (original already quarantined).
    Replace {
        /// The replacement message.
        bytes: Bytes,
        /// Quarantine id of the original.
        quarantine_id: String,
        /// The verdict behind it.
        verdict: Verdict,
    },
    /// Temporary failure: deliver nothing (IMAP: `NO [UNAVAILABLE]`; POP3: `-ERR [SYS/TEMP]`).
    TempFail {
        /// Why (for logs, never shown as message content).
        reason: String,
    },
}

/// A disposition remembered for (user, mailbox, uidvalidity, uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Clean (or passed unmodified): the caller fetches and delivers the original normally.
    Clean,
    /// Serve these bytes instead of fetching.
    Serve(Disposition),
}
