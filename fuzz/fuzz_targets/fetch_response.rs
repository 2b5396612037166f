//! Fuzzes the FETCH response parser the scanner relies on: arbitrary backend responses must
//! never panic, every item span and value range must lie inside the input, and values must be
//! readable without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::imap::fetch_response::FetchResponse;

fuzz_target!(|data: &[u8]| {
    let mut raw = b"* 1 FETCH (".to_vec();
    raw.extend_from_slice(data);
    for input in [data, raw.as_slice()] {
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
