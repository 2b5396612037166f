//! Scanning on the POP3 path with a real clamd and a real Dovecot: RETR and TOP never deliver a
//! byte of a blocked message, clean mail is byte-identical, the replacement is the same one IMAP
//! serves, and a scanner outage answers `-ERR [SYS/TEMP]`.

mod support;

use support::clamd::Clamd;
use support::corpus::{self, EICAR};
use support::dovecot::Dovecot;
use support::proxy::TestProxy;
use support::raw;
use support::scanning::{
    clamd_endpoint, contains, pop3_login, quarantined, retrieve, scan_section, start_proxy,
};

/// The proxy under test: POP3S on `port(0)`, IMAPS on `port(1)`.
fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "");
    start_proxy(dovecot, &scan, &["pop3", "imap"])
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
    let originals = quarantined(quarantine.path());
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
