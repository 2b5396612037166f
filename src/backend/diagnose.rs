//! Backend TLS failures explained in words, with the fix: what an operator reads in the logs, in
//! `/readyz` and in `check-config --probe` instead of rustls' codes (`invalid peer certificate:
//! Other(OtherError(CaUsedAsEndEntity))`, `received corrupt message of type
//! InvalidContentType`), which stay at debug level.
//!
//! The explanation combines rustls' error with the facts of the certificate the backend
//! presented (captured by [`super::trust::Capturing`]): self-signed or not, `CA:TRUE`, names,
//! validity and the SHA-256 fingerprints to pin.

use std::fmt;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::trust::{ca_label, Fingerprints, TrustError};
use crate::config::{BackendConfig, BackendTls};

/// What the backend presented, for messages: subject and the hashes to pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Subject distinguished name (`CN=mail.example.org`).
    pub subject: String,
    /// The certificate's fingerprints.
    pub fingerprints: Fingerprints,
}

impl Presented {
    /// The certificate hash, for `pin_sha256 = ["…"]`.
    pub fn pin(&self) -> String {
        self.fingerprints.cert_hex()
    }
}

impl fmt::Display for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "presented certificate {}: sha256 {}",
            self.subject,
            self.fingerprints.cert_hex()
        )?;
        if let Some(spki) = self.fingerprints.spki_hex() {
            write!(f, " (key/SPKI sha256 {spki})")?;
        }
        Ok(())
    }
}

/// Why the TLS handshake with a backend failed, in words, each with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// `tls = "implicit"` but the first bytes were not TLS (typically a plaintext greeting).
    #[error("backend did not speak TLS on connect (it answered with something else, usually a plaintext greeting): is `tls = \"starttls\"` (or `tls = \"none\"`) meant, or the wrong port?")]
    NotTlsOnConnect,
    /// STARTTLS/STLS answered OK, then no TLS.
    #[error("backend accepted STARTTLS but then did not speak TLS")]
    NotTlsAfterStarttls,
    /// The connection closed in the middle of the handshake.
    #[error("backend closed the connection during the TLS handshake{hint}")]
    Closed {
        /// A guess at the cause, starting with `: ` (or empty).
        hint: &'static str,
    },
    /// The backend sent a fatal alert.
    #[error("backend refused the TLS handshake (alert {alert}){hint}")]
    Refused {
        /// The alert's name.
        alert: String,
        /// A guess at the cause, starting with `: ` (or empty).
        hint: &'static str,
    },
    /// No protocol version or cipher suite in common.
    #[error("no TLS version or cipher suite in common with the backend ({0}): portcullis speaks TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0/1.1): update the backend's TLS settings, or use `tls = \"none\"` on a private link")]
    Incompatible(String),
    /// Self-signed and `CA:TRUE` (what `openssl req -x509` makes), not trusted.
    #[error("certificate is self-signed and CA:TRUE: give it as `ca`, or set `pin_sha256 = [\"{pin}\"]`; {0}", pin = .0.pin())]
    SelfSignedCa(Presented),
    /// Self-signed, not trusted.
    #[error("certificate is self-signed: give it as `ca`, or set `pin_sha256 = [\"{pin}\"]`; {0}", pin = .0.pin())]
    SelfSigned(Presented),
    /// Issued by a CA the trust store lacks.
    #[error("unknown issuer: the certificate is issued by {issuer}, which {store} does not contain: add that CA certificate to the `ca` file, or set `pin_sha256 = [\"{pin}\"]`; {presented}", pin = .presented.pin())]
    UnknownIssuer {
        /// Issuer distinguished name.
        issuer: String,
        /// Which trust store was used.
        store: String,
        /// The certificate.
        presented: Presented,
    },
    /// The certificate's names do not include `server_name`.
    #[error("name mismatch: certificate is for {names}, `server_name` is {server_name}: set `server_name` to a name of the certificate if this is the right server; {presented}")]
    NameMismatch {
        /// The certificate's DNS names and IP addresses.
        names: String,
        /// What was verified.
        server_name: String,
        /// The certificate.
        presented: Presented,
    },
    /// Past notAfter.
    #[error("certificate expired on {not_after}: renew it on the backend, or, for a legacy server that cannot be fixed, pin it with `pin_sha256 = [\"{pin}\"]` (pins ignore dates); {presented}", pin = .presented.pin())]
    Expired {
        /// notAfter.
        not_after: String,
        /// The certificate.
        presented: Presented,
    },
    /// Before notBefore.
    #[error(
        "certificate is not valid before {not_before}: check the clocks of both hosts; {presented}"
    )]
    NotYetValid {
        /// notBefore.
        not_before: String,
        /// The certificate.
        presented: Presented,
    },
    /// `pin_sha256` is set and does not match.
    #[error("certificate is not pinned: no `pin_sha256` entry matches it; if the backend's certificate was replaced on purpose, pin the new one: `pin_sha256 = [\"{pin}\"]`; {0}", pin = .0.pin())]
    NotPinned(Presented),
    /// Anything else about the certificate.
    #[error("certificate rejected ({reason}); {presented}")]
    Certificate {
        /// What was wrong.
        reason: String,
        /// The certificate.
        presented: Presented,
    },
    /// Anything else.
    #[error("TLS handshake failed ({0})")]
    Other(String),
}

/// Facts of a presented certificate that the explanations need.
struct Facts {
    presented: Presented,
    issuer: String,
    self_signed: bool,
    is_ca: bool,
    names: Vec<String>,
    not_before: String,
    not_after: String,
}

impl Facts {
    fn of(der: &CertificateDer<'_>) -> Facts {
        let fingerprints = Fingerprints::of(der.as_ref());
        let unparsable = |fingerprints| Facts {
            presented: Presented {
                subject: "(unparsable)".into(),
                fingerprints,
            },
            issuer: "(unparsable)".into(),
            self_signed: false,
            is_ca: false,
            names: Vec::new(),
            not_before: "?".into(),
            not_after: "?".into(),
        };
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            return unparsable(fingerprints);
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_string()),
                    GeneralName::IPAddress(ip) => names.push(ip_text(ip)),
                    _ => {}
                }
            }
        }
        if names.is_empty() {
            // Only used for the message: RFC 6125 clients no longer match the CN.
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(|cn| format!("CN={cn} (no subjectAltName)")),
            );
        }
        Facts {
            presented: Presented {
                subject: cert.subject().to_string(),
                fingerprints,
            },
            issuer: cert.issuer().to_string(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            is_ca: cert.is_ca(),
            names,
            not_before: cert.validity().not_before.to_string(),
            not_after: cert.validity().not_after.to_string(),
        }
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
            std::net::Ipv4Addr::from(octets).to_string()
        }
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => hex::encode(bytes),
    }
}

/// Explains a failed backend TLS handshake: `error` as tokio-rustls returned it, `presented`
/// the end-entity certificate if the handshake got that far.
pub fn explain(
    backend: &BackendConfig,
    error: &std::io::Error,
    presented: Option<&CertificateDer<'_>>,
) -> TlsFailure {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match (rustls_error, presented) {
        (Some(rustls::Error::InvalidCertificate(cause)), Some(cert)) => {
            certificate(backend, cause, &Facts::of(cert))
        }
        (Some(rustls::Error::InvalidCertificate(cause)), None) => {
            TlsFailure::Other(format!("certificate rejected: {cause:?}"))
        }
        (Some(rustls::Error::InvalidMessage(_)), _) => match backend.tls {
            BackendTls::Starttls => TlsFailure::NotTlsAfterStarttls,
            _ => TlsFailure::NotTlsOnConnect,
        },
        (Some(rustls::Error::AlertReceived(alert)), _) => refused(*alert),
        (Some(rustls::Error::PeerIncompatible(why)), _) => {
            TlsFailure::Incompatible(format!("{why:?}"))
        }
        (Some(other), _) => TlsFailure::Other(other.to_string()),
        (None, _) => match error.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => TlsFailure::Closed {
                hint: match backend.tls {
                    BackendTls::Implicit => ": is this a TLS port? (`tls = \"starttls\"` or `tls = \"none\"` may be meant), or the backend accepts only old TLS versions",
                    _ => ": the backend may accept only old TLS versions (portcullis needs TLS 1.2 or 1.3)",
                },
            },
            _ => TlsFailure::Other(error.to_string()),
        },
    }
}

fn refused(alert: AlertDescription) -> TlsFailure {
    let hint = match alert {
        AlertDescription::ProtocolVersion
        | AlertDescription::HandshakeFailure
        | AlertDescription::InsufficientSecurity => ": it probably speaks only TLS 1.0/1.1 or old cipher suites; portcullis needs TLS 1.2 or 1.3 (RFC 8996): update the backend's TLS settings, or use `tls = \"none\"` on a private link",
        AlertDescription::UnrecognisedName => ": it does not know the name sent as SNI: check `server_name`",
        _ => "",
    };
    TlsFailure::Refused {
        alert: format!("{alert:?}"),
        hint,
    }
}

fn certificate(backend: &BackendConfig, cause: &CertificateError, facts: &Facts) -> TlsFailure {
    let presented = facts.presented.clone();
    let not_pinned = matches!(cause, CertificateError::Other(other)
        if other.0.downcast_ref::<TrustError>() == Some(&TrustError::NotPinned));
    match cause {
        _ if not_pinned => TlsFailure::NotPinned(presented),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsFailure::NameMismatch {
                names: if facts.names.is_empty() {
                    "no name at all".into()
                } else {
                    facts.names.join(", ")
                },
                server_name: backend.tls_server_name().to_string(),
                presented,
            }
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            TlsFailure::Expired {
                not_after: facts.not_after.clone(),
                presented,
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            TlsFailure::NotYetValid {
                not_before: facts.not_before.clone(),
                presented,
            }
        }
        _ if facts.self_signed && facts.is_ca => TlsFailure::SelfSignedCa(presented),
        _ if facts.self_signed => TlsFailure::SelfSigned(presented),
        CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer {
            issuer: facts.issuer.clone(),
            store: ca_label(backend.ca.as_deref()),
            presented,
        },
        _ if facts.is_ca => TlsFailure::Certificate {
            reason: "it is a CA certificate (CA:TRUE) used as a server certificate: give it as `ca` or pin it".into(),
            presented,
        },
        CertificateError::BadSignature => TlsFailure::Certificate {
            reason: "a signature does not verify".into(),
            presented,
        },
        other => TlsFailure::Certificate {
            reason: format!("{other:?}"),
            presented,
        },
    }
}
