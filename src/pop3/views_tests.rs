//! Parsing and rewriting of `LIST`/`STAT`/`UIDL` answers, and what a session knows.

use super::*;
use crate::scan::fixtures::{blocked, clean, tempfail};

fn listing(raw: &[u8]) -> MultiLine {
    let status_len = raw
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |i| i + 1);
    MultiLine::from_raw(Bytes::copy_from_slice(raw), status_len, 3)
}

#[test]
fn served_len_is_what_from_parts_serves() {
    for body in [
        &b""[..],
        b"a",
        b"a\r\n",
        b"Subject: x\r\n\r\n.dot\r\nlast",
        b"bare\nlf\n",
        b".\r\n",
    ] {
        let served = MultiLine::from_parts(b"+OK\r\n", body).body();
        assert_eq!(served_len(body), served.len() as u64, "{body:?}");
    }
}

#[test]
fn served_of_dispositions() {
    assert_eq!(Served::of(&clean(b"abc")), Some(Served::Original));
    assert_eq!(Served::of(&blocked(b"notice\r\n")), Some(Served::Octets(8)));
    assert_eq!(
        Served::of(&blocked(b"no line end")),
        Some(Served::Octets(13))
    );
    let modified = Disposition::Deliver {
        bytes: Bytes::from_static(b"tagged\r\n"),
        modified: true,
        verdict: crate::scan::Verdict::Clean,
    };
    assert_eq!(Served::of(&modified), Some(Served::Octets(8)));
    assert_eq!(Served::of(&tempfail()), None);
    assert_eq!(Served::of_cached(&Cached::Clean), Some(Served::Original));
    assert_eq!(Served::Octets(5).size(99), 5);
    assert_eq!(Served::Original.size(99), 99);
}

#[test]
fn scan_listing_parses_rfc_1939_lines_and_skips_others() {
    let body = b"1 120\r\n2 200 extra\r\nx 5\r\n3\r\n4 -1\r\n5 7";
    assert_eq!(scan_listing(body), vec![(1, 120), (2, 200), (5, 7)]);
    assert_eq!(scan_listing(b""), vec![]);
    assert_eq!(
        scan_listing(b"99999999999 1\r\n"),
        vec![],
        "msgno beyond u32"
    );
}

#[test]
fn rewrite_listing_changes_only_known_sizes() {
    let raw = b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200 x\r\nbogus\r\n.\r\n";
    let response = listing(raw);
    // Nothing changes: relayed as it came.
    assert_eq!(&rewrite_listing(&response, |_, o| o)[..], &raw[..]);
    let out = rewrite_listing(&response, |n, o| if n == 2 { 31 } else { o });
    assert_eq!(
        &out[..],
        b"+OK 2 messages (151 octets)\r\n1 120\r\n2 31 x\r\nbogus\r\n.\r\n"
    );
    // A status line without a total stays as it is.
    let response = listing(b"+OK 2 messages:\r\n1 120\r\n2 200\r\n.\r\n");
    let out = rewrite_listing(&response, |_, _| 7);
    assert_eq!(&out[..], b"+OK 2 messages:\r\n1 7\r\n2 7\r\n.\r\n");
}

#[test]
fn status_totals() {
    assert_eq!(
        octets_total(b"+OK 2 messages (320 octets)\r\n", 5),
        b"+OK 2 messages (5 octets)\r\n"
    );
    assert_eq!(octets_total(b"+OK (octets)\r\n", 5), b"+OK (octets)\r\n");
    assert_eq!(
        octets_total(b"+OK 12 octets)\r\n", 5),
        b"+OK 12 octets)\r\n"
    );
}

#[test]
fn rewrite_scan_line_and_stat() {
    let line = Bytes::from_static(b"+OK 2 200\r\n");
    assert_eq!(&rewrite_scan_line(&line, |_, o| o)[..], b"+OK 2 200\r\n");
    assert_eq!(&rewrite_scan_line(&line, |_, _| 31)[..], b"+OK 2 31\r\n");
    let odd = Bytes::from_static(b"+OK two 200\r\n");
    assert_eq!(&rewrite_scan_line(&odd, |_, _| 31)[..], &odd[..]);
    let entries = [(1, 120), (2, 200)];
    assert_eq!(&stat_line(&entries, |_, o| o)[..], b"+OK 2 320\r\n");
    assert_eq!(
        &stat_line(&entries, |n, o| if n == 1 { 5 } else { o })[..],
        b"+OK 2 205\r\n"
    );
    assert_eq!(&stat_line(&[], |_, o| o)[..], b"+OK 0 0\r\n");
}

#[test]
fn unique_ids_follow_rfc_1939_section_7() {
    let mut knowledge = Knowledge::default();
    assert!(knowledge.needs_ids());
    let long = "x".repeat(71);
    let body = format!("1 abc\r\n2 {long}\r\n3 a\x7fb\r\n4 ok-4\r\nnot a line\r\n");
    knowledge.learn_listing(body.as_bytes());
    assert!(!knowledge.needs_ids());
    assert_eq!(knowledge.uidl(1), Some("abc"));
    assert_eq!(knowledge.uidl(2), None, "longer than 70");
    assert_eq!(knowledge.uidl(3), None, "outside 0x21-0x7E");
    assert_eq!(knowledge.uidl(4), Some("ok-4"));
    knowledge.learn_line(b"+OK 7 seven\r\n");
    assert_eq!(knowledge.uidl(7), Some("seven"));
    knowledge.learn_line(b"-ERR no such message\r\n");
    // Unavailable does not undo a listing.
    knowledge.ids_unavailable();
    assert!(!knowledge.needs_ids());
    assert_eq!(knowledge.uidl(1), Some("abc"));
}

#[test]
fn knowledge_from_scans_and_lookups() {
    let mut knowledge = Knowledge::default();
    knowledge.learn_listing(b"1 u1\r\n2 u2\r\n3 u3\r\n");
    assert_eq!(
        knowledge.to_look_up([1, 2, 2, 9]),
        vec![(1, "u1".to_string()), (2, "u2".to_string())],
        "9 has no unique-id; asked once each"
    );
    knowledge.record(1, &blocked(b"notice\r\n"));
    knowledge.record(3, &tempfail());
    assert_eq!(knowledge.size(1, 500), 8);
    assert_eq!(
        knowledge.size(3, 500),
        500,
        "a temporary failure teaches nothing"
    );
    knowledge.looked_up(2, None);
    assert_eq!(knowledge.to_look_up([1, 2, 3]), vec![(3, "u3".to_string())]);
    knowledge.looked_up(3, Some(&Cached::Serve(blocked(b"n"))));
    assert_eq!(knowledge.size(3, 500), 3);
    // A scan after a miss is known.
    knowledge.record(2, &clean(b"x"));
    assert!(knowledge.is_known(2));
    assert_eq!(knowledge.size(2, 500), 500);
}

#[test]
fn structure_scans_are_bounded() {
    let mut knowledge = Knowledge::default();
    let entries: Vec<(u32, u64)> = (1..=150).map(|n| (n, 1000)).collect();
    knowledge.record(1, &clean(b"x"));
    let chosen = knowledge.unscanned(&entries);
    assert_eq!(chosen.len(), STRUCTURE_SCAN_MESSAGES);
    assert_eq!(chosen[0], 2, "known messages are not scanned again");
    // The octet budget skips what does not fit and goes on with what does.
    let entries = [
        (5, STRUCTURE_SCAN_OCTETS + 1),
        (6, STRUCTURE_SCAN_OCTETS - 10),
        (7, 11),
        (8, 10),
    ];
    assert_eq!(knowledge.unscanned(&entries), vec![6, 8]);
}
