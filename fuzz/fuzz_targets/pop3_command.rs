//! Fuzzes the strict POP3 command grammar: arbitrary lines must never panic; whatever parses
//! must serialise to one CRLF-terminated line without control characters that parses back to the
//! same command, and the transaction-state parse must agree with the allow-list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::pop3::grammar::Command;

fuzz_target!(|data: &[u8]| {
    let Ok(command) = Command::parse(data) else {
        return;
    };
    let line = command.to_line();
    assert!(line.ends_with(b"\r\n"));
    let body = &line[..line.len() - 2];
    assert!(!body.iter().any(|&b| b < 0x20 || b == 0x7f), "control byte in {line:?}");
    let again = Command::parse(&line).expect("canonical line must parse");
    assert_eq!(again, command);
    assert_eq!(
        Command::parse_transaction(data).is_ok(),
        command.allowed_in_transaction()
    );
});
