//! The proxy's POP3 backend login and CAPA (RFC 1939 §7, RFC 5034, RFC 2449 §5) as byte
//! scripts: the backend's bytes are fed in chunks of every size 1..=512; what the backend
//! receives, the outcome and the bytes left for the next phase must be the same for every
//! chunking.

use super::*;
use crate::pop3::codec::{Limits, Role};
use crate::pop3::grammar::Secret;
use crate::pop3::prelogin::LoginRequest;
use crate::sasl::Credentials;

/// What one replay produced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    /// Everything the proxy sent the backend.
    backend: String,
    /// `Ok(Some((ok, reply)))` when done, `Ok(None)` when still waiting.
    outcome: Result<Option<(bool, String)>, ExchangeError>,
    /// Backend bytes left buffered for the next phase.
    leftover: usize,
}

fn replay_at(plan: &[LoginCommand], script: &[u8], chunk: usize) -> Transcript {
    let mut exchange =
        LoginExchange::new(plan.to_vec(), Framer::new(Role::Server, Limits::default()));
    let mut transcript = Transcript {
        backend: String::new(),
        outcome: Ok(None),
        leftover: 0,
    };
    let mut chunks = script.chunks(chunk);
    'run: loop {
        loop {
            match exchange.poll() {
                Ok(None) => break,
                Ok(Some(LoginStep::Command(line))) => {
                    transcript.backend.push_str(&String::from_utf8_lossy(&line))
                }
                Ok(Some(LoginStep::Cancel)) => transcript
                    .backend
                    .push_str(&String::from_utf8_lossy(CANCEL)),
                Ok(Some(LoginStep::Done { ok, reply })) => {
                    transcript.outcome = Ok(Some((ok, String::from_utf8_lossy(&reply).into())));
                    break 'run;
                }
                Err(error) => {
                    transcript.outcome = Err(error);
                    return transcript;
                }
            }
        }
        match chunks.next() {
            Some(piece) => exchange.feed(piece),
            None => break,
        }
    }
    for piece in chunks {
        exchange.feed(piece);
    }
    assert_eq!(exchange.poll(), Ok(None), "nothing after Done");
    transcript.leftover = exchange.into_framer().buffered();
    transcript
}

fn check(plan: &[LoginCommand], script: &[u8], expected: &Transcript) {
    for chunk in 1..=512 {
        assert_eq!(
            &replay_at(plan, script, chunk),
            expected,
            "chunk size {chunk}"
        );
    }
}

fn done(backend: &str, ok: bool, reply: &str, leftover: usize) -> Transcript {
    Transcript {
        backend: backend.into(),
        outcome: Ok(Some((ok, reply.into()))),
        leftover,
    }
}

fn failed(backend: &str, error: ExchangeError) -> Transcript {
    Transcript {
        backend: backend.into(),
        outcome: Err(error),
        leftover: 0,
    }
}

fn user_pass() -> Vec<LoginCommand> {
    LoginRequest::UserPass(Credentials::new("alice", "pw"))
        .plan(&Capabilities::from_body(b"USER\r\n"))
        .expect("plan")
}

fn sasl() -> (Vec<LoginCommand>, String) {
    let credentials = Credentials {
        authzid: "boss".into(),
        user: "alice".into(),
        password: "pw".into(),
    };
    let line = format!("AUTH PLAIN {}\r\n", credentials.plain_response());
    let plan = LoginRequest::Sasl(credentials)
        .plan(&Capabilities::from_body(b"SASL PLAIN\r\n"))
        .expect("plan");
    (plan, line)
}

#[test]
fn user_pass_ok_leaves_later_bytes_buffered() {
    check(
        &user_pass(),
        b"+OK alice\r\n+OK maildrop locked\r\n+OK later\r\n",
        &done(
            "USER alice\r\nPASS pw\r\n",
            true,
            "+OK maildrop locked\r\n",
            11,
        ),
    );
}

#[test]
fn pass_waits_for_the_answer_to_user() {
    let waiting = replay_at(&user_pass(), b"+OK ali", 512);
    assert_eq!(waiting.backend, "USER alice\r\n");
    assert_eq!(waiting.outcome, Ok(None));
}

#[test]
fn a_refused_user_ends_the_login() {
    check(
        &user_pass(),
        b"-ERR no such mailbox\r\n",
        &done("USER alice\r\n", false, "-ERR no such mailbox\r\n", 0),
    );
}

#[test]
fn a_refused_pass_ends_the_login() {
    check(
        &user_pass(),
        b"+OK alice\r\n-ERR [AUTH] invalid password\r\n",
        &done(
            "USER alice\r\nPASS pw\r\n",
            false,
            "-ERR [AUTH] invalid password\r\n",
            0,
        ),
    );
}

#[test]
fn apop_is_one_command() {
    let plan = LoginRequest::Apop {
        user: "alice".into(),
        digest: Secret("c4c9334bac560ecc979e58001b3e22fb".into()),
    }
    .plan(&Capabilities::default())
    .expect("plan");
    check(
        &plan,
        b"+OK maildrop has 2 messages\r\n",
        &done(
            "APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n",
            true,
            "+OK maildrop has 2 messages\r\n",
            0,
        ),
    );
}

#[test]
fn auth_plain_sends_the_initial_response() {
    let (plan, line) = sasl();
    check(
        &plan,
        b"+OK authenticated\r\n",
        &done(&line, true, "+OK authenticated\r\n", 0),
    );
}

#[test]
fn a_sasl_continuation_is_cancelled() {
    let (plan, line) = sasl();
    check(
        &plan,
        b"+ \r\n-ERR authentication cancelled\r\n",
        &done(
            &format!("{line}*\r\n"),
            false,
            "-ERR authentication cancelled\r\n",
            0,
        ),
    );
    check(
        &plan,
        b"+ \r\n+ more\r\n",
        &failed(
            &format!("{line}*\r\n"),
            ExchangeError::ContinuationAfterCancel,
        ),
    );
}

#[test]
fn a_continuation_to_user_is_a_framing_error() {
    check(
        &user_pass(),
        b"+ what\r\n",
        &failed(
            "USER alice\r\n",
            ExchangeError::Frame(FrameError::BadResponse),
        ),
    );
}

fn capa_at(script: &[u8], chunk: usize) -> (String, Option<Capabilities>, usize) {
    let mut exchange = CapaExchange::new(Framer::new(Role::Server, Limits::default()));
    let mut sent = String::new();
    let mut result = None;
    let mut chunks = script.chunks(chunk);
    loop {
        while let Some(step) = exchange.poll().expect("capa") {
            match step {
                CapaStep::Send(line) => sent.push_str(&String::from_utf8_lossy(&line)),
                CapaStep::Done(capabilities) => result = Some(capabilities),
            }
        }
        match chunks.next() {
            Some(piece) => exchange.feed(piece),
            None => break,
        }
    }
    (sent, result, exchange.into_framer().buffered())
}

#[test]
fn capa_reads_the_list_or_assumes_user() {
    for chunk in 1..=512 {
        let (sent, capabilities, leftover) =
            capa_at(b"+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n", chunk);
        assert_eq!(sent, "CAPA\r\n");
        assert_eq!(
            capabilities,
            Some(Capabilities::from_body(b"USER\r\nSASL PLAIN LOGIN\r\n")),
            "chunk size {chunk}"
        );
        assert_eq!(leftover, 0);
        let (_, capabilities, _) = capa_at(b"-ERR unknown command\r\n", chunk);
        assert_eq!(capabilities, Some(Capabilities::from_body(b"USER\r\n")));
    }
}
