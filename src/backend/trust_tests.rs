//! Unit tests of the backend verifiers: real TLS handshakes in memory (tokio-rustls over a
//! duplex pipe) against certificates made with rcgen, and what the diagnosis says about them.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PublicKeyData};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::backend::diagnose::{explain, TlsFailure};
use crate::config::Protocol;

/// A generated certificate with its key and PEM.
struct Cert {
    der: CertificateDer<'static>,
    key: KeyPair,
    pem: String,
}

/// A self-signed certificate like `openssl req -x509` makes: `CA:TRUE`, SAN `names`.
fn self_signed_ca_true(names: &[&str], expired: bool) -> Cert {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "legacy.example");
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    Cert {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
    }
}

fn backend(extra: &str) -> (BackendConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name = \"legacy\"\naddress = \"127.0.0.1:993\"\ntls = \"implicit\"\nserver_name = \"localhost\"\n{extra}"
    );
    (toml::from_str(&text).unwrap(), dir)
}

fn write_ca(dir: &tempfile::TempDir, pems: &[&str]) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pems.concat()).unwrap();
    path
}

/// Serves `cert` (signing with `key`) on one end of a pipe and handshakes with `config`'s
/// verifier on the other; returns the client's outcome and the certificate it captured.
async fn handshake(
    config: &BackendConfig,
    cert: &CertificateDer<'static>,
    key: &KeyPair,
) -> (Result<(), std::io::Error>, Option<CertificateDer<'static>>) {
    // Through a resolver, so that a key that does not match the certificate is possible.
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = provider().key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert.clone()], signing));
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(crate::tls::CertStore::new(certified));
    let client = crate::tls::backend_client_config(config, Protocol::Imap).unwrap();
    let (near, far) = tokio::io::duplex(1 << 16);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let served = tokio::spawn(async move { acceptor.accept(far).await.map(|_| ()) });
    let name = ServerName::try_from(config.tls_server_name().to_string()).unwrap();
    let (result, presented) =
        capture_presented(TlsConnector::from(client).connect(name, near)).await;
    let _ = served.await;
    (result.map(|_| ()), presented)
}

fn failure_of(
    config: &BackendConfig,
    outcome: (Result<(), std::io::Error>, Option<CertificateDer<'static>>),
) -> TlsFailure {
    let error = outcome.0.expect_err("handshake should fail");
    explain(config, &error, outcome.1.as_ref())
}

#[test]
fn fingerprints_hash_the_certificate_and_its_spki() {
    let cert = self_signed_ca_true(&["localhost"], false);
    let fingerprints = Fingerprints::of(cert.der.as_ref());
    assert_eq!(fingerprints.cert, sha256(cert.der.as_ref()));
    assert_eq!(
        fingerprints.spki,
        Some(sha256(&cert.key.subject_public_key_info()))
    );
    let by_spki = Sha256Pin(sha256(&cert.key.subject_public_key_info()));
    assert!(fingerprints.matches(&[by_spki]));
    assert!(fingerprints.matches(&[Sha256Pin(fingerprints.cert)]));
    assert!(!fingerprints.matches(&[Sha256Pin([0; 32])]));
    assert_eq!(fingerprints.cert_hex().len(), 64);
}

#[tokio::test]
async fn ca_true_self_signed_is_refused_by_default_with_the_pin_hint() {
    let cert = self_signed_ca_true(&["localhost"], false);
    let (config, _dir) = backend("");
    let outcome = handshake(&config, &cert.der, &cert.key).await;
    assert_eq!(outcome.1.as_ref(), Some(&cert.der), "certificate captured");
    let failure = failure_of(&config, outcome);
    let pin = hex::encode(sha256(cert.der.as_ref()));
    assert!(
        matches!(failure, TlsFailure::SelfSignedCa(_)),
        "{failure:?}"
    );
    let text = failure.to_string();
    assert!(
        text.starts_with("certificate is self-signed and CA:TRUE: give it as `ca`")
            && text.contains(&format!("pin_sha256 = [\"{pin}\"]")),
        "{text}"
    );
    assert!(!text.contains("CaUsedAsEndEntity"), "{text}");
}

#[tokio::test]
async fn pinned_certificate_or_key_is_accepted_and_others_are_not() {
    let cert = self_signed_ca_true(&["other.example"], true);
    let cert_pin = hex::encode(sha256(cert.der.as_ref()));
    let spki_pin = hex::encode(sha256(&cert.key.subject_public_key_info())).to_ascii_uppercase();
    for pin in [cert_pin.clone(), spki_pin] {
        // Expired and named for another host: pins ignore names and dates.
        let (config, _dir) = backend(&format!("pin_sha256 = [\"{pin}\"]"));
        let (result, _) = handshake(&config, &cert.der, &cert.key).await;
        assert!(result.is_ok(), "pin {pin}: {result:?}");
    }
    let other = self_signed_ca_true(&["localhost"], false);
    let (config, _dir) = backend(&format!("pin_sha256 = [\"{cert_pin}\"]"));
    let failure = failure_of(&config, handshake(&config, &other.der, &other.key).await);
    assert!(matches!(failure, TlsFailure::NotPinned(_)), "{failure:?}");
    let other_pin = hex::encode(sha256(other.der.as_ref()));
    assert!(failure.to_string().contains(&other_pin), "{failure}");
}

#[tokio::test]
async fn pinned_certificate_must_still_sign_the_handshake() {
    let cert = self_signed_ca_true(&["localhost"], false);
    let impostor = KeyPair::generate().unwrap();
    let pin = hex::encode(sha256(cert.der.as_ref()));
    let (config, _dir) = backend(&format!("pin_sha256 = [\"{pin}\"]"));
    // The pinned certificate, but a handshake signed with a key that is not its own.
    let (result, presented) = handshake(&config, &cert.der, &impostor).await;
    let error = result.expect_err("a certificate without its key must fail");
    let cause = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert_eq!(
        cause,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
        )),
        "{error}"
    );
    assert_eq!(presented.as_ref(), Some(&cert.der));
}

#[tokio::test]
async fn byte_identical_ca_true_certificate_in_ca_is_its_own_anchor() {
    let cert = self_signed_ca_true(&["localhost"], false);
    let unrelated = self_signed_ca_true(&["unrelated.example"], false);
    let (mut config, dir) = backend("");
    config.ca = Some(write_ca(&dir, &[&unrelated.pem, &cert.pem]));
    let (result, _) = handshake(&config, &cert.der, &cert.key).await;
    assert!(result.is_ok(), "{result:?}");

    // Its name is still checked against server_name...
    config.server_name = Some("mail.example.org".into());
    let failure = failure_of(&config, handshake(&config, &cert.der, &cert.key).await);
    let text = failure.to_string();
    assert!(
        text.starts_with(
            "name mismatch: certificate is for localhost, `server_name` is mail.example.org"
        ),
        "{text}"
    );

    // ...and so are its dates.
    let expired = self_signed_ca_true(&["localhost"], true);
    let (mut config, dir) = backend("");
    config.ca = Some(write_ca(&dir, &[&expired.pem]));
    let failure = failure_of(
        &config,
        handshake(&config, &expired.der, &expired.key).await,
    );
    assert!(
        failure.to_string().starts_with("certificate expired on "),
        "{failure}"
    );
}

#[tokio::test]
async fn unknown_issuer_names_the_issuer_and_the_ca_file() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Legacy Corp CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let trusted = self_signed_ca_true(&["elsewhere.example"], false);
    let (mut config, dir) = backend("");
    config.ca = Some(write_ca(&dir, &[&trusted.pem]));
    let failure = failure_of(&config, handshake(&config, leaf.der(), &leaf_key).await);
    let text = failure.to_string();
    assert!(
        text.starts_with(
            "unknown issuer: the certificate is issued by CN=Legacy Corp CA, which `ca` ("
        ) && text.contains(&hex::encode(sha256(leaf.der().as_ref()))),
        "{text}"
    );
}

#[test]
fn plaintext_answer_to_a_client_hello_is_explained_as_a_tls_mode_problem() {
    let (config, _dir) = backend("");
    let error = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
    );
    let failure = explain(&config, &error, None);
    assert_eq!(failure, TlsFailure::NotTlsOnConnect);
    assert!(failure
        .to_string()
        .starts_with("backend did not speak TLS on connect"));
    assert!(failure.to_string().contains("`tls = \"starttls\"`"));
}

/// A certificate made by `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
/// -subj /CN=mail` (CA:TRUE, as OpenSSL makes them), and what OpenSSL prints for it.
const OPENSSL_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBcjCCARmgAwIBAgIUIScDyN06xsw7ecANzPRI+7YHuP0wCgYIKoZIzj0EAwIw\n\
DzENMAsGA1UEAwwEbWFpbDAeFw0yNjEyMDExNTM4NTNaFw0yNjEyMDIxNTM4NTNa\n\
MA8xDTALBgNVBAMMBG1haWwwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATKNDag\n\
j/+GdEfuf4Sct8yWVHGaOpJerbCqa52qlhM0+Mr/4mZlBTsYkHMSR//6am/tJcuQ\n\
LyRQOFeUfEgONYz4o1MwUTAdBgNVHQ4EFgQUawre05TrC2XOT/pqV6GDVpcPO8Iw\n\
HwYDVR0jBBgwFoAUawre05TrC2XOT/pqV6GDVpcPO8IwDwYDVR0TAQH/BAUwAwEB\n\
/zAKBggqhkjOPQQDAgNHADBEAiBNxGGdaxQyzMxxZmup4HDf0jQERYF2b452ptRb\n\
Jfl/ygIgBgMk+NC+rTLz0Z2PAbOHyYHeEzwfd128axNbA0Bsq98=\n\
-----END CERTIFICATE-----\n";

#[test]
fn fingerprints_agree_with_openssl() {
    let der = CertificateDer::from_pem_slice(OPENSSL_CERT.as_bytes()).unwrap();
    let fingerprints = Fingerprints::of(der.as_ref());
    // openssl x509 -noout -fingerprint -sha256 -in c.pem
    let cert = Sha256Pin::parse(
        "35:0C:E0:6A:A6:6F:D3:93:F8:A9:E8:80:11:CD:81:C7:1B:B9:C5:13:F4:49:A5:4F:A7:E5:95:85:37:A8:D2:09",
    )
    .unwrap();
    // openssl x509 -noout -pubkey -in c.pem | openssl pkey -pubin -outform der | sha256sum
    let spki = Sha256Pin::parse("af4812758d94fbad64fed93037b1a4d230bd9dcfab9780662ca6b7db68862f5b")
        .unwrap();
    assert_eq!(fingerprints.cert, cert.0);
    assert_eq!(fingerprints.spki, Some(spki.0));
}
