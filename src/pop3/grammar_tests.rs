use super::*;

fn parse(line: &[u8]) -> Result<Command, GrammarError> {
    Command::parse(line)
}

#[test]
fn transaction_commands_parse_and_serialise_canonically() {
    let cases: &[(&[u8], Command, &[u8])] = &[
        (b"STAT\r\n", Command::Stat, b"STAT\r\n"),
        (b"stat\r\n", Command::Stat, b"STAT\r\n"),
        (b"list\r\n", Command::List(None), b"LIST\r\n"),
        (b"List 7\r\n", Command::List(Some(7)), b"LIST 7\r\n"),
        (b"retr 5\r\n", Command::Retr(5), b"RETR 5\r\n"),
        (b"RETR 007\r\n", Command::Retr(7), b"RETR 7\r\n"),
        (b"DELE 2\n", Command::Dele(2), b"DELE 2\r\n"),
        (b"top 5 0\r\n", Command::Top(5, 0), b"TOP 5 0\r\n"),
        (b"TOP 5 20\r\n", Command::Top(5, 20), b"TOP 5 20\r\n"),
        (b"uidl\r\n", Command::Uidl(None), b"UIDL\r\n"),
        (
            b"UIDL 4294967295\r\n",
            Command::Uidl(Some(u32::MAX)),
            b"UIDL 4294967295\r\n",
        ),
        (b"noop\r\n", Command::Noop, b"NOOP\r\n"),
        (b"rset\r\n", Command::Rset, b"RSET\r\n"),
        (b"quit\r\n", Command::Quit, b"QUIT\r\n"),
        (b"capa\r\n", Command::Capa, b"CAPA\r\n"),
    ];
    for (line, command, canonical) in cases {
        let parsed = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(&parsed, command, "{line:?}");
        assert_eq!(parsed.to_line(), *canonical, "{line:?}");
        assert!(parsed.allowed_in_transaction(), "{line:?}");
    }
}

#[test]
fn logins_parse() {
    assert_eq!(parse(b"user alice\r\n"), Ok(Command::User("alice".into())));
    assert_eq!(
        parse(b"PASS two words \r\n"),
        Ok(Command::Pass(Secret("two words ".into())))
    );
    let apop = parse(b"apop bob C4C9334BAC560ECC979E58001B3E22FB\r\n").unwrap();
    assert_eq!(
        apop.to_line(),
        b"APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n"
    );
    assert_eq!(parse(b"AUTH\r\n"), Ok(Command::Auth(None)));
    let auth = parse(b"auth plain AGFsaWNlAHB3\r\n").unwrap();
    assert_eq!(auth.to_line(), b"AUTH PLAIN AGFsaWNlAHB3\r\n");
    assert_eq!(
        parse(b"AUTH login\r\n"),
        Ok(Command::Auth(Some(AuthStart {
            mechanism: Mechanism::Login,
            initial: None
        })))
    );
    assert!(parse(b"AUTH PLAIN =\r\n").is_ok());
    for login in [&b"USER a\r\n"[..], b"PASS x\r\n", b"AUTH\r\n"] {
        assert!(!parse(login).unwrap().allowed_in_transaction());
    }
    assert!(!format!("{:?}", parse(b"PASS hunter2\r\n")).contains("hunter2"));
}

#[test]
fn every_refusal_names_its_cause() {
    use GrammarError::*;
    let cases: &[(&[u8], GrammarError)] = &[
        (b"XCLIENT ADDR=203.0.113.9\r\n", Xclient),
        (b"xclient\r\n", Xclient),
        (b"TOP 5 20\0\r\n", ControlCharacter { byte: 0, offset: 8 }),
        (b"RETR 1\0\r\n", ControlCharacter { byte: 0, offset: 6 }),
        (b"USER al\0ice\r\n", ControlCharacter { byte: 0, offset: 7 }),
        (b"PASS a\x01b\r\n", ControlCharacter { byte: 1, offset: 6 }),
        (b"RETR\t1\r\n", ControlCharacter { byte: 9, offset: 4 }),
        (
            b"RETR 1\r\r\n",
            ControlCharacter {
                byte: 13,
                offset: 6,
            },
        ),
        (
            b"NOOP\x7f\r\n",
            ControlCharacter {
                byte: 0x7f,
                offset: 4,
            },
        ),
        (b"RETR 1 x\r\n", TooManyArguments("RETR")),
        (b"NOOP x\r\n", TooManyArguments("NOOP")),
        (b"LIST LIST LIST\r\n", TooManyArguments("LIST")),
        (b"RETR  1\r\n", EmptyArgument),
        (b"RETR 1 \r\n", EmptyArgument),
        (b"NOOP \r\n", EmptyArgument),
        (b" NOOP\r\n", UnknownCommand(String::new())),
        (b"RETR +1\r\n", NotANumber("RETR")),
        (b"RETR -1\r\n", NotANumber("RETR")),
        (b"RETR 1x\r\n", NotANumber("RETR")),
        (b"TOP 1 -0\r\n", NotANumber("TOP")),
        (b"RETR 0\r\n", ZeroMessage("RETR")),
        (b"DELE 00\r\n", ZeroMessage("DELE")),
        (b"TOP 0 5\r\n", ZeroMessage("TOP")),
        (b"RETR 4294967296\r\n", NumberTooLarge("RETR")),
        (b"TOP 1 99999999999999999999999\r\n", NumberTooLarge("TOP")),
        (b"RETR\r\n", MissingArgument("RETR")),
        (b"TOP 5\r\n", MissingArgument("TOP")),
        (b"PASS\r\n", MissingArgument("PASS")),
        (b"PASS \r\n", MissingArgument("PASS")),
        (b"APOP bob 0123\r\n", BadDigest),
        (b"APOP bob 0123456789abcdef0123456789abcdeg\r\n", BadDigest),
        (b"AUTH CRAM-MD5\r\n", UnsupportedMechanism),
        (b"AUTH PLAIN !!!\r\n", BadInitialResponse),
        (b"AUTH PLAIN a===\r\n", BadInitialResponse),
        (b"XYZZY\r\n", UnknownCommand("XYZZY".into())),
        (b"RETR 1", NoLineEnd),
        (b"USER \xff\r\n", InvalidUtf8),
    ];
    for (line, expected) in cases {
        assert_eq!(parse(line).as_ref(), Err(expected), "{line:?}");
    }
}

#[test]
fn line_limits() {
    let mut long = b"USER ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_LINE - 7));
    long.extend_from_slice(b"\r\n");
    assert_eq!(long.len(), MAX_LINE);
    assert!(parse(&long).is_ok());
    long.insert(5, b'a');
    assert_eq!(parse(&long), Err(GrammarError::LineTooLong(MAX_LINE)));
    // An AUTH line may carry a long initial response, up to its own limit.
    let mut auth = b"AUTH PLAIN ".to_vec();
    auth.extend(std::iter::repeat_n(b'A', 2000));
    auth.extend_from_slice(b"\r\n");
    assert!(parse(&auth).is_ok());
    let mut auth = b"AUTH PLAIN ".to_vec();
    auth.extend(std::iter::repeat_n(b'A', MAX_AUTH_LINE));
    auth.extend_from_slice(b"\r\n");
    assert_eq!(parse(&auth), Err(GrammarError::LineTooLong(MAX_AUTH_LINE)));
}

#[test]
fn expectations_follow_the_command() {
    assert_eq!(Command::Retr(1).expect(), Expect::MultiLine);
    assert_eq!(Command::Top(1, 0).expect(), Expect::MultiLine);
    assert_eq!(Command::List(None).expect(), Expect::MultiLine);
    assert_eq!(Command::List(Some(1)).expect(), Expect::SingleLine);
    assert_eq!(Command::Uidl(Some(1)).expect(), Expect::SingleLine);
    assert_eq!(Command::Dele(1).expect(), Expect::SingleLine);
    assert_eq!(Command::Capa.expect(), Expect::MultiLine);
    assert_eq!(Command::Auth(None).expect(), Expect::MultiLine);
    assert_eq!(parse(b"AUTH PLAIN\r\n").unwrap().expect(), Expect::Sasl);
    assert_eq!(Command::Stat.expect(), Expect::SingleLine);
}

/// After login: a byte script through the client framer at every chunk size, each line parsed
/// for the TRANSACTION state; what would be forwarded is only ever the canonical line.
#[test]
fn transaction_script_at_every_chunk_size() {
    use crate::pop3::codec::{Event, Framer, Limits, Role};
    let script: &[u8] = b"stat\r\nTOP 5 20\0\r\nRETR 1 x\r\nRETR  1\r\nRETR +1\r\nRETR 0\r\nRETR 4294967296\r\nXCLIENT ADDR=203.0.113.9\r\nUSER bob\r\nAUTH PLAIN AGFsaWNlAHB3\r\nSTLS\r\nretr 007\r\nTop 5 0\r\nLIST\r\n";
    let run = |chunk: usize| {
        let mut framer = Framer::new(Role::Client, Limits::default());
        let mut out = Vec::new();
        for piece in script.chunks(chunk) {
            framer.feed(piece);
            while let Some(Event::Line(line)) = framer.next_event().expect("framing") {
                out.push(Command::parse_transaction(&line).map(|c| c.to_line()));
            }
        }
        out
    };
    let whole = run(script.len());
    for chunk in 1..=512 {
        assert_eq!(run(chunk), whole, "chunk size {chunk}");
    }
    let forwarded: Vec<&[u8]> = whole.iter().filter_map(|r| r.as_deref().ok()).collect();
    assert_eq!(
        forwarded,
        [&b"STAT\r\n"[..], b"RETR 7\r\n", b"TOP 5 0\r\n", b"LIST\r\n"]
    );
    assert_eq!(whole[8], Err(GrammarError::NotInTransaction("USER")));
    assert_eq!(whole[9], Err(GrammarError::NotInTransaction("AUTH")));
    assert_eq!(whole[10], Err(GrammarError::NotInTransaction("STLS")));
    assert_eq!(whole[7], Err(GrammarError::Xclient));
}
