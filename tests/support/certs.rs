//! A throw-away certificate authority for tests: one CA and one leaf for `localhost` and
//! `127.0.0.1`, written as PEM files into a private temp dir.
//!
//! The leaf serves both the backend (Dovecot's `ssl_cert`) and portcullis's own client-facing
//! listener; clients trust it through [`TestCa::client_config`] or [`TestCa::ca_pem_path`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

use super::cert_params::{ca_params, leaf_params};
use super::process::make_traversable;

/// A generated CA plus a leaf certificate signed by it, with their PEM files on disk.
pub struct TestCa {
    /// PEM of the CA certificate.
    pub ca_pem: String,
    /// PEM of the leaf certificate (SANs `localhost`, `127.0.0.1`).
    pub cert_pem: String,
    /// PEM (PKCS#8) of the leaf's private key.
    pub key_pem: String,
    ca_der: CertificateDer<'static>,
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Generates a fresh CA and leaf (ECDSA P-256) and writes `ca.pem`, `cert.pem`, `key.pem`.
    pub fn new() -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_params = ca_params("portcullis test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params()
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");
        let dir = tempfile::Builder::new()
            .prefix("pc-ca-")
            .tempdir()
            .expect("tempdir");
        make_traversable(dir.path());
        let ca = TestCa {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_der: ca_cert.der().clone(),
            dir,
        };
        ca.write_to(ca.dir.path());
        ca
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (all mode 0644) into `dir`.
    pub fn write_to(&self, dir: &Path) {
        for (name, pem) in [
            ("ca.pem", &self.ca_pem),
            ("cert.pem", &self.cert_pem),
            ("key.pem", &self.key_pem),
        ] {
            let path = dir.join(name);
            fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }

    /// Path of the CA certificate PEM.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Path of the leaf certificate PEM.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Path of the leaf private key PEM.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// DER of the CA certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// A root store that trusts only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add test CA");
        roots
    }

    /// A rustls client configuration that trusts only this CA (no ALPN, no client auth).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
