//! `/metrics` after real IMAP and POP3 sessions through real Dovecot and clamd, with a clean, an
//! infected and a tempfailed message each: the counters move by exactly the right amounts and
//! `promtool check metrics` accepts the output. One test in its own binary: the registry is
//! process-wide.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use support::clamd::Clamd;
use support::corpus;
use support::dovecot::Dovecot;
use support::proxy::{dovecot_backend, listener, tls_section, TestProxy};
use support::raw;

/// The value of the sample `name{labels}` in `text` (labels in the alphabetical order the text
/// format uses), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn http_metrics() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = socket.local_addr().expect("addr").port();
        struct Ready;
        impl portcullis::metrics::ReadinessProbe for Ready {
            fn check(
                &self,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Vec<portcullis::metrics::ReadinessCheck>>
                        + Send
                        + '_,
                >,
            > {
                Box::pin(async { Vec::new() })
            }
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(portcullis::metrics::serve_listener(
            socket,
            std::sync::Arc::new(Ready),
            async {
                let _ = stopped.await;
            },
        ));
        let body = tokio::task::spawn_blocking(move || {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut response = String::new();
            tcp.read_to_string(&mut response).expect("read");
            response
        })
        .await
        .expect("join");
        let _ = stop.send(());
        let _ = server.await;
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    })
}

#[test]
fn counters_move_by_the_right_amounts_and_promtool_accepts_them() {
    let dovecot = Dovecot::start();
    let mut clamd = Clamd::start();
    let quarantine = tempfile::tempdir().expect("dir");
    let clean = corpus::clean_messages()[0].1.clone();
    let infected = corpus::infected_messages()[0].1.clone();
    let other_clean = corpus::clean_messages()[1].1.clone();
    dovecot.seed_messages(dovecot.user(), &[clean, infected, other_clean]);
    let config = tls_section(&dovecot)
        + &format!(
            "[scan]\nclamd = [{:?}]\ntimeout = \"3s\"\nquarantine_dir = {:?}\n\n",
            clamd.tcp_addr(),
            quarantine.path().display().to_string()
        )
        + &listener("imaps", "imap", "implicit", "imap")
        + &listener("pop3s", "pop3", "implicit", "pop3")
        + &dovecot_backend("imap", &dovecot, "imap", "none")
        + &dovecot_backend("pop3", &dovecot, "pop3", "none");
    let proxy = TestProxy::start(&config);
    let before = portcullis::metrics::render();

    let mut imap = raw::connect_tls(proxy.port(0), &dovecot.ca);
    imap.read_line();
    imap.imap(
        "l",
        &format!("LOGIN {} {}", dovecot.user(), dovecot.password()),
    );
    imap.imap("s", "EXAMINE INBOX");
    assert!(imap
        .imap("f", "FETCH 1:2 BODY.PEEK[]")
        .1
        .starts_with("f OK"));
    let mut pop3 = raw::connect_tls(proxy.port(1), &dovecot.ca);
    pop3.read_line();
    pop3.pop3(&format!("USER {}", dovecot.user()));
    assert!(pop3
        .pop3(&format!("PASS {}", dovecot.password()))
        .starts_with("+OK"));
    clamd.stop();
    assert!(imap
        .imap("g", "FETCH 3 BODY.PEEK[]")
        .1
        .starts_with("g NO [UNAVAILABLE]"));
    assert!(pop3.pop3("RETR 3").starts_with("-ERR [SYS/TEMP]"));
    imap.imap("z", "LOGOUT");
    pop3.pop3("QUIT");
    // Session summaries are counted when each session has fully ended: wait for both.
    let ended = "portcullis_sessions_total{end=\"logout\",listener=\"pop3s\",protocol=\"pop3\"}";
    let ended_imap =
        "portcullis_sessions_total{end=\"logout\",listener=\"imaps\",protocol=\"imap\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let now = portcullis::metrics::render();
        if sample(&now, ended) > sample(&before, ended)
            && sample(&now, ended_imap) > sample(&before, ended_imap)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let after = http_metrics();
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved("portcullis_messages_scanned_total{protocol=\"imap\",verdict=\"clean\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_messages_scanned_total{protocol=\"imap\",verdict=\"infected\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_messages_scanned_total{protocol=\"imap\",verdict=\"error\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_messages_scanned_total{protocol=\"pop3\",verdict=\"error\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_policy_actions_total{action=\"block\",cause=\"infected\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_policy_actions_total{action=\"tempfail\",cause=\"error\"}"),
        2.0
    );
    assert_eq!(
        moved("portcullis_quarantine_writes_total{outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_logins_total{listener=\"imaps\",outcome=\"ok\",protocol=\"imap\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_logins_total{listener=\"pop3s\",outcome=\"ok\",protocol=\"pop3\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_connections_accepted_total{listener=\"imaps\",protocol=\"imap\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_sessions_total{end=\"logout\",listener=\"imaps\",protocol=\"imap\"}"),
        1.0
    );
    assert_eq!(
        moved("portcullis_sessions_total{end=\"logout\",listener=\"pop3s\",protocol=\"pop3\"}"),
        1.0
    );
    assert!(
        moved("portcullis_bytes_total{direction=\"backend_to_client\",listener=\"imaps\"}")
            > 1000.0
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (run scripts/install-test-deps.sh)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(after.as_bytes())
        .expect("feed promtool");
    let output = promtool.wait_with_output().expect("promtool");
    let problems = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && problems.trim().is_empty(),
        "promtool: {problems}"
    );
}
