//! Unit and property tests for the POP3 framer: every script is replayed at every chunk size
//! from 1 to 512 and must yield identical events.

use super::*;
use proptest::prelude::*;

type Outcome = (Vec<Event>, Option<FrameError>);

fn run(role: Role, limits: Limits, expects: &[Expect], input: &[u8], chunk: usize) -> Outcome {
    let mut framer = Framer::new(role, limits);
    for &expect in expects {
        if let Err(error) = framer.expect(expect) {
            return (Vec::new(), Some(error));
        }
    }
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

fn replay(role: Role, limits: Limits, expects: &[Expect], input: &[u8]) -> Outcome {
    let reference = run(role, limits, expects, input, input.len().max(1));
    for chunk in 1..=512 {
        assert_eq!(
            run(role, limits, expects, input, chunk),
            reference,
            "chunk size {chunk}"
        );
    }
    reference
}

fn reply(line: &'static [u8], status: Status, answered: Option<Expect>) -> Event {
    Event::Reply(Reply {
        line: Bytes::from_static(line),
        status,
        answered,
    })
}

#[test]
fn commands_are_split_into_lines() {
    let script = b"USER alice\r\nPASS x y\r\nSTAT\nRETR 1\r\n";
    let (events, error) = replay(Role::Client, Limits::default(), &[], script);
    assert_eq!(error, None);
    let lines: Vec<&[u8]> = events.iter().map(|e| &e.bytes()[..]).collect();
    assert_eq!(
        lines,
        vec![
            &b"USER alice\r\n"[..],
            b"PASS x y\r\n",
            b"STAT\n",
            b"RETR 1\r\n"
        ]
    );
}

#[test]
fn command_limit_is_255_plus_margin() {
    let limits = Limits {
        max_command: 255,
        ..Limits::default()
    };
    let mut ok = vec![b'x'; 253];
    ok.extend_from_slice(b"\r\n");
    let (events, error) = replay(Role::Client, limits, &[], &ok);
    assert_eq!((events.len(), error), (1, None));
    let mut long = vec![b'x'; 254];
    long.extend_from_slice(b"\r\n");
    let (events, error) = replay(Role::Client, limits, &[], &long);
    assert_eq!(
        (events.len(), error),
        (0, Some(FrameError::LineTooLong(255)))
    );
    let (_, error) = replay(Role::Client, limits, &[], &vec![b'y'; 100_000]);
    assert_eq!(error, Some(FrameError::LineTooLong(255)));
}

#[test]
fn sasl_lines_may_be_longer() {
    let mut framer = Framer::new(Role::Client, Limits::default());
    let mut line = vec![b'A'; 2000];
    line.extend_from_slice(b"\r\n");
    framer.set_sasl(true);
    framer.feed(&line);
    assert_eq!(
        framer.next_event(),
        Ok(Some(Event::Line(Bytes::from(line))))
    );
}

#[test]
fn retr_session_with_stuffing() {
    let expects = [
        Expect::SingleLine,
        Expect::MultiLine,
        Expect::MultiLine,
        Expect::SingleLine,
    ];
    let script: &[u8] = b"+OK 2 320\r\n+OK 120 octets\r\nSubject: x\r\n\r\n..hidden\r\n...\r\nend\r\n.\r\n-ERR no such message\r\n+OK bye\r\n";
    let (events, error) = replay(Role::Server, Limits::default(), &expects, script);
    assert_eq!(error, None);
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0],
        reply(b"+OK 2 320\r\n", Status::Ok, Some(Expect::SingleLine))
    );
    let Event::MultiLine(multi) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(multi.status_line(), b"+OK 120 octets\r\n");
    assert_eq!(
        multi.stuffed_body(),
        b"Subject: x\r\n\r\n..hidden\r\n...\r\nend\r\n"
    );
    assert_eq!(multi.body(), b"Subject: x\r\n\r\n.hidden\r\n..\r\nend\r\n");
    assert_eq!(
        events[2],
        reply(
            b"-ERR no such message\r\n",
            Status::Err,
            Some(Expect::MultiLine)
        )
    );
    let total: usize = events.iter().map(|e| e.bytes().len()).sum();
    assert_eq!(total, script.len(), "events are exact slices");
}

#[test]
fn empty_list_and_capa() {
    let expects = [Expect::MultiLine, Expect::MultiLine];
    let script = b"+OK\r\n.\r\n+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL PLAIN\r\n.\r\n";
    let (events, error) = replay(Role::Server, Limits::default(), &expects, script);
    assert_eq!(error, None);
    let Event::MultiLine(empty) = &events[0] else {
        panic!()
    };
    assert_eq!(empty.stuffed_body(), b"");
    let Event::MultiLine(capa) = &events[1] else {
        panic!()
    };
    assert_eq!(capa.body(), b"TOP\r\nUSER\r\nSASL PLAIN\r\n");
}

#[test]
fn sasl_exchange() {
    let expects = [Expect::Sasl, Expect::SingleLine];
    let script = b"+ \r\n+ dGVzdA==\r\n+OK Logged in.\r\n+OK\r\n";
    let (events, error) = replay(Role::Server, Limits::default(), &expects, script);
    assert_eq!(error, None);
    let sasl = Some(Expect::Sasl);
    assert_eq!(
        events,
        vec![
            reply(b"+ \r\n", Status::Continue, sasl),
            reply(b"+ dGVzdA==\r\n", Status::Continue, sasl),
            reply(b"+OK Logged in.\r\n", Status::Ok, sasl),
            reply(b"+OK\r\n", Status::Ok, Some(Expect::SingleLine)),
        ]
    );
}

#[test]
fn unsolicited_and_invalid_responses() {
    let (events, error) = replay(
        Role::Server,
        Limits::default(),
        &[],
        b"-ERR Disconnected for inactivity.\r\n",
    );
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![reply(
            b"-ERR Disconnected for inactivity.\r\n",
            Status::Err,
            None
        )]
    );
    let (_, error) = replay(Role::Server, Limits::default(), &[], b"+ \r\n");
    assert_eq!(error, Some(FrameError::BadResponse));
    let expects = [Expect::SingleLine];
    let (_, error) = replay(Role::Server, Limits::default(), &expects, b"HELLO\r\n");
    assert_eq!(error, Some(FrameError::BadResponse));
}

#[test]
fn multiline_limit() {
    let limits = Limits {
        max_multiline: 64,
        ..Limits::default()
    };
    let mut fits = b"+OK\r\n".to_vec();
    fits.extend_from_slice(&[b'a'; 54]);
    fits.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(fits.len(), 64);
    let (events, error) = replay(Role::Server, limits, &[Expect::MultiLine], &fits);
    assert_eq!((events.len(), error), (1, None));
    let mut endless = b"+OK\r\n".to_vec();
    endless.extend(std::iter::repeat_n(&b"line\r\n"[..], 100).flatten());
    let (events, error) = replay(Role::Server, limits, &[Expect::MultiLine], &endless);
    assert_eq!(
        (events.len(), error),
        (0, Some(FrameError::MultiLineTooLarge(64)))
    );
}

#[test]
fn pipeline_depth_is_bounded() {
    let limits = Limits {
        max_pipeline: 2,
        ..Limits::default()
    };
    let mut framer = Framer::new(Role::Server, limits);
    assert!(framer.expect(Expect::SingleLine).is_ok());
    assert!(framer.expect(Expect::SingleLine).is_ok());
    assert_eq!(
        framer.expect(Expect::SingleLine),
        Err(FrameError::PipelineFull(2))
    );
    framer.feed(b"+OK\r\n");
    assert!(framer.next_event().unwrap().is_some());
    assert_eq!(framer.expected(), 1);
    assert!(framer.expect(Expect::SingleLine).is_ok());
}

#[test]
fn stuffing_round_trip_examples() {
    assert_eq!(stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n");
    assert_eq!(unstuff(b"..a\r\nb\r\n..\r\n"), b".a\r\nb\r\n.\r\n");
    let multi = MultiLine::from_parts(b"+OK\r\n", b".x\r\ny");
    assert_eq!(&multi.raw()[..], b"+OK\r\n..x\r\ny\r\n.\r\n");
}

proptest! {
    #[test]
    fn unstuff_inverts_stuff(text in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200)) {
        prop_assert_eq!(unstuff(&stuff(&text)), text);
    }

    #[test]
    fn any_body_survives_framing(
        body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..300),
        chunk in 1usize..64,
    ) {
        let mut text = body.clone();
        if !text.is_empty() && !text.ends_with(b"\r\n") {
            text.extend_from_slice(b"\r\n");
        }
        let multi = MultiLine::from_parts(b"+OK message\r\n", &text);
        let mut input = multi.raw().to_vec();
        input.extend_from_slice(b"+OK\r\n");
        let expects = [Expect::MultiLine, Expect::SingleLine];
        let (events, error) = run(Role::Server, Limits::default(), &expects, &input, chunk);
        prop_assert_eq!(error, None);
        prop_assert_eq!(events.len(), 2);
        prop_assert_eq!(&events[0], &Event::MultiLine(multi));
    }

    #[test]
    fn chunking_never_changes_events(input in proptest::collection::vec(any::<u8>(), 0..400), chunk in 1usize..40) {
        let expects = [Expect::MultiLine, Expect::Sasl, Expect::SingleLine];
        for role in [Role::Client, Role::Server] {
            let whole = run(role, Limits::default(), &expects, &input, input.len().max(1));
            prop_assert_eq!(run(role, Limits::default(), &expects, &input, chunk), whole);
        }
    }
}

#[test]
fn a_multiline_answer_announces_its_size_only_through_n_octets() {
    for (status, announced) in [
        (&b"+OK 5000 octets\r\n"[..], Some(5000)),
        (b"+OK 5000 OCTETS follow\r\n", Some(5000)),
        (b"+OK message follows\r\n", None),
        (b"+OK 5000\r\n", None),
    ] {
        let mut framer = Framer::new(Role::Server, Limits::default());
        framer.expect(Expect::MultiLine).unwrap();
        assert_eq!(
            framer.multiline_progress(),
            None,
            "nothing before the status line"
        );
        framer.feed(status);
        framer.feed(b"Subject: x\r\n");
        assert_eq!(framer.next_event(), Ok(None));
        let progress = framer.multiline_progress();
        assert_eq!(progress, announced.map(|size| (size, 12)), "{status:?}");
        framer.feed(b".\r\n");
        assert!(framer.next_event().unwrap().is_some());
        assert_eq!(framer.multiline_progress(), None, "done");
    }
}
