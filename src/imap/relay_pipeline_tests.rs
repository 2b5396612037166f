//! Pipelined FETCHes and the proxy's own FETCH, as byte scripts replayed at every chunk size
//! (see [`super`]): responses are matched to the command they answer, equal signatures are
//! serialised, and a verdict missing from the cache is obtained by fetching the message.

use super::*;

/// SELECT, then `f FETCH 1 (FLAGS BODY[TEXT])` scanned clean: seq 1 is known to be UID 42.
fn selected_and_scanned() -> Vec<In<'static>> {
    vec![
        In::Client(SELECT),
        In::Backend(SELECTED),
        In::Client(b"f FETCH 1 (FLAGS BODY[TEXT])\r\n"),
        In::Backend(FETCHED),
        In::Scanned(1, clean(MESSAGE)),
    ]
}

const OTHER: &[u8] = b"Subject: other\r\n\r\nvirus\r\n";
/// `g FETCH 1 (BODY[TEXT])` answered for UID 43 (sequence numbers moved), then more.
const MOVED: &[u8] =
    b"* 1 FETCH (BODY[TEXT] {7}\r\nvirus\r\n UID 43)\r\n* 5 EXISTS\r\ng OK done\r\n";
const OTHER_REFERENCE: &str = "alice/Some(\"INBOX\")/Some(9)/uid Some(43)/seq Some(1)";

/// A cache hit planned the FETCH without the whole message; the response is for another UID
/// whose verdict is not cached.
fn moved_under_a_cached_plan() -> Vec<In<'static>> {
    let mut script = selected_and_scanned();
    script.extend([
        In::Client(b"g FETCH 1 (BODY[TEXT])\r\nn NOOP\r\n"),
        In::Probed(2, true),
        In::Backend(MOVED),
        In::LookedUp(3, None),
    ]);
    script
}

#[test]
fn a_missing_verdict_is_obtained_by_the_proxys_own_fetch() {
    let mut script = moved_under_a_cached_plan();
    script.extend([
        In::Backend(
            b"n OK done\r\n* 1 FETCH (UID 43 BODY[] {25}\r\nSubject: other\r\n\r\nvirus\r\n)\r\n",
        ),
        In::Backend(b"PCL1 OK Fetch completed\r\n"),
        In::Scanned(5, blocked(REPLACEMENT)),
    ]);
    let steps = replay(&script);
    assert_eq!(steps[6].backend, "g FETCH 1 (BODY[TEXT] UID)\r\nn NOOP\r\n");
    assert_eq!(steps[7].requests, [format!("lookup 3 {OTHER_REFERENCE}")]);
    // The proxy fetches the message itself; nothing reaches the client meanwhile.
    assert_eq!(steps[8].backend, "PCL1 UID FETCH 43 (UID BODY.PEEK[])\r\n");
    assert_eq!(
        (steps[8].client.as_str(), steps[8].wants_client),
        ("", false)
    );
    assert_eq!(
        (steps[9].client.as_str(), steps[9].backend.as_str()),
        ("", "")
    );
    assert_eq!(
        steps[10].requests,
        [format!(
            "scan 5 {} {OTHER_REFERENCE}",
            String::from_utf8_lossy(OTHER)
        )]
    );
    assert_eq!(steps[10].backend, "");
    // Served from the verdict, followed by what was set aside, in the server's order.
    assert_eq!(
        steps[11].client,
        "* 1 FETCH (BODY[TEXT] {9}\r\nremoved\r\n)\r\n* 5 EXISTS\r\ng OK done\r\nn OK done\r\n"
    );
    assert!(steps[11].idle && steps[11].wants_client);
}

#[test]
fn a_message_gone_from_the_server_is_withheld() {
    let mut script = moved_under_a_cached_plan();
    script.push(In::Backend(b"PCL1 OK Fetch completed\r\nn OK done\r\n"));
    let steps = replay(&script);
    assert_eq!(
        steps[9].client,
        "* 5 EXISTS\r\ng NO [UNAVAILABLE] 1 message(s) could not be scanned now; try again \
         later\r\nn OK done\r\n"
    );
    assert!(steps[9].idle);
}

#[test]
fn a_client_cannot_use_the_tag_of_the_proxys_own_fetch() {
    let mut core = core(true, false);
    for input in moved_under_a_cached_plan() {
        match input {
            In::Client(bytes) => drop(core.client(bytes)),
            In::Backend(bytes) => drop(core.backend(bytes)),
            In::Scanned(id, d) => drop(core.scanned(WaitId(id), d)),
            In::LookedUp(id, c) => drop(core.looked_up(WaitId(id), c)),
            In::Probed(id, all) => drop(core.probed(WaitId(id), all)),
            _ => unreachable!("not in this script"),
        }
    }
    // Too much arrives before the own FETCH's answer: the held response is withheld.
    let mut flood = Vec::new();
    for n in 0..100_000 {
        flood.extend_from_slice(format!("* {n} EXISTS\r\n").as_bytes());
    }
    let mut client = Vec::new();
    for action in core.backend(&flood) {
        if let Action::ToClient(bytes) = action {
            client.extend_from_slice(&bytes);
        }
    }
    let text = String::from_utf8_lossy(&client);
    assert!(
        text.starts_with("* 5 EXISTS\r\ng NO [UNAVAILABLE] 1 message(s)"),
        "{text:.80}"
    );
    assert!(text.ends_with("* 99999 EXISTS\r\n"));
    // The session goes on; the own FETCH is still in flight, and its tag is refused.
    let refused: Vec<_> = core.client(b"PCL1 NOOP\r\n");
    assert_eq!(
        refused,
        [Action::ToClient(Bytes::from_static(
            b"PCL1 BAD [CLIENTBUG] tag in use, try another\r\n"
        ))]
    );
    // Its responses are dropped when they come.
    let late = core.backend(b"n OK done\r\n* 1 FETCH (UID 43 BODY[] {5}\r\nvirus)\r\nPCL1 OK\r\n");
    assert_eq!(
        late,
        [Action::ToClient(Bytes::from_static(b"n OK done\r\n"))]
    );
    assert!(core.is_idle());
}

#[test]
fn responses_are_matched_to_the_fetch_they_answer() {
    let steps = replay(&[
        In::Client(b"f FETCH 1 (BODY[HEADER])\r\ng UID FETCH 7 (BODY[])\r\n"),
        // The server may answer pipelined commands in any order (RFC 9051 §5.5).
        In::Backend(b"* 1 FETCH (UID 7 BODY[] {4}\r\nabc!)\r\n"),
        In::Scanned(1, clean(b"abc!")),
        In::Backend(b"* 1 FETCH (UID 7 BODY[HEADER] {2}\r\n\r\n BODY[] {4}\r\nabc!)\r\n"),
        In::Scanned(2, clean(b"abc!")),
        In::Backend(b"g OK done\r\nf OK done\r\n"),
    ]);
    assert_eq!(
        steps[0].backend,
        "f FETCH 1 (BODY[HEADER] BODY.PEEK[] UID)\r\ng UID FETCH 7 (BODY[])\r\n"
    );
    // g asked for BODY[] itself (and gets UID as a UID command): nothing is removed.
    assert_eq!(steps[2].client, "* 1 FETCH (UID 7 BODY[] {4}\r\nabc!)\r\n");
    // f's added BODY[] and UID are removed from f's response only.
    assert_eq!(steps[4].client, "* 1 FETCH (BODY[HEADER] {2}\r\n\r\n)\r\n");
    assert_eq!(steps[5].client, "g OK done\r\nf OK done\r\n");
}

#[test]
fn fetches_with_equal_signatures_are_serialised() {
    let steps = replay(&[
        In::Client(b"f FETCH 1 (BODY[HEADER])\r\ng FETCH 2 (BODY[HEADER])\r\nn NOOP\r\n"),
        In::Backend(b"* 1 FETCH (UID 7 BODY[HEADER] {2}\r\n\r\n BODY[] {2}\r\n\r\n)\r\n"),
        In::Scanned(1, clean(b"\r\n")),
        In::Backend(b"f OK done\r\n"),
        In::Backend(b"* 2 FETCH (BODY[HEADER] {2}\r\n\r\n UID 8 BODY[] {2}\r\n\r\n)\r\n"),
        In::Scanned(2, clean(b"\r\n")),
        In::Backend(b"g OK done\r\nn OK done\r\n"),
    ]);
    assert_eq!(
        steps[0].backend,
        "f FETCH 1 (BODY[HEADER] BODY.PEEK[] UID)\r\n"
    );
    assert!(!steps[0].wants_client);
    assert_eq!(steps[2].backend, "");
    assert_eq!(
        steps[3].backend,
        "g FETCH 2 (BODY[HEADER] BODY.PEEK[] UID)\r\nn NOOP\r\n"
    );
    assert_eq!(steps[3].client, "f OK done\r\n");
    assert!(steps[3].wants_client);
    assert_eq!(steps[5].client, "* 2 FETCH (BODY[HEADER] {2}\r\n\r\n)\r\n");
    assert!(steps[6].idle);
}

#[test]
fn unsolicited_fetch_responses_pass_unchanged_while_a_fetch_is_scanned() {
    let steps = replay(&[
        In::Client(b"f FETCH 1 (BODY[TEXT])\r\nu UID STORE 9 +FLAGS (\\Seen)\r\n"),
        In::Backend(b"* 3 FETCH (UID 9 FLAGS (\\Seen))\r\nu OK stored\r\n"),
    ]);
    assert_eq!(
        steps[1].client,
        "* 3 FETCH (UID 9 FLAGS (\\Seen))\r\nu OK stored\r\n"
    );
}

#[test]
fn a_fetch_behind_a_pipelined_select_is_planned_without_the_cache() {
    let mut script = selected_and_scanned();
    script.push(In::Client(b"t SELECT Other\r\ng FETCH 1 (BODY[TEXT])\r\n"));
    let steps = replay(&script);
    assert!(steps[5].requests.is_empty(), "{:?}", steps[5].requests);
    assert_eq!(
        steps[5].backend,
        "t SELECT Other\r\ng FETCH 1 (BODY[TEXT] BODY.PEEK[] UID)\r\n"
    );
}

#[test]
fn a_sequence_fetch_behind_a_pipelined_expunge_is_planned_without_the_cache() {
    let mut script = selected_and_scanned();
    script.push(In::Client(
        b"x EXPUNGE\r\ng FETCH 1 (BODY[TEXT])\r\nh UID FETCH 42 (BODY[TEXT])\r\n",
    ));
    let steps = replay(&script);
    assert_eq!(
        steps[5].backend,
        "x EXPUNGE\r\ng FETCH 1 (BODY[TEXT] BODY.PEEK[] UID)\r\n"
    );
    // UIDs do not move: the UID FETCH is planned from the cache (its signature differs).
    assert_eq!(steps[5].requests, ["probe 2 [Some(42)]"]);
}

#[test]
fn no_own_fetch_behind_a_pipelined_logout() {
    let mut script = selected_and_scanned();
    script.extend([
        In::Client(b"g FETCH 1 (BODY[TEXT])\r\nz LOGOUT\r\n"),
        In::Probed(2, true),
        In::Backend(MOVED),
        In::LookedUp(3, None),
    ]);
    let steps = replay(&script);
    assert_eq!(steps[8].backend, "");
    assert!(
        steps[8].client.contains("g NO [UNAVAILABLE]"),
        "{}",
        steps[8].client
    );
}
