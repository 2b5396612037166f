//! `portcullis generate cert`: the CA and server certificate it writes are accepted by
//! `check-config` (portcullis's own certificate loading) and by rustls, a client trusting only
//! the CA completes a handshake for each requested name and refuses other names, the keys are
//! mode 0600, existing files are not replaced without `--force`, and the CA's name constraint
//! stops it from vouching for any other host (checked with a certificate signed by `openssl`).

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .expect("run portcullis")
}

fn generate(out: &Path, names: &[&str]) -> String {
    let mut args = vec!["generate", "cert", "--out", out.to_str().unwrap()];
    for name in names {
        args.extend(["--name", name]);
    }
    let output = portcullis(&args);
    assert!(
        output.status.success(),
        "generate cert failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A client that trusts only `ca.pem`, connecting to `name` with ALPN `imap`.
fn client_for(ca_pem: &Path, name: &str) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem) {
        roots.add(cert).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"imap".to_vec()];
    let name = ServerName::try_from(name.to_owned()).unwrap();
    ClientConnection::new(Arc::new(config), name).unwrap()
}

fn server_for(cert: &Path, key: &Path) -> ServerConnection {
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs(cert), key)
        .expect("rustls accepts the certificate and key");
    config.alpn_protocols = vec![b"imap".to_vec()];
    ServerConnection::new(Arc::new(config)).unwrap()
}

/// Drives both ends to the end of the handshake in memory; the error names the side.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut buf = Vec::new();
        client.write_tls(&mut buf).map_err(|e| e.to_string())?;
        server.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
        server
            .process_new_packets()
            .map_err(|e| format!("server: {e}"))?;
        buf.clear();
        server.write_tls(&mut buf).map_err(|e| e.to_string())?;
        client.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
        client
            .process_new_packets()
            .map_err(|e| format!("client: {e}"))?;
    }
    Err("handshake did not finish".into())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `portcullis check-config` on a configuration serving the generated pair.
fn check_config_accepts(dir: &Path) {
    let config = format!(
        r#"
[tls]
cert = "{dir}/server.pem"
key = "{dir}/server.key"

[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:0"
tls = "implicit"
backend = "local"

[[backend]]
name = "local"
address = "127.0.0.1:143"
tls = "none"
"#,
        dir = dir.display()
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let output = portcullis(&["check-config", "--config", path.to_str().unwrap()]);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "check-config refused:\n{report}");
}

#[test]
fn generated_pair_is_loaded_and_completes_handshakes_for_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let summary = generate(&out, &["mail.example.org", "127.0.0.1"]);
    assert!(summary.contains("server.pem"), "{summary}");
    assert_eq!(mode(&out.join("server.key")), 0o600);
    assert_eq!(mode(&out.join("ca.key")), 0o600);
    assert_eq!(mode(&out.join("server.pem")), 0o644);
    assert_eq!(mode(&out.join("ca.pem")), 0o644);
    check_config_accepts(&out);

    let (ca, cert, key) = (
        out.join("ca.pem"),
        out.join("server.pem"),
        out.join("server.key"),
    );
    for name in ["mail.example.org", "127.0.0.1"] {
        let mut client = client_for(&ca, name);
        let mut server = server_for(&cert, &key);
        handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(client.alpn_protocol(), Some(&b"imap"[..]));
    }
    let mut client = client_for(&ca, "other.example.org");
    let error = handshake(&mut client, &mut server_for(&cert, &key)).unwrap_err();
    assert!(error.starts_with("client"), "{error}");
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    generate(out, &["mail.example.org"]);
    let key = out.join("server.key");
    let before = std::fs::read(&key).unwrap();
    let again = portcullis(&[
        "generate",
        "cert",
        "--name",
        "mail.example.org",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let forced = portcullis(&[
        "generate",
        "cert",
        "--force",
        "--name",
        "mail.example.org",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
}

fn openssl(args: &[&str], cwd: &Path) -> Output {
    match Command::new("openssl").args(args).current_dir(cwd).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("openssl is not installed; run scripts/install-test-deps.sh")
        }
        Err(e) => panic!("cannot run openssl: {e}"),
    }
}

#[test]
fn generated_ca_cannot_vouch_for_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    generate(out, &["mail.example.org"]);
    let verify = openssl(&["verify", "-CAfile", "ca.pem", "server.pem"], out);
    assert!(verify.status.success(), "{verify:?}");

    // Anyone holding ca.key signs a certificate for another host...
    let made = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=bank.example.com",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-days",
            "1",
            "-addext",
            "subjectAltName=DNS:bank.example.com",
            "-keyout",
            "evil.key",
            "-out",
            "evil.pem",
        ],
        out,
    );
    assert!(made.status.success(), "{made:?}");
    // ...which neither openssl nor rustls accepts under this CA.
    let verify = openssl(&["verify", "-CAfile", "ca.pem", "evil.pem"], out);
    assert!(
        !verify.status.success(),
        "openssl accepted a certificate outside the CA's names"
    );
    let mut client = client_for(&out.join("ca.pem"), "bank.example.com");
    let error = handshake(
        &mut client,
        &mut server_for(&out.join("evil.pem"), &out.join("evil.key")),
    )
    .unwrap_err();
    assert!(error.starts_with("client"), "{error}");
}

#[test]
fn certs_directory_keeps_keys_out_of_git() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(repo.join("certs/README.md").is_file(), "certs/README.md");
    let in_git = Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(repo)
        .output()
        .is_ok_and(|o| o.status.success());
    if !in_git {
        eprintln!("not a git work tree: .gitignore not checked");
        return;
    }
    let ignored = |path: &str| {
        Command::new("git")
            .args(["check-ignore", "-q", path])
            .current_dir(repo)
            .status()
            .unwrap()
            .success()
    };
    for path in [
        "certs/ca.pem",
        "certs/ca.key",
        "certs/server.pem",
        "certs/server.key",
    ] {
        assert!(ignored(path), "{path} is not ignored by git");
    }
    assert!(!ignored("certs/README.md"));
}
