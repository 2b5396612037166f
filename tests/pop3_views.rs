//! POP3 views against a real Dovecot and a real clamd (issue 9, item 2): once a message's
//! disposition is known, `LIST n`, `LIST` and `STAT` give the octets `RETR` serves (RFC 1939 §5)
//! and `UIDL` the backend's unique-id (RFC 1939 §7) — in the session that scanned it and in
//! later ones (the cache is asked by unique-id). Before the first scan the original sizes show;
//! with `scan_on_structure = true` the first `LIST` already gives the served sizes.

mod support;

use support::clamd::Clamd;
use support::corpus::{self, EICAR};
use support::dovecot::Dovecot;
use support::proxy::TestProxy;
use support::scanning::{
    clamd_endpoint, contains, pop3_login, quarantined, retrieve, scan_section, start_proxy, Client,
};

/// Two EICAR messages, then a clean one.
fn maildrop() -> Vec<Vec<u8>> {
    let infected = corpus::infected_messages();
    vec![
        infected[0].1.clone(),
        infected[1].1.clone(),
        corpus::clean_messages()[0].1.clone(),
    ]
}

fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path, extra: &str) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, extra);
    start_proxy(dovecot, &scan, &["pop3"])
}

/// `+OK` then a multi-line body as text.
fn listing(client: &mut Client, command: &str) -> String {
    let status = client.pop3(command);
    assert!(status.starts_with("+OK"), "{command}: {status}");
    String::from_utf8(client.read_pop3_multiline()).expect("ASCII listing")
}

/// `(msgno, size)` of a `LIST` body.
fn sizes(body: &str) -> Vec<(u32, u64)> {
    body.lines()
        .map(|line| {
            let (n, size) = line.split_once(' ').expect("msgno SP size");
            (n.parse().expect("msgno"), size.parse().expect("size"))
        })
        .collect()
}

/// The two numbers of a `+OK a b` line (`STAT`, `LIST n`).
fn pair(line: &str) -> (u64, u64) {
    let mut words = line.split(' ').skip(1).map(|w| w.parse().expect("number"));
    (words.next().expect("first"), words.next().expect("second"))
}

/// What the views say in one session: `LIST n` for each message, `LIST`, `STAT`, `UIDL`.
#[derive(Debug, PartialEq, Eq)]
struct Views {
    list_each: Vec<(u32, u64)>,
    list: Vec<(u32, u64)>,
    stat: (u64, u64),
    uidl: String,
}

fn views(client: &mut Client, count: u32) -> Views {
    let list_each = (1..=count)
        .map(|n| {
            let (msgno, size) = pair(&client.pop3(&format!("LIST {n}")));
            (u32::try_from(msgno).expect("msgno"), size)
        })
        .collect();
    Views {
        list_each,
        list: sizes(&listing(client, "LIST")),
        stat: pair(&client.pop3("STAT")),
        uidl: listing(client, "UIDL"),
    }
}

/// The views agree with `served` (the octets RETR gave for each message, in order).
fn assert_agree(views: &Views, served: &[u64], label: &str) {
    let expected: Vec<(u32, u64)> = (1..).zip(served.iter().copied()).collect();
    assert_eq!(views.list_each, expected, "{label}: LIST n");
    assert_eq!(views.list, expected, "{label}: LIST");
    let total = served.iter().sum::<u64>();
    assert_eq!(views.stat, (served.len() as u64, total), "{label}: STAT");
}

#[test]
fn after_retr_every_view_agrees_with_what_retr_served_in_this_and_later_sessions() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = maildrop();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path(), "");
    let mut direct = pop3_login(dovecot.pop3s_port, &dovecot);
    let original = views(&mut direct, 3);
    assert!(direct.pop3("QUIT").starts_with("+OK"));

    let mut client = pop3_login(proxy.port(0), &dovecot);
    // Before the first scan: the backend's values, exactly.
    let before = views(&mut client, 3);
    assert_eq!(before, original, "before any scan");
    let mut served = Vec::new();
    for n in 1..=3 {
        let (status, body) = retrieve(&mut client, &format!("RETR {n}"));
        assert!(status.starts_with("+OK"), "RETR {n}: {status}");
        assert!(!contains(&body, EICAR), "RETR {n} delivered EICAR");
        let octets = body.len() as u64;
        if n < 3 {
            assert!(
                status.starts_with(&format!("+OK {octets} octets")),
                "{status}"
            );
            assert_ne!(
                octets,
                original.list[n as usize - 1].1,
                "RETR {n} not replaced"
            );
        } else {
            assert_eq!(
                octets, original.list[2].1,
                "the clean message as Dovecot lists it"
            );
        }
        served.push(octets);
    }
    assert_eq!(quarantined(quarantine.path()).len(), 2);
    let after = views(&mut client, 3);
    assert_agree(&after, &served, "after RETR");
    // The blocked messages keep their unique-ids (RFC 1939 §7).
    assert_eq!(after.uidl, original.uidl, "UIDL after RETR");
    assert!(client.pop3("QUIT").starts_with("+OK"));

    // A later session finds the dispositions in the cache by unique-id, before any RETR.
    let mut client = pop3_login(proxy.port(0), &dovecot);
    let later = views(&mut client, 3);
    assert_agree(&later, &served, "next session");
    assert_eq!(later.uidl, original.uidl, "UIDL next session");
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn scan_on_structure_lists_served_sizes_before_any_retr() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages = maildrop();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(
        &dovecot,
        &clamd,
        quarantine.path(),
        "scan_on_structure = true",
    );
    let mut direct = pop3_login(dovecot.pop3s_port, &dovecot);
    let original = sizes(&listing(&mut direct, "LIST"));
    assert!(direct.pop3("QUIT").starts_with("+OK"));

    let mut client = pop3_login(proxy.port(0), &dovecot);
    // The very first command: the proxy scanned every message before answering.
    let list = sizes(&listing(&mut client, "LIST"));
    assert_eq!(
        quarantined(quarantine.path()).len(),
        2,
        "both EICAR scanned"
    );
    assert_ne!(list[0], original[0]);
    assert_ne!(list[1], original[1]);
    assert_eq!(list[2], original[2], "the clean message keeps its size");
    let stat = pair(&client.pop3("STAT"));
    assert_eq!(stat, (3, list.iter().map(|&(_, s)| s).sum::<u64>()));
    for &(n, size) in &list {
        let (status, body) = retrieve(&mut client, &format!("RETR {n}"));
        assert!(status.starts_with("+OK"), "RETR {n}: {status}");
        assert_eq!(body.len() as u64, size, "RETR {n} serves what LIST said");
    }
    assert!(client.pop3("QUIT").starts_with("+OK"));
}
