//! Credentials never reach the logs: every POP3 login form through portcullis with TRACE logging
//! captured, then the log is searched for the password, the SASL PLAIN message and the APOP
//! digest. The user name is recorded.

#[path = "pop3_common/mod.rs"]
mod pop3_common;
mod support;

use pop3_common::*;
use support::dovecot::Dovecot;

const PLAIN_IR: &str = "AGFsaWNlAHdvbmRlcmxhbmQtUGFzczE="; // \0alice\0wonderland-Pass1

#[test]
fn credentials_are_never_logged() {
    let captured = support::logs::capture(tracing::Level::TRACE);
    let dovecot = Dovecot::start();
    let proxy = proxy_for(&dovecot, "implicit", "none", "");
    let password = dovecot.password();
    let connect = || connect_mode(proxy.port(0), "implicit", &dovecot.ca);

    let (mut client, _) = connect();
    login(&mut client, dovecot.user(), password);
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let (mut client, _) = connect();
    assert!(client
        .pop3(&format!("AUTH PLAIN {PLAIN_IR}"))
        .starts_with("+OK"));
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let (mut client, _) = connect();
    assert!(client.pop3("AUTH PLAIN").starts_with("+"));
    assert!(client.pop3(PLAIN_IR).starts_with("+OK"));
    assert!(client.pop3("QUIT").starts_with("+OK"));

    let (mut client, greeting) = connect();
    let digest = md5_hex(&format!("{}{password}", apop_timestamp(&greeting).unwrap()));
    let reply = client.pop3(&format!("APOP {} {digest}", dovecot.user()));
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(client.pop3("QUIT").starts_with("+OK"));
    drop(proxy);

    let log = captured.text();
    assert!(log.contains("client command"), "commands are logged");
    assert!(log.contains("client SASL response"), "SASL lines are noted");
    assert_eq!(log.matches("login ok").count(), 4, "{log}");
    assert!(
        log.contains("user=\"alice\"") || log.contains("user=alice"),
        "{log}"
    );
    for secret in [password, PLAIN_IR, digest.as_str()] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}
