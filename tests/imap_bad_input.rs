//! Bad input and hostile peers on the IMAP path: each ends in a clear protocol error or a clean
//! close, credentials never leak, and the proxy keeps serving other clients.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use support::dovecot::Dovecot;
use support::fake;
use support::proxy::{dovecot_backend, imap_to_fake, listener, tls_section, TestProxy};
use support::raw::{self, LineClient};

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Proxy with listener 0 = starttls, 1 = implicit, both to Dovecot's plaintext IMAP.
fn proxy_for(dovecot: &Dovecot, extra: &str) -> TestProxy {
    let config = extra.to_string()
        + &tls_section(dovecot)
        + &listener("imap", "imap", "starttls", "dovecot")
        + &listener("imaps", "imap", "implicit", "dovecot")
        + &dovecot_backend("dovecot", dovecot, "imap", "none");
    TestProxy::start(&config)
}

fn login_count(dovecot: &Dovecot) -> usize {
    dovecot.log_contents().matches("Login: user=").count()
}

/// Reads until EOF (or timeout) and returns everything.
fn read_to_close<S: Read>(stream: &mut S) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A normal login + NOOP through the implicit listener: the process still serves.
fn still_serving(proxy: &TestProxy, dovecot: &Dovecot) {
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    assert!(client.read_line().starts_with("* OK"));
    let (_, status) = client.imap(
        "h1",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("h1 OK"), "{status}");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "");
    let mut plain = LineClient::new(tcp(proxy.port(0)));
    plain.read_line();
    let injected = format!(
        "a STARTTLS\r\nb LOGIN {} {}\r\n",
        dovecot.user(),
        dovecot.password()
    );
    plain.send_raw(injected.as_bytes());
    assert!(plain.read_line().starts_with("a OK"));
    let mut client = LineClient::new(raw::tls_over(plain.into_inner(), &dovecot.ca));
    let (_, status) = client.imap("c", "SELECT INBOX");
    assert!(
        !status.starts_with("c OK"),
        "the pipelined LOGIN took effect: {status}"
    );
    assert_eq!(
        login_count(&dovecot),
        0,
        "the pipelined LOGIN reached the backend"
    );
    still_serving(&proxy, &dovecot);
}

#[test]
fn login_before_starttls_is_refused_and_not_forwarded() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "");
    let mut client = LineClient::new(tcp(proxy.port(0)));
    client.read_line();
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a NO [PRIVACYREQUIRED]"), "{status}");
    let (_, status) = client.imap("b", "AUTHENTICATE PLAIN AHVzZXIAcGFzcw==");
    assert!(status.starts_with("b NO [PRIVACYREQUIRED]"), "{status}");
    client.send_line("c LOGIN {4}");
    assert!(client.read_line().starts_with("c NO [PRIVACYREQUIRED]"));
    let (_, status) = client.imap("d", "SELECT INBOX");
    assert!(status.starts_with("d BAD"), "{status}");
    let (_, status) = client.imap("e", "NOOP");
    assert!(status.starts_with("e OK"), "{status}");
    assert_eq!(login_count(&dovecot), 0);
    assert!(
        !dovecot.log_contents().contains("auth failed"),
        "credentials reached the backend"
    );
}

#[test]
fn absurd_literals_and_lines() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "");
    // Overflowing length: fatal, clear BYE.
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    client.send_raw(b"a APPEND INBOX {99999999999999999999}\r\n");
    let rest = read_to_close(client.get_mut());
    assert!(
        rest.starts_with("* BYE") && rest.contains("literal"),
        "{rest}"
    );
    // 4 GiB synchronizing literal: NO [TOOBIG], the session goes on.
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    client.send_line("a APPEND INBOX {4294967296}");
    let status = client.read_line();
    assert!(status.starts_with("a NO [TOOBIG]"), "{status}");
    let (_, status) = client.imap("b", "NOOP");
    assert!(status.starts_with("b OK"), "{status}");
    // 4 GiB non-synchronizing literal: BYE.
    client.send_raw(b"c APPEND INBOX {4294967296+}\r\nxxxx");
    let rest = read_to_close(client.get_mut());
    assert!(rest.starts_with("* BYE"), "{rest}");
    // 10 MB line: BYE, never buffered whole.
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    let mut line = b"a NOOP ".to_vec();
    line.resize(10 * 1024 * 1024, b'x');
    line.extend_from_slice(b"\r\n");
    let _ = client.get_mut().write_all(&line);
    let rest = read_to_close(client.get_mut());
    assert!(rest.starts_with("* BYE") && rest.contains("line"), "{rest}");
    // NUL inside a quoted string: BAD from the proxy, never forwarded; the session goes on.
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    client.send_raw(b"a LOGIN \"us\0er\" pass\r\n");
    let status = client.read_line();
    assert!(status.starts_with("a BAD"), "{status}");
    let (_, status) = client.imap("b", "NOOP");
    assert!(status.starts_with("b OK"), "{status}");
    still_serving(&proxy, &dovecot);
}

#[test]
fn tls_port_refuses_http_and_foreign_alpn() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "");
    let mut http = tcp(proxy.port(1));
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let reply = read_to_close(&mut http);
    assert!(
        !reply.contains("* OK"),
        "greeting sent to an HTTP client: {reply}"
    );
    let handshake = |alpn: Vec<Vec<u8>>| {
        let mut config = (*dovecot.ca.client_config()).clone();
        config.alpn_protocols = alpn;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut stream = rustls::StreamOwned::new(connection, tcp(proxy.port(1)));
        let mut reader = BufReader::new(&mut stream);
        fake::read_line(&mut reader)
    };
    assert!(
        handshake(vec![b"http/1.1".to_vec()]).is_empty(),
        "ALPN http/1.1 accepted"
    );
    assert!(handshake(vec![b"imap".to_vec()]).starts_with("* OK"));
    assert!(handshake(vec![]).starts_with("* OK"));
    still_serving(&proxy, &dovecot);
}

#[test]
fn bytes_injected_by_backend_after_starttls_are_ignored() {
    let ca = support::certs::TestCa::new();
    let tls = fake::tls_config(&ca);
    let port = fake::serve(move |tcp| {
        let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        fake::send(
            &mut writer,
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] fake\r\n",
        );
        let command = fake::read_line(&mut reader);
        let tag = command.split(' ').next().unwrap_or("").to_string();
        fake::send(
            &mut writer,
            format!("{tag} OK Begin TLS\r\n* CAPABILITY IMAP4rev1 INJECTED\r\n").as_bytes(),
        );
        let mut stream = fake::accept_tls(writer, tls.clone());
        let mut reader = BufReader::new(&mut stream);
        loop {
            let line = fake::read_line(&mut reader);
            let Some(tag) = line.split(' ').next().filter(|t| !t.is_empty()) else {
                return;
            };
            let reply = format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n");
            fake::send(reader.get_mut(), reply.as_bytes());
        }
    });
    let proxy = imap_to_fake(&ca, port, "starttls", "");
    let mut client = raw::connect_tls(proxy.port(0), &ca);
    let greeting = client.read_line();
    assert!(
        greeting.starts_with("* OK") && !greeting.contains("INJECTED"),
        "{greeting}"
    );
    let (untagged, status) = client.imap("a", "CAPABILITY");
    let text: String = untagged.iter().map(|r| r.text()).collect();
    assert!(
        status.starts_with("a OK") && text.contains("AUTH=PLAIN") && !text.contains("INJECTED"),
        "{text}"
    );
}

#[test]
fn backend_closing_mid_literal_ends_cleanly() {
    let ca = support::certs::TestCa::new();
    let port = fake::serve(|tcp| {
        let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        fake::send(&mut writer, b"* OK [CAPABILITY IMAP4rev1] fake\r\n");
        loop {
            let line = fake::read_line(&mut reader);
            if line.is_empty() {
                return;
            }
            if line.contains("FETCH") {
                fake::send(
                    &mut writer,
                    b"* 1 FETCH (BODY[] {1000}\r\nSECRET-PARTIAL-BYTES",
                );
                return;
            }
            let tag = line.split(' ').next().unwrap_or("*");
            fake::send(&mut writer, format!("{tag} OK done\r\n").as_bytes());
        }
    });
    let proxy = imap_to_fake(&ca, port, "none", "");
    let mut client = raw::connect_tls(proxy.port(0), &ca);
    client.read_line();
    client.imap("a", "LOGIN u p");
    client.send_line("b FETCH 1 BODY[]");
    let rest = read_to_close(client.get_mut());
    assert!(
        rest.starts_with("* BYE") && !rest.contains("SECRET"),
        "{rest}"
    );
}

#[test]
fn unusable_backends_get_a_clear_bye_and_no_credentials() {
    let dovecot = Dovecot::start();
    // Unreachable port; a backend whose certificate the system roots do not trust.
    // Bound but never listening for the whole test: refused, and nobody else can take it.
    let down = support::ports::ClosedPort::new();
    let closed = down.port();
    let config = tls_section(&dovecot)
        + &listener("down", "imap", "implicit", "down")
        + &listener("untrusted", "imap", "implicit", "untrusted")
        + &format!("[[backend]]\nname = \"down\"\naddress = \"127.0.0.1:{closed}\"\ntls = \"none\"\nconnect_timeout = \"2s\"\n\n")
        + &format!(
            "[[backend]]\nname = \"untrusted\"\naddress = \"127.0.0.1:{}\"\ntls = \"implicit\"\nserver_name = \"localhost\"\n\n",
            dovecot.imaps_port
        );
    let proxy = TestProxy::start(&config);
    for index in 0..2 {
        let mut client = raw::connect_tls(proxy.port(index), &dovecot.ca);
        let rest = read_to_close(client.get_mut());
        assert!(
            rest.starts_with("* BYE [UNAVAILABLE]"),
            "listener {index}: {rest}"
        );
    }
    assert_eq!(login_count(&dovecot), 0);
}

#[test]
fn shutdown_says_bye_to_idle_sessions() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "shutdown_grace = \"5s\"\n");
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    proxy.shutdown();
    let rest = read_to_close(client.get_mut());
    assert!(rest.starts_with("* BYE"), "{rest}");
    // One late connection to the plaintext listener (which would greet at once): the listener
    // closes asynchronously after the shutdown, so whether the connect is refused, or lands in
    // the backlog and is reset when the socket closes, or is accepted and closed, depends on
    // timing. In no case may it be served.
    if let Ok(mut late) = TcpStream::connect(("127.0.0.1", proxy.port(0))) {
        late.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reply = read_to_close(&mut late);
        assert!(
            !reply.starts_with("* OK"),
            "a connection made after shutdown was served: {reply}"
        );
    }
}

/// A fake backend that greets with `greeting` and answers STARTTLS with `starttls_reply`,
/// recording every line it receives.
fn scripted_backend(
    greeting: &'static str,
    starttls_reply: &'static str,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let port = fake::serve(move |tcp| {
        let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        fake::send(&mut writer, greeting.as_bytes());
        loop {
            let line = fake::read_line(&mut reader);
            if line.is_empty() {
                return;
            }
            log.lock().expect("lock").push(line.clone());
            let tag = line.split(' ').next().unwrap_or("*");
            fake::send(&mut writer, starttls_reply.replace("TAG", tag).as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn starttls_backends_that_refuse_preauth_or_babble_get_a_bye() {
    let ca = support::certs::TestCa::new();
    let cases = [
        (
            "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n",
            "TAG NO STARTTLS disabled\r\n",
        ),
        (
            "* PREAUTH [CAPABILITY IMAP4rev1] already logged in\r\n",
            "TAG OK\r\n",
        ),
        ("HTTP/1.1 400 Bad Request\r\n", "TAG OK\r\n"),
    ];
    for (greeting, reply) in cases {
        let (port, seen) = scripted_backend(greeting, reply);
        let proxy = imap_to_fake(&ca, port, "starttls", "");
        let mut client = raw::connect_tls(proxy.port(0), &ca);
        client.send_line("a LOGIN user secret-password");
        let rest = read_to_close(client.get_mut());
        assert!(
            rest.starts_with("* BYE [UNAVAILABLE]"),
            "{greeting}: {rest}"
        );
        let lines = seen.lock().expect("lock").clone();
        assert!(
            lines.iter().all(|l| l.contains("STARTTLS")),
            "{greeting}: backend saw {lines:?}"
        );
    }
}

#[test]
fn prelogin_timeout_closes_idle_unauthenticated_connections() {
    let dovecot = Dovecot::start();
    let config = tls_section(&dovecot)
        + &listener("imaps", "imap", "implicit", "dovecot")
        + &dovecot_backend("dovecot", &dovecot, "imap", "none")
        + "[limits]\nprelogin_timeout = \"1s\"\n";
    let proxy = TestProxy::start(&config);
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    client.read_line();
    let started = std::time::Instant::now();
    let rest = read_to_close(client.get_mut());
    assert!(rest.starts_with("* BYE"), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A command is held whole until it is parsed, so its total size is bounded: several literals
/// that each fit `max_client_literal` but together exceed the command bound end the session with
/// a BYE, and nothing of the command reaches the backend.
#[test]
fn a_command_larger_than_its_bound_is_never_buffered_whole_nor_forwarded() {
    let dovecot = Dovecot::start_with(support::dovecot::DovecotOptions {
        imap_rawlog: true,
        ..Default::default()
    });
    let proxy = proxy_for(
        &dovecot,
        "[limits]\nmax_client_literal = 4096\nmax_line = 1024\n\n",
    );
    let mut client = raw::connect_tls(proxy.port(1), &dovecot.ca);
    client.read_line();
    let (_, status) = client.imap(
        "a",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    assert!(status.starts_with("a OK"), "{status}");
    let (_, status) = client.imap("b", "SELECT INBOX");
    assert!(status.starts_with("b OK"), "{status}");
    let text = "x".repeat(4000);
    let mut command = b"c SEARCH".to_vec();
    for _ in 0..3 {
        command.extend_from_slice(b" TEXT {4000+}\r\n");
        command.extend_from_slice(text.as_bytes());
    }
    command.extend_from_slice(b"\r\n");
    client.send_raw(&command);
    let rest = read_to_close(client.get_mut());
    assert!(
        rest.starts_with("* BYE") && rest.contains("larger than"),
        "{rest}"
    );
    let sessions = dovecot
        .wait_imap_rawlog(dovecot.user(), &[], 1, Duration::from_secs(20))
        .expect("Dovecot's raw log of the session");
    let received: Vec<String> = sessions
        .iter()
        .flat_map(|log| log.commands())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect();
    assert!(
        received.iter().any(|c| c.contains("SELECT")),
        "the raw log shows the session: {received:?}"
    );
    assert!(
        !received.iter().any(|c| c.contains("SEARCH")),
        "the oversized command reached Dovecot: {received:?}"
    );
}
