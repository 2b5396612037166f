//! Tests of FETCH request parsing and classification.

use super::*;

fn carries(item: &str) -> bool {
    RequestItem::parse(item).unwrap().carries_content()
}

#[test]
fn content_items_are_recognised() {
    for item in [
        "BODY[]",
        "BODY.PEEK[]",
        "RFC822",
        "RFC822.TEXT",
        "BODY[TEXT]",
        "BODY[2]",
        "BINARY[2]",
        "BINARY.PEEK[1.2]",
        "BODY[]<0.100>",
        "BODY[2]<10.50>",
        "body.peek[1.TEXT]",
    ] {
        assert!(carries(item), "{item}");
    }
    for item in [
        "BODY[HEADER]",
        "BODY.PEEK[HEADER.FIELDS (FROM TO)]",
        "BODY[1.MIME]",
        "BODY[2.HEADER.FIELDS.NOT (X)]",
        "RFC822.HEADER",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "FLAGS",
        "RFC822.SIZE",
        "UID",
        "BINARY.SIZE[1]",
    ] {
        assert!(!carries(item), "{item}");
    }
    assert!(RequestItem::parse("BINARY.SIZE[1]")
        .unwrap()
        .needs_verdict());
}

#[test]
fn requests_parse_and_rewrite() {
    let request =
        FetchRequest::parse("1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)] BODY[2]<0.100>)")
            .unwrap();
    assert_eq!(request.items.len(), 3);
    assert_eq!(request.items[2].partial, Some((0, 100)));
    assert!(request.needs_verdict() && !request.has_whole_message());
    assert_eq!(
        request.forwarded_args(true, true),
        "1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)] BODY[2]<0.100> BODY.PEEK[] UID)"
    );
    let single = FetchRequest::parse("5 RFC822").unwrap();
    assert!(single.has_whole_message());
    let with_modifier = FetchRequest::parse("1:3 (FLAGS) (CHANGEDSINCE 12)").unwrap();
    assert_eq!(with_modifier.modifiers, " (CHANGEDSINCE 12)");
    assert!(!with_modifier.needs_verdict());
    assert_eq!(FetchRequest::parse("1:2 FAST").unwrap().items.len(), 3);
}

#[test]
fn malformed_requests_are_refused() {
    for args in [
        "",
        "1:*",
        "x (FLAGS)",
        "1 (BODY[",
        "1 (FOO[1])",
        "1 (BODY[]<a.b>)",
        "1 ()",
    ] {
        assert_eq!(FetchRequest::parse(args), None, "{args:?}");
    }
}
