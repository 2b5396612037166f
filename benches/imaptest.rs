//! Issue 10's comparison against real Dovecot, in one run: imaptest (Dovecot's IMAP stress
//! tester) and whole-mailbox FETCH throughput, each against these targets:
//!
//! - `plain`: Dovecot's plaintext IMAP port (no TLS at all: the floor);
//! - `direct`: Dovecot's own implicit-TLS port (imaps; Dovecot's imap-login process does TLS
//!   and relays to the imap process);
//! - `pc+clamd` / `pc builtin`: this build's portcullis executable (a child process each),
//!   implicit-TLS listener in front of Dovecot's plaintext port, `[scan]` with clamd, resp.
//!   without clamd (built-in EICAR check + the repository's rules); `IMAPTEST_SCAN=clamd` or
//!   `=builtin` runs only one of them;
//! - `stunnel`: stunnel4 in front of the same plaintext port (as `benches/scale` configures it).
//!
//! Phases: (1) imaptest's stress profile (`clients=10 secs=20 logout=0`, TLS, its own mailbox
//! filled from a generated mbox) — skipped with instructions when no imaptest binary is found
//! (`IMAPTEST_BIN`, `PATH`, or `scripts/build-imaptest.sh`'s cache); (2) a built-in command mix of
//! the same kinds of commands (`load.rs`), which needs nothing installed; (3) `FETCH 1:*
//! (BODY.PEEK[])` of an INBOX of ~1 MB messages, after one warm-up pass (portcullis's verdicts
//! cached), rounds interleaved between the targets. CPU seconds of the portcullis and stunnel
//! processes (and Dovecot's process tree during FETCH) come from `/proc/<pid>/stat`.
//!
//! Run: `cargo bench --bench imaptest` (as root; needs `scripts/install-test-deps.sh`, stunnel4).
//! Knobs: `IMAPTEST_CLIENTS` (10), `IMAPTEST_SECS` (20), `IMAPTEST_MIX` (`0` skips phase 2),
//! `IMAPTEST_FETCH_MESSAGES` (110, ~1.05 MB each), `IMAPTEST_FETCH_ROUNDS` (3),
//! `IMAPTEST_SCAN` (`clamd,builtin`), `IMAPTEST_BIN`, `IMAPTEST_MIX_META` (the items of the mix's
//! metadata `UID FETCH 1:*`, default `UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE`),
//! `IMAPTEST_SCAN_APPEND=1` (portcullis also scans uploads, `scan_append = true`).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "imaptest/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "scale/procfs.rs"]
mod procfs;
#[path = "imaptest/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::clamd::{Clamd, ClamdOptions};
use support::dovecot::Dovecot;
use support::mime::{message, pseudo_random, Part};

/// Raw attachment size of each FETCH message (base64 makes the message about 1.05 MB).
const FETCH_ATTACHMENT: usize = 768 * 1024;
/// Messages in each built-in mix mailbox at the start.
const MIX_MESSAGES: usize = 30;
/// Messages in the generated mbox / append pool.
const APPEND_POOL: usize = 300;

struct Settings {
    clients: usize,
    secs: u64,
    mix: bool,
    fetch_messages: usize,
    fetch_rounds: usize,
    /// portcullis targets: with clamd, with the built-in check only.
    clamd: bool,
    builtin: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: usize| {
            var(name)
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        let scan = var("IMAPTEST_SCAN").unwrap_or_else(|| "clamd,builtin".into());
        Settings {
            clients: number("IMAPTEST_CLIENTS", 10),
            secs: number("IMAPTEST_SECS", 20) as u64,
            mix: var("IMAPTEST_MIX").as_deref() != Some("0"),
            fetch_messages: number("IMAPTEST_FETCH_MESSAGES", 110),
            fetch_rounds: number("IMAPTEST_FETCH_ROUNDS", 3),
            clamd: scan.split(',').any(|m| m.trim() == "clamd"),
            builtin: scan.split(',').any(|m| m.trim() == "builtin"),
        }
    }
}

/// One thing clients connect to.
struct Target<'a> {
    name: &'static str,
    port: u16,
    /// Implicit TLS (every target but `direct plain`).
    tls: bool,
    /// The proxy process (none for Dovecot direct).
    proxy: Option<&'a servers::Proxy>,
}

impl Target<'_> {
    fn cpu(&self) -> Option<f64> {
        self.proxy.map(servers::Proxy::cpu_secs)
    }
}

/// One measured value per target, plus the proxy's CPU seconds.
struct Line {
    name: &'static str,
    value: f64,
    cpu: Option<f64>,
    note: String,
}

fn fetch_corpus(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let root = Part::multipart(
                "mixed",
                "fetch-boundary",
                vec![
                    Part::text("Benchmark payload attached.\n"),
                    Part::attachment(
                        "payload.bin",
                        "application/octet-stream",
                        &pseudo_random(7000 + i as u64, FETCH_ATTACHMENT),
                    ),
                ],
            );
            message(&format!("fetch-{i}"), &format!("Payload {i}"), root)
        })
        .collect()
}

/// CPU seconds of Dovecot's process tree (master and its live children).
fn dovecot_cpu(dovecot: &Dovecot) -> Option<f64> {
    let pid = std::fs::read_to_string(dovecot.dir().join("run/master.pid")).ok()?;
    Some(procfs::tree_usage(pid.trim().parse().ok()?).cpu_secs)
}

fn imaptest_phase(bin: &Path, dovecot: &Dovecot, targets: &[Target], s: &Settings) -> Vec<Line> {
    let dir = tempfile::tempdir().expect("mbox dir");
    let mbox = dir.path().join("bench.mbox");
    load::write_mbox(&mbox, &load::append_corpus(APPEND_POOL));
    targets
        .iter()
        .map(|target| {
            let before = target.cpu();
            let result = load::run_imaptest(
                bin,
                target.port,
                target.tls,
                dovecot.user(),
                dovecot.password(),
                &mbox,
                "imaptest",
                s.clients,
                s.secs,
            );
            let cpu = before.zip(target.cpu()).map(|(a, b)| b - a);
            match result {
                Ok(totals) => {
                    let columns: Vec<String> = totals
                        .columns
                        .iter()
                        .map(|(n, c)| format!("{n}={c}"))
                        .collect();
                    Line {
                        name: target.name,
                        value: totals.commands() as f64 / s.secs as f64,
                        cpu,
                        note: columns.join(" "),
                    }
                }
                Err(reason) => Line {
                    name: target.name,
                    value: f64::NAN,
                    cpu,
                    note: reason,
                },
            }
        })
        .collect()
}

fn mix_phase(
    dovecot: &Dovecot,
    targets: &[Target],
    s: &Settings,
) -> (Vec<Line>, Vec<load::Counts>) {
    let appends = load::append_corpus(APPEND_POOL);
    let mut setup = load::login(
        dovecot.imaps_port,
        Some(&dovecot.ca),
        dovecot.user(),
        dovecot.password(),
    );
    for i in 0..s.clients {
        let mailbox = load::mix_mailbox(i);
        let (_, status) = setup.imap("c", &format!("CREATE {mailbox}"));
        assert!(status.contains("OK"), "CREATE {mailbox}: {status}");
        for m in 0..MIX_MESSAGES {
            load::append(
                &mut setup,
                "a",
                &mailbox,
                &appends[(i * 31 + m) % APPEND_POOL],
            );
        }
    }
    let duration = Duration::from_secs(s.secs);
    targets
        .iter()
        .map(|target| {
            let before = target.cpu();
            let (counts, elapsed) = load::run_mix(
                target.port,
                target.tls.then_some(&dovecot.ca),
                (dovecot.user(), dovecot.password()),
                s.clients,
                duration,
                &appends,
            );
            let commands = counts.commands();
            let line = Line {
                name: target.name,
                value: commands as f64 / elapsed.as_secs_f64(),
                cpu: before.zip(target.cpu()).map(|(a, b)| b - a),
                note: format!("{commands} commands in {:.1} s", elapsed.as_secs_f64()),
            };
            (line, counts)
        })
        .unzip()
}

fn print_latencies(targets: &[Target], counts: &[load::Counts]) {
    println!("\nbuilt-in mix: mean round trip per command kind, µs (n = count for direct)");
    let names: Vec<String> = targets.iter().map(|t| format!("{:>12}", t.name)).collect();
    println!("{:<16}{}", "command", names.join(""));
    for (i, kind) in load::KINDS.iter().enumerate() {
        let cells: Vec<String> = counts
            .iter()
            .map(|c| format!("{:>12.0}", c.mean_micros(i)))
            .collect();
        println!("{kind:<16}{}   n={}", cells.join(""), counts[0].kinds[i].0);
    }
}

fn fetch_all(client: &mut load::Client, corpus: &[Vec<u8>], check: bool) -> Duration {
    let start = Instant::now();
    let (responses, status) = client.imap("f", "FETCH 1:* (BODY.PEEK[])");
    let elapsed = start.elapsed();
    assert!(status.starts_with("f OK"), "FETCH: {status}");
    let bodies: Vec<Vec<u8>> = responses.into_iter().flat_map(|r| r.literals).collect();
    if check {
        assert!(
            bodies == corpus,
            "fetched bytes differ from the seeded corpus"
        );
    } else {
        assert_eq!(bodies.len(), corpus.len(), "fetched message count");
    }
    elapsed
}

fn fetch_phase(
    dovecot: &Dovecot,
    targets: &[Target],
    corpus: &[Vec<u8>],
    s: &Settings,
) -> Vec<Line> {
    let mut clients: Vec<load::Client> = targets
        .iter()
        .map(|t| {
            let mut c = load::login(
                t.port,
                t.tls.then_some(&dovecot.ca),
                dovecot.user(),
                dovecot.password(),
            );
            let (_, status) = c.imap("e", "EXAMINE INBOX");
            assert!(status.starts_with("e OK"), "EXAMINE: {status}");
            c
        })
        .collect();
    // Warm-up: page cache, and portcullis scans every message once (verdicts then cached).
    for (target, client) in targets.iter().zip(&mut clients) {
        let warm = fetch_all(client, corpus, true);
        println!("  warm-up {}: {:.1} s", target.name, warm.as_secs_f64());
    }
    let mut time = vec![Duration::ZERO; targets.len()];
    let mut cpu = vec![0.0; targets.len()];
    let mut backend_cpu = vec![0.0; targets.len()];
    for _ in 0..s.fetch_rounds {
        for (i, (target, client)) in targets.iter().zip(&mut clients).enumerate() {
            let (proxy0, dovecot0) = (target.cpu(), dovecot_cpu(dovecot));
            time[i] += fetch_all(client, corpus, false);
            cpu[i] += proxy0.zip(target.cpu()).map_or(0.0, |(a, b)| b - a);
            backend_cpu[i] += dovecot0
                .zip(dovecot_cpu(dovecot))
                .map_or(0.0, |(a, b)| b - a);
        }
    }
    let bytes = corpus.iter().map(Vec::len).sum::<usize>() * s.fetch_rounds;
    let gb = bytes as f64 / 1e9;
    targets
        .iter()
        .enumerate()
        .map(|(i, target)| Line {
            name: target.name,
            value: bytes as f64 / 1e6 / time[i].as_secs_f64(),
            cpu: target.proxy.map(|_| cpu[i] / gb),
            note: format!("Dovecot {:.2} CPU s/GB", backend_cpu[i] / gb),
        })
        .collect()
}

fn print_phase(title: &str, unit: &str, cpu_unit: &str, lines: &[Line]) {
    println!("\n{title}");
    let value = |name: &str| lines.iter().find(|l| l.name == name).map(|l| l.value);
    let (direct, stunnel) = (value("direct"), value("stunnel"));
    println!(
        "{:<11} {:>12} {:>14} {:>10} {:>11}  notes",
        "target", unit, cpu_unit, "/ direct", "/ stunnel"
    );
    for line in lines {
        let ratio =
            |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", line.value / b));
        println!(
            "{:<11} {:>12.1} {:>14} {:>10} {:>11}  {}",
            line.name,
            line.value,
            line.cpu.map_or("-".into(), |c| format!("{c:.2}")),
            ratio(direct),
            ratio(stunnel),
            line.note
        );
    }
}

fn main() {
    let s = Settings::from_env();
    let imaptest = load::find_imaptest();
    let start = Instant::now();
    println!("imaptest bench: starting Dovecot, clamd, portcullis and stunnel...");
    let dovecot = Dovecot::start();
    let clamd = s.clamd.then(|| {
        Clamd::start_with(ClamdOptions {
            stream_max_length: Some("64M".into()),
            ..Default::default()
        })
    });
    let corpus = fetch_corpus(s.fetch_messages);
    dovecot.seed_messages(dovecot.user(), &corpus);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let mut scanning = clamd
        .as_ref()
        .map(|c| servers::portcullis(&bin, &dovecot, Some(&c.tcp_addr())));
    let mut builtin = s.builtin.then(|| servers::portcullis(&bin, &dovecot, None));
    let stunnel = servers::stunnel(&dovecot);
    let mut targets = vec![Target {
        name: "plain",
        port: dovecot.imap_port,
        tls: false,
        proxy: None,
    }];
    targets.push(Target {
        name: "direct",
        port: dovecot.imaps_port,
        tls: true,
        proxy: None,
    });
    if let Some(proxy) = &scanning {
        targets.push(Target {
            name: "pc+clamd",
            port: proxy.port,
            tls: true,
            proxy: Some(proxy),
        });
    }
    if let Some(proxy) = &builtin {
        targets.push(Target {
            name: "pc builtin",
            port: proxy.port,
            tls: true,
            proxy: Some(proxy),
        });
    }
    match &stunnel {
        Some(proxy) => targets.push(Target {
            name: "stunnel",
            port: proxy.port,
            tls: true,
            proxy: Some(proxy),
        }),
        None => println!("stunnel: not installed (apt-get install stunnel4); column skipped"),
    }
    println!(
        "client side TLS on every target; direct = Dovecot's imaps port; pc+clamd = portcullis \
         [scan] with clamd; pc builtin = portcullis [scan] without clamd (built-in check); \
         {} clients, {} s per target",
        s.clients, s.secs
    );
    let imaptest_lines = match &imaptest {
        Some(bin) => Some(imaptest_phase(bin, &dovecot, &targets, &s)),
        None => {
            println!("\n{}", load::how_to_get_imaptest());
            None
        }
    };
    let mix = s.mix.then(|| mix_phase(&dovecot, &targets, &s));
    println!(
        "\nFETCH phase: {} messages, warm-up pass first",
        corpus.len()
    );
    let fetch_lines = fetch_phase(&dovecot, &targets, &corpus, &s);
    if let (Some(lines), Some(bin)) = (&imaptest_lines, &imaptest) {
        let title = format!(
            "imaptest ({}), logout=0, commands/s without LOGIN/LOGOUT",
            bin.display()
        );
        print_phase(&title, "commands/s", "proxy CPU s", lines);
    }
    if let Some((lines, counts)) = &mix {
        let title = format!(
            "built-in command mix (not imaptest), metadata fetch UID FETCH 1:* ({})",
            load::meta_items()
        );
        print_phase(&title, "commands/s", "proxy CPU s", lines);
        print_latencies(&targets, counts);
    }
    let mb = corpus.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let title = format!(
        "FETCH 1:* (BODY.PEEK[]), {} messages, {mb:.1} MB, {} rounds after warm-up (verdicts cached)",
        corpus.len(),
        s.fetch_rounds
    );
    print_phase(&title, "MB/s", "proxy CPU s/GB", &fetch_lines);
    println!(
        "\nratios: target / direct and target / stunnel (higher is better); total {:.0} s",
        start.elapsed().as_secs_f64()
    );
    drop(targets);
    for proxy in [&mut scanning, &mut builtin].into_iter().flatten() {
        proxy.check_alive();
    }
}
