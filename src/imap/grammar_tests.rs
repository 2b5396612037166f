use super::*;

#[path = "grammar_reject_tests.rs"]
mod reject;

fn ok(input: &[u8]) -> ParsedCommand {
    match parse_command(input) {
        Ok(cmd) => cmd,
        Err(e) => panic!(
            "{:?} should parse, got {e:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// Canonical encoding with synchronizing literals, as text.
fn canon(input: &[u8]) -> String {
    String::from_utf8_lossy(&ok(input).to_bytes(false)).into_owned()
}

/// The input parses and its canonical form is byte-identical to it.
fn same(input: &str) -> ParsedCommand {
    let cmd = ok(input.as_bytes());
    assert_eq!(String::from_utf8_lossy(&cmd.to_bytes(false)), input);
    cmd
}

fn syntax(input: &[u8]) {
    match parse_command(input) {
        Err(GrammarError::Syntax { tag }) => {
            assert_eq!(tag.as_bytes(), input.split(|&b| b == b' ').next().unwrap())
        }
        other => panic!(
            "{:?} should be Syntax, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn not_allowed(input: &[u8], expected: &str) {
    match parse_command(input) {
        Err(GrammarError::NotAllowed { name, .. }) => assert_eq!(name, expected),
        other => panic!(
            "{:?} should be NotAllowed, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

// ----- every allowed command, realistic client lines -----

#[test]
fn argumentless_commands() {
    for (line, kind) in [
        ("a1 CAPABILITY\r\n", CommandKind::Capability),
        ("a1 NOOP\r\n", CommandKind::Noop),
        ("a1 LOGOUT\r\n", CommandKind::Logout),
        ("a1 STARTTLS\r\n", CommandKind::StartTls),
        ("a1 CLOSE\r\n", CommandKind::Close),
        ("a1 UNSELECT\r\n", CommandKind::Unselect),
        ("a1 IDLE\r\n", CommandKind::Idle),
        ("a1 CHECK\r\n", CommandKind::Other("CHECK")),
        ("a1 EXPUNGE\r\n", CommandKind::Other("EXPUNGE")),
        ("a1 NAMESPACE\r\n", CommandKind::Other("NAMESPACE")),
    ] {
        let cmd = same(line);
        assert_eq!(cmd.kind, kind);
        assert_eq!(cmd.tag, "a1");
        let extra = line.replace("\r\n", " extra\r\n");
        syntax(extra.as_bytes());
        syntax(line.replace("\r\n", " \r\n").as_bytes());
        syntax(line.replace("\r\n", "\n").as_bytes());
    }
}

#[test]
fn lowercase_names_parse_and_are_canonicalised() {
    assert_eq!(canon(b"x noop\r\n"), "x NOOP\r\n");
    assert_eq!(canon(b"x uid fetch 1 flags\r\n"), "x UID FETCH 1 FLAGS\r\n");
    let cmd = ok(b"x select inbox\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Select {
            mailbox: "INBOX".into(),
            read_only: false
        }
    );
    assert_eq!(cmd.to_bytes(false), b"x SELECT INBOX\r\n");
}

#[test]
fn login_forms() {
    let cmd = same("a LOGIN alice secret\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Login(Credentials::new("alice", "secret"))
    );
    assert_eq!(cmd.name(), "LOGIN");
    let cmd = ok(b"a LOGIN \"al\\\"ice\" {3}\r\npw1\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Login(Credentials::new("al\"ice", "pw1"))
    );
    assert_eq!(cmd.to_bytes(false), b"a LOGIN \"al\\\"ice\" {3}\r\npw1\r\n");
    assert_eq!(cmd.to_bytes(true), b"a LOGIN \"al\\\"ice\" {3+}\r\npw1\r\n");
    // Empty literals parse wherever a string is allowed; the backend rejects an empty user.
    let cmd = ok(b"a LOGIN {0}\r\n {2}\r\npw\r\n");
    assert_eq!(cmd.kind, CommandKind::Login(Credentials::new("", "pw")));
    assert_eq!(
        cmd.encode(false),
        vec![
            Fragment::Line(b"a LOGIN {0}\r\n".to_vec()),
            Fragment::Literal(vec![]),
            Fragment::Line(b" {2}\r\n".to_vec()),
            Fragment::Literal(b"pw".to_vec()),
            Fragment::Line(b"\r\n".to_vec()),
        ]
    );
    // Non-UTF-8 credentials cannot become Credentials.
    syntax(b"a LOGIN {2}\r\n\xff\xfe pw\r\n");
    // The debug output never shows the password.
    let cmd = ok(b"a LOGIN alice secret\r\n");
    assert!(!format!("{cmd:?}").contains("secret"));
}

#[test]
fn authenticate_forms() {
    let cmd = same("a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"AGFsaWNlAHB3".to_vec())
        }
    );
    let cmd = ok(b"a authenticate plain =\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"=".to_vec())
        }
    );
    assert_eq!(cmd.to_bytes(false), b"a AUTHENTICATE PLAIN =\r\n");
    let cmd = ok(b"a AUTHENTICATE login\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Authenticate {
            mechanism: "LOGIN".into(),
            initial: None
        }
    );
    // Bad base64 is a syntax error.
    syntax(b"a AUTHENTICATE PLAIN AGFsaWNlAHB3=\r\n");
    syntax(b"a AUTHENTICATE PLAIN !!!!\r\n");
}

#[test]
fn id_and_forwarding_fields() {
    let cmd = same("a ID (\"name\" \"Thunderbird\" \"x-originating-ip\" \"1.2.3.4\")\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Id(Some(vec![
            ("name".into(), Some("Thunderbird".into())),
            ("x-originating-ip".into(), Some("1.2.3.4".into())),
        ]))
    );
    let cleaned = cmd.without_forwarding_fields();
    assert_eq!(
        cleaned.to_bytes(false),
        b"a ID (\"name\" \"Thunderbird\")\r\n"
    );
    assert_eq!(
        cleaned.kind,
        CommandKind::Id(Some(vec![("name".into(), Some("Thunderbird".into()))]))
    );

    let all = ok(
        b"a ID (\"X-Originating-IP\" \"1.2.3.4\" \"x-CONNECTED-ip\" NIL \"x-proxy-ttl\" \"5\" \
\"x-session-id\" \"s\" \"x-forward-foo\" \"f\")\r\n",
    );
    let cleaned = all.without_forwarding_fields();
    assert_eq!(cleaned.kind, CommandKind::Id(None));
    assert_eq!(cleaned.to_bytes(false), b"a ID NIL\r\n");

    let nil = same("a ID NIL\r\n");
    assert_eq!(nil.kind, CommandKind::Id(None));
    // Other commands are unchanged.
    let noop = ok(b"a NOOP\r\n");
    assert_eq!(noop.clone().without_forwarding_fields(), noop);
}

#[test]
fn select_examine_and_mailbox_commands() {
    let cmd = same("a EXAMINE \"Sent Items\"\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Select {
            mailbox: "Sent Items".into(),
            read_only: true
        }
    );
    let cmd = ok(b"a SELECT {5}\r\ninbox\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Select {
            mailbox: "INBOX".into(),
            read_only: false
        }
    );
    let cmd = same("a SELECT INBOX.Drafts\r\n");
    assert_eq!(
        cmd.kind,
        CommandKind::Select {
            mailbox: "INBOX.Drafts".into(),
            read_only: false
        }
    );
    syntax(b"a SELECT {2}\r\n\xff\xfe\r\n");
    for (line, name) in [
        ("a CREATE \"Archive/2024\"\r\n", "CREATE"),
        ("a DELETE Trash\r\n", "DELETE"),
        ("a RENAME Old New\r\n", "RENAME"),
        ("a SUBSCRIBE Archive\r\n", "SUBSCRIBE"),
        ("a UNSUBSCRIBE Archive\r\n", "UNSUBSCRIBE"),
        ("a LIST \"\" \"*\"\r\n", "LIST"),
        ("a LIST \"\" %\r\n", "LIST"),
        ("a LSUB \"\" \"*\"\r\n", "LSUB"),
        ("a STATUS INBOX (MESSAGES UNSEEN UIDNEXT)\r\n", "STATUS"),
        (
            "a STATUS Drafts (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)\r\n",
            "STATUS",
        ),
        ("a GETQUOTAROOT INBOX\r\n", "GETQUOTAROOT"),
        ("a GETQUOTA \"\"\r\n", "GETQUOTA"),
    ] {
        let cmd = same(line);
        assert_eq!(cmd.kind, CommandKind::Other(name));
        assert_eq!(cmd.name(), name);
    }
}

#[test]
fn list_extended_is_refused() {
    syntax(b"a LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    syntax(b"a LIST \"\" \"*\" RETURN (STATUS (MESSAGES))\r\n");
}

#[test]
fn append_forms() {
    let cmd =
        ok(b"a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {10}\r\nab\r\ncd\r\nef\r\n");
    assert_eq!(cmd.kind, CommandKind::Append);
    assert_eq!(
        cmd.encode(true),
        vec![
            Fragment::Line(
                b"a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {10+}\r\n".to_vec()
            ),
            Fragment::Literal(b"ab\r\ncd\r\nef".to_vec()),
            Fragment::Line(b"\r\n".to_vec()),
        ]
    );
    // literal8 stays literal8 and may carry NUL.
    let cmd = ok(b"a APPEND Sent ~{3}\r\na\0b\r\n");
    assert_eq!(cmd.to_bytes(false), b"a APPEND Sent ~{3}\r\na\0b\r\n");
    assert_eq!(cmd.to_bytes(true), b"a APPEND Sent ~{3+}\r\na\0b\r\n");
    // A client's non-synchronizing literal is re-sent in the backend's mode.
    let cmd = ok(b"a APPEND {4+}\r\nSent {2+}\r\nhi\r\n");
    assert_eq!(cmd.to_bytes(false), b"a APPEND {4}\r\nSent {2}\r\nhi\r\n");
    // The mailbox literal may not carry CRLF; the message literal may.
    syntax(b"a APPEND {5}\r\nx\r\ny1 {2}\r\nhi\r\n");
    // A message literal with NUL is refused by the grammar (use literal8).
    syntax(b"a APPEND Sent {3}\r\na\0b\r\n");
}

#[test]
fn fetch_forms_keep_their_meaning() {
    let tb =
        "a UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject \
Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n";
    let cmd = ok(tb.as_bytes());
    assert_eq!(cmd.kind, CommandKind::Fetch { uid: true });
    assert_eq!(cmd.name(), "UID FETCH");
    let out = String::from_utf8(cmd.to_bytes(false)).unwrap();
    // Header field names are astrings; the canonical form may change their case only if
    // imap-codec did (it must not): compare exactly.
    assert_eq!(out, tb);

    same("a UID FETCH 12 (BODY.PEEK[1.MIME] BODY.PEEK[2]<0.2048>)\r\n");
    same("a UID FETCH 12 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n");
    same("a UID FETCH 12 BINARY[1.2]<100.50>\r\n");
    same("a FETCH 1:4,7,9:* (FLAGS INTERNALDATE BODYSTRUCTURE ENVELOPE)\r\n");
    same("a FETCH 2 BODY[]<0.65536>\r\n");
    // A one-item list loses its parentheses: `fetch-att / "(" fetch-att *(SP fetch-att) ")"`.
    assert_eq!(
        canon(b"a FETCH 2 (BODY.PEEK[TEXT]<0.2048>)\r\n"),
        "a FETCH 2 BODY.PEEK[TEXT]<0.2048>\r\n"
    );
    same("a FETCH 2 (BODY[1.2.HEADER.FIELDS.NOT (Received)] RFC822.HEADER RFC822 RFC822.TEXT)\r\n");
    same("a FETCH 2 ALL\r\n");
    same("a UID FETCH 5 FAST\r\n");
    let cmd = same("a FETCH 3 FULL\r\n");
    assert_eq!(cmd.kind, CommandKind::Fetch { uid: false });
    // Sequence sets are forwarded as parsed: not sorted, merged or reversed.
    same("a UID FETCH 9,3,5:2,*:4,1:3,2 FLAGS\r\n");
}

#[test]
fn preview_and_snippet_are_syntax_errors() {
    syntax(b"a FETCH 1 (PREVIEW)\r\n");
    syntax(b"a UID FETCH 1 (FLAGS PREVIEW (LAZY))\r\n");
    syntax(b"a FETCH 1 (SNIPPET (FUZZY))\r\n");
}

#[test]
fn condstore_forms_are_syntax_errors() {
    syntax(b"a SELECT INBOX (CONDSTORE)\r\n");
    syntax(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n");
    syntax(b"a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)\r\n");
}

#[test]
fn selected_state_commands() {
    for (line, name) in [
        ("a STORE 1:3 +FLAGS.SILENT (\\Seen \\Flagged)\r\n", "STORE"),
        ("a UID STORE 10 -FLAGS (\\Deleted)\r\n", "UID STORE"),
        ("a COPY 1:2 Archive\r\n", "COPY"),
        ("a UID COPY 4,8 \"Sent Items\"\r\n", "UID COPY"),
        ("a MOVE 3 Trash\r\n", "MOVE"),
        ("a UID MOVE 3:5 Trash\r\n", "UID MOVE"),
        ("a UID EXPUNGE 3:5\r\n", "UID EXPUNGE"),
        ("a SEARCH UNSEEN\r\n", "SEARCH"),
        (
            "a UID SEARCH CHARSET UTF-8 SUBJECT \"hi\" SINCE \"01-Feb-2024\"\r\n",
            "UID SEARCH",
        ),
        (
            "a SEARCH OR (FROM alice) (TO bob) NOT DELETED\r\n",
            "SEARCH",
        ),
        (
            "a UID SEARCH UID 1:* HEADER Message-ID \"<x@y>\"\r\n",
            "UID SEARCH",
        ),
        ("a SORT (REVERSE DATE) UTF-8 ALL\r\n", "SORT"),
        ("a THREAD REFERENCES UTF-8 ALL\r\n", "THREAD"),
        ("a UID SORT (DATE) UTF-8 ALL\r\n", "UID SORT"),
        (
            "a UID THREAD ORDEREDSUBJECT US-ASCII UNSEEN\r\n",
            "UID THREAD",
        ),
    ] {
        let cmd = same(line);
        assert_eq!(cmd.kind, CommandKind::Other(name), "{line}");
        assert_eq!(cmd.name(), name);
    }
}

#[test]
fn search_dates_keep_their_meaning() {
    // `date = date-text / DQUOTE date-text DQUOTE`: the canonical form is the quoted one.
    assert_eq!(
        canon(b"a SEARCH SINCE 1-Feb-2024\r\n"),
        "a SEARCH SINCE \"01-Feb-2024\"\r\n"
    );
}

#[test]
fn enable_and_compress_parse_for_the_session() {
    assert_eq!(same("a ENABLE CONDSTORE\r\n").kind, CommandKind::Enable);
    assert_eq!(same("a COMPRESS DEFLATE\r\n").kind, CommandKind::Compress);
}

// ----- capability list and quoting -----

#[test]
fn capabilities() {
    for cap in [
        "IMAP4rev1",
        "imap4REV1",
        "LITERAL+",
        "LITERAL-",
        "SASL-IR",
        "ID",
        "IDLE",
        "NAMESPACE",
        "UNSELECT",
        "MOVE",
        "UIDPLUS",
        "CHILDREN",
        "SPECIAL-USE",
        "BINARY",
        "QUOTA",
        "QUOTA=RES-STORAGE",
        "SORT",
        "THREAD=REFERENCES",
        "THREAD=ORDEREDSUBJECT",
    ] {
        assert!(capability_allowed(cap), "{cap}");
    }
    for cap in [
        "IMAP4rev2",
        "AUTH=PLAIN",
        "STARTTLS",
        "LOGINDISABLED",
        "COMPRESS=DEFLATE",
        "NOTIFY",
        "PREVIEW",
        "SNIPPET=FUZZY",
        "METADATA",
        "METADATA-SERVER",
        "CONDSTORE",
        "QRESYNC",
        "UTF8=ACCEPT",
        "I18NLEVEL=1",
        "URLAUTH",
        "CATENATE",
        "MULTIAPPEND",
        "CONTEXT=SEARCH",
        "LIST-STATUS",
        "LIST-EXTENDED",
        "ESEARCH",
        "ENABLE",
        "QUOTASET",
        "QUOTA=",
        "THREAD=",
        "SORT=DISPLAY",
        "WITHIN",
        "X-GM-EXT-1",
        "",
        "SPECIAL-USE ",
        "THREAD=A]B",
        "QUOTA=RES-é",
    ] {
        assert!(!capability_allowed(cap), "{cap}");
    }
}

#[test]
fn quoting() {
    assert_eq!(quoted("alice").as_deref(), Some("\"alice\""));
    assert_eq!(quoted("al\"i\\ce").as_deref(), Some("\"al\\\"i\\\\ce\""));
    assert_eq!(quoted("").as_deref(), Some("\"\""));
    assert_eq!(quoted("jörg").as_deref(), Some("\"jörg\""));
    for bad in ["a\rb", "a\nb", "a\0b", "a\tb", "a\x7fb"] {
        assert_eq!(quoted(bad), None);
    }
    for user in ["alice", "al\"i\\ce", "", "jörg", "{5}", "a b)"] {
        let Some(q) = quoted(user) else { panic!() };
        let line = format!("p LOGIN {q} {q}\r\n");
        assert_eq!(
            ok(line.as_bytes()).kind,
            CommandKind::Login(Credentials::new(user, user))
        );
    }
}

#[test]
fn non_canonical_client_forms_keep_their_meaning() {
    for (input, expected) in [
        (
            "a fetch 1 body.peek[header.fields (from X-Prio)]<5.10>\r\n",
            "a FETCH 1 BODY.PEEK[HEADER.FIELDS (from X-Prio)]<5.10>\r\n",
        ),
        (
            "a uid fetch 7 (binary.peek[1.2]<0.100> rfc822.size)\r\n",
            "a UID FETCH 7 (BINARY.PEEK[1.2]<0.100> RFC822.SIZE)\r\n",
        ),
        (
            "a store 1 flags \\seen $Junk\r\n",
            "a STORE 1 FLAGS (\\Seen $Junk)\r\n",
        ),
        (
            "a STATUS {5}\r\ninbox (unseen)\r\n",
            "a STATUS INBOX (UNSEEN)\r\n",
        ),
        ("a LIST \"\" \"INBOX.%\"\r\n", "a LIST \"\" \"INBOX.%\"\r\n"),
        (
            "a APPEND {4+}\r\nSent ~{1+}\r\nx\r\n",
            "a APPEND {4}\r\nSent ~{1}\r\nx\r\n",
        ),
    ] {
        assert_eq!(canon(input.as_bytes()), expected, "{input}");
    }
}
