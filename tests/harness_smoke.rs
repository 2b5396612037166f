//! Proves the integration-test harness: a real Dovecot (IMAP, IMAPS, POP3, STARTTLS, APOP
//! greeting), a real clamd (PING, INSTREAM, restart) and the message corpus verdicts.

mod support;

use std::time::{Duration, Instant};

use support::clamd::{Clamd, ClamdOptions};
use support::corpus::{
    clean_messages, infected_messages, recursion_limit_message, small_clean_messages, EICAR,
};
use support::dovecot::{Dovecot, DovecotOptions};
use support::raw::{connect, connect_tls, tls_over};

fn three_messages() -> Vec<Vec<u8>> {
    small_clean_messages(3)
}

#[test]
fn dovecot_imap_plain_serves_seeded_messages_byte_exact() {
    let started = Instant::now();
    let dovecot = Dovecot::start();
    eprintln!("dovecot startup took {:?}", started.elapsed());
    let seeded: Vec<Vec<u8>> = clean_messages().into_iter().map(|(_, m)| m).collect();
    dovecot.seed_messages(dovecot.user(), &seeded);

    let mut imap = connect(dovecot.imap_port);
    assert!(imap.read_line().starts_with("* OK"));
    let login = format!("LOGIN {} {}", dovecot.user(), dovecot.password());
    let (_, status) = imap.imap("a1", &login);
    assert!(status.starts_with("a1 OK"), "{status}");
    let (untagged, status) = imap.imap("a2", "SELECT INBOX");
    assert!(status.starts_with("a2 OK"), "{status}");
    let exists = format!("* {} EXISTS\r\n", seeded.len());
    assert!(untagged.iter().any(|r| r.text() == exists));
    for (index, expected) in seeded.iter().enumerate() {
        let (untagged, status) = imap.imap("a3", &format!("FETCH {} BODY.PEEK[]", index + 1));
        assert!(status.starts_with("a3 OK"), "{status}");
        assert_eq!(untagged.len(), 1);
        assert!(
            untagged[0].literals[0] == *expected,
            "message {}",
            index + 1
        );
    }
    let (_, status) = imap.imap("a4", "LOGOUT");
    assert!(status.starts_with("a4 OK"));
    dovecot.wait_log("Login: user=<alice>", 1, Duration::from_secs(10));
}

#[test]
fn dovecot_imaps_and_starttls_verify_against_test_ca() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        users: vec![("carol".into(), "carol-pass".into())],
        ..DovecotOptions::default()
    });
    dovecot.add_user("bob", "bob-pass");
    dovecot.seed_messages("bob", &three_messages()[..1]);

    let mut imaps = connect_tls(dovecot.imaps_port, &dovecot.ca);
    assert!(imaps.read_line().starts_with("* OK"));
    let (_, status) = imaps.imap("t1", "LOGIN bob bob-pass");
    assert!(status.starts_with("t1 OK"), "{status}");
    let (untagged, _) = imaps.imap("t2", "SELECT INBOX");
    assert!(untagged.iter().any(|r| r.text() == "* 1 EXISTS\r\n"));

    let mut plain = connect(dovecot.imap_port);
    let greeting = plain.read_line();
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    let (_, status) = plain.imap("s1", "STARTTLS");
    assert!(status.starts_with("s1 OK"), "{status}");
    let mut tls = support::raw::LineClient::new(tls_over(plain.into_inner(), &dovecot.ca));
    let (_, status) = tls.imap("s2", "LOGIN bob bob-pass");
    assert!(status.starts_with("s2 OK"), "{status}");

    dovecot.add_user("bob", "new-pass");
    let mut again = connect(dovecot.imap_port);
    again.read_line();
    let (_, status) = again.imap("r1", "LOGIN bob bob-pass");
    assert!(
        status.starts_with("r1 NO"),
        "old password accepted: {status}"
    );
    let (_, status) = again.imap("r2", "LOGIN bob new-pass");
    assert!(status.starts_with("r2 OK"), "{status}");
    let mut carol = connect(dovecot.imap_port);
    carol.read_line();
    let (_, status) = carol.imap("c1", "LOGIN carol carol-pass");
    assert!(status.starts_with("c1 OK"), "{status}");
}

#[test]
fn dovecot_pop3_greeting_has_apop_timestamp_retr_works_and_stop_closes() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        login_trusted_networks: Some("127.0.0.0/8".into()),
        haproxy: true,
        ..DovecotOptions::default()
    });
    let seeded = three_messages();
    dovecot.seed_messages(dovecot.user(), &seeded);

    let mut pop3 = connect(dovecot.pop3_port);
    let greeting = pop3.read_line();
    let timestamp = greeting.find('<').zip(greeting.rfind('>'));
    assert!(
        greeting.starts_with("+OK") && matches!(timestamp, Some((a, b)) if a < b),
        "no APOP timestamp in {greeting:?}"
    );
    assert!(pop3
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(pop3
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    let total: usize = seeded.iter().map(Vec::len).sum();
    assert_eq!(pop3.pop3("STAT"), format!("+OK 3 {total}"));
    assert!(pop3.pop3("RETR 2").starts_with("+OK"));
    assert_eq!(pop3.read_pop3_multiline(), seeded[1]);
    assert!(pop3.pop3("QUIT").starts_with("+OK"));

    let mut pop3s = connect_tls(dovecot.pop3s_port, &dovecot.ca);
    assert!(pop3s.read_line().starts_with("+OK"));

    let login = format!("LOGIN {} {}", dovecot.user(), dovecot.password());
    let proxied_port = dovecot.imap_haproxy_port.expect("haproxy listener");
    let mut proxied = connect(proxied_port);
    proxied.send_raw(format!("PROXY TCP4 192.0.2.7 127.0.0.1 40000 {proxied_port}\r\n").as_bytes());
    assert!(proxied.read_line().starts_with("* OK"));
    assert!(proxied.imap("p1", &login).1.starts_with("p1 OK"));
    let mut forwarded = connect(dovecot.imap_port);
    forwarded.read_line();
    let id = r#"ID ("x-originating-ip" "198.51.100.9" "x-originating-port" "5555")"#;
    assert!(forwarded.imap("f1", id).1.starts_with("f1 OK"));
    assert!(forwarded.imap("f2", &login).1.starts_with("f2 OK"));
    // Dovecot's processes log through its log process: the line may land after the OK.
    let wait = Duration::from_secs(10);
    dovecot.wait_log("rip=192.0.2.7", 1, wait);
    dovecot.wait_log("rip=198.51.100.9", 1, wait);

    let mut dovecot = dovecot;
    dovecot.stop();
    // Established connections are closed by the stop. (No connect after the stop: the freed
    // port may already belong to another process.)
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(pop3s.get_mut(), &mut rest);
    assert!(
        !matches!(&closed, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "connection still open after stop: {closed:?}"
    );
}

async fn scan(clamd: &Clamd, data: &[u8]) -> String {
    let connection = clamav_client::tokio::Tcp {
        host_address: clamd.host_port(),
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        clamav_client::tokio::scan_buffer(data, connection, Some(64 * 1024)),
    )
    .await
    .expect("clamd timed out")
    .expect("clamd I/O");
    String::from_utf8_lossy(&reply)
        .trim_end_matches(['\0', '\n'])
        .to_string()
}

#[tokio::test]
async fn clamd_verdicts_match_the_corpus() {
    let started = Instant::now();
    let clamd = Clamd::start();
    eprintln!("clamd startup took {:?}", started.elapsed());
    assert!(scan(&clamd, EICAR)
        .await
        .ends_with("Test.EICAR.UNOFFICIAL FOUND"));
    let mut wrong = Vec::new();
    for (name, bytes) in infected_messages() {
        let reply = scan(&clamd, &bytes).await;
        if !reply.ends_with(" FOUND") {
            wrong.push(format!("{name}: {reply}"));
        }
    }
    for (name, bytes) in clean_messages() {
        let reply = scan(&clamd, &bytes).await;
        if reply != "stream: OK" {
            wrong.push(format!("{name}: {reply}"));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    let (_, too_deep) = recursion_limit_message();
    assert_eq!(scan(&clamd, &too_deep).await, "stream: OK");
}

#[tokio::test]
async fn clamd_alert_exceeds_max_flags_too_deep_nesting() {
    let clamd = Clamd::start_with(ClamdOptions {
        alert_exceeds_max: true,
        ..ClamdOptions::default()
    });
    let (_, too_deep) = recursion_limit_message();
    let reply = scan(&clamd, &too_deep).await;
    assert_eq!(
        reply,
        "stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND"
    );
    let (_, clean) = &clean_messages()[9];
    assert_eq!(scan(&clamd, clean).await, "stream: OK");
}

#[tokio::test]
async fn clamd_restart_keeps_port_and_socket() {
    let mut clamd = Clamd::start_with(ClamdOptions {
        stream_max_length: Some("1M".into()),
        ..ClamdOptions::default()
    });
    let (port, socket) = (clamd.port, clamd.unix_path());
    let over_limit = clamd.scan_raw(&vec![b'a'; 2 * 1024 * 1024]);
    assert_eq!(over_limit, "INSTREAM size limit exceeded. ERROR");
    assert_eq!(clamd.scan_raw(EICAR), "stream: Test.EICAR.UNOFFICIAL FOUND");
    clamd.stop();
    assert!(!clamd.ping());
    let started = Instant::now();
    clamd.restart();
    eprintln!("clamd restart took {:?}", started.elapsed());
    assert_eq!((clamd.port, clamd.unix_path()), (port, socket.clone()));
    assert!(clamd.ping());
    let unix = clamav_client::tokio::Socket {
        socket_path: &socket,
    };
    let pong = clamav_client::tokio::ping(unix)
        .await
        .expect("ping over unix");
    assert_eq!(pong, clamav_client::PONG);
}
