//! Validation of `[[router]]` sections and listeners naming them.

use crate::config::{Config, RouterKind};

const BASE: &str = r#"
[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:993"
tls = "implicit"
router = "imap-users"

[[backend]]
name = "old-imap"
address = "old.internal:143"
tls = "none"

[[backend]]
name = "new-imap"
address = "10.0.0.2:143"
tls = "none"
"#;

const STATIC: &str = r#"
[[router]]
name = "imap-users"
kind = "static"
default = "old-imap"
map_file = "users.map"

[[router.rule]]
domain = "example.org"
backend = "new-imap"

[[router.rule]]
regex = "^(.+)@legacy\\.example$"
backend = "old-imap"
rewrite = "$1"
"#;

fn error(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn the_documented_static_shape_parses() {
    let config = Config::parse(&format!("{BASE}{STATIC}")).unwrap();
    let router = config.router("imap-users").unwrap();
    assert_eq!(router.kind, RouterKind::Static);
    assert_eq!(router.rules.len(), 2);
    assert_eq!(router.rules[1].rewrite.as_deref(), Some("$1"));
    assert_eq!(config.listeners[0].backend, None);
    assert_eq!(
        config.router_backends(router),
        ["new-imap", "old-imap", "old-imap"]
    );
}

#[test]
fn the_documented_http_shape_parses() {
    let text = format!(
        "{BASE}[[router]]\nname = \"imap-users\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9000/auth\"\ntimeout = \"2s\"\ncache_ttl = \"0s\"\nheaders = {{ X-Auth-Key = \"s\" }}\n"
    );
    let config = Config::parse(&text).unwrap();
    let router = config.router("imap-users").unwrap();
    assert_eq!(router.timeout, std::time::Duration::from_secs(2));
    assert!(router.cache_ttl.is_zero());
    assert_eq!(config.router_backends(router), ["old-imap", "new-imap"]);
}

#[test]
fn a_listener_needs_exactly_one_of_backend_and_router() {
    let both = BASE.replace(
        "router = \"imap-users\"",
        "router = \"imap-users\"\nbackend = \"old-imap\"",
    );
    assert!(error(&format!("{both}{STATIC}")).contains("exactly one of backend and router"));
    let neither = BASE.replace("router = \"imap-users\"\n", "");
    assert!(error(&neither).contains("exactly one of backend and router"));
    let unknown = error(BASE);
    assert!(
        unknown.starts_with("listener[0].router: no [[router]] named"),
        "{unknown}"
    );
}

#[test]
fn every_backend_a_router_names_must_exist() {
    let text = format!(
        "{BASE}{}",
        STATIC.replace("backend = \"new-imap\"", "backend = \"nope\"")
    );
    assert!(
        error(&text).starts_with("router[0].rule[0].backend: no [[backend]] named \"nope\""),
        "{}",
        error(&text)
    );
    let text = format!(
        "{BASE}{}",
        STATIC.replace("default = \"old-imap\"", "default = \"x\"")
    );
    assert!(error(&text).starts_with("router[0].default:"));
    let http = format!(
        "{BASE}[[router]]\nname = \"imap-users\"\nkind = \"http\"\nurl = \"http://h/\"\nbackends = [\"zz\"]\n"
    );
    assert!(error(&http).starts_with("router[0].backends:"));
}

#[test]
fn rule_shapes_are_checked() {
    let two = STATIC.replace(
        "domain = \"example.org\"",
        "domain = \"example.org\"\nuser = \"a\"",
    );
    assert!(error(&format!("{BASE}{two}")).contains("exactly one of user, domain, regex"));
    let bad_regex = STATIC.replace("^(.+)@legacy", "^(.+@legacy");
    assert!(error(&format!("{BASE}{bad_regex}")).starts_with("router[0].rule[1].regex:"));
    let rewrite = STATIC.replace(
        "domain = \"example.org\"",
        "domain = \"example.org\"\nrewrite = \"x\"",
    );
    assert!(error(&format!("{BASE}{rewrite}")).starts_with("router[0].rule[0].rewrite:"));
}

#[test]
fn kinds_do_not_mix_and_names_are_unique() {
    let mixed = STATIC.replace(
        "kind = \"static\"",
        "kind = \"static\"\nurl = \"http://h/\"",
    );
    assert!(error(&format!("{BASE}{mixed}")).contains("belong to kind = \"http\""));
    let http = format!("{BASE}[[router]]\nname = \"imap-users\"\nkind = \"http\"\n");
    assert!(error(&http).starts_with("router[0].url:"));
    let https =
        format!("{BASE}[[router]]\nname = \"imap-users\"\nkind = \"http\"\nurl = \"https://h/\"\n");
    assert!(error(&https).starts_with("router[0].url:"));
    let twice = format!("{BASE}{STATIC}{STATIC}");
    assert!(error(&twice).starts_with("router[1].name: duplicate"));
}

#[test]
fn a_routed_backend_must_suit_the_listener_protocol() {
    let text = format!(
        "{}{STATIC}",
        BASE.replace(
            "address = \"10.0.0.2:143\"\ntls = \"none\"",
            "address = \"10.0.0.2:143\"\ntls = \"none\"\nforward_client_ip = \"xclient\""
        )
    );
    let message = error(&text);
    assert!(
        message.starts_with("listener[0].router:") && message.contains("imap cannot use"),
        "{message}"
    );
}
