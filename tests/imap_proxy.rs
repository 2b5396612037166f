//! IMAP relay against a real Dovecot: every listener mode × every backend mode, byte-identical
//! fetches, APPEND with both literal kinds, AUTHENTICATE forms, IDLE, LOGOUT, and a real client.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::dovecot::Dovecot;
use support::proxy::{
    dovecot_backend, listener, tls_section, TestProxy, BACKEND_MODES, LISTENER_MODES,
};
use support::raw::{self, LineClient};

/// Any blocking byte stream (plain or TLS).
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
type Client = LineClient<Box<dyn ReadWrite>>;

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Connects to a proxy listener in `mode`, doing STARTTLS where needed; returns the client and the
/// greeting line(s) seen.
fn connect(port: u16, mode: &str, dovecot: &Dovecot) -> (Client, String) {
    match mode {
        "implicit" => {
            let mut client: Client =
                LineClient::new(Box::new(raw::tls_over(tcp(port), &dovecot.ca)));
            let greeting = client.read_line();
            (client, greeting)
        }
        "starttls" => {
            let mut plain = LineClient::new(tcp(port));
            let greeting = plain.read_line();
            assert!(
                greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"),
                "{greeting}"
            );
            let (_, status) = plain.imap("s0", "STARTTLS");
            assert!(status.starts_with("s0 OK"), "{status}");
            let client: Client =
                LineClient::new(Box::new(raw::tls_over(plain.into_inner(), &dovecot.ca)));
            (client, greeting)
        }
        _ => {
            let mut client: Client = LineClient::new(Box::new(tcp(port)));
            let greeting = client.read_line();
            (client, greeting)
        }
    }
}

fn login(client: &mut Client, dovecot: &Dovecot) {
    let (_, status) = client.imap(
        "l1",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("l1 OK"), "{status}");
}

/// Reads lines until the one tagged `tag`, skipping untagged responses.
fn read_tagged(client: &mut Client, tag: &str) -> String {
    loop {
        let line = client.read_line();
        if line.starts_with(&format!("{tag} ")) {
            return line;
        }
        assert!(
            line.starts_with('*'),
            "unexpected line before {tag}: {line}"
        );
    }
}

fn sasl_plain(user: &str, password: &str) -> String {
    let encoded = support::mime::base64(format!("\0{user}\0{password}").as_bytes());
    String::from_utf8(encoded)
        .expect("ascii")
        .trim_end()
        .to_string()
}

fn fetch_bodies(client: &mut Client, command: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (responses, status) = client.imap("f1", command);
    assert!(status.starts_with("f1 OK"), "{status}");
    let raw = responses.iter().flat_map(|r| r.raw.clone()).collect();
    let literals = responses.iter().flat_map(|r| r.literals.clone()).collect();
    (raw, literals)
}

fn seeded_dovecot() -> (Dovecot, Vec<Vec<u8>>) {
    let dovecot = Dovecot::start();
    let messages: Vec<Vec<u8>> = support::corpus::clean_messages()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    (dovecot, messages)
}

fn matrix_config(dovecot: &Dovecot) -> String {
    let mut toml = tls_section(dovecot);
    for listener_mode in LISTENER_MODES {
        for backend_mode in BACKEND_MODES {
            toml += &listener(
                &format!("{listener_mode}-{backend_mode}"),
                "imap",
                listener_mode,
                backend_mode,
            );
        }
    }
    for backend_mode in BACKEND_MODES {
        toml += &dovecot_backend(backend_mode, dovecot, "imap", backend_mode);
    }
    toml
}

#[test]
fn every_listener_and_backend_mode_relays_byte_exact() {
    let (dovecot, messages) = seeded_dovecot();
    let count = messages.len();
    let proxy = TestProxy::start(&matrix_config(&dovecot));
    let exact = format!("FETCH 1:{count} (RFC822.SIZE BODY.PEEK[])");
    let (direct_raw, direct_bodies) = {
        let mut direct: Client = LineClient::new(Box::new(tcp(dovecot.imap_port)));
        direct.read_line();
        login(&mut direct, &dovecot);
        direct.imap("s1", "EXAMINE INBOX");
        fetch_bodies(&mut direct, &exact)
    };
    assert_eq!(direct_bodies, messages, "Dovecot returns the seeded bytes");
    let mut index = 0;
    for listener_mode in LISTENER_MODES {
        for backend_mode in BACKEND_MODES {
            let port = proxy.port(index);
            index += 1;
            let context = format!("listener {listener_mode} / backend {backend_mode}");
            let (mut client, greeting) = connect(port, listener_mode, &dovecot);
            assert!(greeting.starts_with("* OK"), "{context}: {greeting}");
            let (caps, _) = client.imap("c1", "CAPABILITY");
            let caps = caps[0].text();
            assert!(
                caps.contains("IMAP4rev1")
                    && !caps.contains("STARTTLS")
                    && !caps.contains("LOGINDISABLED"),
                "{context}: {caps}"
            );
            login(&mut client, &dovecot);
            let (_, status) = client.imap("s1", "SELECT INBOX");
            assert!(status.starts_with("s1 OK"), "{context}: {status}");
            let (_, bodies) = fetch_bodies(
                &mut client,
                &format!("FETCH 1:{count} (FLAGS RFC822.SIZE BODY.PEEK[])"),
            );
            assert!(bodies == messages, "{context}: fetched bodies differ");
            let (raw, _) = fetch_bodies(&mut client, &exact);
            assert!(
                raw == direct_raw,
                "{context}: FETCH response not byte-identical to Dovecot's"
            );
            append_both_literal_kinds(&mut client, &context);
            idle_sees_other_sessions_append(&mut client, port, listener_mode, &dovecot, &context);
            let (bye, status) = client.imap("z1", "LOGOUT");
            assert!(
                bye[0].text().starts_with("* BYE") && status.starts_with("z1 OK"),
                "{context}"
            );
            authenticate_forms(port, listener_mode, &dovecot, &context);
        }
    }
}

fn append_both_literal_kinds(client: &mut Client, context: &str) {
    let message = b"From: a@example.org\r\nSubject: sync\r\n\r\nsynchronizing literal\r\n";
    client.send_line(&format!("p1 APPEND INBOX {{{}}}", message.len()));
    let continuation = client.read_line();
    assert!(continuation.starts_with('+'), "{context}: {continuation}");
    client.send_raw(message);
    client.send_raw(b"\r\n");
    let status = read_tagged(client, "p1");
    assert!(status.starts_with("p1 OK"), "{context}: {status}");
    let message = b"From: a@example.org\r\nSubject: plus\r\n\r\nLITERAL+ literal\r\n";
    let mut command = format!("p2 APPEND INBOX {{{}+}}\r\n", message.len()).into_bytes();
    command.extend_from_slice(message);
    command.extend_from_slice(b"\r\n");
    client.send_raw(&command);
    let status = read_tagged(client, "p2");
    assert!(status.starts_with("p2 OK"), "{context}: {status}");
}

fn idle_sees_other_sessions_append(
    client: &mut Client,
    port: u16,
    mode: &str,
    dovecot: &Dovecot,
    context: &str,
) {
    client.send_line("i1 IDLE");
    let idling = client.read_line();
    assert!(idling.starts_with('+'), "{context}: {idling}");
    let (mut other, _) = connect(port, mode, dovecot);
    login(&mut other, dovecot);
    let message = b"Subject: idle\r\n\r\nwake up\r\n";
    let mut command = format!("o1 APPEND INBOX {{{}+}}\r\n", message.len()).into_bytes();
    command.extend_from_slice(message);
    command.extend_from_slice(b"\r\n");
    other.send_raw(&command);
    assert!(
        read_tagged(&mut other, "o1").starts_with("o1 OK"),
        "{context}"
    );
    loop {
        let line = client.read_line();
        if line.contains("EXISTS") {
            break;
        }
        assert!(
            line.starts_with('*'),
            "{context}: unexpected during IDLE: {line}"
        );
    }
    client.send_line("DONE");
    loop {
        let line = client.read_line();
        if line.starts_with("i1 ") {
            assert!(line.starts_with("i1 OK"), "{context}: {line}");
            break;
        }
    }
}

fn authenticate_forms(port: u16, mode: &str, dovecot: &Dovecot, context: &str) {
    let token = sasl_plain(dovecot.user(), dovecot.password());
    let (mut client, _) = connect(port, mode, dovecot);
    let (_, status) = client.imap("a1", &format!("AUTHENTICATE PLAIN {token}"));
    assert!(status.starts_with("a1 OK"), "{context}: SASL-IR: {status}");
    let (mut client, _) = connect(port, mode, dovecot);
    client.send_line("a2 AUTHENTICATE PLAIN");
    let continuation = client.read_line();
    assert!(continuation.starts_with('+'), "{context}: {continuation}");
    client.send_line(&token);
    let status = read_tagged(&mut client, "a2");
    assert!(
        status.starts_with("a2 OK"),
        "{context}: continuation: {status}"
    );
    let (_, status) = client.imap("a3", "SELECT INBOX");
    assert!(status.starts_with("a3 OK"), "{context}: {status}");
}

#[test]
fn python_imaplib_fetches_through_implicit_tls() {
    let (dovecot, messages) = seeded_dovecot();
    let config = tls_section(&dovecot)
        + &listener("imaps", "imap", "implicit", "b")
        + &dovecot_backend("b", &dovecot, "imap", "starttls");
    let proxy = TestProxy::start(&config);
    let script = r#"
import imaplib, ssl, sys, hashlib
ctx = ssl.create_default_context(cafile=sys.argv[2])
m = imaplib.IMAP4_SSL("localhost", int(sys.argv[1]), ssl_context=ctx)
m.login(sys.argv[3], sys.argv[4])
m.select("INBOX", readonly=True)
typ, data = m.search(None, "ALL")
for num in data[0].split():
    typ, msg = m.fetch(num, "(BODY.PEEK[])")
    print(hashlib.sha256(msg[0][1]).hexdigest())
m.logout()
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &proxy.port(0).to_string()])
        .arg(dovecot.ca.ca_pem_path())
        .args([dovecot.user(), dovecot.password()])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "imaplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hashes: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = messages.iter().map(|m| sha256_hex(m)).collect();
    assert_eq!(hashes, expected);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
