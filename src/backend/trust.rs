//! How portcullis decides to trust a backend's TLS certificate (the client side of RFC 8446
//! §4.4.2 / RFC 5246 §7.4.2 server authentication), fitted to legacy servers:
//!
//! * **`ca`** (or the system roots): rustls/webpki chain and name verification, plus one
//!   exception OpenSSL-based tools make too — a presented end-entity certificate that is
//!   *byte-identical* to a certificate in the `ca` file is accepted as its own trust anchor,
//!   even when it says `CA:TRUE` (what `openssl req -x509` makes; webpki refuses such a
//!   certificate as an end entity with `CaUsedAsEndEntity`). Its name is still checked against
//!   `server_name` and its validity dates against the clock: the file says "trust this
//!   certificate", not "trust it for any name, forever".
//! * **`pin_sha256`**: the certificate is accepted iff the SHA-256 of its DER or of its
//!   SubjectPublicKeyInfo is pinned. Names and dates are not checked: the hash *is* the
//!   identity, which is what a legacy server with an expired or wrongly named certificate
//!   needs.
//! * **`verify = false`**: anything (logged loudly at startup).
//!
//! In every case the handshake signatures (TLS 1.2 ServerKeyExchange, TLS 1.3
//! CertificateVerify) are verified with the presented certificate's key using the provider's
//! algorithms, so a pinned or anchored certificate still proves possession of its key.
//!
//! Every verifier is wrapped in [`Capturing`], which records the presented end-entity
//! certificate for the connection being set up (see [`capture_presented`]) so that a failure
//! can be explained with the certificate's facts and the fingerprint to pin.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{BackendConfig, Sha256Pin};
use crate::tls::{load_cert_chain, provider, TlsError};

/// Why a backend certificate was refused by portcullis's own rules (as opposed to webpki's);
/// carried inside `rustls::CertificateError::Other` and recognised by the diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// `pin_sha256` is set and neither hash of the backend's certificate is in it.
    #[error("backend certificate matches no pin_sha256")]
    NotPinned,
}

/// SHA-256 fingerprints of a certificate: of its DER and of its SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-256 of the whole certificate (what `openssl x509 -fingerprint -sha256` shows).
    pub cert: [u8; 32],
    /// SHA-256 of the DER SubjectPublicKeyInfo (stays the same when a certificate is renewed
    /// with the same key); `None` when the certificate does not parse.
    pub spki: Option<[u8; 32]>,
}

impl Fingerprints {
    /// Fingerprints of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprints {
        let spki = X509Certificate::from_der(der)
            .ok()
            .map(|(_, cert)| sha256(cert.tbs_certificate.subject_pki.raw));
        Fingerprints {
            cert: sha256(der),
            spki,
        }
    }

    /// Whether one of `pins` is the certificate's or its key's hash.
    pub fn matches(&self, pins: &[Sha256Pin]) -> bool {
        pins.iter()
            .any(|pin| pin.0 == self.cert || Some(pin.0) == self.spki)
    }

    /// The certificate hash as 64 lowercase hex digits (the spelling `pin_sha256` prints).
    pub fn cert_hex(&self) -> String {
        hex::encode(self.cert)
    }

    /// The SubjectPublicKeyInfo hash as 64 lowercase hex digits, if known.
    pub fn spki_hex(&self) -> Option<String> {
        self.spki.map(hex::encode)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The verifier for `backend`'s configured trust (`pin_sha256`, `ca` or the system roots,
/// or `verify = false`), wrapped in [`Capturing`].
pub fn verifier(backend: &BackendConfig) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let provider = provider();
    let inner: Arc<dyn ServerCertVerifier> = if !backend.verify {
        tracing::warn!(backend = %backend.name, "backend certificate verification is DISABLED (verify = false)");
        Arc::new(AcceptAnyCertificate(provider))
    } else if !backend.pin_sha256.is_empty() {
        Arc::new(PinVerifier {
            pins: backend.pin_sha256.clone(),
            provider,
        })
    } else {
        let (roots, anchors) = match backend.ca.as_deref() {
            Some(path) => ca_file(path).map_err(TlsError::at("ca".to_string()))?,
            None => (system_roots(), Vec::new()),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                path: backend.ca.as_deref().map_or_else(
                    || "system CA certificates".to_string(),
                    |p| p.display().to_string(),
                ),
                reason: e.to_string(),
            })?;
        if anchors.is_empty() {
            webpki
        } else {
            Arc::new(AnchorVerifier {
                webpki,
                anchors,
                provider,
            })
        }
    };
    Ok(Arc::new(Capturing(inner)))
}

/// The certificates of a `ca` file, as trust anchors and as they are.
fn ca_file(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let certs = load_cert_chain(path)?;
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone())?;
    }
    Ok((roots, certs))
}

/// The system's roots (rustls-native-certs), or the Mozilla set when none load.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "while loading system CA certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Whether `path` was given as `ca` (for messages).
pub fn ca_label(ca: Option<&Path>) -> String {
    ca.map_or_else(
        || "the system's CA certificates".to_string(),
        |p| format!("`ca` ({})", p.display()),
    )
}

/// Handshake-signature checks with the provider's algorithms (shared by our verifiers).
fn tls12_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// Implements the signature methods of [`ServerCertVerifier`] with `self.provider`.
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            tls12_signature(&self.provider, message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            tls13_signature(&self.provider, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// `pin_sha256`: the end-entity certificate is trusted iff its or its key's hash is pinned.
#[derive(Debug)]
pub struct PinVerifier {
    /// The pins.
    pub pins: Vec<Sha256Pin>,
    /// Algorithms for the handshake signatures.
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Fingerprints::of(end_entity).matches(&self.pins) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(TrustError::NotPinned)),
            )))
        }
    }

    provider_signatures!();
}

/// `ca` with the OpenSSL-style exception: a presented certificate byte-identical to one in the
/// file is its own trust anchor (name and dates still checked); anything else goes to webpki.
#[derive(Debug)]
pub struct AnchorVerifier {
    /// Chain verification against the `ca` file.
    pub webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of the `ca` file.
    pub anchors: Vec<CertificateDer<'static>>,
    /// Algorithms for the handshake signatures.
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnchorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self
            .anchors
            .iter()
            .any(|a| a.as_ref() == end_entity.as_ref())
        {
            return self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        check_validity(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    provider_signatures!();
}

/// RFC 5280 §4.1.2.5: `now` must lie within notBefore..=notAfter.
fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let validity = cert.validity();
    let at = |seconds: i64| {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(seconds).unwrap_or(0),
        ))
    };
    let time = now.as_secs();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if i128::from(time) < i128::from(not_before) {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before: at(not_before),
            },
        ));
    }
    if i128::from(time) > i128::from(not_after) {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after: at(not_after),
            },
        ));
    }
    Ok(())
}

/// Used only when an administrator sets `verify = false` on a backend.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The slot [`Capturing`] writes the presented certificate into, for the current task.
type Slot = Arc<Mutex<Option<CertificateDer<'static>>>>;

tokio::task_local! {
    static PRESENTED: Slot;
}

/// Runs `handshake` (a TLS connect future) and returns its output together with the
/// end-entity certificate the backend presented, if verification was reached.
///
/// The certificate travels through a task-local slot rather than a per-connection verifier:
/// the one verifier `Arc` per backend is kept, so rustls' session resumption (which requires
/// the same verifier) keeps working for sessions.
pub async fn capture_presented<F: Future>(
    handshake: F,
) -> (F::Output, Option<CertificateDer<'static>>) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let output = PRESENTED.scope(slot.clone(), handshake).await;
    let presented = match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    (output, presented)
}

/// Records the presented end-entity certificate (see [`capture_presented`]), then delegates.
#[derive(Debug)]
pub struct Capturing(pub Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for Capturing {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Outside `capture_presented` (no slot) there is nothing to record.
        let _ = PRESENTED.try_with(|slot| {
            let owned = end_entity.clone().into_owned();
            match slot.lock() {
                Ok(mut guard) => *guard = Some(owned),
                Err(poisoned) => *poisoned.into_inner() = Some(owned),
            }
        });
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
