//! Refused input: commands outside the allow-list and the attack classes (smuggled literal
//! announcements, CR/LF/NUL in strings, truncation, bad tags, deep nesting, bad literals).

use super::*;

// ----- refused commands -----

#[test]
fn commands_outside_the_allow_list() {
    not_allowed(b"a SETQUOTA \"\" (STORAGE 512)\r\n", "SETQUOTA");
    syntax(b"a NOTIFY SET (SELECTED MessageNew)\r\n");
    syntax(b"a GETMETADATA \"\" /shared/comment\r\n");
    syntax(b"a XYZZY\r\n");
    syntax(b"a UID FOO 1\r\n");
    syntax(b"a UID\r\n");
}

// ----- attack classes -----

#[test]
fn literal_announcement_inside_an_unterminated_quoted_string() {
    syntax(b"a NOOP \"{5}\r\n");
    syntax(b"a SELECT \"{5}\r\nhello\r\n");
    // A quoted string may contain `{`: it is a five-character name, not a literal.
    let cmd = ok(b"a SELECT \"{23}\"\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Select {
            mailbox: "{23}".into(),
            read_only: false
        }
    );
}

#[test]
fn cr_lf_nul_in_strings() {
    syntax(b"a SELECT \"IN\0BOX\"\r\n");
    syntax(b"a SELECT \"IN\rBOX\"\r\n");
    syntax(b"a SELECT \"IN\nBOX\"\r\n");
    // Even inside a literal: a mailbox name carrying a second command.
    syntax(b"a SELECT {17}\r\nx\r\nb SELECT other\r\n");
    syntax(b"a SELECT {3}\r\nx\ry\r\n");
    syntax(b"a LOGIN alice {4}\r\np\nw1\r\n");
    syntax(b"a SEARCH TEXT {3}\r\na\nb\r\n");
    syntax(b"a SELECT {3}\r\nx\0y\r\n");
}

#[test]
fn truncated_and_trailing_input() {
    syntax(b"a NOOP");
    syntax(b"a NOOP\r");
    syntax(b"a SELECT {5}\r\n");
    syntax(b"a SELECT {5}\r\nINB");
    assert_eq!(
        parse_command(b"a NOOP\r\nb NOOP\r\n"),
        Err(GrammarError::TrailingBytes { tag: "a".into() })
    );
    assert_eq!(
        parse_command(b"a NOOP\r\n\r\n"),
        Err(GrammarError::TrailingBytes { tag: "a".into() })
    );
}

#[test]
fn tags() {
    assert_eq!(parse_command(b""), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b"\r\n"), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b" NOOP\r\n"), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b"a+ NOOP\r\n"), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b"* NOOP\r\n"), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b"a{1} NOOP\r\n"), Err(GrammarError::NoTag));
    assert_eq!(parse_command(b"NOOP\r\n"), Err(GrammarError::NoTag));
    syntax(b"a  NOOP\r\n");
    assert_eq!(ok(b"A.1]x NOOP\r\n").tag, "A.1]x");
}

#[test]
fn deep_nesting_does_not_overflow() {
    for open in [&b"("[..], b"(NOT ", b"OR ("] {
        let mut line = b"a SEARCH ".to_vec();
        for _ in 0..10_000 {
            line.extend_from_slice(open);
        }
        line.extend_from_slice(b"ALL");
        line.extend(std::iter::repeat_n(b')', 10_000));
        line.extend_from_slice(b"\r\n");
        syntax(&line);
    }
    let mut line = b"a FETCH 1 ".to_vec();
    line.extend(std::iter::repeat_n(b'(', 10_000));
    line.extend_from_slice(b"\r\n");
    syntax(&line);
    // Moderate nesting is fine.
    same("a SEARCH ((((UNSEEN))))\r\n");
}

#[test]
fn trailing_arguments_and_bad_literals() {
    syntax(b"a SELECT INBOX extra\r\n");
    syntax(b"a LOGIN a b c\r\n");
    syntax(b"a SELECT {5}\r\nINBOXb NOOP\r\n");
    syntax(b"a SELECT {4294967295}\r\nx\r\n");
    syntax(b"a SELECT {99999999999999999999}\r\nx\r\n");
    syntax(b"a SELECT {5} \r\nINBOX\r\n");
    syntax(b"a SELECT {-1}\r\nINBOX\r\n");
    assert_eq!(
        parse_command(b"a IDLE\r\nDONE\r\n"),
        Err(GrammarError::TrailingBytes { tag: "a".into() })
    );
    syntax(b"a ENABLE\r\n");
}
