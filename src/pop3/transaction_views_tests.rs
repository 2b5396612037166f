//! Byte scripts for the views (issue 9, item 2): once a disposition is known, `LIST n`,
//! `LIST`, `STAT` show the octets `RETR` serves and `UIDL` the backend's unique-ids; the cache
//! is asked by unique-id; `scan_on_structure` scans with the proxy's own `RETR` first. Every
//! script is replayed at client and backend chunk sizes 1..=512 (see the parent module).

use super::*;
use crate::pop3::views::STRUCTURE_SCAN_OCTETS;

/// The replacement a blocked [`MESSAGE`] gets: 57 octets served (a line end is added).
const NOTICE: &[u8] = b"Subject: removed\r\n\r\n.a line with a dot\r\nno line end";
const NOTICE_SERVED: u64 = NOTICE.len() as u64 + 2;
/// The backend's UIDL listing (the proxy's own or the client's).
const UIDL: &[u8] = b"+OK\r\n1 u-one\r\n2 u-two\r\n.\r\n";
/// The backend's LIST: 36 and 20 octets, as [`RETR_1`] and [`RETR_2`] carry.
const LIST: &[u8] = b"+OK 2 messages (56 octets)\r\n1 36\r\n2 20\r\n.\r\n";

fn ids(pairs: &[(u32, &str)]) -> Vec<(u32, String)> {
    pairs.iter().map(|&(n, id)| (n, id.to_string())).collect()
}

/// The octets of the message a RETR answer carries (status line and terminator off,
/// dot-stuffing undone): what RFC 1939 §5 calls its size.
fn retr_octets(answer: &str) -> u64 {
    let body = answer
        .split_once("\r\n")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.strip_suffix(".\r\n"))
        .unwrap_or_default();
    crate::pop3::multiline::unstuff(body.as_bytes()).len() as u64
}

#[test]
fn after_a_block_every_view_shows_what_retr_serves() {
    let list_one: &[u8] = b"+OK 1 36\r\n";
    let stat_list = LIST;
    let backend = [list_one, LIST, stat_list, UIDL].concat();
    let (steps, tally) = replay_with(
        Limits::default(),
        &[
            In::Client(b"UIDL\r\nRETR 1\r\n"),
            In::Backend(&[UIDL, RETR_1].concat()),
            In::Verdict(0, blocked(NOTICE)),
            In::Client(b"LIST 1\r\nLIST\r\nSTAT\r\nUIDL\r\n"),
            In::Backend(&backend),
            In::LookedUp(0, vec![None]),
            In::LookedUp(1, vec![None]),
        ],
    );
    // The client's UIDL came first: no UIDL of the proxy's own.
    assert_eq!(steps[0].backend, "UIDL\r\nRETR 1\r\n");
    assert_eq!(steps[1].scan_ids, vec![Some("u-one".to_string())]);
    assert_eq!(steps[1].client.as_bytes(), UIDL);
    let served = retr_octets(&steps[2].client);
    assert_eq!(served, NOTICE_SERVED);
    assert!(steps[2]
        .client
        .starts_with(&format!("+OK {served} octets\r\n")));
    assert_eq!(steps[3].backend, "LIST 1\r\nLIST\r\nLIST\r\nUIDL\r\n");
    // LIST 1 is known at once; LIST and STAT ask the cache about message 2.
    assert_eq!(steps[4].client, format!("+OK 1 {served}\r\n"));
    assert_eq!(
        steps[4].lookups,
        vec![(0, ids(&[(2, "u-two")])), (1, ids(&[(2, "u-two")]))]
    );
    let total = served + 20;
    assert_eq!(
        steps[5].client,
        format!("+OK 2 messages ({total} octets)\r\n1 {served}\r\n2 20\r\n.\r\n")
    );
    // STAT is the sum; UIDL is the backend's, unchanged for the blocked message.
    let uidl = std::str::from_utf8(UIDL).unwrap();
    assert_eq!(steps[6].client, format!("+OK 2 {total}\r\n{uidl}"));
    assert!(steps[6].idle);
    assert_eq!((tally.scanned, tally.blocked), (1, 1));
}

#[test]
fn a_new_session_finds_dispositions_in_the_cache_by_unique_id() {
    let list_one: &[u8] = b"+OK 1 36\r\n";
    let backend = [UIDL, LIST, LIST, list_one].concat();
    let cached = vec![Some(Cached::Serve(blocked(NOTICE))), Some(Cached::Clean)];
    let (steps, tally) = replay_with(
        Limits::default(),
        &[
            In::Client(b"LIST\r\nSTAT\r\nLIST 1\r\n"),
            In::Backend(&backend),
            In::LookedUp(0, cached.clone()),
            In::LookedUp(1, cached),
            In::LookedUp(2, vec![Some(Cached::Serve(blocked(NOTICE)))]),
        ],
    );
    // Nobody asked for the unique-ids: the proxy does, before the first LIST.
    assert_eq!(steps[0].backend, "UIDL\r\nLIST\r\nLIST\r\nLIST 1\r\n");
    assert_eq!(
        tally.bytes_up, 20,
        "LIST, STAT as LIST, LIST 1: the client's"
    );
    let both = ids(&[(1, "u-one"), (2, "u-two")]);
    let one = ids(&[(1, "u-one")]);
    assert_eq!(
        steps[1].lookups,
        vec![(0, both.clone()), (1, both), (2, one)]
    );
    assert_eq!(steps[1].client, "", "nothing before the cache answered");
    let total = NOTICE_SERVED + 20;
    assert_eq!(
        steps[2].client,
        format!("+OK 2 messages ({total} octets)\r\n1 {NOTICE_SERVED}\r\n2 20\r\n.\r\n")
    );
    assert_eq!(steps[3].client, format!("+OK 2 {total}\r\n"));
    assert_eq!(steps[4].client, format!("+OK 1 {NOTICE_SERVED}\r\n"));
    assert!(steps[4].idle);
    let shown: usize = steps.iter().map(|step| step.client.len()).sum();
    assert_eq!(tally.bytes_down, shown as u64);
}

#[test]
fn before_the_first_scan_the_backend_values_show() {
    // A cache miss: LIST n and UIDL n as the backend sent them.
    let (steps, _) = replay_with(
        Limits::default(),
        &[
            In::Client(b"LIST 2\r\nUIDL 2\r\n"),
            In::Backend(&[UIDL, b"+OK 2 20\r\n+OK 2 u-two\r\n"].concat()),
            In::LookedUp(0, vec![None]),
            In::Client(b"LIST 2\r\n"),
            In::Backend(b"+OK 2 20\r\n"),
        ],
    );
    assert_eq!(steps[0].backend, "UIDL\r\nLIST 2\r\nUIDL 2\r\n");
    assert_eq!(steps[1].lookups, vec![(0, ids(&[(2, "u-two")]))]);
    assert_eq!(steps[2].client, "+OK 2 20\r\n+OK 2 u-two\r\n");
    // A miss is not asked again; the proxy's UIDL is not sent twice.
    assert_eq!(steps[3].backend, "LIST 2\r\n");
    assert!(steps[4].lookups.is_empty());
    assert_eq!(steps[4].client, "+OK 2 20\r\n");
}

#[test]
fn uidl_n_teaches_the_unique_id_for_the_scan() {
    let steps = replay(&[
        In::Client(b"RETR 2\r\n"),
        In::Backend(RETR_2),
        In::Verdict(0, clean(b"Subject: two\r\n\r\nbody\r\n")),
        In::Client(b"UIDL 1\r\nRETR 1\r\n"),
        In::Backend(&[b"+OK 1 u-one\r\n", RETR_1].concat()),
    ]);
    // RETR alone sends nothing of the proxy's own: the verdict just has no unique-id.
    assert_eq!(steps[0].backend, "RETR 2\r\n");
    assert_eq!(steps[1].scan_ids, vec![None]);
    assert_eq!(steps[4].scan_ids, vec![Some("u-one".to_string())]);
}

#[test]
fn a_backend_without_uidl_still_shows_this_sessions_scans() {
    let (steps, _) = replay_with(
        Limits::default(),
        &[
            In::Client(b"RETR 1\r\n"),
            In::Backend(RETR_1),
            In::Verdict(0, blocked(NOTICE)),
            In::Client(b"LIST\r\nLIST 1\r\n"),
            In::Backend(&[b"-ERR no UIDL here\r\n", LIST, b"+OK 1 36\r\n"].concat()),
        ],
    );
    assert_eq!(steps[3].backend, "UIDL\r\nLIST\r\nLIST 1\r\n");
    assert_eq!(
        steps[4].errors, 0,
        "the proxy's own -ERR is not the client's"
    );
    assert!(steps[4].lookups.is_empty());
    let total = NOTICE_SERVED + 20;
    assert_eq!(
        steps[4].client,
        format!(
            "+OK 2 messages ({total} octets)\r\n1 {NOTICE_SERVED}\r\n2 20\r\n.\r\n\
             +OK 1 {NOTICE_SERVED}\r\n"
        )
    );
}

#[test]
fn errors_and_temporary_failures_change_nothing() {
    let steps = replay(&[
        In::Client(b"RETR 1\r\n"),
        In::Backend(RETR_1),
        In::Verdict(0, crate::scan::fixtures::tempfail()),
        In::Client(b"UIDL\r\nLIST 9\r\nSTAT\r\n"),
        In::Backend(&[UIDL, b"-ERR no such message\r\n-ERR odd\r\n"].concat()),
    ]);
    assert_eq!(steps[3].backend, "UIDL\r\nLIST 9\r\nLIST\r\n");
    let uidl = std::str::from_utf8(UIDL).unwrap();
    assert_eq!(
        steps[4].client,
        format!("{uidl}-ERR no such message\r\n-ERR odd\r\n")
    );
    assert_eq!(steps[4].errors, 2);
}

#[test]
fn scan_on_structure_scans_before_answering() {
    let (steps, tally) = replay_all(
        Limits::default(),
        true,
        &[
            In::Client(b"LIST\r\n"),
            In::Backend(&[UIDL, LIST].concat()),
            In::LookedUp(0, vec![None, None]),
            In::Backend(RETR_1),
            In::Verdict(0, blocked(NOTICE)),
            In::Backend(RETR_2),
            In::Verdict(1, clean(b"Subject: two\r\n\r\nbody\r\n")),
            In::Client(b"RETR 1\r\n"),
            In::Backend(RETR_1),
            In::Verdict(2, blocked(NOTICE)),
        ],
    );
    assert_eq!(steps[0].backend, "UIDL\r\nLIST\r\n");
    // Not cached: the proxy fetches message 1, then 2, one at a time, and answers nothing yet.
    assert_eq!(steps[2].backend, "RETR 1\r\n");
    assert_eq!(steps[2].client, "");
    assert_eq!(steps[3].scan_ids, vec![Some("u-one".to_string())]);
    assert_eq!(steps[4].backend, "RETR 2\r\n");
    assert_eq!(steps[4].client, "");
    let total = NOTICE_SERVED + 20;
    assert_eq!(
        steps[6].client,
        format!("+OK 2 messages ({total} octets)\r\n1 {NOTICE_SERVED}\r\n2 20\r\n.\r\n")
    );
    assert!(steps[6].idle);
    // The client's RETR gets exactly the size LIST gave.
    assert_eq!(retr_octets(&steps[9].client), NOTICE_SERVED);
    assert_eq!((tally.scanned, tally.blocked), (3, 2));
    assert_eq!(
        tally.bytes_down,
        (steps[6].client.len() + steps[9].client.len()) as u64,
        "the proxy's own answers reach nobody"
    );
}

#[test]
fn scan_on_structure_skips_cached_known_and_oversized_messages() {
    let huge = STRUCTURE_SCAN_OCTETS + 1;
    let list = format!("+OK\r\n1 36\r\n2 20\r\n3 {huge}\r\n.\r\n");
    let steps = replay_all(
        Limits::default(),
        true,
        &[
            In::Client(b"UIDL\r\nLIST\r\n"),
            In::Backend(&[UIDL, list.as_bytes()].concat()),
            In::LookedUp(0, vec![Some(Cached::Serve(blocked(NOTICE))), None]),
            In::Backend(RETR_2),
            In::Verdict(0, clean(b"Subject: two\r\n\r\nbody\r\n")),
        ],
    )
    .0;
    // 1 is cached, 3 has no unique-id (not looked up) and is over the octet budget.
    assert_eq!(
        steps[1].lookups,
        vec![(0, ids(&[(1, "u-one"), (2, "u-two")]))]
    );
    assert_eq!(steps[2].backend, "RETR 2\r\n");
    assert_eq!(
        steps[1].client.as_bytes(),
        UIDL,
        "the client's UIDL at once"
    );
    assert_eq!(steps[2].client, "", "LIST waits for the scan");
    assert_eq!(
        steps[4].client,
        format!("+OK\r\n1 {NOTICE_SERVED}\r\n2 20\r\n3 {huge}\r\n.\r\n")
    );
}

#[test]
fn scan_on_structure_own_retr_refused_or_withheld() {
    // DELE 1 pipelined behind LIST reaches the backend before the proxy's RETR 1.
    let steps = replay_all(
        Limits::default(),
        true,
        &[
            In::Client(b"LIST\r\nDELE 1\r\n"),
            In::Backend(&[UIDL, LIST, b"+OK marked\r\n"].concat()),
            In::LookedUp(0, vec![None, None]),
            In::Backend(b"-ERR message 1 is deleted\r\n"),
            In::Backend(RETR_2),
            In::Verdict(0, crate::scan::fixtures::tempfail()),
        ],
    )
    .0;
    assert_eq!(steps[2].backend, "RETR 1\r\n");
    assert_eq!(steps[3].backend, "RETR 2\r\n");
    assert_eq!(steps[3].errors, 0);
    assert_eq!(
        steps[5].client,
        format!("{}+OK marked\r\n", std::str::from_utf8(LIST).unwrap()),
        "original sizes"
    );
    assert!(steps[5].idle);
}

#[test]
fn scan_on_structure_stops_at_quit() {
    let steps = replay_all(
        Limits::default(),
        true,
        &[
            In::Client(b"STAT\r\nQUIT\r\n"),
            In::Backend(&[UIDL, LIST].concat()),
            In::LookedUp(0, vec![None, None]),
            In::Backend(b"+OK bye\r\n"),
        ],
    )
    .0;
    assert_eq!(steps[0].backend, "UIDL\r\nLIST\r\nQUIT\r\n");
    // The backend answers nothing after QUIT: no RETR of the proxy's own.
    assert_eq!(steps[2].backend, "");
    assert_eq!(steps[2].client, "+OK 2 56\r\n");
    assert_eq!(steps[3].client, "+OK bye\r\n");
    assert_eq!(steps[3].close, Some(Close::Logout));
}

#[test]
fn the_proxys_own_commands_do_not_count_against_max_pipeline() {
    let limits = Limits {
        max_pipeline: 2,
        ..Limits::default()
    };
    let (steps, _) = replay_all(
        limits,
        true,
        &[
            In::Client(b"LIST\r\nNOOP\r\nNOOP\r\n"),
            In::Backend(&[UIDL, LIST, b"+OK\r\n"].concat()),
            In::LookedUp(0, vec![None, None]),
            In::Backend(RETR_1),
        ],
    );
    // The proxy's UIDL does not take the client's room; its RETR goes with the pipeline full.
    assert_eq!(steps[0].backend, "UIDL\r\nLIST\r\nNOOP\r\n");
    assert!(steps[0].close.is_none() && !steps[0].wants_client);
    assert_eq!(steps[2].backend, "RETR 1\r\n");
    assert!(steps[2].close.is_none());
    assert_eq!(steps[3].scans.len(), 1);
}
