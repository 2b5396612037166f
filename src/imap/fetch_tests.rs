//! Tests of FETCH request parsing and classification.

use super::*;

fn needs(item: &str) -> bool {
    RequestItem::parse(item).unwrap().needs_verdict()
}

#[test]
fn content_items_need_the_verdict() {
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
        "BINARY.SIZE[1]",
    ] {
        assert!(needs(item), "{item}");
    }
}

/// Issue 9 item 1: header-class items are content too (a part's MIME header, a nested
/// message's header, a message without a blank line), so they wait for the verdict.
#[test]
fn header_class_items_need_the_verdict() {
    for item in [
        "BODY[HEADER]",
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[HEADER.FIELDS (FROM TO)]",
        "BODY.PEEK[HEADER.FIELDS.NOT (X)]",
        "BODY[HEADER]<0.10>",
        "BODY[1.MIME]",
        "BODY.PEEK[2.MIME]",
        "BODY.PEEK[2.HEADER]",
        "BODY[2.HEADER.FIELDS (SUBJECT)]",
        "BODY[2.HEADER.FIELDS.NOT (X)]",
        "BODY[2.1.TEXT]",
        "RFC822.HEADER",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "RFC822.SIZE",
    ] {
        assert!(needs(item), "{item}");
    }
}

#[test]
fn metadata_items_need_no_verdict() {
    for item in ["FLAGS", "UID", "INTERNALDATE", "MODSEQ", "flags"] {
        assert!(!needs(item), "{item}");
    }
    let request = FetchRequest::parse("1:* (UID FLAGS INTERNALDATE)").unwrap();
    assert!(!request.needs_verdict());
    for args in ["1 FAST", "1 ALL", "1 FULL", "1 (FLAGS ENVELOPE)"] {
        assert!(FetchRequest::parse(args).unwrap().needs_verdict(), "{args}");
    }
}

#[test]
fn unknown_items_are_refused() {
    for args in [
        "1 (PREVIEW)",
        "1 (SNIPPET)",
        "1 (FLAGS X-GM-MSGID)",
        "1 PREVIEW",
        "1 (FLAGS<0.10>)",
    ] {
        assert_eq!(FetchRequest::parse(args), None, "{args:?}");
    }
    assert_eq!(
        RequestItem::parse("PREVIEW").map(|i| i.kind),
        Some(ItemKind::Unknown)
    );
    assert!(ItemKind::Unknown.needs_verdict());
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
