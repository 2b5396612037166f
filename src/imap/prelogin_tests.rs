//! Byte-script tests of the pre-login core, each replayed at every chunk size 1..=512.

use super::*;
use crate::imap::codec::Event;

fn settings(offer_starttls: bool, login_disabled: bool) -> Settings {
    Settings {
        offer_starttls,
        login_disabled,
        capabilities: "IMAP4rev1 AUTH=PLAIN".into(),
    }
}

const OPEN: fn() -> Settings = || settings(false, false);
const PLAINTEXT: fn() -> Settings = || settings(true, true);

/// What a script produced: client output and the driver-level actions, in order.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    to_client: String,
    actions: Vec<Action>,
}

/// Replays `script` in chunks; every login is answered as failed so the script goes on.
fn replay(settings: Settings, script: &[u8], chunk: usize) -> Outcome {
    let mut core = PreLogin::new(settings, Limits::default());
    let mut outcome = Outcome {
        to_client: String::new(),
        actions: Vec::new(),
    };
    for piece in script.chunks(chunk) {
        core.feed(piece);
        loop {
            let actions = core.poll().expect("no framing error");
            if actions.is_empty() {
                break;
            }
            for action in actions {
                match action {
                    Action::ToClient(bytes) => {
                        outcome.to_client += &String::from_utf8(bytes).expect("utf8")
                    }
                    Action::Login { .. } => {
                        outcome.actions.push(action);
                        core.login_failed();
                    }
                    other => outcome.actions.push(other),
                }
            }
        }
    }
    outcome
}

/// Replays at every chunk size and checks they all agree; returns the outcome.
fn replay_all(settings: fn() -> Settings, script: &[u8]) -> Outcome {
    let whole = replay(settings(), script, script.len().max(1));
    for chunk in 1..=512 {
        assert_eq!(
            replay(settings(), script, chunk),
            whole,
            "chunk size {chunk}"
        );
    }
    whole
}

fn login(tag: &str, user: &str, password: &str) -> Action {
    Action::Login {
        tag: tag.into(),
        credentials: Credentials::new(user, password),
    }
}

#[test]
fn local_answers() {
    let outcome = replay_all(
        OPEN,
        b"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"x\")\r\nd LOGOUT\r\n",
    );
    assert_eq!(
        outcome.to_client,
        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na OK CAPABILITY completed\r\nb OK NOOP completed\r\n\
         * ID NIL\r\nc OK ID completed\r\n* BYE Logging out\r\nd OK LOGOUT completed\r\n"
    );
    assert_eq!(outcome.actions, vec![Action::Logout]);
}

#[test]
fn login_with_literals_is_decoded() {
    let outcome = replay_all(OPEN, b"a LOGIN {5}\r\nalice {3+}\r\npw1\r\n");
    assert_eq!(outcome.to_client, "+ Ready for literal data\r\n");
    assert_eq!(outcome.actions, vec![login("a", "alice", "pw1")]);
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    // "\0alice\0pw"
    let outcome = replay_all(
        OPEN,
        b"a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\nb AUTHENTICATE plain\r\nAGFsaWNlAHB3\r\n",
    );
    assert_eq!(outcome.to_client, "+ \r\n");
    assert_eq!(
        outcome.actions,
        vec![login("a", "alice", "pw"), login("b", "alice", "pw")]
    );
}

#[test]
fn authenticate_login_asks_twice() {
    // "bob", "pw"
    let outcome = replay_all(OPEN, b"a AUTHENTICATE LOGIN\r\nYm9i\r\ncHc=\r\n");
    assert_eq!(outcome.to_client, "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n");
    assert_eq!(outcome.actions, vec![login("a", "bob", "pw")]);
}

#[test]
fn cancel_and_bad_sasl_return_to_commands() {
    let outcome = replay_all(
        OPEN,
        b"a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE PLAIN\r\nc SELECT INBOX\r\nd NOOP\r\n",
    );
    assert_eq!(
        outcome.to_client,
        "+ \r\na BAD Authentication cancelled\r\n+ \r\n\
         b BAD Invalid SASL response: invalid base64 in the SASL response\r\nd OK NOOP completed\r\n"
    );
    assert!(outcome.actions.is_empty());
}

#[test]
fn a_literal_as_sasl_response_is_refused_without_waiting() {
    let outcome = replay_all(OPEN, b"a AUTHENTICATE PLAIN\r\n{5}\r\nb NOOP\r\n");
    assert_eq!(
        outcome.to_client,
        "+ \r\na BAD Invalid SASL response: authentication cancelled\r\nb OK NOOP completed\r\n"
    );
}

#[test]
fn logins_before_tls_are_refused_and_never_leave() {
    let outcome = replay_all(
        PLAINTEXT,
        b"a LOGIN alice pw\r\nb AUTHENTICATE PLAIN AGFsaWNlAHB3\r\nc SELECT INBOX\r\n",
    );
    assert_eq!(
        outcome.actions,
        vec![Action::LoginRefused, Action::LoginRefused]
    );
    assert!(outcome.to_client.contains("a NO [PRIVACYREQUIRED]"));
    assert!(outcome.to_client.contains("b NO [PRIVACYREQUIRED]"));
    assert!(outcome.to_client.contains("c BAD [PRIVACYREQUIRED]"));
}

#[test]
fn a_literal_announced_inside_quotes_hides_nothing() {
    // The attack: the proxy must not read the next line as literal data; it is a command of its
    // own (refused before TLS), never a login that leaves the proxy.
    let outcome = replay_all(PLAINTEXT, b"a NOOP \"{16}\r\nb LOGIN alice pw\r\n");
    assert!(
        outcome.to_client.starts_with("a BAD"),
        "{}",
        outcome.to_client
    );
    assert!(outcome.to_client.contains("b NO [PRIVACYREQUIRED]"));
    assert_eq!(outcome.actions, vec![Action::LoginRefused]);
    let outcome = replay_all(PLAINTEXT, b"a ID \"{16}\r\nb LOGIN alice pw\r\n");
    assert_eq!(outcome.actions, vec![Action::LoginRefused]);
}

#[test]
fn unknown_and_unavailable_commands() {
    let outcome = replay_all(
        OPEN,
        b"a SELECT INBOX\r\nb COMPRESS DEFLATE\r\nc NOOP x\r\n\r\nd STARTTLS\r\ne AUTHENTICATE CRAM-MD5\r\n",
    );
    assert_eq!(
        outcome.to_client,
        "a BAD SELECT is not valid before login\r\n\
         b NO [CANNOT] COMPRESS is not available through this proxy\r\n\
         c BAD Invalid command syntax\r\n\
         * BAD Invalid command: expected a tag and a command name\r\n\
         d BAD STARTTLS not available now\r\n\
         e NO [CANNOT] Unsupported authentication mechanism\r\n"
    );
}

#[test]
fn starttls_drops_pipelined_bytes() {
    let mut core = PreLogin::new(PLAINTEXT(), Limits::default());
    core.feed(b"a STARTTLS\r\nb LOGIN alice pw\r\n");
    let actions = core.poll().expect("poll");
    assert_eq!(
        actions,
        vec![
            Action::ToClient(b"a OK Begin TLS negotiation now\r\n".to_vec()),
            Action::StartTls
        ]
    );
    assert!(core.poll().expect("poll").is_empty(), "nothing before TLS");
    core.tls_started(OPEN());
    assert!(
        core.poll().expect("poll").is_empty(),
        "pipelined login dropped"
    );
    core.feed(b"c LOGIN alice pw\r\n");
    assert_eq!(core.poll().expect("poll"), vec![login("c", "alice", "pw")]);
}

#[test]
fn bytes_after_a_login_wait_for_its_outcome() {
    let mut core = PreLogin::new(OPEN(), Limits::default());
    core.feed(b"a LOGIN alice pw\r\nb SELECT INBOX\r\n");
    assert_eq!(core.poll().expect("poll"), vec![login("a", "alice", "pw")]);
    assert!(core.poll().expect("poll").is_empty());
    let mut framer = core.into_framer();
    match framer.next_event().expect("event") {
        Some(Event::Line { bytes, .. }) => assert_eq!(&bytes[..], b"b SELECT INBOX\r\n"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_literals_are_refused_before_login() {
    let outcome = replay_all(OPEN, b"a LOGIN {99999}\r\nb NOOP\r\n");
    assert_eq!(
        outcome.to_client,
        "a NO [TOOBIG] literal of 99999 octets is too large before login\r\nb OK NOOP completed\r\n"
    );
}

#[test]
fn literals_before_tls_are_refused_without_inviting_them() {
    let outcome = replay_all(PLAINTEXT, b"c LOGIN {4}\r\nd SELECT {5}\r\ne NOOP\r\n");
    assert_eq!(
        outcome.to_client,
        "c NO [PRIVACYREQUIRED] TLS is required before authentication: use STARTTLS\r\n\
         d BAD [PRIVACYREQUIRED] Use STARTTLS first\r\ne OK NOOP completed\r\n"
    );
    assert_eq!(outcome.actions, vec![Action::LoginRefused]);
}
