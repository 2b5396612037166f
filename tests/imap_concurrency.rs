//! Issue 9 items 4 and 5 with a real Dovecot, a real clamd and the proxy: no tempfail for
//! healthy mail when sequence numbers move under a FETCH planned from the verdict cache (the
//! proxy fetches the message itself), several sessions appending, expunging and fetching with
//! pipelined SELECT/EXAMINE, and pipelined FETCH mixes answered exactly as Dovecot answers them.

mod support;

use support::clamd::Clamd;
use support::corpus::EICAR;
use support::dovecot::Dovecot;
use support::fake;
use support::proxy::{direct_imap, TestProxy};
use support::raw::ImapResponse;
use support::scanning::{clamd_endpoint, contains, imap_login, scan_section, start_proxy, Client};

fn message(n: usize, infected: bool) -> Vec<u8> {
    let body = if infected {
        std::str::from_utf8(EICAR).expect("ascii").to_string()
    } else {
        format!("hello {n}")
    };
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: message {n}\r\nMessage-ID: <c{n}@test>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn start(dovecot: &Dovecot, clamd: &Clamd, quarantine: &std::path::Path) -> TestProxy {
    let scan = scan_section(&clamd_endpoint(clamd), quarantine, None, "");
    start_proxy(dovecot, &scan, &["imap"])
}

/// Reads responses until the tagged line of each of `tags` has come (in any order: a server
/// may complete pipelined commands out of order); returns everything read and the tagged lines.
fn read_until_tags(client: &mut Client, tags: &[&str]) -> (Vec<ImapResponse>, Vec<String>) {
    let mut all = Vec::new();
    let mut statuses = Vec::new();
    while statuses.len() < tags.len() {
        let response = client.read_imap_response();
        let text = response.text();
        if tags.iter().any(|tag| text.starts_with(&format!("{tag} "))) {
            statuses.push(text.trim_end().to_string());
        }
        all.push(response);
    }
    (all, statuses)
}

/// Responses as a sorted list of texts, completion timings removed: what a client learns,
/// whatever order pipelined commands completed in.
fn normalised(responses: &[ImapResponse]) -> Vec<String> {
    let mut texts: Vec<String> = responses
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.raw).into_owned();
            match text.find(" (0.") {
                Some(at) if text.contains(" OK ") => text[..at].to_string(),
                _ => text,
            }
        })
        .collect();
    texts.sort();
    texts
}

/// APPENDs `message` to INBOX over `client` (a session with INBOX selected or not).
fn append(client: &mut Client, message: &[u8]) {
    client.send_line(&format!("p APPEND INBOX {{{}}}", message.len()));
    assert!(client.read_line().starts_with('+'));
    client.send_raw(message);
    client.send_raw(b"\r\n");
    let (_, statuses) = read_until_tags(client, &["p"]);
    assert!(statuses[0].starts_with("p OK"), "{statuses:?}");
}

fn raw_of(responses: &[ImapResponse]) -> Vec<u8> {
    responses.iter().flat_map(|r| r.raw.clone()).collect()
}

#[test]
fn a_fetch_pipelined_behind_expunge_is_served_from_its_own_verdict() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages: Vec<_> = (1..=5).map(|n| message(n, n == 4)).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    // Verdicts for messages 1-3 are cached, and the proxy knows their sequence numbers.
    let (_, status) = client.imap("a", "FETCH 1:3 (UID BODY.PEEK[HEADER])");
    assert!(status.starts_with("a OK"), "{status}");
    let (_, status) = client.imap("d", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert!(status.starts_with("d OK"), "{status}");
    // After EXPUNGE, sequence 3 is UID 4 (infected, never scanned); Dovecot may also run the
    // FETCH first (RFC 9051 §5.5), when sequence 3 is still UID 3. Either way the header must be
    // the one of the message the server answered for.
    client.send_raw(b"x EXPUNGE\r\nf FETCH 3 (UID BODY.PEEK[HEADER])\r\n");
    let (responses, statuses) = read_until_tags(&mut client, &["x", "f"]);
    assert!(statuses.iter().all(|s| s.contains(" OK ")), "{statuses:?}");
    let raw = raw_of(&responses);
    assert!(!contains(&raw, EICAR), "EICAR reached the client");
    let text = String::from_utf8_lossy(&raw);
    let fetched = text.split("* 3 FETCH").nth(1).expect("a FETCH response");
    if fetched.contains("UID 4 ") {
        assert!(
            fetched.contains("X-Portcullis-Verdict"),
            "UID 4 is infected: {text}"
        );
    } else {
        assert!(
            fetched.contains("UID 3 ") && fetched.contains("Subject: message 3"),
            "{text}"
        );
    }
}

/// A backend that moves sequence numbers under a FETCH the proxy planned from its cache
/// (Dovecot does so only in races): the proxy's own `UID FETCH` gets the message.
#[test]
fn a_response_for_an_uncached_message_is_fetched_by_the_proxy_not_tempfailed() {
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let ca = support::certs::TestCa::new();
    let clean = message(1, false);
    let infected = message(2, true);
    let header = b"From: a@example.org\r\nSubject: message 2\r\n\r\n".to_vec();
    let own_fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = own_fetches.clone();
    let port = fake::serve(move |tcp| {
        let mut reader = std::io::BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        let caps = "IMAP4rev1 LITERAL+";
        fake::send(
            &mut writer,
            format!("* OK [CAPABILITY {caps}] fake\r\n").as_bytes(),
        );
        loop {
            let line = fake::read_line(&mut reader);
            let Some((tag, rest)) = line.trim_end().split_once(' ') else {
                return;
            };
            let literal = |name: &str, bytes: &[u8]| {
                let mut out = format!("{name} {{{}}}\r\n", bytes.len()).into_bytes();
                out.extend_from_slice(bytes);
                out
            };
            let mut reply = Vec::new();
            if rest.starts_with("UID FETCH 43 ") {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                reply.extend_from_slice(b"* 1 FETCH (UID 43 ");
                reply.extend(literal("BODY[]", &infected));
                reply.extend_from_slice(b")\r\n");
            } else if rest.starts_with("FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[] UID)") {
                reply.extend_from_slice(b"* 1 FETCH (UID 42 ");
                reply.extend(literal("BODY[HEADER]", b"Subject: message 1\r\n\r\n"));
                reply.push(b' ');
                reply.extend(literal("BODY[]", &clean));
                reply.extend_from_slice(b")\r\n");
            } else if rest.starts_with("FETCH 1 (BODY.PEEK[HEADER] UID)") {
                // Planned from the cache for UID 42; the server answers for UID 43.
                reply.extend_from_slice(b"* 1 FETCH (UID 43 ");
                reply.extend(literal("BODY[HEADER]", &header));
                reply.extend_from_slice(b")\r\n");
            } else if rest.starts_with("SELECT") {
                reply.extend_from_slice(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n");
            } else if rest.starts_with("CAPABILITY") {
                reply.extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
            } else if rest.starts_with("LOGOUT") {
                reply.extend_from_slice(b"* BYE bye\r\n");
            }
            reply.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            fake::send(&mut writer, &reply);
        }
    });
    let scan = scan_section(&clamd_endpoint(&clamd), quarantine.path(), None, "");
    let proxy = support::proxy::imap_to_fake(&ca, port, "none", &scan);
    let mut client = support::raw::connect_tls(proxy.port(0), &ca);
    client.read_line();
    assert!(client.imap("l", "LOGIN u p").1.starts_with("l OK"));
    assert!(client.imap("s", "SELECT INBOX").1.starts_with("s OK"));
    let (_, status) = client.imap("a", "FETCH 1 (BODY.PEEK[HEADER])");
    assert!(status.starts_with("a OK"), "{status}");
    let (responses, status) = client.imap("f", "FETCH 1 (BODY.PEEK[HEADER])");
    assert!(
        status.starts_with("f OK"),
        "no tempfail for healthy mail: {status}"
    );
    let raw = raw_of(&responses);
    assert!(!contains(&raw, EICAR));
    assert!(
        contains(&raw, b"X-Portcullis-Verdict") && !contains(&raw, b"UID 43"),
        "the infected UID 43 is served from its verdict, without the added UID: {}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(own_fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(client.imap("z", "LOGOUT").1.starts_with("z OK"));
}

#[test]
fn pipelined_fetch_mixes_are_answered_as_dovecot_answers_them() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages: Vec<_> = (1..=3).map(|n| message(n, false)).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let mix = b"a FETCH 1 (BODY.PEEK[HEADER])\r\nb FETCH 1 (RFC822.SIZE FLAGS)\r\n\
                c UID FETCH 1:2 (BODY.PEEK[])\r\nd FETCH 2 (BODY.PEEK[HEADER])\r\n\
                e FETCH 1:3 (ENVELOPE UID)\r\nf FETCH 2:3 (BODY.PEEK[TEXT] BODY.PEEK[HEADER])\r\n\
                g FETCH 3 (BODY.PEEK[HEADER])\r\n";
    let tags = ["a", "b", "c", "d", "e", "f", "g"];
    for pass in ["cold", "cached"] {
        let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
        client.send_raw(mix);
        let (proxied, statuses) = read_until_tags(&mut client, &tags);
        let mut direct = direct_imap(&dovecot);
        direct.send_raw(mix);
        let (expected, _) = read_until_tags(&mut direct, &tags);
        assert!(
            statuses.iter().all(|s| s.contains(" OK ")),
            "{pass}: {statuses:?}"
        );
        assert_eq!(
            normalised(&proxied),
            normalised(&expected),
            "{pass}: the proxy's answers differ from Dovecot's"
        );
    }
}

/// Sessions that each loop over pipelined SELECT/EXAMINE and FETCHes while another appends
/// (clean and infected) and expunges; returns every status line and every byte received.
fn churn(proxy_port: u16, dovecot: &Dovecot, rounds: usize) -> (Vec<String>, Vec<u8>) {
    // Explicit sequence sets: the proxy may plan them from its verdict cache.
    let script = b"s SELECT INBOX\r\na FETCH 1:6 (UID RFC822.SIZE FLAGS BODYSTRUCTURE)\r\n\
                   x EXAMINE INBOX\r\nb FETCH 1:6 (BODY.PEEK[HEADER])\r\n\
                   c UID FETCH 1:* (BODY.PEEK[TEXT])\r\nd FETCH 2:5 (ENVELOPE)\r\n";
    let tags = ["s", "a", "x", "b", "c", "d"];
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(move || {
                    let mut client = imap_login(proxy_port, dovecot, "EXAMINE");
                    let (mut statuses, mut bytes) = (Vec::new(), Vec::new());
                    for _ in 0..rounds {
                        client.send_raw(script);
                        let (responses, round) = read_until_tags(&mut client, &tags);
                        statuses.extend(round);
                        bytes.extend(raw_of(&responses));
                    }
                    (statuses, bytes)
                })
            })
            .collect();
        let writer = scope.spawn(move || {
            let mut direct = direct_imap(dovecot);
            assert!(direct.imap("w", "SELECT INBOX").1.starts_with("w OK"));
            // The mailbox keeps 6 messages: the oldest goes, a new (unscanned) one comes, so
            // the last sequence numbers keep naming messages without a verdict.
            for round in 0..rounds * 2 {
                append(&mut direct, &message(100 + round, round % 3 == 0));
                direct.imap("q", "STORE 1 +FLAGS.SILENT (\\Deleted)");
                direct.imap("r", "EXPUNGE");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        writer.join().expect("writer");
        readers.into_iter().map(|r| r.join().expect("reader")).fold(
            (Vec::new(), Vec::new()),
            |(mut s, mut b), (s2, b2)| {
                s.extend(s2);
                b.extend(b2);
                (s, b)
            },
        )
    })
}

#[test]
fn concurrent_sessions_see_no_tempfail_while_clamd_is_healthy() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let messages: Vec<_> = (1..=6).map(|n| message(n, n % 4 == 0)).collect();
    dovecot.seed_messages(dovecot.user(), &messages);
    let proxy = start(&dovecot, &clamd, quarantine.path());
    let rounds = 20;
    let (statuses, bytes) = churn(proxy.port(0), &dovecot, rounds);
    assert_eq!(statuses.len(), 3 * rounds * 6);
    let unavailable: Vec<_> = statuses
        .iter()
        .filter(|s| s.contains("UNAVAILABLE"))
        .collect();
    assert!(
        unavailable.is_empty(),
        "{} tempfails for healthy mail, e.g. {:?}",
        unavailable.len(),
        &unavailable[..unavailable.len().min(3)]
    );
    assert!(statuses.iter().all(|s| s.contains(" OK ")), "{statuses:?}");
    assert!(!contains(&bytes, EICAR), "EICAR reached a client");
    // clamd stopped: messages without a cached verdict have every content item withheld.
    clamd.stop();
    let mut direct = direct_imap(&dovecot);
    append(&mut direct, &message(999, false));
    let mut client = imap_login(proxy.port(0), &dovecot, "EXAMINE");
    for items in [
        "BODY.PEEK[]",
        "BODY.PEEK[HEADER]",
        "RFC822.SIZE",
        "BODYSTRUCTURE",
    ] {
        let (responses, status) = client.imap("w", &format!("FETCH * ({items} FLAGS)"));
        assert!(
            status.starts_with("w NO [UNAVAILABLE]"),
            "{items}: {status}"
        );
        let raw = raw_of(&responses);
        assert!(
            !contains(&raw, b"hello 999"),
            "{items}: content without a verdict"
        );
        let text = String::from_utf8_lossy(&raw);
        let item = items.replace(".PEEK", "");
        assert!(
            !text.contains(&item),
            "{items}: item served without a verdict: {text}"
        );
    }
}
