//! Real POP3 clients through portcullis in front of a real Dovecot: Python's poplib (implicit
//! TLS and STLS), curl (pop3s:// and pop3:// with --ssl-reqd) and fetchmail pulling a whole
//! mailbox; every message must arrive as seeded.

#[path = "pop3_common/mod.rs"]
mod pop3_common;
mod support;

use std::path::Path;
use std::process::Command;

use pop3_common::*;
use support::corpus::clean_messages;
use support::dovecot::Dovecot;

fn corpus() -> Vec<Vec<u8>> {
    clean_messages().into_iter().map(|(_, m)| m).collect()
}

const POPLIB_SCRIPT: &str = r#"
import poplib, ssl, sys, os
port, mode, ca, user, password, out = sys.argv[1:7]
context = ssl.create_default_context(cafile=ca)
if mode == "implicit":
    pop = poplib.POP3_SSL("localhost", int(port), context=context)
else:
    pop = poplib.POP3("localhost", int(port))
    pop.stls(context=context)
pop.user(user)
pop.pass_(password)
count, _ = pop.stat()
caps = pop.capa()
assert "STLS" not in caps, caps
for n in range(1, count + 1):
    _, lines, _ = pop.retr(n)
    with open(os.path.join(out, "%03d" % n), "wb") as f:
        f.write(b"\r\n".join(lines) + b"\r\n")
pop.quit()
"#;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("client runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &byte) in data.iter().enumerate() {
        if !(byte == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            out.push(byte);
        }
    }
    out
}

fn read_dir_sorted(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn python_poplib_over_implicit_tls_and_stls() {
    let dovecot = Dovecot::start();
    let messages = corpus();
    dovecot.seed_messages(dovecot.user(), &messages);
    for (listener, backend) in [("implicit", "starttls"), ("starttls", "implicit")] {
        let proxy = proxy_for(&dovecot, listener, backend, "");
        let out = tempfile::tempdir().unwrap();
        run(Command::new("python3").args([
            "-c",
            POPLIB_SCRIPT,
            &proxy.port(0).to_string(),
            listener,
            dovecot.ca.ca_pem_path().to_str().unwrap(),
            dovecot.user(),
            dovecot.password(),
            out.path().to_str().unwrap(),
        ]));
        let got = read_dir_sorted(out.path());
        assert_eq!(got.len(), messages.len(), "{listener}");
        for (i, message) in messages.iter().enumerate() {
            assert!(got[i] == *message, "{listener}: message {}", i + 1);
        }
    }
}

#[test]
fn curl_pop3s_and_pop3_with_ssl_reqd() {
    let dovecot = Dovecot::start();
    let messages = corpus();
    dovecot.seed_messages(dovecot.user(), &messages);
    let implicit = proxy_for(&dovecot, "implicit", "none", "");
    let starttls = proxy_for(&dovecot, "starttls", "starttls", "");
    let ca = dovecot.ca.ca_pem_path();
    let credentials = format!("{}:{}", dovecot.user(), dovecot.password());
    for (index, message) in messages.iter().enumerate() {
        let n = index + 1;
        let (scheme, port) = if n % 2 == 0 {
            ("pop3s", implicit.port(0))
        } else {
            ("pop3", starttls.port(0))
        };
        let url = format!("{scheme}://localhost:{port}/{n}");
        let output = Command::new("curl")
            .args(["-sS", "--ssl-reqd", "--cacert", ca.to_str().unwrap()])
            .args(["-u", &credentials, &url])
            .output()
            .expect("curl runs");
        assert!(
            output.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout == *message, "{url}: message differs");
    }
    let listing = run(Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap(), "-u", &credentials])
        .arg(format!("pop3s://localhost:{}/", implicit.port(0))));
    assert_eq!(listing.lines().count(), messages.len(), "{listing}");
}

#[test]
fn fetchmail_pulls_the_whole_mailbox() {
    let dovecot = Dovecot::start();
    let messages = corpus();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = proxy_for(&dovecot, "implicit", "starttls", "");
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let rc = home.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll localhost port {port} proto POP3 user \"{user}\" there password \"{password}\"\n",
            port = proxy.port(0),
            user = dovecot.user(),
            password = dovecot.password(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mda = format!("/bin/sh -c 'cat > {}/msg.$$'", out.display());
    run(Command::new("fetchmail")
        .env("HOME", home.path())
        .args(["-f", rc.to_str().unwrap(), "--nodetach", "--nosyslog"])
        .args(["--ssl", "--sslproto", "TLS1.2+", "--sslcertck"])
        .args(["--sslcertfile", dovecot.ca.ca_pem_path().to_str().unwrap()])
        .args(["--keep", "--all", "--invisible", "--mda", &mda]));
    let mut got = read_dir_sorted(&out);
    // fetchmail hands messages to the MDA with LF line endings.
    let mut expected: Vec<Vec<u8>> = messages.iter().map(|m| crlf_to_lf(m)).collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    for (i, message) in expected.iter().enumerate() {
        assert!(got[i] == *message, "fetchmail message {i} differs");
    }
}
