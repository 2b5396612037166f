//! Whole logged-in IMAP sessions as byte scripts: client bytes, backend bytes, scan verdicts,
//! cache answers and ticks in, the bytes each side receives and the requests made out. Every
//! script is replayed with the client and backend bytes split into chunks of every size
//! 1..=512; what each step produced must be the same as for the unchunked replay (and as the
//! expectation).

use super::*;
use crate::imap::capability;
use crate::imap::codec::{Limits, Role};
use crate::scan::fixtures::{blocked, clean, tempfail};
use crate::scan::{OnError, OnOversize, Policy, Verdict};

/// One input of a script.
#[derive(Clone)]
enum In<'a> {
    Client(&'a [u8]),
    Backend(&'a [u8]),
    Scanned(u64, Disposition),
    LookedUp(u64, Option<Cached>),
    Probed(u64, bool),
    Verified(u64, Verdict),
    Tick,
    Drain,
}

/// What one input produced (bytes concatenated, so chunking cannot show).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Step {
    client: String,
    backend: String,
    requests: Vec<String>,
    close: Option<Close>,
    wants_client: bool,
    idle: bool,
    errors: u32,
}

fn describe(reference: &MessageRef) -> String {
    format!(
        "{}/{:?}/{:?}/uid {:?}/seq {:?}",
        reference.user.as_deref().unwrap_or("-"),
        reference.mailbox,
        reference.uidvalidity,
        reference.uid,
        reference.msgno
    )
}

fn absorb(step: &mut Step, actions: Vec<Action>) {
    for action in actions {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match action {
            Action::ToClient(bytes) => step.client.push_str(&text(&bytes)),
            Action::ToBackend(bytes) => step.backend.push_str(&text(&bytes)),
            Action::Scan {
                id,
                message,
                reference,
            } => step.requests.push(format!(
                "scan {} {} {}",
                id.0,
                text(&message),
                describe(&reference)
            )),
            Action::Lookup { id, reference } => {
                step.requests
                    .push(format!("lookup {} {}", id.0, describe(&reference)))
            }
            Action::Probe { id, references } => {
                let uids: Vec<_> = references.iter().map(|r| r.uid).collect();
                step.requests.push(format!("probe {} {uids:?}", id.0));
            }
            Action::Verify { id, message } => {
                step.requests
                    .push(format!("verify {} {}", id.0, text(&message)))
            }
            Action::Remember { reference, message } => step.requests.push(format!(
                "remember {} {}",
                describe(&reference),
                text(&message)
            )),
            Action::Close(close) => {
                assert!(step.close.is_none(), "closed twice");
                step.close = Some(close);
            }
        }
    }
}

fn policy() -> Policy {
    Policy {
        on_error: OnError::Tempfail,
        on_oversize: OnOversize::Pass,
        max_size: 1 << 20,
        contact: "postmaster".into(),
        scan_append: true,
        scan_on_structure: false,
    }
}

fn core(literal_plus: bool, scan_append: bool) -> Relay {
    let settings = Settings {
        peer: "192.0.2.7:4321".parse().expect("address"),
        user: Some("alice".into()),
        backend: None,
        policy: CapabilityPolicy {
            offer_starttls: false,
            login_disabled: false,
            pre_login: false,
        },
        literal_plus,
        max_command: 1 << 20,
        max_response: 1 << 20,
    };
    let limits = Limits::default();
    let mut relay = Relay::new(
        settings,
        Framer::new(Role::Client, limits),
        Framer::new(Role::Server, limits),
    );
    relay.set_scan_append(scan_append);
    relay
}

fn replay_at(literal_plus: bool, scan_append: bool, script: &[In<'_>], chunk: usize) -> Vec<Step> {
    let mut core = core(literal_plus, scan_append);
    let mut steps = Vec::new();
    for input in script {
        let mut step = Step::default();
        match input {
            In::Client(bytes) => bytes
                .chunks(chunk)
                .for_each(|c| absorb(&mut step, core.client(c))),
            In::Backend(bytes) => bytes
                .chunks(chunk)
                .for_each(|c| absorb(&mut step, core.backend(c))),
            In::Scanned(id, d) => absorb(&mut step, core.scanned(WaitId(*id), d.clone())),
            In::LookedUp(id, c) => absorb(&mut step, core.looked_up(WaitId(*id), c.clone())),
            In::Probed(id, all) => absorb(&mut step, core.probed(WaitId(*id), *all)),
            In::Verified(id, v) => absorb(&mut step, core.verified(WaitId(*id), v, &policy())),
            In::Tick => absorb(&mut step, core.tick()),
            In::Drain => core.start_draining(),
        }
        step.wants_client = core.wants_client();
        step.idle = core.is_idle();
        step.errors = core.errors();
        steps.push(step);
    }
    steps
}

/// Replays at every chunk size; all must agree with the unchunked replay, which is returned.
fn replay_with(literal_plus: bool, scan_append: bool, script: &[In<'_>]) -> Vec<Step> {
    let whole = replay_at(literal_plus, scan_append, script, usize::MAX);
    for chunk in 1..=512 {
        assert_eq!(
            replay_at(literal_plus, scan_append, script, chunk),
            whole,
            "chunk size {chunk}"
        );
    }
    whole
}

fn replay(script: &[In<'_>]) -> Vec<Step> {
    replay_with(true, false, script)
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nbody\r\n";
const REPLACEMENT: &[u8] = b"Subject: blocked\r\n\r\nremoved\r\n";
const SELECT: &[u8] = b"s SELECT INBOX\r\n";
const SELECTED: &[u8] =
    b"* 2 EXISTS\r\n* OK [UIDVALIDITY 9] UIDs valid\r\ns OK [READ-WRITE] done\r\n";
/// `* 1 FETCH` answering `f FETCH 1 (FLAGS BODY[TEXT])` forwarded with `BODY.PEEK[] UID`.
const FETCHED: &[u8] = b"* 1 FETCH (FLAGS (\\Seen) BODY[TEXT] {6}\r\nbody\r\n BODY[] {21}\r\nSubject: hi\r\n\r\nbody\r\n UID 42)\r\nf OK done\r\n";
const REFERENCE: &str = "alice/Some(\"INBOX\")/Some(9)/uid Some(42)/seq Some(1)";

#[test]
fn canonical_commands_are_forwarded_and_refusals_answered_in_order() {
    let steps = replay(&[
        In::Client(b"a noop\r\nb COMPRESS DEFLATE\r\nc select \"INBOX\"\r\nd LOGIN x y\r\n"),
        In::Backend(b"a OK done\r\n* 3 EXISTS\r\nc OK [READ-WRITE] done\r\n"),
    ]);
    assert_eq!(steps[0].backend, "a NOOP\r\nc SELECT INBOX\r\n");
    assert_eq!(
        steps[0].client,
        "b NO [CANNOT] COMPRESS is not available through this proxy\r\n\
         d BAD Already logged in\r\n"
    );
    assert_eq!((steps[0].errors, steps[0].idle), (1, false));
    assert_eq!(
        steps[1].client,
        "a OK done\r\n* 3 EXISTS\r\nc OK [READ-WRITE] done\r\n"
    );
    assert!(steps[1].idle && steps[1].close.is_none());
}

#[test]
fn literals_wait_for_the_backend_continuation_without_literal_plus() {
    let steps = replay_with(
        false,
        false,
        &[
            In::Client(b"a APPEND x {3}\r\nabc\r\nb NOOP\r\n"),
            In::Backend(b"+ go ahead\r\n"),
            In::Backend(b"a OK appended\r\nb OK done\r\n"),
            In::Client(b"c APPEND x {3}\r\nxyz\r\nd NOOP\r\n"),
            In::Backend(b"c NO [TOOBIG] no thanks\r\n"),
        ],
    );
    assert_eq!(steps[0].client, "+ Ready for literal data\r\n");
    assert_eq!(steps[0].backend, "a APPEND x {3}\r\n");
    assert!(!steps[0].wants_client);
    assert_eq!(steps[1].backend, "abc\r\nb NOOP\r\n");
    assert_eq!(steps[1].client, "");
    assert!(steps[1].wants_client);
    assert_eq!(steps[2].client, "a OK appended\r\nb OK done\r\n");
    // The backend refuses the literal: the rest of the command is never sent.
    assert_eq!(steps[3].backend, "c APPEND x {3}\r\n");
    assert_eq!(steps[4].client, "c NO [TOOBIG] no thanks\r\n");
    assert_eq!(steps[4].backend, "d NOOP\r\n");
}

#[test]
fn a_capability_list_with_literal_plus_ends_the_waits() {
    let steps = replay_with(
        false,
        false,
        &[
            In::Client(b"c CAPABILITY\r\n"),
            In::Backend(b"* CAPABILITY IMAP4rev1 LITERAL+ COMPRESS=DEFLATE\r\nc OK done\r\n"),
            In::Client(b"a APPEND x {3}\r\nabc\r\n"),
        ],
    );
    let line = b"* CAPABILITY IMAP4rev1 LITERAL+ COMPRESS=DEFLATE\r\n";
    let policy = core(false, false).settings.policy;
    let rewritten = capability::rewrite_line(line, policy).expect("a capability line");
    assert!(!String::from_utf8_lossy(&rewritten).contains("COMPRESS"));
    assert_eq!(
        steps[1].client,
        format!("{}c OK done\r\n", String::from_utf8_lossy(&rewritten))
    );
    assert_eq!(steps[2].backend, "a APPEND x {3+}\r\nabc\r\n");
}

#[test]
fn idle_accepts_only_done() {
    let steps = replay(&[
        In::Client(b"a IDLE\r\n"),
        In::Backend(b"+ idling\r\n* 4 EXISTS\r\n"),
        In::Client(b"DONE\r\n"),
        In::Backend(b"a OK IDLE terminated\r\n"),
        In::Client(b"b IDLE\r\n"),
        In::Client(b"c NOOP\r\n"),
    ]);
    assert_eq!(steps[0].backend, "a IDLE\r\n");
    assert_eq!(steps[1].client, "+ idling\r\n* 4 EXISTS\r\n");
    assert_eq!(steps[2].backend, "DONE\r\n");
    assert_eq!(steps[3].client, "a OK IDLE terminated\r\n");
    assert!(steps[3].idle);
    assert_eq!(steps[5].backend, "");
    assert_eq!(
        steps[5].close,
        Some(Close::Client {
            reason: "Expected DONE to end IDLE".into(),
            limit: None
        })
    );
}

/// SELECT, then a FETCH needing a verdict, served with `disposition`.
fn fetch_served(disposition: Disposition) -> Vec<Step> {
    let steps = replay(&[
        In::Client(SELECT),
        In::Backend(SELECTED),
        In::Client(b"f FETCH 1 (FLAGS BODY[TEXT])\r\n"),
        In::Backend(FETCHED),
        In::Tick,
        In::Scanned(1, disposition),
    ]);
    assert_eq!(steps[1].client, String::from_utf8_lossy(SELECTED));
    assert_eq!(
        steps[2].backend,
        "f FETCH 1 (FLAGS BODY[TEXT] BODY.PEEK[] UID)\r\n"
    );
    assert_eq!(steps[3].client, "");
    assert_eq!(
        steps[3].requests,
        [format!(
            "scan 1 {} {REFERENCE}",
            String::from_utf8_lossy(MESSAGE)
        )]
    );
    assert_eq!(
        steps[4].client,
        "* OK [portcullis] Scanning message, please wait\r\n"
    );
    assert!(steps[5].idle);
    steps
}

#[test]
fn a_clean_fetch_is_served_byte_exact_without_added_items() {
    let steps = fetch_served(clean(MESSAGE));
    assert_eq!(
        steps[5].client,
        "* 1 FETCH (FLAGS (\\Seen) BODY[TEXT] {6}\r\nbody\r\n)\r\nf OK done\r\n"
    );
}

#[test]
fn a_blocked_fetch_is_served_from_the_replacement() {
    let steps = fetch_served(blocked(REPLACEMENT));
    assert_eq!(
        steps[5].client,
        "* 1 FETCH (FLAGS (\\Seen) BODY[TEXT] {9}\r\nremoved\r\n)\r\nf OK done\r\n"
    );
}

#[test]
fn a_tempfailed_fetch_withholds_content_and_completes_unavailable() {
    let steps = fetch_served(tempfail());
    assert_eq!(
        steps[5].client,
        "* 1 FETCH (FLAGS (\\Seen))\r\nf NO [UNAVAILABLE] 1 message(s) could not be scanned \
         now; try again later\r\n"
    );
}

#[test]
fn a_cached_message_is_fetched_without_the_whole_message() {
    let steps = replay(&[
        In::Client(SELECT),
        In::Backend(SELECTED),
        In::Client(b"f FETCH 1 (FLAGS BODY[TEXT])\r\n"),
        In::Backend(FETCHED),
        In::Scanned(1, clean(MESSAGE)),
        In::Client(b"g FETCH 1 (BODY[TEXT])\r\n"),
        In::Probed(2, true),
        In::Backend(b"* 1 FETCH (BODY[TEXT] {6}\r\nbody\r\n UID 42)\r\ng OK done\r\n"),
        In::LookedUp(3, Some(Cached::Serve(blocked(REPLACEMENT)))),
    ]);
    assert_eq!(steps[5].requests, ["probe 2 [Some(42)]"]);
    assert_eq!(steps[5].backend, "");
    assert_eq!(steps[6].backend, "g FETCH 1 (BODY[TEXT] UID)\r\n");
    assert_eq!(steps[7].requests, [format!("lookup 3 {REFERENCE}")]);
    assert_eq!(
        steps[8].client,
        "* 1 FETCH (BODY[TEXT] {9}\r\nremoved\r\n)\r\ng OK done\r\n"
    );
}

#[test]
fn pipelined_fetches_wait_in_order_behind_a_scan() {
    let steps = replay(&[
        In::Client(b"f FETCH 1:2 (BODY[])\r\nn NOOP\r\n"),
        In::Backend(
            b"* 1 FETCH (BODY[] {4}\r\none! UID 1)\r\n* 2 FETCH (BODY[] {4}\r\ntwo! UID 2)\r\n\
              f OK done\r\nn OK done\r\n",
        ),
        In::Client(b"z COMPRESS DEFLATE\r\n"),
        In::Scanned(1, clean(b"one!")),
        In::Scanned(2, blocked(b"gone")),
    ]);
    assert_eq!(steps[0].backend, "f FETCH 1:2 (BODY[] UID)\r\nn NOOP\r\n");
    assert_eq!(steps[1].client, "");
    assert_eq!(steps[1].requests.len(), 1);
    assert!(steps[1].requests[0].starts_with("scan 1 one! "));
    assert_eq!(
        steps[2],
        Step {
            wants_client: false,
            ..steps[2].clone()
        }
    );
    assert_eq!(steps[2].client, "");
    assert_eq!(steps[3].client, "* 1 FETCH (BODY[] {4}\r\none!)\r\n");
    assert!(steps[3].requests[0].starts_with("scan 2 two! "));
    assert_eq!(
        steps[4].client,
        "* 2 FETCH (BODY[] {4}\r\ngone)\r\nf OK done\r\nn OK done\r\n\
         z NO [CANNOT] COMPRESS is not available through this proxy\r\n"
    );
    assert!(steps[4].idle);
}

#[test]
fn append_is_verified_before_it_is_forwarded() {
    let infected = Verdict::Infected {
        engine: "clamd".into(),
        signature: "Eicar".into(),
    };
    let steps = replay_with(
        true,
        true,
        &[
            In::Client(b"a APPEND x {3}\r\nabc\r\n"),
            In::Verified(1, Verdict::Clean),
            In::Client(b"b APPEND x {3}\r\nbad\r\n"),
            In::Verified(2, infected),
        ],
    );
    assert_eq!(steps[0].client, "+ Ready for literal data\r\n");
    assert_eq!(
        (steps[0].backend.as_str(), &steps[0].requests[..]),
        ("", &["verify 1 abc".to_string()][..])
    );
    assert_eq!(steps[1].backend, "a APPEND x {3+}\r\nabc\r\n");
    assert_eq!(steps[3].backend, "");
    assert_eq!(
        steps[3].client,
        "b NO [CANNOT] Message rejected: Eicar found\r\n"
    );
}

#[test]
fn logout_closes_after_its_answer() {
    let steps = replay(&[
        In::Client(b"l LOGOUT\r\n"),
        In::Backend(b"* BYE logging out\r\nl OK done\r\n* 9 EXISTS\r\n"),
    ]);
    assert_eq!(steps[0].backend, "l LOGOUT\r\n");
    assert_eq!(steps[1].client, "* BYE logging out\r\nl OK done\r\n");
    assert_eq!(steps[1].close, Some(Close::Logout));
}

#[test]
fn draining_refuses_new_commands_and_ticks_are_quiet_without_a_scan() {
    let steps = replay(&[
        In::Client(b"a NOOP\r\n"),
        In::Tick,
        In::Drain,
        In::Client(b"b NOOP\r\n"),
        In::Backend(b"a OK done\r\n"),
    ]);
    assert_eq!(steps[0].backend, "a NOOP\r\n");
    assert_eq!(steps[1].client, "");
    assert_eq!(
        steps[3].client,
        "b NO [UNAVAILABLE] Server shutting down\r\n"
    );
    assert_eq!(steps[3].backend, "");
    assert!(!steps[3].idle && steps[4].idle);
}

#[test]
fn a_client_framing_error_closes_with_its_limit() {
    let mut line = b"a NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 70 * 1024));
    line.extend_from_slice(b"\r\n");
    let steps = replay(&[In::Client(&line)]);
    match &steps[0].close {
        Some(Close::Client {
            limit: Some(limit), ..
        }) => {
            assert_eq!(*limit, Limit::LineLength)
        }
        other => panic!("expected a client close, got {other:?}"),
    }
    assert_eq!(steps[0].backend, "");
}

#[path = "relay_pipeline_tests.rs"]
mod pipeline;

#[test]
fn a_clean_append_is_remembered_under_its_appenduid() {
    let steps = replay_with(
        true,
        true,
        &[
            In::Client(b"a APPEND inbox {3}\r\nabc\r\n"),
            In::Verified(1, Verdict::Clean),
            In::Backend(b"a OK [APPENDUID 9 43] Append completed.\r\n"),
            In::Client(b"b APPEND x {3}\r\nxyz\r\n"),
            In::Verified(2, Verdict::Clean),
            In::Backend(b"b OK Append completed.\r\n"),
            In::Client(b"c APPEND x {3}\r\nuvw\r\n"),
            In::Verified(3, Verdict::Clean),
            In::Backend(b"c NO [OVERQUOTA] [APPENDUID 9 44] full\r\n"),
        ],
    );
    // INBOX is named as SELECT names it, so a FETCH of the selected INBOX finds it.
    assert_eq!(
        steps[2].requests,
        ["remember alice/Some(\"INBOX\")/Some(9)/uid Some(43)/seq None abc"]
    );
    assert_eq!(
        steps[2].client,
        "a OK [APPENDUID 9 43] Append completed.\r\n"
    );
    // No APPENDUID (a server without UIDPLUS), or no success: nothing is remembered.
    assert!(steps[5].requests.is_empty() && steps[8].requests.is_empty());
}
