//! Efficiency at scale (issue 10): what portcullis costs per idle TLS session, after session
//! churn, with stalled readers, per gigabyte relayed and per TLS handshake — beside nginx's mail
//! module and stunnel in front of the same backend when they are installed.
//!
//! The bench starts its own lightweight plaintext IMAP backend (tokio tasks in this process,
//! two messages: 1 MiB and, for the stalled readers, 9 MiB) and runs each proxy as a child
//! process, so its memory and CPU come from `/proc/<pid>/status` (`VmRSS`, `VmHWM`) and
//! `/proc/<pid>/stat` (`utime + stime`), summed over the process tree (nginx's workers).
//! portcullis runs with a `[scan]` section without clamd: the built-in EICAR check and the
//! repository's rules, the verdict cached after the first fetch. Every measurement starts a
//! fresh proxy instance. Clients are rustls (no session resumption) on tokio.
//!
//! Run: `cargo bench --bench scale` (release build; a few minutes on 2 cores).
//! `SCALE_QUICK=1` is a smoke run (200 sessions, small counts) in under 30 s.
//! Knobs (environment):
//! - `SCALE_SESSIONS` idle-session steps, default `1000,5000,10000`, capped to what the
//!   open-file limit holds (about 0.48 × the limit, 9,600 at 20,000);
//! - `SCALE_REOPEN` sessions re-opened after closing all, default 5000;
//! - `SCALE_FETCH_MB` MiB fetched for the relay row (1 MiB message repeated), default 1024;
//!   `SCALE_FETCH_CLIENTS` concurrent fetching sessions, default 4;
//! - `SCALE_STALLED` stalled readers, default 20; `SCALE_STALLED_MIB` their message, default 9;
//!   `SCALE_STALL_SECS` longest wait for the peak, default 20;
//! - `SCALE_MEMORY` portcullis's `[limits] memory` (e.g. `64MiB`), default: not set (1 GiB);
//! - `SCALE_HANDSHAKES` per key type, default 2000; `SCALE_HANDSHAKE_PARALLEL` default 8;
//! - `SCALE_KX=x25519` offers only X25519 (default: rustls's default groups, which put the
//!   X25519MLKEM768 hybrid first — OpenSSL 3.0 in nginx/stunnel picks X25519);
//! - `SCALE_OPEN_PARALLEL` concurrent session openings, default 32;
//! - `SCALE_PORTCULLIS_BIN` the portcullis executable (default: this build's);
//!   `SCALE_PORTCULLIS_LABEL` its column label (default `portcullis`);
//!   `SCALE_EXTRA_BINS=label=/path,...` more portcullis executables in the same run (an older
//!   commit, an allocator variant);
//! - `SCALE_PROXIES` which kinds to run, default `portcullis,nginx,stunnel` (nginx and stunnel
//!   are skipped with a note when not installed; the bench never installs them);
//! - `SCALE_PHASES` default `sessions,stalled,fetch,handshakes`.

#[path = "scale/backend.rs"]
mod backend;
#[path = "scale/certs.rs"]
mod certs;
#[path = "scale/client.rs"]
mod client;
#[path = "scale/procfs.rs"]
mod procfs;
#[path = "scale/proxies.rs"]
mod proxies;
#[path = "scale/report.rs"]
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{Certs, KeyKind};
use client::Target;
use procfs::{settle, Usage};
use proxies::{Kind, Running, Subject, Wiring};
use report::Report;

/// Size of the relay message.
const FETCH_MESSAGE: usize = 1 << 20;

/// Run parameters, from the environment.
struct Settings {
    sessions: Vec<usize>,
    reopen: usize,
    fetch_mib: usize,
    fetch_clients: usize,
    stalled: usize,
    stalled_mib: usize,
    stall_secs: u64,
    handshakes: usize,
    handshake_parallel: usize,
    x25519_only: bool,
    open_parallel: usize,
    phases: Vec<String>,
    quick: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number(name: &str, default: usize) -> usize {
    match var(name) {
        Some(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number")),
        None => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let quick = var("SCALE_QUICK").is_some_and(|v| v != "0");
        let sessions: Vec<usize> = match var("SCALE_SESSIONS") {
            Some(list) => list
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("SCALE_SESSIONS: {n:?} is not a number"))
                })
                .collect(),
            None if quick => vec![200],
            None => vec![1000, 5000, 10000],
        };
        let mut sessions: Vec<usize> = sessions.into_iter().filter(|&n| n > 0).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let largest = sessions.last().copied().unwrap_or(0);
        let q = |quick_value: usize, full: usize| if quick { quick_value } else { full };
        Settings {
            reopen: number("SCALE_REOPEN", q(100, 5000)).min(largest),
            fetch_mib: number("SCALE_FETCH_MB", q(32, 1024)).max(1),
            fetch_clients: number("SCALE_FETCH_CLIENTS", 4).max(1),
            stalled: number("SCALE_STALLED", q(4, 20)),
            stalled_mib: number("SCALE_STALLED_MIB", 9).max(1),
            stall_secs: number("SCALE_STALL_SECS", q(3, 20)) as u64,
            handshakes: number("SCALE_HANDSHAKES", q(100, 2000)).max(1),
            handshake_parallel: number("SCALE_HANDSHAKE_PARALLEL", 8).max(1),
            x25519_only: var("SCALE_KX").is_some_and(|v| v.eq_ignore_ascii_case("x25519")),
            open_parallel: number("SCALE_OPEN_PARALLEL", 32).max(1),
            phases: var("SCALE_PHASES")
                .unwrap_or_else(|| "sessions,stalled,fetch,handshakes".into())
                .split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .collect(),
            sessions,
            quick,
        }
    }

    fn phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p == name)
    }
}

/// The proxies to run, in column order; notes for the ones skipped.
fn subjects(notes: &mut Vec<String>) -> Vec<Subject> {
    let kinds = var("SCALE_PROXIES").unwrap_or_else(|| "portcullis,nginx,stunnel".into());
    let mut subjects = Vec::new();
    for kind in kinds.split(',').map(str::trim) {
        match kind {
            "portcullis" => {
                let bin = var("SCALE_PORTCULLIS_BIN")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")));
                assert!(
                    bin.is_file(),
                    "portcullis executable {} missing",
                    bin.display()
                );
                subjects.push(Subject {
                    label: var("SCALE_PORTCULLIS_LABEL").unwrap_or_else(|| "portcullis".into()),
                    kind: Kind::Portcullis(bin),
                });
                for extra in var("SCALE_EXTRA_BINS").iter().flat_map(|v| v.split(',')) {
                    let (label, path) = extra.split_once('=').unwrap_or_else(|| {
                        panic!("SCALE_EXTRA_BINS entry {extra:?}: expected label=/path")
                    });
                    let bin = PathBuf::from(path.trim());
                    assert!(
                        bin.is_file(),
                        "{label}: executable {} missing",
                        bin.display()
                    );
                    subjects.push(Subject {
                        label: label.trim().to_string(),
                        kind: Kind::Portcullis(bin),
                    });
                }
            }
            "nginx" => match proxies::which(&["nginx"]) {
                Some(bin)
                    if std::path::Path::new("/usr/lib/nginx/modules/ngx_mail_module.so")
                        .exists()
                        || nginx_has_static_mail(&bin) =>
                {
                    subjects.push(Subject {
                        label: "nginx".into(),
                        kind: Kind::Nginx(bin),
                    })
                }
                Some(_) => notes.push("nginx: installed without the mail module, skipped".into()),
                None => notes.push("nginx: not installed, skipped".into()),
            },
            "stunnel" => match proxies::which(&["stunnel4", "stunnel"]) {
                Some(bin) => subjects.push(Subject {
                    label: "stunnel".into(),
                    kind: Kind::Stunnel(bin),
                }),
                None => notes.push("stunnel: not installed, skipped".into()),
            },
            other => panic!("SCALE_PROXIES: unknown kind {other:?}"),
        }
    }
    subjects
}

/// True when `nginx -V` says the mail module is compiled in statically.
fn nginx_has_static_mail(bin: &std::path::Path) -> bool {
    std::process::Command::new(bin)
        .arg("-V")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr);
            text.contains("--with-mail ") || text.ends_with("--with-mail")
        })
        .unwrap_or(false)
}

/// Raises this process's open-file limit (children inherit it) to hold `sessions` sessions on
/// both sides plus the proxies' backend connections; returns the limit now in force.
fn raise_file_limit(sessions: usize) -> u64 {
    let want = (sessions as u64 * 2 + 2048).max(65536);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    if hard < want {
        // Raising the hard limit needs CAP_SYS_RESOURCE (root); otherwise keep the hard one.
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want, want);
    }
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(soft)
}

/// Everything a phase needs.
struct Bench {
    settings: Settings,
    certs: Certs,
    wiring: Wiring,
    client: Arc<rustls::ClientConfig>,
    stalled_size: u64,
}

impl Bench {
    fn start(subject: &Subject, kind: KeyKind, wiring: &Wiring, certs: &Certs) -> Running {
        proxies::start(subject, certs.leaf(kind), wiring)
    }

    fn target(&self, running: &Running) -> Target {
        Target::new(running.port, self.client.clone())
    }
}

/// Notes a failure on `column`, with the proxy's exit status and log tail if it died.
fn failed(report: &mut Report, column: usize, running: &mut Running, what: String) {
    let exit = running.server.exit_note(&running.log);
    report.note(
        column,
        match exit {
            Some(exit) => format!("{what} ({exit})"),
            None => what,
        },
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Idle sessions: RSS per session at each step, after closing all, and after re-opening.
async fn sessions_phase(bench: &Bench, subject: &Subject, report: &mut Report, column: usize) {
    let settings = &bench.settings;
    let mut running = Bench::start(subject, KeyKind::P256, &bench.wiring, &bench.certs);
    let target = bench.target(&running);
    let quiet = Duration::from_secs(if settings.quick { 1 } else { 2 });
    let limit = Duration::from_secs(20);
    let base = settle(&running.server, quiet, limit);
    report.set("baseline RSS", "MiB", column, mib(base.rss_kib));
    let mut sessions = Vec::new();
    for &step in &settings.sessions {
        let started = Instant::now();
        let opened = client::open_sessions(
            &target,
            step - sessions.len(),
            settings.open_parallel,
            &mut sessions,
        )
        .await;
        if let Err(error) = opened {
            failed(
                report,
                column,
                &mut running,
                format!(
                    "sessions: step {step} failed after {}: {error}",
                    sessions.len()
                ),
            );
            return;
        }
        let usage = settle(&running.server, quiet, limit);
        let per = usage.rss_kib.saturating_sub(base.rss_kib) as f64 / step as f64;
        report.set(
            &format!("RSS per idle session at {step}"),
            "KiB",
            column,
            per,
        );
        println!(
            "  {}: {step} sessions open in {:.1} s, RSS {:.1} MiB ({per:.1} KiB/session)",
            subject.label,
            started.elapsed().as_secs_f64(),
            mib(usage.rss_kib)
        );
    }
    let open = sessions.len();
    sessions.clear();
    let closed = settle(&running.server, quiet * 2, limit);
    report.set(
        &format!("RSS after closing all {open}"),
        "MiB",
        column,
        mib(closed.rss_kib),
    );
    if settings.reopen > 0 {
        if let Err(error) = client::open_sessions(
            &target,
            settings.reopen,
            settings.open_parallel,
            &mut sessions,
        )
        .await
        {
            failed(
                report,
                column,
                &mut running,
                format!("re-open failed: {error}"),
            );
            return;
        }
        let again = settle(&running.server, quiet, limit);
        let reopen = settings.reopen;
        report.set(
            &format!("RSS with {reopen} re-opened after churn"),
            "MiB",
            column,
            mib(again.rss_kib),
        );
        report.set(
            "  per re-opened session (over baseline)",
            "KiB",
            column,
            again.rss_kib.saturating_sub(base.rss_kib) as f64 / reopen as f64,
        );
    }
}

/// Stalled readers: K sessions FETCH the large message and never read; peak RSS.
async fn stalled_phase(bench: &Bench, subject: &Subject, report: &mut Report, column: usize) {
    let settings = &bench.settings;
    if settings.stalled == 0 {
        return;
    }
    let mut running = Bench::start(subject, KeyKind::P256, &bench.wiring, &bench.certs);
    let target = bench.target(&running);
    // One complete fetch first: the verdict is cached, the stalled ones measure the relay.
    if let Err(error) = client::fetch_repeatedly(&target, 1, 1, 2, bench.stalled_size).await {
        failed(
            report,
            column,
            &mut running,
            format!("stalled: priming fetch failed: {error}"),
        );
        return;
    }
    let mut sessions = Vec::new();
    if let Err(error) = client::open_sessions(
        &target,
        settings.stalled,
        settings.open_parallel,
        &mut sessions,
    )
    .await
    {
        failed(
            report,
            column,
            &mut running,
            format!("stalled: sessions failed: {error}"),
        );
        return;
    }
    for conn in &mut sessions {
        if let Err(error) = conn.send("FETCH 2 BODY.PEEK[]").await {
            failed(
                report,
                column,
                &mut running,
                format!("stalled: FETCH failed: {error}"),
            );
            return;
        }
    }
    let start = Instant::now();
    let mut peak = Usage::default();
    let mut grew = Instant::now();
    while start.elapsed() < Duration::from_secs(settings.stall_secs)
        && grew.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = running.server.usage();
        if now.rss_kib > peak.rss_kib + peak.rss_kib / 100 {
            grew = Instant::now();
        }
        peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        peak.hwm_kib = now.hwm_kib;
    }
    let label = format!(
        "peak RSS, {} stalled readers of a {} MiB FETCH",
        settings.stalled, settings.stalled_mib
    );
    report.set(&label, "MiB", column, mib(peak.rss_kib.max(peak.hwm_kib)));
    report.limit(&subject.buffer_limits());
    drop(sessions);
}

/// Relay cost: the 1 MiB message fetched repeatedly (verdict cached after the first).
async fn fetch_phase(bench: &Bench, subject: &Subject, report: &mut Report, column: usize) {
    let settings = &bench.settings;
    let mut running = Bench::start(subject, KeyKind::P256, &bench.wiring, &bench.certs);
    let target = bench.target(&running);
    let size = FETCH_MESSAGE as u64;
    if let Err(error) = client::fetch_repeatedly(&target, 1, 2, 1, size).await {
        failed(
            report,
            column,
            &mut running,
            format!("fetch: warm-up failed: {error}"),
        );
        return;
    }
    let per_client = settings.fetch_mib.div_ceil(settings.fetch_clients);
    let before = running.server.usage();
    let outcome =
        client::fetch_repeatedly(&target, settings.fetch_clients, per_client, 1, size).await;
    let after = running.server.usage();
    match outcome {
        Ok((bytes, elapsed)) => {
            let cpu = after.cpu_secs - before.cpu_secs;
            report.set(
                "relay CPU per GB fetched",
                "s",
                column,
                cpu / (bytes as f64 / 1e9),
            );
            report.set(
                "relay throughput",
                "MB/s",
                column,
                bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            );
        }
        Err(error) => failed(
            report,
            column,
            &mut running,
            format!("fetch failed: {error}"),
        ),
    }
}

/// Full TLS handshakes (connect, handshake, greeting, close) per key type.
async fn handshake_phase(bench: &Bench, subject: &Subject, report: &mut Report, column: usize) {
    let settings = &bench.settings;
    for kind in [KeyKind::Rsa2048, KeyKind::P256] {
        let mut running = Bench::start(subject, kind, &bench.wiring, &bench.certs);
        let target = bench.target(&running);
        if let Err(error) = client::handshakes(&target, 20, 2).await {
            failed(
                report,
                column,
                &mut running,
                format!("handshakes {}: {error}", kind.label()),
            );
            continue;
        }
        let before = running.server.usage();
        let outcome =
            client::handshakes(&target, settings.handshakes, settings.handshake_parallel).await;
        let after = running.server.usage();
        match outcome {
            Ok((elapsed, group)) => {
                let n = settings.handshakes as f64;
                report.set(
                    &format!("TLS handshakes/s, {}", kind.label()),
                    "1/s",
                    column,
                    n / elapsed.as_secs_f64(),
                );
                report.set(
                    &format!("CPU per 1,000 handshakes, {}", kind.label()),
                    "s",
                    column,
                    (after.cpu_secs - before.cpu_secs) / n * 1000.0,
                );
                report.note(column, format!("key exchange {group}"));
            }
            Err(error) => failed(
                report,
                column,
                &mut running,
                format!("handshakes {}: {error}", kind.label()),
            ),
        }
    }
}

fn main() {
    let mut settings = Settings::from_env();
    let mut skipped = Vec::new();
    let subjects = subjects(&mut skipped);
    let largest = settings.sessions.last().copied().unwrap_or(0);
    let files = raise_file_limit(largest.max(settings.reopen) + settings.stalled + 64);
    // The bench holds each session twice (client and backend side) and each proxy two
    // descriptors per session; stunnel admits at most files × 125/256 clients.
    let cap = (files.saturating_sub(256) * 125 / 256 / 100 * 100) as usize;
    if largest > cap {
        skipped.push(format!(
            "session steps above {cap} capped to {cap}: the open-file limit is {files} (hard \
             limit; raising it needs CAP_SYS_RESOURCE) and each session holds two descriptors \
             in the proxy and two in the bench"
        ));
        settings.sessions = settings.sessions.iter().map(|&n| n.min(cap)).collect();
        settings.sessions.dedup();
        settings.reopen = settings.reopen.min(cap);
    }
    let dir = tempfile::Builder::new()
        .prefix("pc-scale-certs-")
        .tempdir()
        .expect("cert temp dir");
    println!("scale: generating certificates (P-256, RSA-2048) and the messages...");
    let certs = Certs::generate(dir.path());
    let stalled_size = settings.stalled_mib << 20;
    let mailbox = backend::Mailbox::new(vec![
        backend::message(FETCH_MESSAGE, 1),
        backend::message(stalled_size, 2),
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (backend_port, auth_port) = runtime.block_on(async {
        let backend_port = backend::start_imap(mailbox).await;
        (backend_port, backend::start_auth_http(backend_port).await)
    });
    let bench = Bench {
        client: certs.client_config(settings.x25519_only),
        wiring: Wiring {
            backend_port,
            auth_port,
            rules_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")),
            max_files: files,
        },
        certs,
        stalled_size: stalled_size as u64,
        settings,
    };
    let mut report = Report::new(subjects.iter().map(|s| s.label.clone()).collect());
    for note in skipped {
        report.global_note(note);
    }
    let started = Instant::now();
    runtime.block_on(async {
        for (column, subject) in subjects.iter().enumerate() {
            println!("scale: measuring {} ...", subject.label);
            if bench.settings.phase("sessions") {
                sessions_phase(&bench, subject, &mut report, column).await;
            }
            if bench.settings.phase("stalled") {
                stalled_phase(&bench, subject, &mut report, column).await;
            }
            if bench.settings.phase("fetch") {
                fetch_phase(&bench, subject, &mut report, column).await;
            }
            if bench.settings.phase("handshakes") {
                handshake_phase(&bench, subject, &mut report, column).await;
            }
        }
    });
    report.global_note(format!(
        "open-file limit {files}; bench process peak RSS {:.0} MiB; run took {:.0} s",
        mib(procfs::own_hwm_kib()),
        started.elapsed().as_secs_f64()
    ));
    report.print(&bench.settings.describe());
    runtime.shutdown_timeout(Duration::from_secs(1));
}

impl Settings {
    fn describe(&self) -> String {
        format!(
            "sessions {:?}, re-open {}, fetch {} MiB on {} client(s), {} stalled readers of {} MiB, \
             {} handshakes per key ({} parallel), key exchange {}",
            self.sessions,
            self.reopen,
            self.fetch_mib,
            self.fetch_clients,
            self.stalled,
            self.stalled_mib,
            self.handshakes,
            self.handshake_parallel,
            if self.x25519_only { "X25519 only" } else { "rustls default" }
        )
    }
}
