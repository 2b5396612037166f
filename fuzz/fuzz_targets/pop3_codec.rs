//! Fuzzes the POP3 framer in both roles: arbitrary bytes, fed in fuzzer-chosen chunks with
//! fuzzer-chosen response expectations, must never panic, and the events must reassemble to a
//! prefix of the input. Dot-stuffing must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::pop3::codec::{stuff, unstuff, Expect, Framer, Limits, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else { return };
    let chunk = usize::from(control >> 2).max(1);
    let limits = Limits { max_command: 512, max_line: 4096, max_multiline: 65536, max_pipeline: 8 };
    for role in [Role::Client, Role::Server] {
        let mut framer = Framer::new(role, limits);
        framer.set_sasl(control & 1 == 1);
        for i in 0..8u8 {
            let expect = match (control.wrapping_add(i)) % 3 {
                0 => Expect::SingleLine,
                1 => Expect::MultiLine,
                _ => Expect::Sasl,
            };
            let _ = framer.expect(expect);
        }
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
    assert_eq!(unstuff(&stuff(input)), input);
});
