//! What `check-config` and strict SNI need to know about a certificate: its DNS names
//! (subjectAltName, RFC 5280 §4.2.1.6) and its validity period. Parsed with `x509-parser`.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Certificates expiring within this many days get a warning from `check-config`.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Facts about one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names from subjectAltName, lower-cased.
    pub dns_names: Vec<String>,
    /// End of validity, as text (`Mar  4 12:00:00 2027 +00:00`).
    pub not_after: String,
    /// Whole days until expiry; negative once expired.
    pub days_left: i64,
    /// End of validity as Unix time (seconds).
    pub not_after_unix: i64,
}

impl CertInfo {
    /// Whether the certificate is past its notAfter time.
    pub fn expired(&self) -> bool {
        self.days_left < 0
    }

    /// `Some(message)` when the certificate is expired or expires within
    /// [`EXPIRY_WARNING_DAYS`].
    pub fn expiry_warning(&self) -> Option<String> {
        if self.expired() {
            Some(format!("EXPIRED on {}", self.not_after))
        } else if self.days_left < EXPIRY_WARNING_DAYS {
            Some(format!(
                "expires in {} days ({})",
                self.days_left, self.not_after
            ))
        } else {
            None
        }
    }
}

/// Parses a DER certificate; `Err` carries x509-parser's reason.
pub fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    let not_after = cert.validity().not_after;
    let now = x509_parser::time::ASN1Time::now();
    let days_left = (not_after.timestamp() - now.timestamp()).div_euclid(86_400);
    Ok(CertInfo {
        dns_names,
        not_after: not_after.to_string(),
        days_left,
        not_after_unix: not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_expiry_of_a_generated_certificate() {
        let generated =
            rcgen::generate_simple_self_signed(vec!["Mail.Example.org".into()]).unwrap();
        let info = inspect(generated.cert.der()).unwrap();
        assert_eq!(info.dns_names, vec!["mail.example.org".to_string()]);
        assert!(info.days_left > 365, "{info:?}");
        assert_eq!(info.expiry_warning(), None);
        let expired = CertInfo {
            days_left: -1,
            ..info
        };
        assert!(expired.expiry_warning().unwrap().starts_with("EXPIRED"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(inspect(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
