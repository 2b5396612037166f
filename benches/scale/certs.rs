//! Certificates for the scale benchmark: one private CA and leaf certificates for `localhost` /
//! `127.0.0.1` with an ECDSA P-256 or an RSA-2048 key (rcgen on aws-lc-rs), written as PEM files
//! that portcullis, nginx and stunnel all load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};

#[path = "../../tests/support/cert_params.rs"]
mod cert_params;
use cert_params::{ca_params, leaf_params};
use rustls_pki_types::CertificateDer;

/// The key type of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256.
    P256,
    /// RSA with a 2048-bit modulus (PKCS#1 v1.5 SHA-256 in the certificate; TLS 1.3 signs
    /// with RSA-PSS).
    Rsa2048,
}

impl KeyKind {
    /// Short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::P256 => "P-256",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

/// A leaf certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Certificate PEM path.
    pub cert: PathBuf,
    /// Private key PEM path (PKCS#8).
    pub key: PathBuf,
}

/// The benchmark's CA with a P-256 and an RSA-2048 leaf, in `dir`.
pub struct Certs {
    ca_der: CertificateDer<'static>,
    p256: Leaf,
    rsa: Leaf,
}

impl Certs {
    /// Generates the CA and both leaves and writes them into `dir`.
    pub fn generate(dir: &Path) -> Certs {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca_params = ca_params("portcullis scale bench CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let write_leaf = |kind: KeyKind| {
            let key = match kind {
                KeyKind::P256 => KeyPair::generate().expect("generate a P-256 key"),
                KeyKind::Rsa2048 => {
                    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                        .expect("generate an RSA-2048 key")
                }
            };
            let cert = leaf_params()
                .signed_by(&key, &issuer)
                .expect("sign the leaf");
            let name = kind.label().to_ascii_lowercase();
            let leaf = Leaf {
                cert: dir.join(format!("{name}-cert.pem")),
                key: dir.join(format!("{name}-key.pem")),
            };
            // The chain file carries the leaf only: clients trust the CA directly.
            write(&leaf.cert, &cert.pem());
            write(&leaf.key, &key.serialize_pem());
            leaf
        };
        let p256 = write_leaf(KeyKind::P256);
        let rsa = write_leaf(KeyKind::Rsa2048);
        Certs {
            ca_der: ca_cert.der().clone(),
            p256,
            rsa,
        }
    }

    /// The leaf of `kind`.
    pub fn leaf(&self, kind: KeyKind) -> &Leaf {
        match kind {
            KeyKind::P256 => &self.p256,
            KeyKind::Rsa2048 => &self.rsa,
        }
    }

    /// A client configuration trusting only this CA, without session resumption (every
    /// connection is a full handshake), offering only `kx` when given.
    pub fn client_config(&self, x25519_only: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add the bench CA");
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if x25519_only {
            provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
