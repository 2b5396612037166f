//! FETCH responses parsed over framed events ([`Segments`]) against the contiguous parse: the
//! same items, spans and values for every chunking of the backend's bytes, literals never
//! copied, and the parser's literals exactly the framer's.

use std::borrow::Cow;

use bytes::Bytes;

use super::*;
use crate::imap::assembler::ResponseAssembler;
use crate::imap::codec::{Event, Framer, Limits, Role};
use crate::imap::segments::Segments;

/// Responses from the unit tests of this module, of [`super::super::fetch_match`] and of the
/// codec, plus the forms the relay meets (empty literals, `{n+}`, literal8 with NUL, nested
/// lists, escaped quotes, partial origins, several literals, `NIL`), and malformed ones.
const CORPUS: &[&[u8]] = &[
    b"* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {5}\r\nFrom\n BODY[2]<10> \"a\\\"b\" RFC822.SIZE 99 BODY[] NIL)\r\n",
    b"* 1 FETCH (BINARY[1] ~{3}\r\na\0b)\r\n",
    b"* 1 FETCH (UID 4 FLAGS () BODY[HEADER.FIELDS (\"FROM\" \"SUBJECT\")] {2}\r\n\r\n BODY[] {2}\r\n\r\n)\r\n",
    b"* 7 FETCH (RFC822.SIZE 44 BINARY[1]<0> ~{0}\r\n)\r\n",
    b"* 2 FETCH (FLAGS () INTERNALDATE \"x\" RFC822.SIZE 4 ENVELOPE NIL BODY NIL)\r\n",
    b"* 1 FETCH (FLAGS (\\Seen) UID 3)\r\n",
    b"* 1 FETCH (BODY[HEADER] {0}\r\n BODY[] {0}\r\n)\r\n",
    b"* 1 FETCH (RFC822.TEXT {0}\r\n)\r\n",
    b"* 1 FETCH (BODY[HEADER] {5}\r\nH: x\n BODY[TEXT] {2}\r\nhi)\r\n",
    b"* 12 FETCH (UID 99 BODY[] {44}\r\nSubject: hi\r\n\r\nX5O!P%@AP[4\\PZX54(P^)7CC)7}\r\n)\r\n",
    b"* 5 FETCH (BODY[]<100> {4+}\r\nabcd UID 5)\r\n",
    b"* 4 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL) \"MIXED\") MODSEQ (12))\r\n",
    b"* 6 FETCH (ENVELOPE (\"date\" {3}\r\nsub NIL NIL NIL NIL NIL NIL NIL \"<id>\") UID 6)\r\n",
    b"* 8 FETCH (RFC822 {6}\r\n{3}\r\nx RFC822.HEADER {2}\r\n\r\n)\r\n",
    b"* 9 fetch (uid 9 body[1.mime] {4}\r\nab\r\n)\r\n",
    b"* 3 EXISTS\r\n",
    b"* 3 FETCH (BODY[] \"abc)\r\n",
    b"* 3 FETCH (UID)\r\n",
    b"* 3 FETCH (BODY[] {2}\r\nab\r\n",
    b"* 3 FETCH (BODY[] ~x{2}\r\nab)\r\n",
    b"* 3 FETCH (BODY[] {2}x\r\nab)\r\n",
    b"* 3 FETCH (NOSUCH 1)\r\n", // an unknown item: kept, not an error
    b"* 3 FETCH UID 1\r\n",
];

/// Every complete response `script` frames into, as events, fed in chunks of `chunk` octets.
fn framed(script: &[u8], chunk: usize) -> Vec<Vec<Event>> {
    let mut framer = Framer::new(Role::Server, Limits::default());
    let mut responses = ResponseAssembler::new(1 << 20);
    let mut out = Vec::new();
    for piece in script.chunks(chunk) {
        framer.feed(piece);
        while let Ok(Some(events)) = responses.next(&mut framer) {
            out.push(events);
        }
    }
    out
}

#[test]
fn framed_parts_parse_like_contiguous_bytes_at_every_chunk_size() {
    for raw in CORPUS {
        let whole = framed(raw, raw.len());
        for chunk in 1..=512 {
            let responses = framed(raw, chunk);
            assert_eq!(responses, whole, "framing differs at chunk size {chunk}");
            for events in &responses {
                let contiguous: Vec<u8> = events.iter().flat_map(|e| e.bytes().to_vec()).collect();
                let segments = Segments::of_events(events);
                let expected = FetchResponse::parse(&contiguous);
                let got = FetchResponse::parse_from(&segments);
                assert_eq!(got, expected, "{}", String::from_utf8_lossy(raw));
                let Ok(Some(response)) = got else { continue };
                assert_eq!(response.uid(&segments), response.uid(&contiguous[..]));
                for item in &response.items {
                    let value = FetchResponse::value(&segments, item);
                    assert_eq!(value, FetchResponse::value(&contiguous[..], item));
                    assert_eq!(
                        segments.slice(item.span.clone()).as_deref(),
                        contiguous.get(item.span.clone())
                    );
                }
            }
        }
    }
}

#[test]
fn the_corpus_exercises_successes_and_failures() {
    let results: Vec<_> = CORPUS.iter().map(|raw| FetchResponse::parse(raw)).collect();
    assert_eq!(
        results.iter().filter(|r| matches!(r, Ok(Some(_)))).count(),
        16
    );
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 6);
}

#[test]
fn literal_values_are_the_framed_literals_not_copies() {
    let raw = b"* 1 FETCH (UID 3 BODY[HEADER] {5}\r\nH: x\n BODY[] {9}\r\nH: x\n\nhi!)\r\n";
    for chunk in [1, 2, 7, 64, 512] {
        let responses = framed(raw, chunk);
        let events = &responses[0];
        let literals: Vec<&Bytes> = events
            .iter()
            .filter_map(|e| match e {
                Event::Literal(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        let segments = Segments::of_events(events);
        let response = FetchResponse::parse_from(&segments).unwrap().unwrap();
        let values: Vec<Bytes> = response
            .items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Literal { content, .. } => segments.slice(content.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(values.len(), 2);
        for (value, literal) in values.iter().zip(literals) {
            assert_eq!(value.as_ptr(), literal.as_ptr(), "chunk size {chunk}");
            assert_eq!(value.len(), literal.len());
        }
        assert!(matches!(
            FetchResponse::value(&segments, &response.items[2]),
            Some(Cow::Borrowed(b"H: x\n\nhi!"))
        ));
    }
}

#[test]
fn a_literal_the_framer_did_not_deliver_is_refused() {
    // The same bytes as one part parse (contiguous input has no framing to disagree with); as
    // parts in which the announced literal is not a part of its own, they do not.
    let raw: &[u8] = b"* 1 FETCH (BODY[] {2}\r\nab)\r\n";
    assert!(FetchResponse::parse(raw).unwrap().is_some());
    let split = Segments::new([
        Bytes::from_static(b"* 1 FETCH (BODY[] {2}\r\na"),
        Bytes::from_static(b"b)\r\n"),
    ]);
    assert!(FetchResponse::parse_from(&split).is_err());
    let framed = Segments::new([
        Bytes::from_static(b"* 1 FETCH (BODY[] {2}\r\n"),
        Bytes::from_static(b"ab"),
        Bytes::from_static(b")\r\n"),
    ]);
    assert!(FetchResponse::parse_from(&framed).unwrap().is_some());
}
