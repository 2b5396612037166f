use super::*;
use crate::config::{RouterConfig, RouterKind, RuleConfig};

fn rule(kind: &str, value: &str, backend: &str, rewrite: Option<&str>) -> RuleConfig {
    RuleConfig {
        user: (kind == "user").then(|| value.to_string()),
        domain: (kind == "domain").then(|| value.to_string()),
        regex: (kind == "regex").then(|| value.to_string()),
        backend: backend.to_string(),
        rewrite: rewrite.map(str::to_string),
    }
}

fn router(rules: Vec<RuleConfig>, default: Option<&str>) -> RouterConfig {
    RouterConfig {
        name: "r".into(),
        kind: RouterKind::Static,
        default: default.map(str::to_string),
        map_file: None,
        rules,
        url: None,
        timeout: std::time::Duration::from_secs(5),
        cache_ttl: std::time::Duration::from_secs(60),
        cache_size: 10,
        backends: None,
        headers: Default::default(),
    }
}

fn to(backend: &str, login: Option<&str>) -> Option<Decision> {
    Some(Decision {
        backend: backend.into(),
        login: login.map(str::to_string),
    })
}

#[test]
fn rules_apply_in_order_first_match_wins() {
    let config = router(
        vec![
            rule("user", "Boss@Example.org", "vip", None),
            rule("domain", "example.org", "new", None),
            rule("regex", r"^(.+)@legacy\.example$", "old", Some("$1")),
            rule("domain", "legacy.example", "never", None),
        ],
        Some("fallback"),
    );
    let table = StaticTable::new(&config, MapFile::default()).unwrap();
    assert_eq!(table.decide("boss@example.ORG"), to("vip", None));
    assert_eq!(table.decide("carol@EXAMPLE.org"), to("new", None));
    assert_eq!(table.decide("dave@legacy.example"), to("old", Some("dave")));
    assert_eq!(table.decide("erin@elsewhere.net"), to("fallback", None));
    // A domain rule matches the part after the last @ only, not a suffix of it.
    assert_eq!(table.decide("x@notexample.org"), to("fallback", None));
    assert_eq!(table.decide("example.org"), to("fallback", None));
}

#[test]
fn without_default_an_unmatched_login_has_no_route() {
    let config = router(vec![rule("domain", "@example.org", "new", None)], None);
    let table = StaticTable::new(&config, MapFile::default()).unwrap();
    assert_eq!(table.decide("a@example.org"), to("new", None));
    assert_eq!(table.decide("a@example.net"), None);
    assert_eq!(table.decide(""), None);
}

#[test]
fn regex_rewrite_expands_named_and_numbered_captures() {
    let config = router(
        vec![
            rule(
                "regex",
                r"^(?P<local>[^@]+)@(?P<dom>a)\.test$",
                "b1",
                Some("${dom}-${local}"),
            ),
            rule("regex", r"^u(\d+)$", "b2", Some("user${1}x")),
            rule("regex", r"^(x)|(y)$", "b3", Some("$2")),
            rule("regex", r"^keep", "b4", None),
        ],
        None,
    );
    let table = StaticTable::new(&config, MapFile::default()).unwrap();
    assert_eq!(table.decide("joe@a.test"), to("b1", Some("a-joe")));
    assert_eq!(table.decide("u42"), to("b2", Some("user42x")));
    // `$2` did not take part: an empty login name is never sent, the rule does not apply.
    assert_eq!(table.decide("x"), None);
    assert_eq!(table.decide("y"), to("b3", Some("y")));
    assert_eq!(table.decide("keeper"), to("b4", None));
}

#[test]
fn map_file_users_then_domains_after_rules_before_default() {
    let map = parse_map(
        "# users moved to the new server\n\
         Alice@Example.org   new-imap\n\
         @example.org old-imap   # everybody else there\n\
         \n\
         bob new-imap\n",
    )
    .unwrap();
    assert_eq!(map.len(), 3);
    let config = router(vec![rule("user", "bob", "rule-wins", None)], Some("def"));
    let table = StaticTable::new(&config, map).unwrap();
    assert_eq!(table.decide("alice@example.org"), to("new-imap", None));
    assert_eq!(table.decide("zed@example.org"), to("old-imap", None));
    assert_eq!(table.decide("bob"), to("rule-wins", None));
    assert_eq!(table.decide("zed@example.com"), to("def", None));
    let mut backends: Vec<&str> = table.backends().collect();
    backends.sort_unstable();
    backends.dedup();
    assert_eq!(backends, ["def", "new-imap", "old-imap", "rule-wins"]);
}

#[test]
fn map_file_errors_name_the_line() {
    let cases = [
        ("alice\n", 1, "expected"),
        ("ok b\nalice b extra\n", 2, "expected"),
        ("@ b\n", 1, "empty domain"),
        ("a b\n# c\nA b2\n", 3, "listed twice"),
        ("@x.org b\n@X.ORG c\n", 2, "listed twice"),
    ];
    for (text, line, reason) in cases {
        let error = parse_map(text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}");
        assert!(error.reason.contains(reason), "{text:?}: {error}");
    }
    assert!(parse_map("").unwrap().is_empty());
    assert!(parse_map("# only\n   \n").unwrap().is_empty());
}

#[test]
fn a_large_map_is_a_hash_lookup() {
    let text: String = (0..20_000)
        .map(|i| format!("user{i}@example.org backend{}\n", i % 7))
        .collect();
    let map = parse_map(&text).unwrap();
    assert_eq!(map.len(), 20_000);
    let table = StaticTable::new(&router(Vec::new(), None), map).unwrap();
    assert_eq!(table.decide("user19999@example.org"), to("backend0", None));
    assert_eq!(table.decide("user20000@example.org"), None);
}
