//! Fuzzes the FETCH response parser the scanner relies on: arbitrary backend responses must
//! never panic, every item span and value range must lie inside the input, and values must be
//! readable without panicking. The input is also framed as the relay frames backend bytes (in
//! two chunks split where the first octet says) and every complete response parsed over its
//! framed parts must give exactly what the contiguous parse gives (the same error included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::imap::codec::{Event, Framer, Limits, Role};
use portcullis::imap::fetch_response::FetchResponse;
use portcullis::imap::segments::Segments;

fuzz_target!(|data: &[u8]| {
    let mut raw = b"* 1 FETCH (".to_vec();
    raw.extend_from_slice(data);
    for input in [data, raw.as_slice()] {
        framed_agrees(input);
        let Ok(Some(response)) = FetchResponse::parse(input) else {
            continue;
        };
        for item in &response.items {
            assert!(item.span.end <= input.len(), "span outside the input");
            let _ = FetchResponse::value(input, item);
        }
        let _ = response.uid(input);
    }
});

/// Frames `input` and compares the parse of each complete response over its parts with the
/// parse of its contiguous bytes.
fn framed_agrees(input: &[u8]) {
    let split = usize::from(input.first().copied().unwrap_or(0)).min(input.len());
    let mut framer = Framer::new(Role::Server, Limits::default());
    let mut events = Vec::new();
    for chunk in [&input[..split], &input[split..]] {
        framer.feed(chunk);
        while let Ok(Some(event)) = framer.next_event() {
            let complete = matches!(event, Event::Line { literal: None, .. });
            events.push(event);
            if complete {
                let response = std::mem::take(&mut events);
                let contiguous: Vec<u8> =
                    response.iter().flat_map(|e| e.bytes().to_vec()).collect();
                let segments = Segments::of_events(&response);
                let framed = FetchResponse::parse_from(&segments);
                let whole = FetchResponse::parse(&contiguous);
                assert_eq!(framed, whole, "framed parse differs");
            }
        }
    }
}
