//! Scanning on the POP3 path with a real clamd and a real Dovecot: RETR and TOP never deliver a
//! byte of a blocked message, clean mail is byte-identical, the replacement is the same one IMAP
//! serves, and a scanner outage answers `-ERR [SYS/TEMP]`.

mod support;

use support::clamd::Clamd;
use support::corpus::{self, EICAR};
use support::dovecot::Dovecot;
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use support::raw::{self, LineClient, TlsStream};

type Client = LineClient<TlsStream>;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let config = tls_section(dovecot)
        + &format!(
            "[scan]\nclamd = [{:?}]\ntimeout = \"5s\"\nquarantine_dir = {:?}\n\n",
            clamd.tcp_addr(),
            quarantine.display().to_string()
        )
        + &listener("pop3s", "pop3", "implicit", "pop3")
        + &listener("imaps", "imap", "implicit", "imap")
        + &dovecot_backend("pop3", dovecot, "pop3", "none")
        + &dovecot_backend("imap", dovecot, "imap", "none");
    TestProxy::start(&config)
}

fn pop3_login(port: u16, dovecot: &Dovecot) -> Client {
    let mut client = raw::connect_tls(port, &dovecot.ca);
    assert!(client.read_line().starts_with("+OK"));
    assert!(client
        .pop3(&format!("USER {}", dovecot.user()))
        .starts_with("+OK"));
    assert!(client
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    client
}

/// RETR or TOP: (status line, unstuffed body if +OK).
fn retrieve(client: &mut Client, command: &str) -> (String, Vec<u8>) {
    let status = client.pop3(command);
    let body = if status.starts_with("+OK") {
        client.read_pop3_multiline()
    } else {
        Vec::new()
    };
    (status, body)
}

#[test]
fn retr_and_top_never_deliver_infected_content() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let infected: Vec<Vec<u8>> = corpus::infected_messages()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let clean: Vec<Vec<u8>> = corpus::clean_messages()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    dovecot.seed_messages(dovecot.user(), &infected);
    dovecot.seed_messages(dovecot.user(), &clean);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = pop3_login(proxy.port(0), &dovecot);
    for (index, original) in infected.iter().enumerate() {
        let n = index + 1;
        let (status, body) = retrieve(&mut client, &format!("RETR {n}"));
        assert!(status.starts_with("+OK"), "RETR {n}: {status}");
        assert!(
            !contains(&body, EICAR) && body != *original,
            "RETR {n} delivered the original"
        );
        assert_eq!(
            clamd.scan_raw(&body),
            "stream: OK",
            "RETR {n}: delivered bytes not clean"
        );
        let (status, head) = retrieve(&mut client, &format!("TOP {n} 5"));
        assert!(status.starts_with("+OK"), "TOP {n}: {status}");
        assert!(
            body.starts_with(&head),
            "TOP {n} is not the head of the replacement"
        );
        assert_eq!(clamd.scan_raw(&head), "stream: OK");
    }
    let originals: Vec<Vec<u8>> = std::fs::read_dir(quarantine.path())
        .expect("quarantine")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    for original in &infected {
        assert!(
            originals.contains(original),
            "an original is missing from the quarantine"
        );
    }
    for (index, original) in clean.iter().enumerate() {
        let n = infected.len() + index + 1;
        let (_, body) = retrieve(&mut client, &format!("RETR {n}"));
        assert!(body == *original, "clean RETR {n} altered");
    }
    // The replacement is deterministic: IMAP serves exactly the same bytes for the same message.
    let (_, pop3_replacement) = retrieve(&mut client, "RETR 1");
    let mut imap = raw::connect_tls(proxy.port(1), &dovecot.ca);
    imap.read_line();
    imap.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    imap.imap("s", "EXAMINE INBOX");
    let (responses, status) = imap.imap("f", "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK"), "{status}");
    assert!(
        responses[0].literals[0] == pop3_replacement,
        "IMAP and POP3 replacements differ"
    );
}

#[test]
fn scanner_outage_answers_sys_temp_and_the_session_goes_on() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let clean = corpus::clean_messages()[1].1.clone();
    dovecot.seed_messages(
        dovecot.user(),
        &[clean.clone(), corpus::infected_messages()[0].1.clone()],
    );
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = pop3_login(proxy.port(0), &dovecot);
    clamd.stop();
    let (status, _) = retrieve(&mut client, "RETR 2");
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    let (status, _) = retrieve(&mut client, "TOP 2 3");
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    // TOP n 0 is scanned like every retrieval (issue 9: a header is content too).
    let (status, _) = retrieve(&mut client, "TOP 2 0");
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    assert!(client.pop3("NOOP").starts_with("+OK"));
    clamd.restart();
    let (status, body) = retrieve(&mut client, "RETR 1");
    assert!(status.starts_with("+OK") && body == clean, "{status}");
    assert!(client.pop3("QUIT").starts_with("+OK"));
}
