//! "Parse, then forward" on POP3 against a real Dovecot and clamd: what Dovecot receives
//! (its `rawlog_dir` `.in` file) is exactly the canonical commands the proxy accepted, in order
//! (`TOP n m` as `RETR n`, `STAT` as `LIST`), plus the proxy's own `UIDL` before the first
//! `LIST`/`STAT` (issue 9: sizes shown as what RETR serves);
//! pre-login bytes, garbage and the client's own XCLIENT never reach it; AUTH PLAIN with a
//! pipelined RETR, AUTH LOGIN and APOP log in and RETR returns the scanned message.

#[path = "pop3_common/mod.rs"]
mod pop3_common;
mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use pop3_common::*;
use support::clamd::Clamd;
use support::corpus::{self, EICAR};
use support::dovecot::{Dovecot, DovecotOptions};
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};

const PLAIN_IR: &str = "AGFsaWNlAHdvbmRlcmxhbmQtUGFzczE="; // \0alice\0wonderland-Pass1

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// portcullis (plaintext client side, plaintext backend) scanning with `clamd`.
fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let config = tls_section(dovecot)
        + &format!(
            "[scan]\nclamd = [{:?}]\ntimeout = \"5s\"\nquarantine_dir = {:?}\n\n",
            clamd.tcp_addr(),
            quarantine.display().to_string()
        )
        + &listener("pop3", "pop3", "none", "pop3")
        + &dovecot_backend("pop3", dovecot, "pop3", "none")
        + "[limits]\nmax_errors = 50\n";
    TestProxy::start(&config)
}

/// Waits until Dovecot has written `sessions` rawlog sessions for alice, the last ending in QUIT.
fn rawlog(dovecot: &Dovecot, sessions: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = dovecot.rawlog_in(dovecot.user());
        let done = logs.len() == sessions
            && logs
                .last()
                .is_some_and(|l| l.last().is_some_and(|q| q == "QUIT"));
        if done {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "rawlog incomplete: {logs:?}\n{}",
            dovecot.log_contents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a status line and, if it is `+OK`, the multi-line body (unstuffed).
fn status_and_body(client: &mut Client) -> (String, Vec<u8>) {
    let status = client.read_line();
    let body = if status.starts_with("+OK") {
        client.read_pop3_multiline()
    } else {
        Vec::new()
    };
    (status, body)
}

#[test]
fn only_canonical_accepted_commands_reach_dovecot() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        rawlog: true,
        login_trusted_networks: Some("127.0.0.0/8".into()),
        ..DovecotOptions::default()
    });
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let infected = corpus::infected_messages()
        .into_iter()
        .find(|(name, _)| name == "infected-eicar-attachment")
        .expect("eicar message")
        .1;
    let mut messages = vec![infected.clone()];
    messages.extend(corpus::small_clean_messages(2));
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());

    let (mut client, greeting) = plain(proxy.port(0));
    assert!(greeting.starts_with("+OK"), "{greeting}");
    for garbage in [
        &b"XCLIENT ADDR=203.0.113.9\r\n"[..],
        b"TOP 1 0\0\r\n",
        b"RETR 1 x\r\n",
        b"NOOP\r\n",
    ] {
        client.send_raw(garbage);
        let reply = client.read_line();
        assert!(reply.starts_with("-ERR"), "{garbage:?}: {reply}");
    }
    // AUTH with an initial response and a pipelined RETR: the RETR is a command after login.
    client.send_raw(format!("AUTH PLAIN {PLAIN_IR}\r\nRETR 1\r\n").as_bytes());
    let reply = client.read_line();
    assert!(reply.starts_with("+OK"), "AUTH PLAIN: {reply}");
    let (status, body) = status_and_body(&mut client);
    assert!(status.starts_with("+OK"), "RETR 1: {status}");
    assert!(
        !contains(&body, EICAR) && body != infected,
        "the pipelined RETR returned the unscanned original"
    );
    for garbage in [
        &b"TOP 1 0\0\r\n"[..],
        b"TOP 1 0 \r\n",
        b"RETR 1 x\r\n",
        b"retr  1\r\n",
        b"RETR +2\r\n",
        b"RETR 0\r\n",
        b"RETR 99999999999999\r\n",
        b"XCLIENT ADDR=203.0.113.9\r\n",
        b"USER bob\r\n",
        b"DELE 1\x01\r\n",
    ] {
        client.send_raw(garbage);
        let reply = client.read_line();
        assert!(reply.starts_with("-ERR"), "{garbage:?}: {reply}");
    }
    assert!(client.pop3("list 2").starts_with("+OK 2 "));
    client.send_line("top 2 0");
    let (status, _) = status_and_body(&mut client);
    assert!(status.starts_with("+OK"), "{status}");
    client.send_line("Top 2 1");
    let (status, body) = status_and_body(&mut client);
    assert!(status.starts_with("+OK") && !body.is_empty(), "{status}");
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let logs = rawlog(&dovecot, 1);
    // TOP n m reaches Dovecot as RETR n, TOP n 0 included (issue 9: it is scanned too); the
    // proxy's own UIDL goes before the first LIST.
    assert_eq!(
        logs[0],
        ["RETR 1", "UIDL", "LIST 2", "RETR 2", "RETR 2", "QUIT"],
        "Dovecot received other bytes than the canonical accepted commands"
    );
    let log = dovecot.log_contents();
    assert!(!log.contains("203.0.113.9"), "{log}");

    // AUTH LOGIN and APOP log in too.
    let (mut client, _) = plain(proxy.port(0));
    assert_eq!(client.pop3("AUTH LOGIN"), "+ VXNlcm5hbWU6");
    assert_eq!(client.pop3("YWxpY2U="), "+ UGFzc3dvcmQ6");
    let reply = client.pop3("d29uZGVybGFuZC1QYXNzMQ==");
    assert!(reply.starts_with("+OK"), "AUTH LOGIN: {reply}");
    assert!(client.pop3("STAT").starts_with("+OK 3 "));
    assert!(client.pop3("QUIT").starts_with("+OK"));
    rawlog(&dovecot, 2);

    let (mut client, greeting) = plain(proxy.port(0));
    let timestamp = apop_timestamp(&greeting).expect("APOP timestamp from Dovecot");
    let digest = md5_hex(&format!("{timestamp}{}", dovecot.password()));
    let reply = client.pop3(&format!(
        "APOP {} {}",
        dovecot.user(),
        digest.to_uppercase()
    ));
    assert!(reply.starts_with("+OK"), "APOP: {reply}");
    assert!(client.pop3("QUIT").starts_with("+OK"));
    let logs = rawlog(&dovecot, 3);
    assert_eq!(
        logs[1],
        ["UIDL", "LIST", "QUIT"],
        "STAT is answered from LIST"
    );
    assert_eq!(logs[2], ["QUIT"]);
}

/// With `login_trusted_networks` covering the proxy, Dovecot would believe a forwarded XCLIENT.
/// The client's own is refused before and after login, never forwarded nor advertised, and the
/// proxy's own forwarding (here of the connection's real address) is what Dovecot logs.
#[test]
fn client_xclient_is_refused_and_never_reaches_dovecot() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        login_trusted_networks: Some("127.0.0.0/8".into()),
        ..DovecotOptions::default()
    });
    for forward in ["none", "xclient"] {
        let config = tls_section(&dovecot)
            + &listener("pop3", "pop3", "none", "pop3")
            + &dovecot_backend("pop3", &dovecot, "pop3", "none")
            + &format!("forward_client_ip = {forward:?}\n");
        let proxy = TestProxy::start(&config);
        let (mut client, _) = plain(proxy.port(0));
        let (_, capa) = multiline(&mut client, "CAPA");
        assert!(!String::from_utf8_lossy(&capa).contains("XCLIENT"));
        for command in [
            "XCLIENT ADDR=203.0.113.9",
            "xclient ADDR=203.0.113.9 PORT=1",
        ] {
            let reply = client.pop3(command);
            assert!(reply.starts_with("-ERR"), "{forward}: {reply}");
        }
        login(&mut client, dovecot.user(), dovecot.password());
        let reply = client.pop3("XCLIENT ADDR=203.0.113.9");
        assert!(reply.starts_with("-ERR"), "{forward}: {reply}");
        let (_, capa) = multiline(&mut client, "CAPA");
        assert!(!String::from_utf8_lossy(&capa).contains("XCLIENT"));
        assert!(client.pop3("QUIT").starts_with("+OK"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dovecot
        .log_contents()
        .matches("Login: user=<alice>")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{}", dovecot.log_contents());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = dovecot.log_contents();
    assert!(log.contains("rip=127.0.0.1"), "{log}");
    assert!(
        !log.contains("rip=203.0.113.9"),
        "spoofed address believed:\n{log}"
    );
}

/// A client that sends its whole pre-login script and a login in one write before reading:
/// nothing but the proxy's serialised login reaches Dovecot (it would reject the garbage).
#[test]
fn pipelined_pre_login_garbage_is_answered_locally() {
    let dovecot = Dovecot::start();
    let config = tls_section(&dovecot)
        + &listener("pop3", "pop3", "none", "pop3")
        + &dovecot_backend("pop3", &dovecot, "pop3", "none");
    let proxy = TestProxy::start(&config);
    let mut tcp = raw_tcp(proxy.port(0));
    let script = format!(
        "CAPA\r\nXYZZY\r\nUSER x\0y\r\nUSER {user}\r\nPASS {password}\r\nSTAT\r\nQUIT\r\n",
        user = dovecot.user(),
        password = dovecot.password()
    );
    let mut greeting = [0u8; 3];
    tcp.read_exact(&mut greeting).unwrap();
    tcp.write_all(script.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = tcp.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let statuses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("+OK") || l.starts_with("-ERR"))
        .map(|l| if l.starts_with("+OK") { "+OK" } else { "-ERR" })
        .collect();
    // CAPA, XYZZY, bad USER, USER, PASS, STAT, QUIT (the greeting's "+OK" was read already).
    assert_eq!(
        statuses,
        ["+OK", "-ERR", "-ERR", "+OK", "+OK", "+OK", "+OK"],
        "{text}"
    );
    assert!(text.contains("+OK 0 0"), "{text}");
}
