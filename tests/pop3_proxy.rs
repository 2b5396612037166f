//! POP3 through portcullis against a real Dovecot: every listener mode × backend mode, logins
//! (USER/PASS, AUTH PLAIN both ways, APOP), the transaction commands compared byte for byte with
//! Dovecot answering directly, DELE semantics and a PIPELINING batch.

#[path = "pop3_common/mod.rs"]
mod pop3_common;
mod support;

use std::io::{Read, Write};
use std::time::Instant;

use pop3_common::*;
use support::corpus::{clean_messages, small_clean_messages};
use support::dovecot::Dovecot;
use support::raw::{connect, LineClient};

const PLAIN_IR: &str = "AGFsaWNlAHdvbmRlcmxhbmQtUGFzczE="; // \0alice\0wonderland-Pass1

/// What Dovecot answers directly, for comparison.
struct Reference {
    stat: String,
    list: Vec<u8>,
    uidl: Vec<u8>,
    uidl_one: String,
    list_one: String,
    messages: Vec<Vec<u8>>,
    tops: Vec<(Vec<u8>, Vec<u8>)>,
}

fn transaction_replies<S: Read + Write>(client: &mut LineClient<S>, count: usize) -> Reference {
    let stat = client.pop3("STAT");
    let (_, list) = multiline(client, "LIST");
    let (_, uidl) = multiline(client, "UIDL");
    let uidl_one = client.pop3("UIDL 1");
    let list_one = client.pop3("LIST 1");
    let mut messages = Vec::new();
    let mut tops = Vec::new();
    for n in 1..=count {
        messages.push(multiline(client, &format!("RETR {n}")).1);
        let top0 = multiline(client, &format!("TOP {n} 0")).1;
        let top5 = multiline(client, &format!("TOP {n} 5")).1;
        tops.push((top0, top5));
    }
    Reference {
        stat,
        list,
        uidl,
        uidl_one,
        list_one,
        messages,
        tops,
    }
}

fn direct_reference(dovecot: &Dovecot, count: usize) -> Reference {
    let mut client = connect(dovecot.pop3_port);
    client.read_line();
    login(&mut client, dovecot.user(), dovecot.password());
    let reference = transaction_replies(&mut client, count);
    assert!(client.pop3("QUIT").starts_with("+OK"));
    reference
}

fn assert_same(reference: &Reference, got: &Reference, label: &str) {
    assert_eq!(got.stat, reference.stat, "{label} STAT");
    assert_eq!(got.list, reference.list, "{label} LIST");
    assert_eq!(got.uidl, reference.uidl, "{label} UIDL");
    assert_eq!(got.uidl_one, reference.uidl_one, "{label} UIDL 1");
    assert_eq!(got.list_one, reference.list_one, "{label} LIST 1");
    for (i, message) in reference.messages.iter().enumerate() {
        assert!(got.messages[i] == *message, "{label} RETR {}", i + 1);
        assert!(got.tops[i] == reference.tops[i], "{label} TOP {}", i + 1);
    }
}

/// Logs in one of three ways, chosen by `variant`.
fn login_variant(client: &mut Client, greeting: &str, variant: usize, dovecot: &Dovecot) {
    match variant % 4 {
        0 => login(client, dovecot.user(), dovecot.password()),
        1 => {
            let reply = client.pop3(&format!("AUTH PLAIN {PLAIN_IR}"));
            assert!(reply.starts_with("+OK"), "AUTH PLAIN ir: {reply}");
        }
        2 => {
            let reply = client.pop3("AUTH PLAIN");
            assert!(reply.starts_with("+"), "AUTH PLAIN: {reply}");
            let reply = client.pop3(PLAIN_IR);
            assert!(reply.starts_with("+OK"), "AUTH PLAIN continuation: {reply}");
        }
        _ => {
            let timestamp = apop_timestamp(greeting).expect("APOP timestamp in greeting");
            let digest = md5_hex(&format!("{timestamp}{}", dovecot.password()));
            let reply = client.pop3(&format!("APOP {} {digest}", dovecot.user()));
            assert!(reply.starts_with("+OK"), "APOP: {reply}");
        }
    }
}

#[test]
fn every_tls_mode_combination_relays_byte_exact() {
    let started = Instant::now();
    let dovecot = Dovecot::start();
    let corpus: Vec<Vec<u8>> = clean_messages().into_iter().map(|(_, m)| m).collect();
    dovecot.seed_messages(dovecot.user(), &corpus);
    let reference = direct_reference(&dovecot, corpus.len());
    assert!(reference
        .stat
        .starts_with(&format!("+OK {} ", corpus.len())));
    let mut variant = 0;
    for listener in LISTENER_MODES {
        for backend in BACKEND_MODES {
            let label = format!("{listener}/{backend}");
            let proxy = proxy_for(&dovecot, listener, backend, "");
            let (mut client, greeting) = connect_mode(proxy.port(0), listener, &dovecot.ca);
            assert!(greeting.starts_with("+OK"), "{label}: {greeting}");
            assert!(apop_timestamp(&greeting).is_some(), "{label}: {greeting}");
            let (_, capa) = multiline(&mut client, "CAPA");
            let capa = String::from_utf8_lossy(&capa).to_string();
            assert!(!capa.contains("STLS"), "{label}: {capa}");
            assert!(
                capa.contains("USER") && capa.contains("PIPELINING"),
                "{label}: {capa}"
            );
            login_variant(&mut client, &greeting, variant, &dovecot);
            variant += 1;
            assert!(client.pop3("NOOP").starts_with("+OK"));
            let got = transaction_replies(&mut client, corpus.len());
            assert_same(&reference, &got, &label);
            assert!(client.pop3("QUIT").starts_with("+OK"), "{label}");
            eprintln!("{label}: ok after {:?}", started.elapsed());
        }
    }
    for message in &reference.messages {
        assert!(message.len() < 12 * 1024 * 1024);
    }
    assert!(reference.messages.iter().any(|m| m.len() > 9 * 1024 * 1024));
}

#[test]
fn dele_then_rset_keeps_and_dele_then_quit_deletes() {
    let dovecot = Dovecot::start();
    dovecot.seed_messages(dovecot.user(), &small_clean_messages(3));
    let proxy = proxy_for(&dovecot, "implicit", "starttls", "");
    let session = |expect_count: usize| {
        let (mut client, _) = connect_mode(proxy.port(0), "implicit", &dovecot.ca);
        login(&mut client, dovecot.user(), dovecot.password());
        let stat = client.pop3("STAT");
        assert!(stat.starts_with(&format!("+OK {expect_count} ")), "{stat}");
        client
    };
    let mut client = session(3);
    assert!(client.pop3("DELE 2").starts_with("+OK"));
    assert!(client.pop3("RETR 2").starts_with("-ERR"));
    assert!(client.pop3("RSET").starts_with("+OK"));
    assert!(client.pop3("STAT").starts_with("+OK 3 "));
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let mut client = session(3);
    let (_, uidl_before) = multiline(&mut client, "UIDL");
    assert!(client.pop3("DELE 2").starts_with("+OK"));
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let mut client = session(2);
    let (_, uidl_after) = multiline(&mut client, "UIDL");
    let before = String::from_utf8_lossy(&uidl_before).to_string();
    let after = String::from_utf8_lossy(&uidl_after).to_string();
    let deleted_uid = before
        .lines()
        .nth(1)
        .and_then(|l| l.split(' ').nth(1))
        .unwrap();
    assert!(!after.contains(&format!(" {deleted_uid}\r\n")), "{after}");
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn client_vanishing_mid_retr_deletes_nothing() {
    let dovecot = Dovecot::start();
    let big = clean_messages()
        .into_iter()
        .map(|(_, m)| m)
        .max_by_key(Vec::len)
        .unwrap();
    let mut messages = small_clean_messages(1);
    messages.push(big);
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = proxy_for(&dovecot, "none", "none", "");
    let (mut client, _) = plain(proxy.port(0));
    login(&mut client, dovecot.user(), dovecot.password());
    assert!(client.pop3("DELE 1").starts_with("+OK"));
    let status = client.pop3("RETR 2");
    assert!(status.starts_with("+OK"), "{status}");
    client.read_raw_line();
    let ended = dovecot.log_contents().matches("Disconnected").count();
    drop(client);
    // The backend session must be over (without QUIT, so no UPDATE state) before checking.
    dovecot.wait_log(
        "Disconnected",
        ended + 1,
        std::time::Duration::from_secs(20),
    );
    let (mut client, _) = plain(proxy.port(0));
    login(&mut client, dovecot.user(), dovecot.password());
    assert!(client.pop3("STAT").starts_with("+OK 2 "));
    assert!(client.pop3("QUIT").starts_with("+OK"));
}

#[test]
fn pipelining_batch_of_50_commands() {
    let dovecot = Dovecot::start();
    let messages = small_clean_messages(5);
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = proxy_for(&dovecot, "implicit", "implicit", "");
    let (mut client, _) = connect_mode(proxy.port(0), "implicit", &dovecot.ca);
    let mut batch = format!("USER {}\r\nPASS {}\r\n", dovecot.user(), dovecot.password());
    let mut expected_multiline = Vec::new();
    for i in 0..48 {
        let (command, multi) = match i % 6 {
            0 => ("STAT".to_string(), false),
            1 => ("LIST".to_string(), true),
            2 => (format!("RETR {}", i % 5 + 1), true),
            3 => (format!("TOP {} 1", i % 5 + 1), true),
            4 => ("UIDL".to_string(), true),
            _ => ("NOOP".to_string(), false),
        };
        batch.push_str(&command);
        batch.push_str("\r\n");
        expected_multiline.push((command, multi));
    }
    client.send_raw(batch.as_bytes());
    assert!(client.read_line().starts_with("+OK"), "USER");
    assert!(client.read_line().starts_with("+OK"), "PASS");
    for (command, multi) in expected_multiline {
        let status = client.read_line();
        assert!(status.starts_with("+OK"), "{command}: {status}");
        if multi {
            let body = read_multiline_raw(&mut client);
            if let Some(n) = command.strip_prefix("RETR ") {
                let n: usize = n.parse().unwrap();
                let stuffed = &body[..body.len() - 3];
                assert_eq!(portcullis::pop3::codec::unstuff(stuffed), messages[n - 1]);
            }
        }
    }
    assert!(client.pop3("QUIT").starts_with("+OK"));
}
