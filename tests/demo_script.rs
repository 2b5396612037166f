//! scripts/demo.sh is safe on any machine: it never stops, disables or reconfigures a system
//! service (neither does the test installer), it checks its ports before installing or building
//! anything and exits non-zero with a message naming a busy port, and it prints the ports it
//! uses. The runs here put stubs of systemctl, apt-get, cargo, sudo, dovecot, clamd ... first
//! on PATH that record any call: a busy port must end the script before any of them runs.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// The non-empty lines of a script that are not comments.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

#[test]
fn scripts_never_touch_system_services() {
    let forbidden = regex::Regex::new(
        r"\b(systemctl|update-rc\.d|invoke-rc\.d|deb-systemd-invoke|deb-systemd-helper|pkill|killall)\b|\bservice\s+\S+\s+(stop|start|restart|reload)\b",
    )
    .unwrap();
    for name in ["demo.sh", "install-test-deps.sh"] {
        let text = std::fs::read_to_string(script(name)).unwrap();
        for line in code_lines(&text) {
            assert!(
                !forbidden.is_match(line),
                "scripts/{name} touches system services: {line}"
            );
        }
    }
    // The demo installs only what it needs itself instead of the whole test installer.
    let demo = std::fs::read_to_string(script("demo.sh")).unwrap();
    assert!(
        !code_lines(&demo)
            .iter()
            .any(|l| l.contains("install-test-deps.sh")),
        "demo.sh runs the test installer"
    );
}

/// A directory of commands that log their invocation to `calls.log` and fail.
fn stub_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    for name in [
        "systemctl",
        "service",
        "invoke-rc.d",
        "update-rc.d",
        "apt-get",
        "apt",
        "dpkg",
        "cargo",
        "rustup",
        "sudo",
        "useradd",
        "dovecot",
        "clamd",
        "openssl",
        "pkill",
        "killall",
    ] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >>'{}'\nexit 1\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs scripts/demo.sh with `args` and `env`, the stubs first on PATH, killed after 60 s.
fn run_demo(args: &[&str], env: &[(&str, String)]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(script("demo.sh"));
    command
        .args(args)
        .env("PATH", stub_path(dir.path()))
        .env_remove("DEMO_PORTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run scripts/demo.sh");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("scripts/demo.sh {args:?} still runs after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap_or_default();
    (output, calls)
}

/// Four ports free right now (bound and released).
fn free_ports() -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn port_env(ports: &[u16]) -> Vec<(&'static str, String)> {
    [
        "DEMO_IMAPS_PORT",
        "DEMO_IMAP_PORT",
        "DEMO_POP3S_PORT",
        "DEMO_POP3_PORT",
    ]
    .into_iter()
    .zip(ports.iter().map(u16::to_string))
    .collect()
}

#[test]
fn demo_with_a_busy_port_exits_before_touching_anything() {
    // A program on the loopback address and one on every address (as a system mail server).
    for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
        let busy = TcpListener::bind(bind).unwrap();
        let port = busy.local_addr().unwrap().port();
        let mut ports = free_ports();
        ports[1] = port;
        let (output, calls) = run_demo(&[], &port_env(&ports));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bind}: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("busy"),
            "{bind}: the message does not name the busy port:\n{stderr}"
        );
        assert!(stderr.contains("DEMO_IMAP_PORT"), "{stderr}");
        assert!(stderr.contains("DEMO_PORTS=auto"), "{stderr}");
        assert!(calls.is_empty(), "{bind}: the script ran\n{calls}");
        drop(busy);
    }
}

#[test]
fn check_ports_prints_the_ports_it_would_use() {
    let ports = free_ports();
    let (output, calls) = run_demo(&["--check-ports"], &port_env(&ports));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for port in &ports {
        assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    }
    assert!(calls.is_empty(), "{calls}");

    let auto = [("DEMO_PORTS", "auto".to_owned())];
    let (output, calls) = run_demo(&["--check-ports"], &auto);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("ports: imaps 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no ports line:\n{stderr}"));
    assert_eq!(line.matches("127.0.0.1:").count(), 4, "{line}");
    assert!(calls.is_empty(), "{calls}");

    let bad = [("DEMO_POP3_PORT", "pop".to_owned())];
    let (output, _) = run_demo(&["--check-ports"], &bad);
    assert_eq!(output.status.code(), Some(2));
}
