//! Static routing against two real Dovecots (`old`, `new`): each login reaches the server its
//! rule, map entry or default names, over IMAP (LOGIN, AUTHENTICATE PLAIN with SASL-IR) and
//! POP3 (USER/PASS, AUTH PLAIN); a regex rule rewrites the login name; a failed login is routed
//! afresh; APOP is not offered; a map file changed and reloaded moves new sessions while a
//! running one stays; scanning blocks EICAR on the second server too.

mod support;

use std::io::Write;

use base64::Engine;
use support::corpus::EICAR;
use support::mime::{message, Part};
use support::ops::ReloadableProxy;
use support::proxy::{tls_section, TestProxy};
use support::routing::{
    header_subject, imap_client, imap_subject, routed_listener, subject, TwoServers,
};
use support::scanning::{retrieve, scan_section};

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// `[[router]]` `users` (static, default `old-{protocol}`) with the example.org domain rule,
/// the legacy.example regex rule and `map`; `strict` the same without default.
fn routers(protocol: &str, map: &std::path::Path) -> String {
    let rules = format!(
        "[[router.rule]]\ndomain = \"example.org\"\nbackend = \"new-{protocol}\"\n\n\
         [[router.rule]]\nregex = '^(.+)@legacy\\.example$'\nbackend = \"old-{protocol}\"\nrewrite = \"$1\"\n\n"
    );
    format!(
        "[[router]]\nname = \"{protocol}-users\"\nkind = \"static\"\ndefault = \"old-{protocol}\"\nmap_file = {:?}\n\n{rules}\
         [[router]]\nname = \"{protocol}-strict\"\nkind = \"static\"\n\n{rules}",
        map.display().to_string()
    )
}

struct Setup {
    servers: TwoServers,
    dir: tempfile::TempDir,
    config: String,
}

impl Setup {
    fn new() -> Setup {
        let servers = TwoServers::start();
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("users.map");
        std::fs::write(&map, "# zed starts on the old server\nzed old-imap\n").unwrap();
        let pop3_map = dir.path().join("pop3.map");
        std::fs::write(&pop3_map, "zed new-pop3\n").unwrap();
        std::fs::create_dir(dir.path().join("q")).unwrap();
        let config = tls_section(&servers.old)
            + &scan_section("", &dir.path().join("q"), None, "")
            + &routed_listener("imaps", "imap", "imap-users")
            + &routed_listener("pop3s", "pop3", "pop3-users")
            + &routed_listener("imaps-strict", "imap", "imap-strict")
            + &servers.backends()
            + &routers("imap", &map)
            + &routers("pop3", &pop3_map);
        Setup {
            servers,
            dir,
            config,
        }
    }
}

#[test]
fn imap_logins_reach_the_server_their_route_names() {
    let setup = Setup::new();
    let proxy = TestProxy::start(&setup.config);
    let old = &setup.servers.old;

    // The proxy greets itself: its own mechanisms, no backend yet.
    let mut client = imap_client(proxy.port(0), old);
    let (caps, status) = client.imap("c", "CAPABILITY");
    assert!(status.starts_with("c OK"), "{status}");
    let caps = caps[0].text();
    assert!(
        caps.contains("AUTH=PLAIN") && caps.contains("SASL-IR"),
        "{caps}"
    );

    // Default route, LOGIN.
    let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("old", "alice"));

    // Domain rule, AUTHENTICATE PLAIN with SASL-IR; a password with a space and a `%`.
    let mut client = imap_client(proxy.port(0), old);
    let ir = plain("bob@example.org", "bob pass%1");
    let (_, status) = client.imap("a", &format!("AUTHENTICATE PLAIN {ir}"));
    assert!(status.starts_with("a OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("new", "bob@example.org"));

    // Regex rule with rewriting: dave@legacy.example is `dave` on the old server.
    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN dave@legacy.example dave-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("old", "dave"));

    // A wrong password fails on the routed server; the next login is routed afresh.
    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN carol@example.org wrong");
    assert!(status.starts_with("l NO"), "{status}");
    let (_, status) = client.imap("m", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("m OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("old", "alice"));

    // Without a default an unmatched login is refused as a failed login.
    let mut client = imap_client(proxy.port(2), old);
    let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
    assert!(
        status.starts_with("l NO [AUTHENTICATIONFAILED]"),
        "{status}"
    );
    let (_, status) = client.imap("m", "LOGIN carol@example.org carol-Pass1");
    assert!(status.starts_with("m OK"), "{status}");
    assert_eq!(
        imap_subject(&mut client),
        subject("new", "carol@example.org")
    );

    let metrics = portcullis::metrics::render();
    for (name, labels) in [
        (
            "portcullis_backend_sessions_total",
            &["backend=\"new-imap\""][..],
        ),
        (
            "portcullis_backend_sessions_total",
            &["backend=\"old-imap\""],
        ),
        (
            "portcullis_backend_logins_total",
            &["backend=\"new-imap\"", "outcome=\"fail\""],
        ),
        (
            "portcullis_route_decisions_total",
            &["router=\"imap-strict\"", "outcome=\"no_route\""],
        ),
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name) && labels.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{metrics}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
}

#[test]
fn pop3_logins_reach_the_server_their_route_names() {
    let setup = Setup::new();
    let proxy = TestProxy::start(&setup.config);
    let old = &setup.servers.old;
    let connect = || {
        let mut client = support::raw::connect_tls(proxy.port(1), &old.ca);
        let greeting = client.read_line();
        // The proxy's own greeting: no APOP timestamp, so APOP is not offered.
        assert!(
            greeting.starts_with("+OK") && !greeting.contains('<'),
            "{greeting}"
        );
        client
    };

    let mut client = connect();
    assert!(client.pop3("CAPA").starts_with("+OK"));
    let capa = String::from_utf8(client.read_pop3_multiline()).unwrap();
    assert!(
        capa.contains("SASL PLAIN LOGIN") && capa.contains("USER"),
        "{capa}"
    );
    assert!(client.pop3("USER alice").starts_with("+OK"));
    assert!(client.pop3("PASS wonderland-Pass1").starts_with("+OK"));
    let (status, body) = retrieve(&mut client, "RETR 1");
    assert!(status.starts_with("+OK"), "{status}");
    assert_eq!(header_subject(&body), subject("old", "alice"));

    let mut client = connect();
    let ir = plain("carol@example.org", "carol-Pass1");
    let status = client.pop3(&format!("AUTH PLAIN {ir}"));
    assert!(status.starts_with("+OK"), "{status}");
    let (_, body) = retrieve(&mut client, "RETR 1");
    assert_eq!(header_subject(&body), subject("new", "carol@example.org"));

    // The map file sends zed to the new server for POP3.
    let mut client = connect();
    assert!(client.pop3("USER zed").starts_with("+OK"));
    assert!(client.pop3("PASS zed-new-Pass1").starts_with("+OK"));
    let (_, body) = retrieve(&mut client, "RETR 1");
    assert_eq!(header_subject(&body), subject("new", "zed"));

    // A client that tries APOP anyway is refused without reaching a backend.
    let mut client = connect();
    let status = client.pop3("APOP alice 0123456789abcdef0123456789abcdef");
    assert!(status.starts_with("-ERR [AUTH]"), "{status}");
    assert!(client.pop3("USER dave@legacy.example").starts_with("+OK"));
    assert!(client.pop3("PASS dave-Pass1").starts_with("+OK"));
    let (_, body) = retrieve(&mut client, "RETR 1");
    assert_eq!(header_subject(&body), subject("old", "dave"));
}

#[test]
fn scanning_applies_on_every_route() {
    let setup = Setup::new();
    let new = &setup.servers.new;
    let infected = message(
        "eicar",
        "infected on new",
        Part::attachment("eicar.com", "application/octet-stream", EICAR),
    );
    new.seed_messages("carol@example.org", &[infected]);
    let proxy = TestProxy::start(&setup.config);

    let mut client = imap_client(proxy.port(0), &setup.servers.old);
    let (_, status) = client.imap("l", "LOGIN carol@example.org carol-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    let (_, status) = client.imap("s", "EXAMINE INBOX");
    assert!(status.starts_with("s OK"), "{status}");
    let (responses, status) = client.imap("f", "FETCH 2 (BODY.PEEK[])");
    assert!(status.starts_with("f OK"), "{status}");
    let raw: Vec<u8> = responses.iter().flat_map(|r| r.raw.clone()).collect();
    assert!(
        !raw.windows(EICAR.len()).any(|w| w == EICAR),
        "EICAR delivered"
    );

    let mut client = support::raw::connect_tls(proxy.port(1), &setup.servers.old.ca);
    client.read_line();
    assert!(client.pop3("USER carol@example.org").starts_with("+OK"));
    assert!(client.pop3("PASS carol-Pass1").starts_with("+OK"));
    let (status, body) = retrieve(&mut client, "RETR 2");
    assert!(status.starts_with("+OK"), "{status}");
    assert!(
        !body.windows(EICAR.len()).any(|w| w == EICAR),
        "EICAR delivered"
    );
    assert!(!body.is_empty());
}

#[test]
fn a_reloaded_map_file_moves_new_sessions_and_keeps_running_ones() {
    let setup = Setup::new();
    let proxy = ReloadableProxy::start(&setup.config);
    let old = &setup.servers.old;
    let map = setup.dir.path().join("users.map");

    let mut running = imap_client(proxy.port(0), old);
    let (_, status) = running.imap("l", "LOGIN zed zed-old-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut running), subject("old", "zed"));

    // zed moves to the new server: the map file changes, the configuration is reloaded.
    let mut file = std::fs::File::create(&map).unwrap();
    writeln!(file, "zed new-imap\n@moved.example new-imap").unwrap();
    drop(file);
    let new_config = portcullis::config::Config::parse(&setup.config).unwrap();
    portcullis::reload::apply(&proxy.handles, &proxy.config, &new_config).expect("reload");

    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN zed zed-new-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("new", "zed"));
    // The session started before the reload is still on the old server.
    assert_eq!(imap_subject(&mut running), subject("old", "zed"));

    // A broken map file is rejected and the loaded table stays.
    std::fs::write(&map, "zed\n").unwrap();
    let error = portcullis::reload::apply(&proxy.handles, &proxy.config, &new_config)
        .expect_err("broken map accepted");
    assert!(error.to_string().contains("line 1"), "{error}");
    // So is a map naming a backend the running configuration does not have.
    std::fs::write(&map, "zed elsewhere\n").unwrap();
    assert!(portcullis::reload::apply(&proxy.handles, &proxy.config, &new_config).is_err());
    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN zed zed-new-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("new", "zed"));
    let (_, status) = running.imap("n", "NOOP");
    assert!(status.starts_with("n OK"), "{status}");
}

#[test]
fn check_config_reports_routers_and_refuses_a_broken_map() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.map");
    std::fs::write(&map, "zed old-imap\n@moved.example new-imap\n").unwrap();
    let backends = "[[backend]]\nname = \"old-imap\"\naddress = \"127.0.0.1:1143\"\ntls = \"none\"\n\n\
                    [[backend]]\nname = \"new-imap\"\naddress = \"127.0.0.1:2143\"\ntls = \"none\"\n\n";
    let text = routed_listener("imaps", "imap", "imap-users")
        + backends
        + &routers("imap", &map).replace(
            "[[router]]\nname = \"imap-strict\"",
            "[[router]]\nname = \"unused\"",
        );
    let config = portcullis::config::Config::parse(&text).unwrap();
    let report = portcullis::check::check(&config);
    let lines = report.lines.join("\n");
    assert!(
        lines.contains("router imap-users: static, 2 rules, 2 map entries, default old-imap"),
        "{lines}"
    );
    assert!(lines.contains("-> router imap-users"), "{lines}");
    std::fs::write(&map, "zed nowhere\n").unwrap();
    let report = portcullis::check::check(&config);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("no [[backend]] named \"nowhere\"")),
        "{:?}",
        report.errors
    );
}
