//! What an operator meets first, on the real binary: relative paths resolve against the
//! configuration file (not the working directory) and the built-in rules need no directory;
//! expired certificates fail `check-config` and `serve` unless `[tls] allow_expired`; a busy
//! metrics port is fatal with one message naming the key; `scan` exits 0/1/2 and prints a
//! summary; `check-config --print` is TOML that reads back and holds no secret.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::ops::{Leaf, NamedCa};
use support::process::KilledOnDrop;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn portcullis(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .output()
        .expect("run portcullis")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// One IMAPS listener on port 0 and a backend nobody connects to.
const LISTENER: &str = "[[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\n\n\
     [[backend]]\nname = \"b\"\naddress = \"127.0.0.1:143\"\ntls = \"none\"\n\n";

/// Copies `leaf` into `dir/tls/` and returns a `[tls]` section naming it by relative paths.
fn relative_tls(dir: &Path, leaf: &Leaf, extra: &str) -> String {
    fs::create_dir_all(dir.join("tls")).unwrap();
    fs::copy(&leaf.cert, dir.join("tls/cert.pem")).unwrap();
    fs::copy(&leaf.key, dir.join("tls/key.pem")).unwrap();
    format!("[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n{extra}\n")
}

/// A `serve` child with its log in a file; killed when dropped.
struct Serve {
    child: KilledOnDrop,
    log: PathBuf,
}

impl Serve {
    fn start(config: &Path, cwd: &Path) -> Serve {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve {
            child: KilledOnDrop(child),
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Ok(log)` once it listens, `Err((exit code, log))` if it exits first.
    fn outcome(&mut self) -> Result<String, (Option<i32>, String)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.log().contains("listening") {
                return Ok(self.log());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err((status.code(), self.log()));
            }
            assert!(
                Instant::now() < deadline,
                "neither listening nor exited:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn relative_paths_resolve_against_the_config_file_from_any_working_directory() {
    let ca = NamedCa::new();
    let leaf = ca.leaf("server", &["localhost"]);
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    fs::create_dir_all(etc.join("rules")).unwrap();
    fs::write(
        etc.join("rules/local.toml"),
        "[[rule]]\nname = \"local-only\"\ntarget = \"header\"\nheader = \"subject\"\npattern = \"zzz\"\naction = \"log\"\n",
    )
    .unwrap();
    let config = etc.join("portcullis.toml");
    fs::write(
        &config,
        relative_tls(&etc, &leaf, "")
            + "[scan]\nrules_dir = \"rules\"\nquarantine_dir = \"quarantine\"\n\n"
            + LISTENER,
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = portcullis(
        elsewhere.path(),
        &["check-config", "--config", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let rules = etc.join("rules");
    assert!(
        said.contains(&format!("1 rule(s) compiled from {}", rules.display())),
        "{said}"
    );
    assert!(
        said.contains(&etc.join("tls/cert.pem").display().to_string()),
        "{said}"
    );

    // serve, started in another directory, finds the same files.
    let mut serve = Serve::start(&config, elsewhere.path());
    serve
        .outcome()
        .unwrap_or_else(|(code, log)| panic!("exit {code:?}:\n{log}"));

    // Relative to the working directory when the config file is named relatively.
    let out = portcullis(
        root.path(),
        &["check-config", "--config", "etc/portcullis.toml"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // A missing file is named with the key and the full path it tried, once.
    fs::remove_file(etc.join("tls/key.pem")).unwrap();
    let out = portcullis(
        elsewhere.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    let tried = etc.join("tls/key.pem").display().to_string();
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("tls.key: {tried}")), "{said}");
    let mut serve = Serve::start(&config, elsewhere.path());
    let (code, log) = serve
        .outcome()
        .expect_err("serve must refuse a missing key");
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(
        log.matches(&format!("tls.key: {tried}")).count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("No such file").count(), 1, "said once: {log}");
}

#[test]
fn without_rules_dir_the_built_in_rules_are_used_wherever_the_process_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    fs::write(&config, LISTENER).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = portcullis(
        empty.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("rule(s) compiled from <built-in rules>"),
        "{said}"
    );
    assert!(!said.contains("0 rule(s)"), "{said}");
}

#[test]
fn missing_backend_ca_and_notice_are_named_with_key_and_full_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let with_tls_backend =
        LISTENER.replace("tls = \"none\"\n", "tls = \"starttls\"\nca = \"ca.pem\"\n");
    fs::write(
        &config,
        with_tls_backend.clone() + "[scan]\nnotice = \"notice.txt\"\n",
    )
    .unwrap();
    let ca = dir.path().join("ca.pem").display().to_string();
    let notice = dir.path().join("notice.txt").display().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = portcullis(
        elsewhere.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("backend b: ca: {ca}: ")), "{said}");
    assert!(said.contains(&format!("scan.notice: {notice}: ")), "{said}");
    let mut serve = Serve::start(&config, elsewhere.path());
    let (code, log) = serve
        .outcome()
        .expect_err("serve must refuse a missing notice");
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&format!("scan.notice: {notice}: ")), "{log}");
    fs::write(&config, with_tls_backend).unwrap();
    let mut serve = Serve::start(&config, elsewhere.path());
    let (code, log) = serve
        .outcome()
        .expect_err("serve must refuse a missing CA file");
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(
        log.matches(&format!("backend b: ca: {ca}: ")).count(),
        1,
        "{log}"
    );
}

#[test]
fn scan_exits_0_1_2_as_documented_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.eml");
    fs::write(&clean, "Subject: hi\r\n\r\nhello\r\n").unwrap();
    let infected = dir.path().join("eicar.eml");
    fs::write(&infected, format!("Subject: t\r\n\r\n{EICAR}\r\n")).unwrap();
    let run = |args: &[&str]| {
        let out = portcullis(dir.path(), &[&["scan"], args].concat());
        (out.status.code(), text(&out))
    };
    let (code, said) = run(&["clean.eml"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("scanned 1 message(s): 0 found, 0 error(s) in "),
        "{said}"
    );
    let (code, said) = run(&["clean.eml", "eicar.eml"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("scanned 2 message(s): 1 found, 0 error(s)"),
        "{said}"
    );
    let (code, said) = run(&["clean.eml", "eicar.eml", "missing.eml"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("scanned 3 message(s): 1 found, 1 error(s)"),
        "{said}"
    );

    // A configuration error is an error (2), not "something found" (1).
    fs::write(dir.path().join("bad.toml"), "[scan]\nmax_size = 0\n").unwrap();
    let (code, said) = run(&["--config", "bad.toml", "clean.eml"]);
    assert_eq!(code, Some(2), "{said}");
    let (code, said) = run(&["--config", "missing.toml", "clean.eml"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("missing.toml"), "{said}");
}

#[test]
fn expired_certificates_fail_check_and_serve_unless_allowed() {
    let ca = NamedCa::new();
    let expired = ca.expired_leaf("old", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let tried = dir.path().join("tls/cert.pem").display().to_string();

    fs::write(&config, relative_tls(dir.path(), &expired, "") + LISTENER).unwrap();
    let out = portcullis(
        dir.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("tls.cert: {tried}: certificate EXPIRED")),
        "{said}"
    );
    let mut serve = Serve::start(&config, dir.path());
    let (code, log) = serve
        .outcome()
        .expect_err("serve must refuse an expired certificate");
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("EXPIRED") && log.contains("allow_expired"),
        "{log}"
    );

    // An expired SNI certificate counts too.
    let good = ca.leaf("good", &["localhost"]);
    let sni = format!(
        "[[tls.sni]]\nnames = [\"old.example.org\"]\ncert = {:?}\nkey = {:?}\n\n",
        expired.cert.display().to_string(),
        expired.key.display().to_string()
    );
    fs::write(
        &config,
        relative_tls(dir.path(), &good, "") + &sni + LISTENER,
    )
    .unwrap();
    let out = portcullis(
        dir.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    assert!(
        !out.status.success() && text(&out).contains("tls.sni[0].cert"),
        "{}",
        text(&out)
    );

    // allow_expired: a warning, and serve starts and reports the negative expiry.
    let metrics = support::free_port();
    fs::write(
        &config,
        relative_tls(dir.path(), &expired, "allow_expired = true")
            + &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n")
            + LISTENER,
    )
    .unwrap();
    let out = portcullis(
        dir.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("WARNING") && said.contains("EXPIRED"),
        "{said}"
    );
    let mut serve = Serve::start(&config, dir.path());
    let log = serve
        .outcome()
        .unwrap_or_else(|(code, log)| panic!("exit {code:?}:\n{log}"));
    assert!(log.contains("EXPIRED"), "{log}");
    let page = scrape(metrics);
    let series = format!("portcullis_tls_certificate_expiry_seconds{{certificate=\"{tried}\"}} ");
    let value: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series}in\n{page}"))
        .parse()
        .unwrap();
    assert!(value < -86_400.0 * 365.0, "{value}");
}

#[test]
fn certificate_expiring_within_30_days_is_a_warning_and_a_small_positive_gauge() {
    let ca = NamedCa::new();
    let leaf = ca.leaf_expiring_in_days("soon", &["localhost"], 10);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let metrics = support::free_port();
    fs::write(
        &config,
        relative_tls(dir.path(), &leaf, "")
            + &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n")
            + LISTENER,
    )
    .unwrap();
    let out = portcullis(
        dir.path(),
        &["check-config", "-c", config.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("WARNING") && said.contains("expires in "),
        "{said}"
    );
    let mut serve = Serve::start(&config, dir.path());
    serve
        .outcome()
        .unwrap_or_else(|(code, log)| panic!("exit {code:?}:\n{log}"));
    let tried = dir.path().join("tls/cert.pem").display().to_string();
    let series = format!("portcullis_tls_certificate_expiry_seconds{{certificate=\"{tried}\"}} ");
    let page = scrape(metrics);
    let value: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series}in\n{page}"))
        .parse()
        .unwrap();
    assert!(
        (8.0 * 86_400.0..=11.0 * 86_400.0).contains(&value),
        "{value}"
    );
}

fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) {
            tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut page = String::new();
            tcp.read_to_string(&mut page).unwrap();
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "metrics endpoint on {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_busy_metrics_port_is_fatal_with_one_message_naming_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    fs::write(
        &config,
        format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n\n") + LISTENER,
    )
    .unwrap();
    let mut serve = Serve::start(&config, dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", serve.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = serve.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "metrics.bind: cannot bind metrics listener on 127.0.0.1:{port}"
        )),
        "{log}"
    );
    assert_eq!(
        log.matches("os error 98").count(),
        1,
        "the cause said once:\n{log}"
    );
    drop(busy);
}

#[test]
fn printed_configuration_is_toml_that_checks_again_and_holds_no_secret() {
    let ca = NamedCa::new();
    let leaf = ca.leaf("server", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    fs::write(&config, relative_tls(dir.path(), &leaf, "") + LISTENER).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = portcullis(
        elsewhere.path(),
        &[
            "check-config",
            "--print",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let table: toml::Table = toml::from_str(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(table["shutdown_grace"].as_str(), Some("10s"), "{printed}");
    assert_eq!(
        table["listener"][0]["require_tls"].as_bool(),
        Some(true),
        "{printed}"
    );
    assert!(
        table["limits"]["max_line"].as_integer().is_some(),
        "{printed}"
    );
    let cert = dir.path().join("tls/cert.pem").display().to_string();
    assert_eq!(
        table["tls"]["cert"].as_str(),
        Some(cert.as_str()),
        "{printed}"
    );
    let key_pem = fs::read_to_string(&leaf.key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(
        !printed.contains(key_body) && !printed.contains("PRIVATE KEY"),
        "{printed}"
    );

    // It reads back: check-config on the printed file, from yet another directory.
    let copy = elsewhere.path().join("printed.toml");
    fs::write(&copy, &printed).unwrap();
    let out = portcullis(
        dir.path(),
        &["check-config", "--config", copy.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let again = portcullis(
        dir.path(),
        &["check-config", "--print", "-c", copy.to_str().unwrap()],
    );
    let reprinted = String::from_utf8(again.stdout).unwrap();
    assert_eq!(
        reprinted.lines().skip(1).collect::<Vec<_>>(),
        printed.lines().skip(1).collect::<Vec<_>>(),
        "printing is a fixed point"
    );
}
