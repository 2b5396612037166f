//! The proxy's backend login (RFC 9051 §6.2.2/§6.2.3, RFC 4959) as byte scripts: the backend's
//! bytes are replayed in chunks of every size 1..=512 through the response framer; what the
//! backend and the client receive must be the same for every chunking.

use super::*;
use crate::imap::codec::{Framer, Limits, Role};

/// What one replay produced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    /// Everything the proxy sent the backend.
    backend: String,
    /// Everything the proxy sent the client.
    client: String,
    /// Capability lists the session was told to record.
    noted: Vec<String>,
    /// `Ok(Some(ok))` when done, `Ok(None)` when still waiting.
    outcome: Result<Option<bool>, LoginError>,
}

const POLICY: CapabilityPolicy = CapabilityPolicy {
    offer_starttls: false,
    login_disabled: false,
    pre_login: true,
};

fn replay_at(
    credentials: &Credentials,
    sasl_ir: bool,
    literal_plus: bool,
    script: &[u8],
    chunk: usize,
) -> Transcript {
    let (mut exchange, first) =
        LoginExchange::start("a1", credentials, sasl_ir, literal_plus, POLICY);
    let mut transcript = Transcript {
        backend: String::from_utf8_lossy(&first).into(),
        client: String::new(),
        noted: Vec::new(),
        outcome: Ok(None),
    };
    let mut framer = Framer::new(Role::Server, Limits::default());
    let mut response = Vec::new();
    for piece in script.chunks(chunk) {
        framer.feed(piece);
        while let Some(event) = framer.next_event().expect("backend framing") {
            let complete = matches!(event, Event::Line { literal: None, .. });
            response.push(event);
            if !complete {
                continue;
            }
            match exchange.backend(&std::mem::take(&mut response)) {
                Ok(LoginStep::Send(bytes)) => transcript
                    .backend
                    .push_str(&String::from_utf8_lossy(&bytes)),
                Ok(LoginStep::ToClient { line, capabilities }) => {
                    transcript.client.push_str(&String::from_utf8_lossy(&line));
                    transcript.noted.extend(capabilities);
                }
                Ok(LoginStep::Done {
                    ok,
                    reply,
                    capabilities,
                }) => {
                    transcript.client.push_str(&String::from_utf8_lossy(&reply));
                    transcript.noted.extend(capabilities);
                    transcript.outcome = Ok(Some(ok));
                    return transcript;
                }
                Err(error) => {
                    transcript.outcome = Err(error);
                    return transcript;
                }
            }
        }
    }
    transcript
}

/// Replays `script` at every chunk size; all must give `expected`.
fn check(
    credentials: &Credentials,
    sasl_ir: bool,
    literal_plus: bool,
    script: &[u8],
    expected: &Transcript,
) {
    for chunk in 1..=512 {
        let got = replay_at(credentials, sasl_ir, literal_plus, script, chunk);
        assert_eq!(&got, expected, "chunk size {chunk}");
    }
}

fn done(backend: &str, client: &str, noted: &[&str], ok: bool) -> Transcript {
    Transcript {
        backend: backend.into(),
        client: client.into(),
        noted: noted.iter().map(|s| s.to_string()).collect(),
        outcome: Ok(Some(ok)),
    }
}

fn failed(backend: &str, client: &str, error: LoginError) -> Transcript {
    Transcript {
        backend: backend.into(),
        client: client.into(),
        noted: Vec::new(),
        outcome: Err(error),
    }
}

fn with_authzid() -> Credentials {
    Credentials {
        authzid: "boss".into(),
        user: "alice".into(),
        password: "pw".into(),
    }
}

#[test]
fn login_ok_rewrites_the_capability_code() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"PCLS1 OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN SASL-IR XSECRET] Logged in\r\n",
        &done(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
            &["IMAP4rev1 IDLE AUTH=PLAIN SASL-IR XSECRET"],
            true,
        ),
    );
}

#[test]
fn login_no_is_relayed_and_nothing_is_noted() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"PCLS1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
        &done(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
            &[],
            false,
        ),
    );
}

#[test]
fn a_refused_command_is_no_to_the_client() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"PCLS1 BAD [CAPABILITY IMAP4rev1 AUTH=PLAIN] what\r\n",
        &done(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "a1 NO [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR] what\r\n",
            &[],
            false,
        ),
    );
}

#[test]
fn a_literal_password_waits_for_the_continuation() {
    let credentials = Credentials::new("alice", "p\u{e4}ss");
    let script = b"+ go ahead\r\nPCLS1 OK done\r\n";
    check(
        &credentials,
        false,
        false,
        script,
        &done(
            "PCLS1 LOGIN \"alice\" {5}\r\np\u{e4}ss\r\n",
            "a1 OK done\r\n",
            &[],
            true,
        ),
    );
    // Before the `+`, only the first piece is out.
    let waiting = replay_at(&credentials, false, false, b"", 1);
    assert_eq!(waiting.backend, "PCLS1 LOGIN \"alice\" {5}\r\n");
    assert_eq!(waiting.outcome, Ok(None));
    // With LITERAL+ everything goes at once, and a `+` is unexpected.
    check(
        &credentials,
        false,
        true,
        script,
        &failed(
            "PCLS1 LOGIN \"alice\" {5+}\r\np\u{e4}ss\r\n",
            "",
            LoginError::UnexpectedContinuation,
        ),
    );
}

#[test]
fn authenticate_plain_with_sasl_ir() {
    let credentials = with_authzid();
    let response = credentials.plain_response();
    check(
        &credentials,
        true,
        false,
        b"PCLS1 OK [CAPABILITY IMAP4rev1 IDLE] ok\r\n",
        &done(
            &format!("PCLS1 AUTHENTICATE PLAIN {response}\r\n"),
            "a1 OK [CAPABILITY IMAP4rev1 IDLE] ok\r\n",
            &["IMAP4rev1 IDLE"],
            true,
        ),
    );
}

#[test]
fn authenticate_plain_without_sasl_ir_waits_for_the_continuation() {
    let credentials = with_authzid();
    let response = credentials.plain_response();
    check(
        &credentials,
        false,
        false,
        b"+ \r\nPCLS1 NO [AUTHORIZATIONFAILED] not boss\r\n",
        &done(
            &format!("PCLS1 AUTHENTICATE PLAIN\r\n{response}\r\n"),
            "a1 NO [AUTHORIZATIONFAILED] not boss\r\n",
            &[],
            false,
        ),
    );
}

#[test]
fn untagged_capabilities_during_login_are_rewritten_and_noted() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR XSECRET\r\n* OK [ALERT] hello\r\nPCLS1 OK in\r\n",
        &done(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "* CAPABILITY IMAP4rev1 LITERAL+\r\n* OK [ALERT] hello\r\na1 OK in\r\n",
            &["IMAP4rev1 LITERAL+ SASL-IR XSECRET"],
            true,
        ),
    );
}

#[test]
fn an_unexpected_continuation_fails_the_login() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"+ more?\r\nPCLS1 OK in\r\n",
        &failed(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "",
            LoginError::UnexpectedContinuation,
        ),
    );
}

#[test]
fn a_literal_in_a_response_fails_the_login() {
    check(
        &Credentials::new("alice", "pw"),
        false,
        false,
        b"* OK {3}\r\nabc\r\nPCLS1 OK in\r\n",
        &failed(
            "PCLS1 LOGIN \"alice\" \"pw\"\r\n",
            "",
            LoginError::LiteralInResponse,
        ),
    );
}

#[test]
fn login_is_quoted_when_it_can_be() {
    let credentials = Credentials::new("al\"ice", "pw");
    assert_eq!(
        login_command(&credentials, false, false),
        vec![b"PCLS1 LOGIN \"al\\\"ice\" \"pw\"\r\n".to_vec()]
    );
}

#[test]
fn unquotable_values_become_literals() {
    let credentials = Credentials::new("alice", "p\u{e4}ss");
    assert_eq!(
        login_command(&credentials, false, true),
        vec![b"PCLS1 LOGIN \"alice\" {5+}\r\np\xc3\xa4ss\r\n".to_vec()]
    );
    assert_eq!(
        login_command(&credentials, false, false),
        vec![
            b"PCLS1 LOGIN \"alice\" {5}\r\n".to_vec(),
            b"p\xc3\xa4ss\r\n".to_vec()
        ]
    );
}

#[test]
fn an_authorization_identity_uses_plain() {
    let credentials = Credentials {
        authzid: "boss".into(),
        user: "alice".into(),
        password: "pw".into(),
    };
    let response = credentials.plain_response();
    assert_eq!(
        login_command(&credentials, true, false),
        vec![format!("PCLS1 AUTHENTICATE PLAIN {response}\r\n").into_bytes()]
    );
    assert_eq!(login_command(&credentials, false, false).len(), 2);
}

#[test]
fn answers_carry_the_client_tag() {
    assert_eq!(
        retagged(b"PCLS1 OK Logged in\r\n", "a1"),
        b"a1 OK Logged in\r\n"
    );
    assert_eq!(retagged(b"PCLS1 BAD no\r\n", "a1"), b"a1 NO no\r\n");
}
