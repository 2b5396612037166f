//! Differential tests of "parse, then forward": what the proxy accounted for against what the
//! backend actually received.
//!
//! A generator builds client command streams from a grammar and knows the ground truth for every
//! byte (framing as RFC 3501 / RFC 7888 define it):
//! * **real** commands (tags `r…`): valid and allow-listed; each gets exactly one tagged response
//!   and may reach the backend, in the order issued;
//! * **rejected** commands (tags `b…`): unparseable or not allow-listed (trailing garbage after
//!   argument-less commands, NUL and control characters, COMPRESS, STARTTLS inside TLS,
//!   AUTHENTICATE after login, …); each gets exactly one tagged `BAD`/`NO` **from the proxy** and
//!   never reaches the backend;
//! * **data** (tags `s…`, mailbox `Smuggled`): command-shaped bytes that are not commands —
//!   inside quoted strings, literals, SASL responses, after a bare CR — which must never execute
//!   and never be answered.
//!
//! Properties, for every stream sent through the proxy (implicit TLS listener, plain backend):
//! (a) every command in Dovecot's rawlog `.in` (or the fake backend's record) carries a real tag,
//!     in the order issued, and a command mentioning `Smuggled` is a real one that did;
//! (b) every real and rejected command gets exactly one tagged response (rejected: BAD/NO), data
//!     none, and no other tag is answered;
//! (c) the session stays usable: a final `zz NOOP` gets `zz OK`.
//! Before login (not in Dovecot's rawlog), a recording fake backend checks that only CAPABILITY,
//! ID and the proxy's own LOGIN/AUTHENTICATE arrive.
//!
//! One Dovecot and one proxy per test, a fresh connection per case; every Dovecot case logs in
//! as its own user (`c0`…), so each rawlog directory holds exactly one case's sessions. The
//! proxy runs with `max_errors = 1000` and no auth penalty: rejected commands and failed SASL
//! attempts are the point of the streams, not abuse to throttle.
//!
//! Layout: [`generator`] (the stream grammar and strategies), [`render`] (bytes plus ground
//! truth), [`session`] (driving one client session), [`oracle`] (checking and reporting); the
//! tests are here.

#[path = "../support/mod.rs"]
mod support;

mod generator;
mod oracle;
mod render;
mod session;

use std::time::{Duration, Instant};

use support::certs::TestCa;
use support::dovecot::{Dovecot, DovecotOptions};
use support::fake::{recording_imap_backend, RecordedImapSession};
use support::proxy::{dovecot_backend, imap_to_fake, listener, tls_section, TestProxy};
use support::raw::{self, LineClient, TlsStream};

use generator::stream;
use oracle::{check_backend_commands, check_responses, contains, report, runner, show, verdict};
use render::{render, sasl_plain, Rendered};
use session::Session;

/// The mailbox named by smuggled commands (created up front, so a smuggled SELECT would work).
const MARK: &str = "Smuggled";
/// The user of the fake-backend test and the harness check.
const USER: &str = "alice";
const PASSWORD: &str = "wonderland-Pass1";
/// Dovecot users `c0`… (password [`PASSWORD`]): each case logs in as the next one, so a
/// backend session that ends late can never be mistaken for a later case's.
const CASE_USERS: usize = 160;
/// Generous for one response on a loaded machine, short enough to keep a hanging case cheap.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The proxy's limits for these tests: no auth penalty (failed SASL attempts are part of the
/// streams) and room for many rejected commands in one session.
const LIMITS: &str =
    "[limits]\nmax_errors = 1000\nauth_penalty_initial = \"0s\"\nauth_penalty_max = \"0s\"\n\n";

fn rawlog_dovecot() -> Dovecot {
    let dovecot = Dovecot::start_with(DovecotOptions {
        imap_rawlog: true,
        extra_config: vec!["auth_failure_delay = 0".into()],
        users: (0..CASE_USERS)
            .map(|i| (format!("c{i}"), PASSWORD.to_string()))
            .collect(),
        ..DovecotOptions::default()
    });
    assert_eq!((dovecot.user(), dovecot.password()), (USER, PASSWORD));
    for i in 0..CASE_USERS {
        dovecot.maildir_folder(&format!("c{i}"), MARK);
    }
    dovecot
}

/// The Dovecot user for the next case.
fn next_case_user() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c{}", n % CASE_USERS)
}

/// The harness itself: a direct session's rawlog holds exactly its post-login commands, literals
/// inlined, timestamps stripped.
#[test]
fn rawlog_shows_what_dovecot_received() {
    let dovecot = rawlog_dovecot();
    let user = "c0";
    let known = dovecot.imap_rawlog_files(user);
    let mut client = raw::connect_tls(dovecot.imaps_port, &dovecot.ca);
    client.read_line();
    let (_, status) = client.imap("l", &format!("LOGIN {user} {PASSWORD}"));
    assert!(status.starts_with("l OK"), "{status}");
    let (_, status) = client.imap("a", &format!("STATUS {MARK} (MESSAGES)"));
    assert!(
        status.starts_with("a OK"),
        "the {MARK} mailbox is missing: {status}"
    );
    client.send_line("b STATUS {5}");
    assert!(client.read_line().starts_with('+'));
    client.send_raw(b"INBOX (MESSAGES)\r\n");
    read_until_tagged(&mut client, "b");
    client.send_raw(b"c STATUS {5+}\r\nINBOX (MESSAGES)\r\n");
    read_until_tagged(&mut client, "c");
    client.imap("z", "LOGOUT");
    let sessions = dovecot
        .wait_imap_rawlog(user, &known, 1, Duration::from_secs(10))
        .expect("rawlog");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let received: Vec<String> = sessions[0]
        .commands()
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(
        received,
        [
            "a STATUS Smuggled (MESSAGES)\r\n",
            "b STATUS {5}\r\nINBOX (MESSAGES)\r\n",
            "c STATUS {5+}\r\nINBOX (MESSAGES)\r\n",
            "z LOGOUT\r\n"
        ],
        "raw file: {}",
        show(&std::fs::read(&sessions[0].path).unwrap_or_default())
    );
}

fn read_until_tagged(client: &mut LineClient<TlsStream>, tag: &str) -> String {
    loop {
        let text = client.read_imap_response().text();
        if text.starts_with(&format!("{tag} ")) {
            return text;
        }
    }
}

#[test]
fn backend_executes_only_what_the_proxy_accounted_for() {
    let started = Instant::now();
    let dovecot = rawlog_dovecot();
    let proxy = TestProxy::start(
        &(tls_section(&dovecot)
            + LIMITS
            + &listener("imaps", "imap", "implicit", "dovecot")
            + &dovecot_backend("dovecot", &dovecot, "imap", "none")),
    );
    assume_literal_plus(&proxy, &dovecot.ca);
    let result = runner(24).run(&stream(), |stream| {
        let user = next_case_user();
        let commands = render(&stream, &user);
        let known = dovecot.imap_rawlog_files(&user);
        let outcome = Session::new(proxy.port(0), &dovecot.ca).run(&commands);
        let mut failures = check_responses(&commands, &outcome);
        let mut extra = String::new();
        let expected = usize::from(outcome.logged_in(&commands));
        match dovecot.wait_imap_rawlog(&user, &known, expected, Duration::from_secs(10)) {
            Ok(sessions) => {
                if sessions.len() != expected {
                    failures.push(format!(
                        "(a) {} backend sessions, {expected} logins",
                        sessions.len()
                    ));
                }
                for session in &sessions {
                    let received = session.commands();
                    extra.push_str(&format!(
                        "Dovecot rawlog {}:\n    {}\n",
                        session.path.display(),
                        show(&session.input)
                    ));
                    failures.extend(check_backend_commands(&commands, &received, "Dovecot"));
                }
            }
            Err(reason) => failures.push(format!("(a) no complete rawlog: {reason}")),
        }
        verdict(failures, &commands, &extra)
    });
    eprintln!("differential run took {:?}", started.elapsed());
    report(result);
}

/// The grammar sends `{n+}` literals (RFC 7888) without waiting: that is only well-defined
/// while the proxy advertises LITERAL+ (as Dovecot does).
fn assume_literal_plus(proxy: &TestProxy, ca: &TestCa) {
    let mut client = raw::connect_tls(proxy.port(0), ca);
    client.read_line();
    let (_, status) = client.imap("l", &format!("LOGIN {USER} {PASSWORD}"));
    assert!(status.starts_with("l OK"), "{status}");
    let (untagged, _) = client.imap("c", "CAPABILITY");
    let caps: String = untagged.iter().map(|r| r.text()).collect();
    assert!(
        caps.contains("LITERAL+"),
        "the grammar assumes LITERAL+: {caps}"
    );
    client.imap("z", "LOGOUT");
}

/// Pre-login side (Dovecot's rawlog starts after login): a recording fake backend sees only
/// CAPABILITY, ID and the proxy's own single LOGIN/AUTHENTICATE before login, nothing smuggled,
/// and after login only real commands in order.
#[test]
fn nothing_but_the_proxys_own_login_reaches_the_backend_before_login() {
    let ca = TestCa::new();
    let (port, sessions) = recording_imap_backend(USER, PASSWORD);
    let proxy = imap_to_fake(&ca, port, "none", LIMITS);
    let result = runner(24).run(&stream(), |stream| {
        let commands = render(&stream, USER);
        let before = sessions.lock().expect("lock").len();
        let outcome = Session::new(proxy.port(0), &ca).run(&commands);
        let mut failures = check_responses(&commands, &outcome);
        let recorded = wait_recorded(&sessions, before);
        let mut extra = String::new();
        if recorded.len() != 1 {
            failures.push(format!(
                "{} backend connections for one client session",
                recorded.len()
            ));
        }
        for session in &recorded {
            extra.push_str(&format!(
                "backend received before login:\n    {}\nafter login:\n    {}\n",
                show(&session.pre_login.concat()),
                show(&session.post_login.concat())
            ));
            failures.extend(check_pre_login(&commands, session));
            failures.extend(check_backend_commands(
                &commands,
                &session.post_login,
                "the backend",
            ));
        }
        verdict(failures, &commands, &extra)
    });
    report(result);
}

/// The backend connections opened since `before`, once each is closed (10 s at most).
fn wait_recorded(
    sessions: &std::sync::Mutex<Vec<RecordedImapSession>>,
    before: usize,
) -> Vec<RecordedImapSession> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = sessions.lock().expect("lock").clone();
        let fresh = all[before.min(all.len())..].to_vec();
        if (!fresh.is_empty() && fresh.iter().all(|s| s.closed)) || Instant::now() >= deadline {
            return fresh;
        }
        drop(all);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_pre_login(commands: &[Rendered], session: &RecordedImapSession) -> Vec<String> {
    let mut failures = Vec::new();
    let mut logins = 0;
    let mut sasl_line_next = false;
    for command in &session.pre_login {
        let shown = show(command);
        if sasl_line_next {
            sasl_line_next = false;
            if command.trim_ascii_end() != sasl_plain(USER).as_bytes() {
                failures.push(format!(
                    "(pre-login) SASL response not the proxy's: {shown}"
                ));
            }
            continue;
        }
        let text = String::from_utf8_lossy(command);
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("");
        let name = words.next().unwrap_or("").to_ascii_uppercase();
        if commands
            .iter()
            .any(|c| c.data_tags.iter().any(|d| d == tag))
        {
            failures.push(format!(
                "(pre-login) backend got SMUGGLED data as a command: {shown}"
            ));
        }
        // A forwarded ID may carry what a real client ID said; anything else must not.
        if name != "ID" && contains(command, MARK.as_bytes()) {
            failures.push(format!("(pre-login) backend got {MARK}: {shown}"));
        }
        match name.as_str() {
            "CAPABILITY" | "ID" => {}
            "LOGIN" => {
                logins += 1;
                if !text.contains(USER) {
                    failures.push(format!("(pre-login) LOGIN without the user: {shown}"));
                }
            }
            "AUTHENTICATE" => {
                logins += 1;
                let ir = words.nth(1);
                match ir {
                    Some(ir) if ir == sasl_plain(USER) => {}
                    Some(_) => failures.push(format!("(pre-login) foreign SASL-IR: {shown}")),
                    None => sasl_line_next = true,
                }
            }
            _ => failures.push(format!("(pre-login) backend got a client command: {shown}")),
        }
    }
    if logins != 1 {
        failures.push(format!(
            "(pre-login) {logins} login commands reached the backend"
        ));
    }
    failures
}
