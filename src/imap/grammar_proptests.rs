//! Property tests of the IMAP grammar: generated and mutated commands parse, round-trip through
//! the canonical encoding and never panic.

use proptest::prelude::*;

use super::*;

fn quoted_strategy() -> impl Strategy<Value = Vec<u8>> {
    "[ -~]{0,8}".prop_map(|s| {
        let mut out = b"\"".to_vec();
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    })
}

fn literal_strategy() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(1u8..=255, 0..8), any::<bool>()).prop_map(|(data, plus)| {
        let data: Vec<u8> = data
            .into_iter()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect();
        let mut out = format!("{{{}{}}}\r\n", data.len(), if plus { "+" } else { "" }).into_bytes();
        out.extend_from_slice(&data);
        out
    })
}

fn string_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![quoted_strategy(), literal_strategy()]
}

fn astring_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[A-Za-z0-9._/-]{1,8}".prop_map(String::into_bytes),
        string_strategy()
    ]
}

fn seq_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[1-9][0-9]{0,3}",
            Just("*".to_owned()),
            "[1-9]{1,2}:([1-9][0-9]?|[*])"
        ],
        1..4,
    )
    .prop_map(|parts| parts.join(","))
}

fn command_strategy() -> impl Strategy<Value = Vec<u8>> {
    let items = prop::sample::subsequence(
        vec![
            "UID",
            "FLAGS",
            "RFC822.SIZE",
            "BODY.PEEK[]",
            "BODY[HEADER]",
            "BODY.PEEK[1.MIME]",
            "BODY.PEEK[2]<0.2048>",
            "BINARY.PEEK[1]",
            "BODY[HEADER.FIELDS (From \"To\")]",
            "ENVELOPE",
            "INTERNALDATE",
        ],
        1..5,
    );
    let cmd = prop_oneof![
        astring_strategy().prop_map(|m| [&b"SELECT "[..], &m].concat()),
        astring_strategy().prop_map(|m| [&b"EXAMINE "[..], &m].concat()),
        astring_strategy().prop_map(|m| [&b"CREATE "[..], &m].concat()),
        (astring_strategy(), astring_strategy())
            .prop_map(|(a, b)| [&b"LOGIN "[..], &a, b" ", &b].concat()),
        (astring_strategy(), astring_strategy())
            .prop_map(|(a, b)| [&b"RENAME "[..], &a, b" ", &b].concat()),
        (string_strategy(), string_strategy()).prop_map(|(a, b)| [
            &b"ID ("[..],
            &a,
            b" ",
            &b,
            b")"
        ]
        .concat()),
        astring_strategy().prop_map(|m| [&b"STATUS "[..], &m, b" (MESSAGES UIDNEXT)"].concat()),
        (any::<bool>(), seq_strategy(), items).prop_map(|(uid, s, i)| format!(
            "{}FETCH {s} ({})",
            if uid { "UID " } else { "" },
            i.join(" ")
        )
        .into_bytes()),
        (seq_strategy(), astring_strategy()).prop_map(|(s, m)| [
            format!("UID COPY {s} ").as_bytes(),
            &m
        ]
        .concat()),
        (seq_strategy(), astring_strategy()).prop_map(|(s, m)| [
            format!("SEARCH OR UID {s} SUBJECT ").as_bytes(),
            &m,
            b" UNSEEN"
        ]
        .concat()),
        (
            astring_strategy(),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(m, data)| {
                [
                    &b"APPEND "[..],
                    &m,
                    format!(" (\\Seen) ~{{{}}}\r\n", data.len()).as_bytes(),
                    &data,
                ]
                .concat()
            }),
    ];
    ("[A-Za-z0-9]{1,4}", cmd).prop_map(|(tag, cmd)| [tag.as_bytes(), b" ", &cmd, b"\r\n"].concat())
}

/// parse(to_bytes(x)) == x modulo literal mode, and the encoding is stable.
fn check_round_trip(cmd: &ParsedCommand) {
    for plus in [false, true] {
        let bytes = cmd.to_bytes(plus);
        let again = match parse_command(&bytes) {
            Ok(again) => again,
            Err(e) => panic!(
                "canonical {:?} does not parse: {e:?}",
                String::from_utf8_lossy(&bytes)
            ),
        };
        assert_eq!(again.tag, cmd.tag);
        assert_eq!(again.kind, cmd.kind);
        assert_eq!(again.encode(false), cmd.encode(false));
        assert_eq!(again.encode(true), cmd.encode(true));
        assert_eq!(again.to_bytes(plus), bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_commands_parse_and_round_trip(input in command_strategy()) {
        match parse_command(&input) {
            Ok(cmd) => check_round_trip(&cmd),
            // Only the CR/LF/NUL rule and UTF-8 rules may refuse generated commands.
            Err(GrammarError::Syntax { .. }) => {
                prop_assert!(input.contains(&0) || input.iter().any(|&b| b >= 0x80));
            }
            Err(e) => prop_assert!(false, "{e:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(cmd) = parse_command(&input) {
            check_round_trip(&cmd);
        }
    }

    #[test]
    fn mutated_commands_never_panic(input in command_strategy(), at in any::<prop::sample::Index>(),
                                    insert in prop::collection::vec(any::<u8>(), 0..4), cut in 0usize..3) {
        let mut input = input;
        let at = at.index(input.len());
        let end = (at + cut).min(input.len());
        input.splice(at..end, insert);
        if let Ok(cmd) = parse_command(&input) {
            check_round_trip(&cmd);
        }
    }
}
