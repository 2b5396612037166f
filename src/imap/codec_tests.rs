//! Unit and property tests for the IMAP framer: every script is replayed at every chunk size
//! from 1 to 512 and must yield identical events.

use super::*;
use proptest::prelude::*;

fn run(role: Role, limits: Limits, input: &[u8], chunk: usize) -> (Vec<Event>, Option<FrameError>) {
    let mut framer = Framer::new(role, limits);
    let mut events = Vec::new();
    for piece in input.chunks(chunk) {
        framer.feed(piece);
        loop {
            match framer.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, Some(error)),
            }
        }
    }
    (events, None)
}

fn replay_all_chunk_sizes(
    role: Role,
    limits: Limits,
    input: &[u8],
) -> (Vec<Event>, Option<FrameError>) {
    let reference = run(role, limits, input, input.len().max(1));
    for chunk in 1..=512 {
        assert_eq!(
            run(role, limits, input, chunk),
            reference,
            "chunk size {chunk}"
        );
    }
    reference
}

fn line(bytes: &'static [u8], first: bool, literal: Option<Announcement>) -> Event {
    Event::Line {
        bytes: Bytes::from_static(bytes),
        first,
        literal,
    }
}

fn sync(length: u64) -> Option<Announcement> {
    Some(Announcement {
        length,
        synchronizing: true,
        binary: false,
    })
}

#[test]
fn commands_with_all_literal_forms() {
    let script =
        b"a1 LOGIN {4}\r\nuser {8+}\r\npassword\r\na2 APPEND INBOX ~{3}\r\n\0\0\0\r\na3 NOOP\r\n";
    let (events, error) = replay_all_chunk_sizes(Role::Client, Limits::default(), script);
    assert_eq!(error, None);
    let non_sync = Some(Announcement {
        length: 8,
        synchronizing: false,
        binary: false,
    });
    let binary = Some(Announcement {
        length: 3,
        synchronizing: true,
        binary: true,
    });
    assert_eq!(
        events,
        vec![
            line(b"a1 LOGIN {4}\r\n", true, sync(4)),
            Event::Literal(Bytes::from_static(b"user")),
            line(b" {8+}\r\n", false, non_sync),
            Event::Literal(Bytes::from_static(b"password")),
            line(b"\r\n", false, None),
            line(b"a2 APPEND INBOX ~{3}\r\n", true, binary),
            Event::Literal(Bytes::from_static(b"\0\0\0")),
            line(b"\r\n", false, None),
            line(b"a3 NOOP\r\n", true, None),
        ]
    );
}

#[test]
fn literal_bytes_are_never_read_as_commands() {
    let script = b"a APPEND INBOX {22}\r\nb LOGOUT\r\nc STARTTLS\r\n\r\nd NOOP\r\n";
    let (events, _) = replay_all_chunk_sizes(Role::Client, Limits::default(), script);
    assert_eq!(
        events[1],
        Event::Literal(Bytes::from_static(b"b LOGOUT\r\nc STARTTLS\r\n"))
    );
    assert_eq!(events.len(), 4);
}

#[test]
fn fetch_response_with_two_literals() {
    let script = b"* 1 FETCH (BODY[HEADER] {5}\r\nH: x\n BODY[TEXT] {2}\r\nhi)\r\na OK done\r\n";
    let (events, error) = replay_all_chunk_sizes(Role::Server, Limits::default(), script);
    assert_eq!(error, None);
    assert_eq!(events.len(), 6);
    assert_eq!(events[5], line(b"a OK done\r\n", true, None));
}

#[test]
fn oversized_sync_literal_is_rejected_politely() {
    let limits = Limits {
        max_literal: 100,
        ..Limits::default()
    };
    let (events, error) =
        replay_all_chunk_sizes(Role::Client, limits, b"a APPEND INBOX {101}\r\nb NOOP\r\n");
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            Event::LiteralRejected {
                bytes: Bytes::from_static(b"a APPEND INBOX {101}\r\n"),
                length: 101
            },
            line(b"b NOOP\r\n", true, None),
        ]
    );
}

#[test]
fn oversized_non_sync_literal_is_fatal() {
    let limits = Limits {
        max_literal: 100,
        ..Limits::default()
    };
    let (_, error) = replay_all_chunk_sizes(Role::Client, limits, b"a APPEND INBOX {101+}\r\nxxxx");
    assert_eq!(
        error,
        Some(FrameError::LiteralTooLarge {
            length: 101,
            limit: 100
        })
    );
    let (_, error) = replay_all_chunk_sizes(Role::Server, limits, b"* 1 FETCH (BODY[] {101}\r\n");
    assert!(matches!(error, Some(FrameError::LiteralTooLarge { .. })));
}

#[test]
fn huge_and_overflowing_lengths() {
    let (events, error) = replay_all_chunk_sizes(
        Role::Client,
        Limits::default(),
        b"a APPEND x {4294967296}\r\n",
    );
    assert_eq!(error, None);
    assert!(matches!(
        events[0],
        Event::LiteralRejected {
            length: 4294967296,
            ..
        }
    ));
    let (_, error) = replay_all_chunk_sizes(
        Role::Client,
        Limits::default(),
        b"a APPEND x {99999999999999999999}\r\n",
    );
    assert_eq!(error, Some(FrameError::BadLiteralLength));
}

#[test]
fn long_lines_nul_and_nesting() {
    let limits = Limits {
        max_line: 1024,
        ..Limits::default()
    };
    let long = vec![b'a'; 5000];
    let (_, error) = replay_all_chunk_sizes(Role::Client, limits, &long);
    assert_eq!(error, Some(FrameError::LineTooLong(1024)));
    let nul = b"a LOGIN \"us\0er\" pw\r\n";
    let (_, error) = replay_all_chunk_sizes(Role::Client, limits, nul);
    assert_eq!(error, None, "a client's NUL is the grammar's to refuse");
    let (_, error) = replay_all_chunk_sizes(Role::Server, limits, b"* OK \"us\0er\"\r\n");
    assert_eq!(error, Some(FrameError::Nul));
    let deep = [b"a X ".as_slice(), &[b'('; 70], b"\r\n"].concat();
    let (_, error) = replay_all_chunk_sizes(Role::Client, limits, &deep);
    assert_eq!(error, Some(FrameError::TooDeep(64)));
    let quoted =
        b"a X \"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\"\r\n";
    let (_, error) = replay_all_chunk_sizes(Role::Client, limits, quoted);
    assert_eq!(error, None);
}

#[test]
fn cancelled_literal_returns_to_commands() {
    let mut framer = Framer::new(Role::Client, Limits::default());
    framer.feed(b"a APPEND INBOX {10}\r\n");
    assert!(matches!(framer.next_event(), Ok(Some(Event::Line { .. }))));
    assert!(framer.in_literal());
    framer.cancel_literal();
    framer.feed(b"b NOOP\r\n");
    assert_eq!(
        framer.next_event(),
        Ok(Some(line(b"b NOOP\r\n", true, None)))
    );
}

#[test]
fn text_ending_in_braces_is_not_a_literal() {
    assert_eq!(parse_announcement(b"* OK see {abc}\r\n"), Ok(None));
    assert_eq!(parse_announcement(b"* OK {}\r\n"), Ok(None));
}

proptest! {
    #[test]
    fn framing_is_chunking_invariant(pieces in proptest::collection::vec(
        prop_oneof![
            "[a-z0-9 ()\\[\\]\"]{0,40}".prop_map(|s| format!("{s}\r\n").into_bytes()),
            (0usize..300).prop_map(|n| { let mut v = format!("x APPEND b {{{n}+}}\r\n").into_bytes(); v.extend(std::iter::repeat_n(b'\n', n)); v.extend_from_slice(b"\r\n"); v }),
        ], 0..20), chunk in 1usize..64) {
        let input: Vec<u8> = pieces.concat();
        let whole = run(Role::Client, Limits::default(), &input, input.len().max(1));
        prop_assert_eq!(run(Role::Client, Limits::default(), &input, chunk), whole.clone());
        // Re-assembling every event reproduces the input exactly (byte-exact relay).
        let mut rebuilt = Vec::new();
        for event in &whole.0 {
            match event {
                Event::Line { bytes, .. } | Event::Literal(bytes) | Event::LiteralRejected { bytes, .. } => rebuilt.extend_from_slice(bytes),
            }
        }
        if whole.1.is_none() {
            prop_assert_eq!(rebuilt, input);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..100) {
        let limits = Limits { max_line: 1024, max_literal: 512, max_nesting: 8 };
        let _ = run(Role::Server, limits, &input, chunk);
        let _ = run(Role::Client, limits, &input, chunk);
    }
}
