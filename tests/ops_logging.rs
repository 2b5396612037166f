//! Logging never affects service, on the real `portcullis serve` binary in front of a real
//! Dovecot: with stderr a closed pipe, or a pipe nobody reads, logins still work and SIGTERM
//! still stops the process promptly; lines lost are counted in
//! `portcullis_log_lines_dropped_total`. And the failed-login line the proxy writes is matched
//! by the fail2ban filter in `deploy/fail2ban/portcullis.conf`.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::Dovecot;
use support::process::KilledOnDrop;
use support::proxy::{dovecot_backend, listener, tls_section};
use support::raw::connect_tls;
use support::{free_port, wait_for_port};

/// A `portcullis serve` child, killed when dropped.
struct Serve {
    child: KilledOnDrop,
    port: u16,
    metrics: u16,
}

/// Starts `serve` for an IMAPS listener in front of `dovecot` on a free port (retried if
/// another process took the port); `stderr` makes the log sink for each attempt.
fn serve(
    dovecot: &Dovecot,
    dir: &Path,
    rust_log: &str,
    mut stderr: impl FnMut() -> Stdio,
) -> Serve {
    for _ in 0..5 {
        let (port, metrics) = (free_port(), free_port());
        let config = tls_section(dovecot)
            + &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n")
            + &listener("imaps", "imap", "implicit", "dovecot")
                .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &dovecot_backend("dovecot", dovecot, "imap", "none");
        let path = dir.join("portcullis.toml");
        fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr())
            .spawn()
            .expect("spawn portcullis");
        let mut serve = Serve {
            child: KilledOnDrop(child),
            port,
            metrics,
        };
        if wait_for_port(port, Duration::from_secs(20))
            && wait_for_port(metrics, Duration::from_secs(5))
        {
            return serve;
        }
        let status = serve.child.try_wait().unwrap();
        assert!(status.is_some(), "portcullis neither listens nor exits");
    }
    panic!("portcullis did not start in 5 attempts");
}

/// Logs in (and out) through the proxy; returns the tagged LOGIN status.
fn login(port: u16, dovecot: &Dovecot, user: &str, password: &str) -> String {
    let mut client = connect_tls(port, &dovecot.ca);
    let greeting = client.read_line();
    assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
    let (_, status) = client.imap("a", &format!("LOGIN {user} {password}"));
    client.imap("z", "LOGOUT");
    status
}

/// The value of an unlabelled series on the metrics endpoint.
fn scrape(port: u16, series: &str) -> Option<f64> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends SIGTERM and asserts a clean exit within 10 s.
fn terminate(serve: &mut Serve) {
    let pid = i32::try_from(serve.child.id()).unwrap();
    // SAFETY: kill(2) on our own unreaped child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop portcullis within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Logins through the proxy while its stderr is broken: good ones succeed, bad ones fail.
fn sessions_work(serve: &Serve, dovecot: &Dovecot, rounds: usize) {
    for round in 0..rounds {
        let ok = login(serve.port, dovecot, dovecot.user(), dovecot.password());
        assert!(ok.starts_with("a OK"), "round {round}: login: {ok}");
        let refused = login(serve.port, dovecot, dovecot.user(), "wrong-password");
        assert!(
            refused.starts_with("a NO"),
            "round {round}: bad login: {refused}"
        );
    }
}

#[test]
fn closed_stderr_pipe_drops_lines_but_never_sessions_or_sigterm() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve(&dovecot, dir.path(), "debug", Stdio::piped);
    // Close the read end: from now on every write to stderr fails with EPIPE.
    drop(serve.child.stderr.take());
    sessions_work(&serve, &dovecot, 3);
    let dropped = scrape(serve.metrics, "portcullis_log_lines_dropped_total")
        .expect("portcullis_log_lines_dropped_total on /metrics");
    assert!(dropped > 0.0, "dropped lines are counted: {dropped}");
    terminate(&mut serve);
}

#[test]
fn stderr_pipe_nobody_reads_never_blocks_sessions_or_sigterm() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    // Everything at trace level: the 64 KiB pipe buffer fills within the first sessions.
    let mut serve = serve(&dovecot, dir.path(), "trace", Stdio::piped);
    let unread = serve.child.stderr.take();
    sessions_work(&serve, &dovecot, 5);
    assert!(scrape(serve.metrics, "portcullis_log_lines_dropped_total").is_some());
    terminate(&mut serve);
    drop(unread);
}

#[test]
fn fail2ban_filter_matches_the_failed_login_line_and_only_the_real_address() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portcullis.log");
    let mut serve = serve(&dovecot, dir.path(), "info", || {
        Stdio::from(fs::File::create(&log).unwrap())
    });
    let refused = login(serve.port, &dovecot, "mallory", "guess");
    assert!(refused.starts_with("a NO"), "{refused}");
    // A user name trying to forge another address into the line.
    let forged = "\"evil client=10.9.9.9 protocol=imap\"";
    assert!(login(serve.port, &dovecot, forged, "guess").starts_with("a NO"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&log)
        .unwrap()
        .matches("login failed")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(&mut serve);
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("login failed"))
        .collect();
    assert!(
        lines[0].ends_with("login failed user=mallory client=127.0.0.1 protocol=imap"),
        "{text}"
    );
    // fail2ban's own matching, done by Python's `re` like fail2ban-regex does: the filter's
    // failregex with <HOST> expanded, run over every line of the real log.
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/fail2ban/portcullis.conf"
    );
    let script = r#"
import re, sys
conf = open(sys.argv[1]).read()
failregex = re.search(r'^failregex\s*=\s*(.+)$', conf, re.M).group(1).strip()
rx = re.compile(failregex.replace('<HOST>', r'(?:::f{4,6}:)?(?P<host>\S+)'))
for line in open(sys.argv[2]):
    m = rx.search(line.rstrip('\n'))
    if m:
        print(m.group('host'))
"#;
    let output = Command::new("python3")
        .args(["-c", script, filter])
        .arg(&log)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hosts = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        hosts, "127.0.0.1\n127.0.0.1\n",
        "matched hosts; log:\n{text}"
    );
}
