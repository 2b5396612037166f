//! Fuzzes the strict IMAP command grammar: arbitrary bytes must never panic, and whatever parses
//! must round-trip: the canonical encoding (both literal modes) re-parses to the same command,
//! and encoding the re-parse gives the same fragments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::imap::grammar::{parse_command, Fragment};

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = parse_command(data) else { return };
    let cleaned = cmd.clone().without_forwarding_fields();
    for cmd in [cmd, cleaned] {
        let _ = cmd.name();
        for plus in [false, true] {
            let fragments = cmd.encode(plus);
            // Lines end with CRLF; a literal always follows a line that announces it.
            for pair in fragments.windows(2) {
                if let [Fragment::Line(line), Fragment::Literal(_)] = pair {
                    assert!(line.ends_with(b"}\r\n"));
                }
            }
            assert!(matches!(fragments.last(), Some(Fragment::Line(l)) if l.ends_with(b"\r\n")));
            let bytes = cmd.to_bytes(plus);
            let again = parse_command(&bytes).expect("canonical form must parse");
            assert_eq!(again.tag, cmd.tag);
            assert_eq!(again.kind, cmd.kind);
            assert_eq!(again.encode(false), cmd.encode(false));
            assert_eq!(again.encode(true), cmd.encode(true));
        }
    }
});
