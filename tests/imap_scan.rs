//! Scanning on the IMAP path with a real clamd and a real Dovecot: no byte of a blocked message
//! reaches the client by any FETCH form; clean mail is byte-identical; faults follow the policy.

mod support;

use support::clamd::Clamd;
use support::corpus::{self, EICAR};
use support::dovecot::Dovecot;
use support::raw;
use support::scanning::{
    clamd_endpoint, contains, fetch, imap_config, imap_login, quarantined, scan_section, start_imap,
};

/// The forms the issue lists (sequence-number and UID variants).
const FORMS: [&str; 9] = [
    "BODY[]",
    "BODY.PEEK[]",
    "RFC822",
    "RFC822.TEXT",
    "BODY[TEXT]",
    "BODY[2]",
    "BINARY[2]",
    "BODY[]<0.100>",
    "BODY[2]<10.50>",
];

#[test]
fn infected_messages_never_reach_the_client_by_any_fetch_form() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let infected = corpus::infected_messages();
    let messages: Vec<Vec<u8>> = infected.iter().map(|(_, m)| m.clone()).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start_imap(
        &dovecot,
        &scan_section(
            &clamd_endpoint(&clamd),
            quarantine.path(),
            Some("rules"),
            "",
        ),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    for (index, (name, original)) in infected.iter().enumerate() {
        let seq = index + 1;
        let (_, whole, status) = fetch(&mut client, &format!("FETCH {seq} BODY.PEEK[]"));
        assert!(status.starts_with("f OK"), "{name}: {status}");
        let replacement = whole
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("{name}: no body"));
        assert_ne!(&replacement, original, "{name}: original delivered");
        assert!(
            String::from_utf8_lossy(&replacement).contains("X-Portcullis-Verdict"),
            "{name}"
        );
        for form in FORMS {
            let (raw, literals, status) = fetch(&mut client, &format!("FETCH {seq} {form}"));
            assert!(status.starts_with("f OK"), "{name} {form}: {status}");
            assert!(
                !contains(&raw, EICAR),
                "{name} {form}: EICAR reached the client"
            );
            assert_eq!(
                clamd.scan_raw(&raw),
                "stream: OK",
                "{name} {form}: client bytes are not clean"
            );
            if form == "BODY[]<0.100>" {
                assert_eq!(
                    literals[0],
                    replacement[..100.min(replacement.len())],
                    "{name}: partial != slice"
                );
            }
        }
        let (raw, literals, _) = fetch(
            &mut client,
            &format!("FETCH {seq} (RFC822.SIZE BODY.PEEK[])"),
        );
        let size = format!("RFC822.SIZE {}", literals[0].len());
        assert!(
            String::from_utf8_lossy(&raw).contains(&size),
            "{name}: size must match the replacement"
        );
        let (raw, _, status) = fetch(&mut client, "UID FETCH 1:* BODY.PEEK[]");
        assert!(
            status.starts_with("f OK") && !contains(&raw, EICAR),
            "{name}: UID FETCH"
        );
        let quarantined = quarantined(quarantine.path());
        assert!(
            quarantined.iter().any(|q| q == original),
            "{name}: original not in quarantine"
        );
    }
}

#[test]
fn clean_messages_are_byte_identical_and_refetches_need_no_clamd() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let clean: Vec<Vec<u8>> = corpus::clean_messages()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let count = clean.len();
    dovecot.seed_messages(dovecot.user(), &clean);
    dovecot.seed_messages(dovecot.user(), &[corpus::infected_messages()[1].1.clone()]);
    let proxy = start_imap(
        &dovecot,
        &scan_section(
            &clamd_endpoint(&clamd),
            quarantine.path(),
            Some("rules"),
            "",
        ),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (_, bodies, status) = fetch(
        &mut client,
        &format!("FETCH 1:{count} (FLAGS RFC822.SIZE BODY.PEEK[])"),
    );
    assert!(status.starts_with("f OK"), "{status}");
    assert!(bodies == clean, "clean messages altered");
    let (_, parts, _) = fetch(&mut client, "FETCH 4 BODY.PEEK[2]");
    let mut direct = support::proxy::direct_imap(&dovecot);
    let (direct_parts, _) = direct.imap("f", "FETCH 4 BODY.PEEK[2]");
    assert_eq!(
        parts, direct_parts[0].literals,
        "section fetch differs from Dovecot's"
    );
    let (_, replaced, _) = fetch(&mut client, &format!("FETCH {} BODY.PEEK[]", count + 1));
    // The verdicts are cached: with clamd gone, refetches and partial fetches still work.
    clamd.stop();
    let (_, again, status) = fetch(
        &mut client,
        &format!("FETCH 1:{count} BODY.PEEK[]<0.65536>"),
    );
    assert!(status.starts_with("f OK"), "{status}");
    for (index, message) in clean.iter().enumerate() {
        assert_eq!(
            again[index],
            message[..message.len().min(65536)],
            "message {}",
            index + 1
        );
    }
    let (_, slice, status) = fetch(
        &mut client,
        &format!("UID FETCH {} BODY.PEEK[]<10.50>", count + 1),
    );
    assert!(status.starts_with("f OK"), "{status}");
    assert_eq!(slice[0], replaced[0][10..60]);
}

#[test]
fn scanner_faults_follow_the_policy() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let infected = corpus::infected_messages()[0].1.clone();
    let clean = corpus::clean_messages()[0].1.clone();
    dovecot.seed_messages(dovecot.user(), &[clean.clone(), infected.clone()]);
    let endpoint = clamd_endpoint(&clamd);
    let proxy = start_imap(
        &dovecot,
        &scan_section(&endpoint, quarantine.path(), Some("rules"), ""),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    // clamd restarted mid-session: the next scan simply uses a new connection.
    clamd.restart();
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK") && bodies[0] == clean, "{status}");
    // clamd stopped: tempfail withholds the body and says so.
    clamd.stop();
    let (raw, _, status) = fetch(&mut client, "FETCH 2 (FLAGS BODY.PEEK[])");
    assert!(status.starts_with("f NO [UNAVAILABLE]"), "{status}");
    assert!(
        !contains(&raw, EICAR) && !contains(&raw, b"BODY["),
        "withheld content leaked"
    );
    let (_, status) = client.imap("n", "NOOP");
    assert!(status.starts_with("n OK"), "session must go on: {status}");
    clamd.restart();
    let (_, bodies, status) = fetch(&mut client, "FETCH 2 BODY.PEEK[]");
    assert!(
        status.starts_with("f OK") && bodies[0] != infected,
        "{status}"
    );
}

#[test]
fn pass_block_and_unwritable_quarantine_policies() {
    let dovecot = Dovecot::start();
    let infected = corpus::infected_messages()[0].1.clone();
    let clean = corpus::clean_messages()[0].1.clone();
    dovecot.seed_messages(dovecot.user(), &[clean.clone(), infected]);
    let dir = tempfile::tempdir().expect("dir");
    let closed = support::ports::ClosedPort::new();
    let down = format!("\"tcp://127.0.0.1:{}\"", closed.port());
    // on_error = pass: scanner down, the original is delivered.
    let proxy = start_imap(
        &dovecot,
        &scan_section(&down, dir.path(), Some("rules"), "on_error = \"pass\""),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK") && bodies[0] == clean, "{status}");
    drop(proxy);
    // on_error = block: scanner down, a replacement is delivered (never the original).
    let proxy = start_imap(
        &dovecot,
        &scan_section(&down, dir.path(), Some("rules"), "on_error = \"block\""),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK") && bodies[0] != clean, "{status}");
    drop(proxy);
    // Quarantine unwritable (its parent is a file): the infected message is withheld.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let proxy = start_imap(
        &dovecot,
        &scan_section("", &file.join("quarantine"), Some("rules"), ""),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (raw, _, status) = fetch(&mut client, "FETCH 2 BODY.PEEK[]");
    assert!(
        status.starts_with("f NO [UNAVAILABLE]") && !contains(&raw, EICAR),
        "{status}"
    );
}

#[test]
fn hanging_and_size_limited_scanners_tempfail_with_keepalives() {
    let dovecot = Dovecot::start();
    let clean = corpus::clean_messages();
    let big = clean
        .iter()
        .find(|(n, _)| n.contains("10mb"))
        .expect("10 MB message")
        .1
        .clone();
    dovecot.seed_messages(dovecot.user(), &[clean[0].1.clone(), big]);
    let dir = tempfile::tempdir().expect("dir");
    // A clamd that accepts and never answers: keep-alives, then NO [UNAVAILABLE] at the timeout.
    let hanging = support::fake::serve(|tcp| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &tcp, &mut sink);
    });
    let scan = scan_section(
        &format!("\"tcp://127.0.0.1:{hanging}\""),
        dir.path(),
        Some("rules"),
        "",
    )
    .replace("\"5s\"", "\"7s\"");
    let proxy = start_imap(&dovecot, &scan);
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (raw, _, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f NO [UNAVAILABLE]"), "{status}");
    assert!(
        String::from_utf8_lossy(&raw).contains("* OK [portcullis] Scanning"),
        "no keep-alive"
    );
    drop(proxy);
    // StreamMaxLength exceeded: clamd's ERROR is an error, never clean.
    let clamd = Clamd::start_with(support::clamd::ClamdOptions {
        stream_max_length: Some("1M".into()),
        ..Default::default()
    });
    let proxy = start_imap(
        &dovecot,
        &scan_section(&clamd_endpoint(&clamd), dir.path(), Some("rules"), ""),
    );
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (raw, _, status) = fetch(&mut client, "FETCH 2 BODY.PEEK[]<0.1000>");
    assert!(
        status.starts_with("f NO [UNAVAILABLE]") && !contains(&raw, b"BODY["),
        "{status}"
    );
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(
        status.starts_with("f OK") && bodies[0] == clean[0].1,
        "{status}"
    );
}

#[test]
fn reload_changes_the_scan_policy_for_running_sessions() {
    let dovecot = Dovecot::start();
    let clean = corpus::clean_messages()[0].1.clone();
    dovecot.seed_messages(dovecot.user(), std::slice::from_ref(&clean));
    let dir = tempfile::tempdir().expect("dir");
    let closed = support::ports::ClosedPort::new();
    let down = format!("\"tcp://127.0.0.1:{}\"", closed.port());
    let config = |policy: &str| {
        imap_config(
            &dovecot,
            &scan_section(&down, dir.path(), Some("rules"), policy),
        )
    };
    let proxy = support::ops::ReloadableProxy::start(&config(""));
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    client.read_line();
    client.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    client.imap("s", "SELECT INBOX");
    let (_, _, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f NO [UNAVAILABLE]"), "{status}");
    let new = portcullis::config::Config::parse(&config("on_error = \"pass\"")).expect("config");
    let report = portcullis::reload::apply(&proxy.handles, &proxy.config, &new).expect("reload");
    assert!(
        report.needs_restart.is_empty(),
        "{:?}",
        report.needs_restart
    );
    // The same, still-open session now follows the new policy.
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(status.starts_with("f OK") && bodies[0] == clean, "{status}");
}

#[test]
fn authenticate_plain_users_get_cached_verdicts_too() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let clean = corpus::clean_messages()[2].1.clone();
    dovecot.seed_messages(dovecot.user(), std::slice::from_ref(&clean));
    let proxy = start_imap(
        &dovecot,
        &scan_section(
            &clamd_endpoint(&clamd),
            quarantine.path(),
            Some("rules"),
            "",
        ),
    );
    let token =
        support::mime::base64(format!("\0{}\0{}", dovecot.user(), dovecot.password()).as_bytes());
    let token = String::from_utf8(token).expect("ascii");
    let mut client = raw::connect_tls(proxy.port(0), &dovecot.ca);
    client.read_line();
    client.send_line("a AUTHENTICATE PLAIN");
    assert!(client.read_line().starts_with('+'));
    client.send_line(token.trim_end());
    assert!(client.read_line().starts_with("a OK"));
    client.imap("s", "SELECT INBOX");
    let (_, bodies, _) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    assert!(bodies[0] == clean);
    clamd.stop();
    // Keyed by the user decoded from the SASL PLAIN response: the cache answers, not clamd.
    let (_, bodies, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[]<0.20>");
    assert!(
        status.starts_with("f OK") && bodies[0] == clean[..20],
        "{status}"
    );
}

#[test]
fn strip_and_tag_rules_serve_the_modified_message_by_section() {
    let dovecot = Dovecot::start();
    let rules = tempfile::tempdir().expect("rules");
    std::fs::write(
        rules.path().join("test.toml"),
        r#"
[[rule]]
name = "no-exe"
target = "filename"
pattern = '(?i)\.exe$'
action = "strip"

[[rule]]
name = "promo"
target = "header"
header = "Subject"
pattern = '(?i)special offer'
action = "tag"
"#,
    )
    .expect("rules");
    use support::mime::{message, Part};
    let with_exe = message(
        "strip-1",
        "Quarterly numbers",
        Part::multipart(
            "mixed",
            "b1",
            vec![
                Part::text("See the attached tool.\n"),
                Part::attachment(
                    "tool.exe",
                    "application/octet-stream",
                    b"MZ pretend executable",
                ),
            ],
        ),
    );
    let promo = message("tag-1", "A special offer for you", Part::text("Buy now.\n"));
    dovecot.seed_messages(dovecot.user(), &[with_exe.clone(), promo.clone()]);
    let quarantine = tempfile::tempdir().expect("dir");
    let rules_dir = rules.path().display().to_string();
    let scan = scan_section("", quarantine.path(), Some(&rules_dir), "");
    let proxy = start_imap(&dovecot, &scan);
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let (_, whole, _) = fetch(&mut client, "FETCH 1 BODY.PEEK[]");
    let stripped = String::from_utf8_lossy(&whole[0]).into_owned();
    assert!(
        !stripped.contains("MZ pretend executable") && stripped.contains("See the attached tool."),
        "{stripped}"
    );
    // Section fetches come from the modified message: part 1 unchanged, part 2 is the notice.
    let (_, part1, _) = fetch(&mut client, "FETCH 1 BODY.PEEK[1]");
    let mut direct = support::proxy::direct_imap(&dovecot);
    let (direct_part1, _) = direct.imap("f", "FETCH 1 BODY.PEEK[1]");
    assert_eq!(
        part1[0], direct_part1[0].literals[0],
        "untouched part differs from Dovecot's"
    );
    let (raw, part2, status) = fetch(&mut client, "FETCH 1 BODY.PEEK[2]");
    assert!(
        status.starts_with("f OK") && !contains(&raw, b"MZ pretend"),
        "{status}"
    );
    assert!(!part2.is_empty() && !contains(&part2[0], b"MZ pretend"));
    assert!(
        quarantined(quarantine.path()).contains(&with_exe),
        "stripped original quarantined"
    );
    let (_, tagged, _) = fetch(&mut client, "FETCH 2 BODY.PEEK[]");
    let tagged = String::from_utf8_lossy(&tagged[0]).into_owned();
    assert!(
        tagged.contains("Subject: [portcullis: promo] A special offer")
            && tagged.contains("X-Portcullis-Rule: promo"),
        "{tagged}"
    );
    let (_, text, _) = fetch(&mut client, "FETCH 2 BODY.PEEK[TEXT]");
    assert_eq!(text[0], b"Buy now.\r\n");
}
