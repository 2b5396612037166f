//! Whole TRANSACTION sessions as byte scripts: client bytes, backend bytes, scan verdicts and
//! the backend's close in, the bytes each side receives out. Every script is replayed with the
//! client and backend bytes split into chunks of every size 1..=512; what each step produced
//! must be the same as for the unchunked replay (and as the expectation).

use super::*;
use crate::pop3::prelogin::refusal;
use crate::scan::fixtures::{blocked, clean};
use crate::scan::Cached;

/// One input of a script.
#[derive(Clone)]
enum In<'a> {
    Client(&'a [u8]),
    Backend(&'a [u8]),
    /// The verdict on the scan with this id.
    Verdict(u64, Disposition),
    /// The cache's answers to the lookup with this id.
    LookedUp(u64, Vec<Option<Cached>>),
    BackendClosed,
}

/// What one input produced (bytes concatenated, so chunking cannot show).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Step {
    client: String,
    backend: String,
    scans: Vec<(u64, String, MessageRequest)>,
    /// The unique-id each scan carried, in order.
    scan_ids: Vec<Option<String>>,
    lookups: Vec<(u64, Vec<(u32, String)>)>,
    close: Option<Close>,
    wants_client: bool,
    idle: bool,
    errors: u32,
}

fn absorb(step: &mut Step, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::ToClient(bytes) => step.client.push_str(&String::from_utf8_lossy(&bytes)),
            Action::ToBackend(line) => step.backend.push_str(&String::from_utf8_lossy(&line)),
            Action::Scan {
                id,
                message,
                request,
                uidl,
            } => {
                step.scans
                    .push((id.0, String::from_utf8_lossy(&message).into(), request));
                step.scan_ids.push(uidl);
            }
            Action::Lookup { id, messages } => step.lookups.push((id.0, messages)),
            Action::Close(close) => {
                assert!(step.close.is_none(), "closed twice");
                step.close = Some(close);
            }
        }
    }
}

fn replay_at(
    limits: Limits,
    structure: bool,
    script: &[In<'_>],
    chunk: usize,
) -> (Vec<Step>, Tally) {
    let mut core = Transaction::new(limits, Framer::new(Role::Server, limits), 0);
    core.set_scan_on_structure(structure);
    let mut steps = Vec::new();
    let mut tally = Tally::default();
    for input in script {
        let mut step = Step::default();
        match input {
            In::Client(bytes) => bytes
                .chunks(chunk)
                .for_each(|c| absorb(&mut step, core.client(c))),
            In::Backend(bytes) => bytes
                .chunks(chunk)
                .for_each(|c| absorb(&mut step, core.backend(c))),
            In::Verdict(id, disposition) => {
                absorb(&mut step, core.scanned(ScanId(*id), disposition))
            }
            In::LookedUp(id, answers) => absorb(&mut step, core.looked_up(LookupId(*id), answers)),
            In::BackendClosed => absorb(&mut step, core.backend_closed()),
        }
        step.wants_client = core.wants_client();
        step.idle = core.is_idle();
        step.errors = core.errors();
        let more = core.take_tally();
        tally.bytes_up += more.bytes_up;
        tally.bytes_down += more.bytes_down;
        tally.scanned += more.scanned;
        tally.blocked += more.blocked;
        steps.push(step);
    }
    (steps, tally)
}

/// Replays at every chunk size; all must agree with the unchunked replay, which is returned.
fn replay_all(limits: Limits, structure: bool, script: &[In<'_>]) -> (Vec<Step>, Tally) {
    let whole = replay_at(limits, structure, script, usize::MAX);
    for chunk in 1..=512 {
        assert_eq!(
            replay_at(limits, structure, script, chunk),
            whole,
            "chunk size {chunk}"
        );
    }
    whole
}

fn replay_with(limits: Limits, script: &[In<'_>]) -> (Vec<Step>, Tally) {
    replay_all(limits, false, script)
}

fn replay(script: &[In<'_>]) -> Vec<Step> {
    replay_with(Limits::default(), script).0
}

fn refused(line: &[u8]) -> String {
    let error = Command::parse_transaction(line).expect_err("refused line");
    String::from_utf8(refusal(&error)).expect("ASCII refusal")
}

/// A stored message with a line that starts with a dot.
const MESSAGE: &[u8] = b"Subject: hi\r\n\r\n.dot line\r\nl2\r\nl3\r\n";
/// [`MESSAGE`] as RETR 1 answers it (dot-stuffed).
const RETR_1: &[u8] = b"+OK 36 octets\r\nSubject: hi\r\n\r\n..dot line\r\nl2\r\nl3\r\n.\r\n";
const RETR_2: &[u8] = b"+OK 20 octets\r\nSubject: two\r\n\r\nbody\r\n.\r\n";

#[test]
fn stat_list_uidl_are_relayed() {
    // Nothing known: LIST and UIDL come as the backend sent them, STAT is the sum of the
    // listing; the proxy's own UIDL goes first and is answered to nobody.
    let list: &[u8] = b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n";
    let own_uidl: &[u8] = b"+OK\r\n.\r\n";
    let answers = [own_uidl, list, list, b"+OK 1 abc\r\n"].concat();
    let (steps, tally) = replay_with(
        Limits::default(),
        &[
            In::Client(b"STAT\r\nlist\r\nUIDL 1\r\n"),
            In::Backend(&answers),
        ],
    );
    assert_eq!(steps[0].backend, "UIDL\r\nLIST\r\nLIST\r\nUIDL 1\r\n");
    assert_eq!(steps[0].client, "");
    assert!(!steps[0].idle);
    let expected = ["+OK 2 320\r\n".as_bytes(), list, b"+OK 1 abc\r\n"].concat();
    assert_eq!(steps[1].client.as_bytes(), expected);
    assert!(
        steps[1].lookups.is_empty(),
        "no unique-ids, nothing to look up"
    );
    assert!(steps[1].idle && steps[1].wants_client);
    assert_eq!(
        tally.bytes_up, 20,
        "the proxy's own UIDL is not the client's"
    );
    assert_eq!(tally.bytes_down, expected.len() as u64);
}

#[test]
fn refusals_come_in_order_with_forwarded_answers() {
    let script: &[u8] =
        b"XCLIENT ADDR=203.0.113.9\r\nDELE 1\r\nXCLIENT ADDR=1.2.3.4\r\nfoo bar\r\nNO\0OP\r\nUSER x\r\nNOOP\r\n";
    let steps = replay(&[In::Client(script), In::Backend(b"+OK 1 2\r\n+OK\r\n")]);
    // Nothing pending: the first refusal is answered at once.
    assert_eq!(steps[0].client, "-ERR XCLIENT not permitted\r\n");
    assert_eq!(
        steps[0].backend, "DELE 1\r\nNOOP\r\n",
        "only canonical allowed lines"
    );
    assert_eq!(steps[0].errors, 5);
    // The refusals after DELE wait for its answer, and NOOP's answer comes after them.
    let expected = [
        "+OK 1 2\r\n".to_string(),
        "-ERR XCLIENT not permitted\r\n".to_string(),
        refused(b"foo bar\r\n"),
        refused(b"NO\0OP\r\n"),
        refused(b"USER x\r\n"),
        "+OK\r\n".to_string(),
    ]
    .concat();
    assert_eq!(steps[1].client, expected);
    assert!(steps[1].idle);
}

#[test]
fn backend_errors_count() {
    let steps = replay(&[
        In::Client(b"DELE 9\r\n"),
        In::Backend(b"-ERR no such message\r\n"),
    ]);
    assert_eq!(steps[1].client, "-ERR no such message\r\n");
    assert_eq!(steps[1].errors, 1);
}

#[test]
fn retr_clean_serves_the_original_byte_for_byte() {
    let (steps, tally) = replay_with(
        Limits::default(),
        &[
            In::Client(b"RETR 1\r\n"),
            In::Backend(RETR_1),
            In::Verdict(0, clean(MESSAGE)),
        ],
    );
    assert_eq!(steps[0].backend, "RETR 1\r\n");
    assert_eq!(steps[1].client, "", "nothing before the verdict");
    let message = String::from_utf8_lossy(MESSAGE).to_string();
    assert_eq!(steps[1].scans, vec![(0, message, MessageRequest::Retr(1))]);
    assert!(!steps[1].idle);
    assert_eq!(steps[2].client.as_bytes(), RETR_1);
    assert!(steps[2].idle);
    assert_eq!((tally.scanned, tally.blocked), (1, 0));
}

#[test]
fn retr_blocked_serves_the_replacement_dot_stuffed() {
    let replacement = b"Subject: removed\r\n\r\n.virus removed\r\n";
    let (steps, tally) = replay_with(
        Limits::default(),
        &[
            In::Client(b"RETR 1\r\n"),
            In::Backend(RETR_1),
            In::Verdict(0, blocked(replacement)),
        ],
    );
    assert_eq!(
        steps[2].client,
        "+OK 36 octets\r\nSubject: removed\r\n\r\n..virus removed\r\n.\r\n"
    );
    assert_eq!((tally.scanned, tally.blocked), (1, 1));
}

#[test]
fn retr_temp_fail_is_withheld() {
    let fail = Disposition::TempFail {
        reason: "clamd down".into(),
    };
    let steps = replay(&[
        In::Client(b"RETR 1\r\n"),
        In::Backend(RETR_1),
        In::Verdict(0, fail),
    ]);
    assert_eq!(
        steps[2].client,
        "-ERR [SYS/TEMP] message could not be scanned now; try again later\r\n"
    );
}

#[test]
fn top_is_scanned_whole_then_cut() {
    let steps = replay(&[
        In::Client(b"TOP 1 1\r\n"),
        In::Backend(RETR_1),
        In::Verdict(0, clean(MESSAGE)),
        In::Client(b"TOP 1 0\r\n"),
        In::Backend(RETR_1),
        In::Verdict(1, blocked(b"Subject: removed\r\n\r\nbody\r\n")),
    ]);
    assert_eq!(steps[0].backend, "RETR 1\r\n", "forwarded as RETR");
    assert_eq!(steps[1].scans[0].2, MessageRequest::Top(1, 1));
    assert_eq!(
        steps[2].client,
        "+OK\r\nSubject: hi\r\n\r\n..dot line\r\n.\r\n"
    );
    assert_eq!(steps[3].backend, "RETR 1\r\n");
    assert_eq!(steps[5].client, "+OK\r\nSubject: removed\r\n\r\n.\r\n");
}

#[test]
fn pipelined_retrs_are_served_in_order() {
    let mut answers = RETR_1.to_vec();
    answers.extend_from_slice(RETR_2);
    answers.extend_from_slice(b"+OK\r\n");
    let message_2: &[u8] = b"Subject: two\r\n\r\nbody\r\n";
    // The second verdict first: its answer waits for the first.
    let steps = replay(&[
        In::Client(b"RETR 1\r\nRETR 2\r\nNOOP\r\n"),
        In::Backend(&answers),
        In::Verdict(1, clean(message_2)),
        In::Verdict(0, clean(MESSAGE)),
    ]);
    assert_eq!(steps[0].backend, "RETR 1\r\nRETR 2\r\nNOOP\r\n");
    assert_eq!(steps[1].scans.len(), 2);
    assert_eq!(steps[1].client, "");
    assert_eq!(steps[2].client, "");
    let mut expected = RETR_1.to_vec();
    expected.extend_from_slice(RETR_2);
    expected.extend_from_slice(b"+OK\r\n");
    assert_eq!(steps[3].client.as_bytes(), &expected[..]);
    assert!(steps[3].idle);
    // In order: the first answer goes as soon as it is scanned, the rest after the second.
    let steps = replay(&[
        In::Client(b"RETR 1\r\nRETR 2\r\nNOOP\r\n"),
        In::Backend(&answers),
        In::Verdict(0, clean(MESSAGE)),
        In::Verdict(1, clean(message_2)),
    ]);
    assert_eq!(steps[2].client.as_bytes(), RETR_1);
    assert_eq!(
        steps[3].client.as_bytes(),
        &expected[RETR_1.len()..],
        "RETR 2 and NOOP"
    );
}

#[test]
fn back_pressure_at_max_pipeline() {
    let limits = Limits {
        max_pipeline: 2,
        ..Limits::default()
    };
    let (steps, _) = replay_with(
        limits,
        &[
            In::Client(b"NOOP\r\nbad\r\nDELE 1\r\nRSET\r\n"),
            In::Backend(b"+OK\r\n"),
            In::Backend(b"+OK 0 0\r\n"),
            In::Backend(b"+OK\r\n"),
        ],
    );
    // NOOP and the refusal fill the pipeline; DELE and RSET are not read.
    assert_eq!(steps[0].backend, "NOOP\r\n");
    assert_eq!(steps[0].client, "");
    assert!(!steps[0].wants_client);
    assert_eq!(steps[1].client, format!("+OK\r\n{}", refused(b"bad\r\n")));
    assert_eq!(steps[1].backend, "DELE 1\r\nRSET\r\n");
    assert!(!steps[1].wants_client);
    assert_eq!(steps[2].client, "+OK 0 0\r\n");
    assert!(steps[2].wants_client);
    assert_eq!(steps[3].client, "+OK\r\n");
    assert!(steps[3].idle);
}

#[test]
fn quit_halts_reading() {
    let steps = replay(&[
        In::Client(b"QUIT\r\nNOOP\r\nRETR 1\r\n"),
        In::Client(b"STAT\r\n"),
        In::Backend(b"+OK Logging out.\r\n"),
    ]);
    assert_eq!(steps[0].backend, "QUIT\r\n");
    assert!(!steps[0].wants_client);
    assert_eq!(steps[1].backend, "");
    assert_eq!(steps[2].client, "+OK Logging out.\r\n");
    assert_eq!(steps[2].close, Some(Close::Logout));
}

#[test]
fn errors_reach_max_errors_when_idle() {
    // The driver ends the session once `errors() >= max_errors` and the core is idle.
    let steps = replay(&[
        In::Client(b"DELE 1\r\nbad 1\r\nbad 2\r\n"),
        In::Backend(b"+OK 0 0\r\n"),
    ]);
    assert_eq!(steps[0].errors, 2);
    assert!(!steps[0].idle, "the refusals wait behind DELE");
    assert!(steps[1].idle);
    assert_eq!(steps[1].errors, 2);
    // At the configured limit, the driver's condition holds after the refusals.
    let max_errors = crate::config::LimitsConfig::default().max_errors;
    let bad = "bad\r\n".repeat(max_errors as usize);
    let steps = replay(&[In::Client(bad.as_bytes())]);
    assert_eq!(
        steps[0].client,
        refused(b"bad\r\n").repeat(max_errors as usize)
    );
    assert!(steps[0].errors >= max_errors && steps[0].idle);
}

#[test]
fn capa_is_rewritten() {
    let steps = replay(&[
        In::Client(b"CAPA\r\n"),
        In::Backend(b"+OK\r\nTOP\r\nUIDL\r\nXCLIENT\r\nSTLS\r\nX-FANCY 1\r\nPIPELINING\r\n.\r\n"),
    ]);
    let capa = &steps[1].client;
    assert!(
        capa.starts_with("+OK\r\n") && capa.ends_with("\r\n.\r\n"),
        "{capa}"
    );
    assert!(
        capa.contains("TOP\r\n") && capa.contains("UIDL\r\n"),
        "{capa}"
    );
    assert!(
        !capa.contains("XCLIENT") && !capa.contains("X-FANCY"),
        "{capa}"
    );
}

#[test]
fn backend_close_tells_a_waiting_client() {
    let steps = replay(&[In::Client(b"STAT\r\n"), In::BackendClosed]);
    assert_eq!(
        steps[1].client.as_bytes(),
        b"-ERR [SYS/TEMP] mail server closed the connection\r\n"
    );
    assert_eq!(steps[1].close, Some(Close::BackendClosed));
    let steps = replay(&[In::BackendClosed]);
    assert_eq!(steps[0].client, "", "nothing owed");
    assert_eq!(steps[0].close, Some(Close::BackendClosed));
}

#[test]
fn framing_errors_close() {
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 2000));
    let steps = replay(&[
        In::Client(b"NOOP\r\n"),
        In::Client(&long),
        In::Client(b"\r\nSTAT\r\n"),
    ]);
    assert!(matches!(
        steps[1].close,
        Some(Close::ClientFraming(FrameError::LineTooLong(_)))
    ));
    assert_eq!(steps[2], Step::default_closed(&steps[2]));
    let steps = replay(&[In::Client(b"STAT\r\n"), In::Backend(b"what?\r\n")]);
    assert_eq!(
        steps[1].close,
        Some(Close::BackendFraming(FrameError::BadResponse))
    );
}

impl Step {
    /// Nothing happens after the close.
    fn default_closed(observed: &Step) -> Step {
        Step {
            wants_client: false,
            idle: observed.idle,
            errors: observed.errors,
            ..Step::default()
        }
    }
}

#[path = "transaction_views_tests.rs"]
mod views;
