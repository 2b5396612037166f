//! Hostile and broken peers: each case ends in a clear `-ERR` or a close, and the proxy keeps
//! serving new sessions afterwards. Real Dovecot where a backend is needed, in-process fake
//! backends for backends that misbehave.

#[path = "pop3_common/mod.rs"]
mod pop3_common;
mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pop3_common::*;
use support::dovecot::Dovecot;
use support::raw::{tls_over, LineClient};

/// Reads one line byte by byte (nothing beyond it is consumed).
fn read_line_unbuffered(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(stream.read(&mut byte).expect("read"), 1, "EOF");
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// Reads what is left until the peer closes; `Err` only on timeout.
fn read_until_closed(stream: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(all),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&all))),
        }
    }
}

fn still_serving(port: u16) {
    let (mut client, greeting) = plain(port);
    assert!(greeting.starts_with("+OK"), "{greeting}");
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn stls_discards_pipelined_user() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "starttls", "none", "");
    let mut tcp = raw_tcp(proxy.port(0));
    assert!(read_line_unbuffered(&mut tcp).starts_with("+OK"));
    let injected = format!("STLS\r\nUSER {}\r\n", dovecot.user());
    tcp.write_all(injected.as_bytes()).unwrap();
    assert_eq!(read_line_unbuffered(&mut tcp), "+OK Begin TLS negotiation");
    let mut client = LineClient::new(tls_over(tcp, &dovecot.ca));
    let reply = client.pop3(&format!("PASS {}", dovecot.password()));
    assert!(
        reply.starts_with("-ERR"),
        "USER reached the backend: {reply}"
    );
    login(&mut client, dovecot.user(), dovecot.password());
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn logins_before_tls_are_refused_and_never_forwarded() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "starttls", "starttls", "");
    let mut tcp = raw_tcp(proxy.port(0));
    assert!(read_line_unbuffered(&mut tcp).starts_with("+OK"));
    tcp.write_all(b"CAPA\r\n").unwrap();
    let mut capa = Vec::new();
    loop {
        let line = read_line_unbuffered(&mut tcp);
        if line == "." {
            break;
        }
        capa.push(line);
    }
    assert!(capa.iter().any(|l| l == "STLS"), "{capa:?}");
    assert!(
        !capa.iter().any(|l| l == "USER" || l.starts_with("SASL")),
        "{capa:?}"
    );
    let password = dovecot.password();
    for command in [
        format!("USER {}", dovecot.user()),
        format!("PASS {password}"),
        format!("APOP {} 0123456789abcdef0123456789abcdef", dovecot.user()),
        "AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQtUGFzczE=".to_string(),
        "AUTH PLAIN".to_string(),
    ] {
        tcp.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        let reply = read_line_unbuffered(&mut tcp);
        assert!(
            reply.starts_with("-ERR [AUTH] TLS required"),
            "{command}: {reply}"
        );
    }
    tcp.write_all(b"STLS\r\n").unwrap();
    assert!(read_line_unbuffered(&mut tcp).starts_with("+OK"));
    let mut client = LineClient::new(tls_over(tcp, &dovecot.ca));
    let reply = client.pop3(&format!("PASS {password}"));
    assert!(
        reply.starts_with("-ERR"),
        "USER reached the backend: {reply}"
    );
    assert!(
        client.pop3("STLS").starts_with("-ERR"),
        "no STLS inside TLS"
    );
    login(&mut client, dovecot.user(), password);
    assert!(client.pop3("QUIT").starts_with("+OK"));
    assert!(!dovecot.log_contents().contains("0123456789abcdef"));
}

#[test]
fn megabyte_command_line_is_refused_and_closed() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "none", "none", "");
    let mut tcp = raw_tcp(proxy.port(0));
    read_line_unbuffered(&mut tcp);
    let mut writer = tcp.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let line = vec![b'A'; 1024 * 1024];
        let _ = writer.write_all(&line);
        let _ = writer.write_all(b"\r\n");
    });
    let rest = read_until_closed(&mut tcp).expect("proxy must close");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.is_empty() || text.starts_with("-ERR"), "{text}");
    flood.join().unwrap();
    still_serving(proxy.port(0));
}

#[test]
fn unknown_commands_are_refused_by_the_proxy() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "implicit", "none", "");
    let (mut client, _) = connect_mode(proxy.port(0), "implicit", &dovecot.ca);
    for command in ["XYZZY", "FOO bar baz"] {
        let reply = client.pop3(command);
        assert!(reply.starts_with("-ERR"), "{command}: {reply}");
    }
    login(&mut client, dovecot.user(), dovecot.password());
    assert!(client.pop3("XYZZY").starts_with("-ERR"));
    assert!(client.pop3("LIST LIST LIST").starts_with("-ERR"));
    assert!(client.pop3("NOOP").starts_with("+OK"));
    assert!(client.pop3("QUIT").starts_with("+OK"));
    // Before login the proxy answers alone; `max_errors` (10) bad commands close the connection.
    let (mut client, _) = connect_mode(proxy.port(0), "implicit", &dovecot.ca);
    client.send_raw(b"XYZZY\r\n".repeat(10).as_slice());
    let rest = read_until_closed(client.get_mut()).expect("closed");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.lines().all(|l| l.starts_with("-ERR")), "{text}");
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(
        text.ends_with("-ERR [SYS/PERM] too many errors\r\n"),
        "{text}"
    );
    let (mut client, greeting) = connect_mode(proxy.port(0), "implicit", &dovecot.ca);
    assert!(greeting.starts_with("+OK"));
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn ten_thousand_pipelined_commands_in_bounded_memory() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "none", "none", "max_pipeline = 16");
    let mut client = support::raw::connect(proxy.port(0));
    client.read_line();
    login(&mut client, dovecot.user(), dovecot.password());
    let rss_before = rss_kib();
    let mut writer = client.get_mut().try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let batch = "NOOP\r\n".repeat(10_000);
        writer.write_all(batch.as_bytes()).unwrap();
    });
    for i in 0..10_000 {
        let reply = client.read_line();
        assert!(reply.starts_with("+OK"), "reply {i}: {reply}");
    }
    sender.join().unwrap();
    assert!(client.pop3("QUIT").starts_with("+OK"));
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    still_serving(proxy.port(0));
}

#[test]
fn idle_client_before_login_is_timed_out() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "none", "none", "prelogin_timeout = \"1s\"");
    let started = Instant::now();
    let (mut client, _) = plain(proxy.port(0));
    let reply = client.read_line();
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    still_serving(proxy.port(0));
}

#[test]
fn shutdown_sends_notice_to_idle_session() {
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "none", "none", "");
    let (mut client, _) = plain(proxy.port(0));
    login(&mut client, dovecot.user(), dovecot.password());
    proxy.shutdown();
    let reply = client.read_line();
    assert_eq!(reply, "-ERR [SYS/TEMP] server shutting down");
}

/// CAPA of the fake backend: no PIPELINING, its own STLS, a channel-binding mechanism.
const FAKE_CAPA: &[u8] = b"+OK\r\nUSER\r\nSTLS\r\nTOP\r\nSASL PLAIN SCRAM-SHA-256-PLUS\r\n.\r\n";

/// A fake POP3 backend answering CAPA with [`FAKE_CAPA`], every other command `+OK`, and RETR
/// with `retr`'s bytes, after which it closes. Serves any number of connections.
fn fake_backend(retr: fn(&mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let _ = writer.write_all(b"+OK fake ready\r\n");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if line.starts_with("RETR") {
                        retr(&mut writer);
                        return;
                    }
                    let answer: &[u8] = if line == "CAPA" {
                        FAKE_CAPA
                    } else {
                        b"+OK\r\n"
                    };
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// portcullis (plaintext both sides) in front of a fake backend; the directory holds its
/// certificate files and must outlive it.
fn fake_proxy(address: &str, limits: &str) -> (TestProxy, tempfile::TempDir) {
    let dummy_ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    dummy_ca.write_to(dir.path());
    let proxy = TestProxy::start(&config_text(&dummy_ca, "none", "none", address, limits));
    (proxy, dir)
}

fn retr_through_fake(proxy: &TestProxy) -> String {
    let (mut client, _) = plain(proxy.port(0));
    login(&mut client, "u", "p");
    client.send_line("RETR 1");
    let stream = client.get_mut();
    let rest = read_until_closed(stream).expect("proxy must close");
    String::from_utf8_lossy(&rest).to_string()
}

#[test]
fn endless_backend_response_is_cut_off() {
    let address = fake_backend(|writer| {
        let _ = writer.write_all(b"+OK message follows\r\n");
        let line = b"endless line of a message that never ends\r\n".repeat(100);
        while writer.write_all(&line).is_ok() {}
    });
    let (proxy, _dir) = fake_proxy(&address, "max_backend_literal = 1048576");
    let rest = retr_through_fake(&proxy);
    assert!(rest.starts_with("-ERR [SYS/TEMP]"), "{rest:.200}");
    assert!(
        !rest.contains("endless"),
        "no partial message reaches the client"
    );
    still_serving(proxy.port(0));
}

#[test]
fn backend_closing_mid_retr_closes_client_cleanly() {
    let address = fake_backend(|writer| {
        let _ = writer.write_all(b"+OK message follows\r\nSubject: half\r\n\r\nhalf a bo");
    });
    let (proxy, _dir) = fake_proxy(&address, "");
    let rest = retr_through_fake(&proxy);
    assert_eq!(
        rest,
        "-ERR [SYS/TEMP] mail server closed the connection\r\n"
    );
    still_serving(proxy.port(0));
}

#[test]
fn backend_capa_is_filtered_and_pipelining_not_invented() {
    let address = fake_backend(|_| {});
    let (proxy, _dir) = fake_proxy(&address, "");
    let (mut client, _) = plain(proxy.port(0));
    let (_, capa) = multiline(&mut client, "CAPA");
    // Allow-listed: the backend's STLS goes, SASL lists what the proxy runs itself.
    assert_eq!(capa, b"USER\r\nTOP\r\nSASL PLAIN LOGIN\r\n.\r\n");
    assert!(client.pop3("QUIT").starts_with("+OK"));
}
