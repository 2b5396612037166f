//! TLS configuration for both sides of the proxy (rustls 0.23, aws-lc-rs provider).
//!
//! * Client side: TLS 1.2/1.3 only, a certificate store that can be swapped at run time (reload),
//!   and ALPN pinned to the listener's protocol (`imap` / `pop3`, RFC 9051 §1 / IANA): a ClientHello
//!   that offers ALPN without it is refused by rustls with `no_application_protocol`, one without
//!   ALPN is accepted — the ALPACA cross-protocol mitigation.
//! * Backend side: certificate and name verification on by default, against a configured CA file
//!   or the system's roots, or by `pin_sha256`; the verifiers are in [`crate::backend::trust`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{BackendConfig, Protocol, TlsConfig};

/// Errors building TLS configurations; `side` says whose material was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the material (bad key, unsupported algorithm, ...).
    #[error("tls setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating the self-signed fallback certificate failed.
    #[error("self-signed certificate: {0}")]
    SelfSigned(String),
    /// The backend name is not a valid DNS name or IP address.
    #[error("backend server_name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    /// The material named by configuration key `key` (`tls.cert`, `tls.sni[1].key`, ...) is
    /// unusable; `source` says why and names the file.
    #[error("{key}: {source}")]
    Key {
        /// Dotted configuration key.
        key: String,
        /// What went wrong with the file.
        source: Box<TlsError>,
    },
    /// A served certificate is past its notAfter time (and `[tls] allow_expired` is false).
    #[error("{key}: {path}: certificate EXPIRED on {not_after}; renew it, or set [tls] allow_expired = true to serve it anyway")]
    Expired {
        /// Dotted configuration key of the certificate.
        key: String,
        /// The certificate file.
        path: String,
        /// End of validity, as text.
        not_after: String,
    },
}

mod keyed;

use keyed::leaf_info;
pub use keyed::load_keyed;

impl TlsError {
    pub(crate) fn at(key: String) -> impl FnOnce(TlsError) -> TlsError {
        move |source| TlsError::Key {
            key,
            source: Box::new(source),
        }
    }
}

/// The crypto provider used everywhere (aws-lc-rs, one backend only).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

/// ALPN protocol id for a listener's protocol.
pub fn alpn_id(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Imap => b"imap",
        Protocol::Pop3 => b"pop3",
    }
}

/// Reads a PEM certificate chain (leaf first).
pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Generates an in-memory self-signed certificate for `localhost` (the try-it-out default).
pub fn self_signed() -> Result<Arc<CertifiedKey>, TlsError> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let signing_key = provider().key_provider.load_private_key(key_der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![generated.cert.der().clone()],
        signing_key,
    )))
}

/// The certificates of one configuration: the default, the `[[tls.sni]]` ones by name, and
/// whether unknown names are refused.
#[derive(Debug, Clone)]
pub struct CertSet {
    default: Arc<CertifiedKey>,
    /// Exact names (lower-case) and `*.suffix` wildcards (stored as `*.suffix`).
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// Names the default certificate covers (used only with `strict_sni`).
    default_names: Vec<String>,
    strict: bool,
    /// `(certificate file or "self-signed", notAfter as Unix time)` of every certificate.
    expiry: Vec<(String, i64)>,
}

impl CertSet {
    /// A set serving `key` for every name.
    pub fn single(key: Arc<CertifiedKey>) -> CertSet {
        CertSet {
            default: key,
            by_name: HashMap::new(),
            default_names: Vec::new(),
            strict: false,
            expiry: Vec::new(),
        }
    }

    /// Loads `[tls]` and its `[[tls.sni]]` entries, or a self-signed certificate when absent.
    /// An expired certificate is refused unless `allow_expired`; errors name the key and file.
    pub fn load(tls: Option<&TlsConfig>) -> Result<CertSet, TlsError> {
        let Some(tls) = tls else {
            let key = self_signed()?;
            let not_after = key
                .cert
                .first()
                .and_then(|leaf| crate::certinfo::inspect(leaf).ok())
                .map_or(i64::MAX, |info| info.not_after_unix);
            let mut set = CertSet::single(key);
            set.expiry.push(("self-signed".to_string(), not_after));
            return Ok(set);
        };
        let default = load_keyed("tls", &tls.cert, &tls.key)?;
        let info = leaf_info("tls.cert", &tls.cert, &default, tls.allow_expired)?;
        let mut expiry = vec![(tls.cert.display().to_string(), info.not_after_unix)];
        let mut by_name = HashMap::new();
        for (i, sni) in tls.sni.iter().enumerate() {
            let prefix = format!("tls.sni[{i}]");
            let key = load_keyed(&prefix, &sni.cert, &sni.key)?;
            let info = leaf_info(
                &format!("{prefix}.cert"),
                &sni.cert,
                &key,
                tls.allow_expired,
            )?;
            expiry.push((sni.cert.display().to_string(), info.not_after_unix));
            for name in &sni.names {
                by_name.insert(name.to_ascii_lowercase(), key.clone());
            }
        }
        Ok(CertSet {
            default,
            by_name,
            default_names: info.dns_names,
            strict: tls.strict_sni,
            expiry,
        })
    }

    /// `(certificate file or "self-signed", notAfter as Unix time)` of every certificate in
    /// the set, for `portcullis_tls_certificate_expiry_seconds`.
    pub fn expiry(&self) -> &[(String, i64)] {
        &self.expiry
    }

    /// The certificate for a requested server name; `None` refuses the handshake.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return Some(self.default.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let found = self
            .by_name
            .get(&name)
            .or_else(|| wildcard.as_ref().and_then(|w| self.by_name.get(w)));
        if let Some(key) = found {
            return Some(key.clone());
        }
        let covered_by_default = self
            .default_names
            .iter()
            .any(|n| *n == name || Some(n) == wildcard.as_ref());
        if self.strict && !covered_by_default {
            tracing::info!(server_name = %name, "strict_sni: refusing unknown server name");
            return None;
        }
        Some(self.default.clone())
    }
}

/// The certificates presented to clients; swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertSet>>,
}

impl CertStore {
    /// A store serving `key` for every name.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<CertStore> {
        CertStore::with_set(CertSet::single(key))
    }

    /// A store serving `set`.
    pub fn with_set(set: CertSet) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The certificates now served (see [`CertSet::expiry`]).
    pub fn current(&self) -> Arc<CertSet> {
        self.get()
    }

    /// Builds the store from `[tls]`, or a self-signed certificate when it is absent.
    pub fn from_config(tls: Option<&TlsConfig>) -> Result<Arc<CertStore>, TlsError> {
        Ok(CertStore::with_set(CertSet::load(tls)?))
    }

    /// Replaces only the default certificate (SNI entries stay); handshakes already done are
    /// unaffected.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        let mut set = (*self.get()).clone();
        set.default = key;
        self.replace_set(set);
    }

    /// Replaces every certificate and the strict-SNI setting at once (reload).
    pub fn replace_set(&self, set: CertSet) {
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    fn get(&self) -> Arc<CertSet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get().resolve(client_hello.server_name())
    }
}

/// Server-side rustls configuration for one listener protocol.
pub fn server_config(
    store: Arc<CertStore>,
    protocol: Protocol,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![alpn_id(protocol).to_vec()];
    Ok(Arc::new(config))
}

/// Client-side rustls configuration for a backend: TLS 1.2/1.3, the backend's trust
/// ([`crate::backend::trust::verifier`]), ALPN for `protocol`.
pub fn backend_client_config(
    backend: &BackendConfig,
    protocol: Protocol,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(crate::backend::trust::verifier(backend)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn_id(protocol).to_vec()];
    Ok(Arc::new(config))
}

/// The name to verify in the backend certificate.
pub fn backend_server_name(backend: &BackendConfig) -> Result<ServerName<'static>, TlsError> {
    let name = backend.tls_server_name().to_string();
    ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_builds_a_server_config() {
        let store = CertStore::new(self_signed().unwrap());
        let config = server_config(store, Protocol::Imap).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"imap".to_vec()]);
    }

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let der = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let signing = provider().key_provider.load_private_key(der).unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        ))
    }

    #[test]
    fn sni_picks_exact_wildcard_and_default_and_strict_refuses() {
        let default = key_for(&["default.example.net"]);
        let named = key_for(&["mail.example.org"]);
        let wild = key_for(&["*.example.com"]);
        let mut set = CertSet {
            default: default.clone(),
            by_name: HashMap::from([
                ("mail.example.org".to_string(), named.clone()),
                ("*.example.com".to_string(), wild.clone()),
            ]),
            default_names: vec!["default.example.net".into()],
            strict: false,
            expiry: Vec::new(),
        };
        let pick = |set: &CertSet, name: Option<&str>| set.resolve(name).map(|k| k.cert.clone());
        assert_eq!(
            pick(&set, Some("MAIL.example.org.")),
            Some(named.cert.clone())
        );
        assert_eq!(
            pick(&set, Some("imap.example.com")),
            Some(wild.cert.clone())
        );
        assert_eq!(
            pick(&set, Some("a.b.example.com")),
            Some(default.cert.clone())
        );
        assert_eq!(pick(&set, Some("other.test")), Some(default.cert.clone()));
        assert_eq!(pick(&set, None), Some(default.cert.clone()));
        set.strict = true;
        assert_eq!(pick(&set, Some("other.test")), None);
        assert_eq!(
            pick(&set, Some("default.example.net")),
            Some(default.cert.clone())
        );
        assert_eq!(pick(&set, None), Some(default.cert.clone()));
    }

    #[test]
    fn missing_pem_file_names_the_path() {
        let error = load_cert_chain(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/cert.pem"));
    }
}
