//! Fuzzes the IMAP framer in both roles: arbitrary bytes, fed in fuzzer-chosen chunks, must never
//! panic, and the events must reassemble to a prefix of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::imap::codec::{Framer, Limits, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits { max_line: 4096, max_literal: 65536, max_nesting: 16 };
    for role in [Role::Client, Role::Server] {
        let mut framer = Framer::new(role, limits);
        let mut rebuilt = Vec::new();
        'feed: for piece in input.chunks(chunk) {
            framer.feed(piece);
            loop {
                match framer.next_event() {
                    Ok(Some(event)) => rebuilt.extend_from_slice(event.bytes()),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
        assert!(input.starts_with(&rebuilt), "events must be exact slices of the input");
    }
});
