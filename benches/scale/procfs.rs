//! Child processes and what `/proc` says about them: resident memory (`VmRSS`, `VmHWM`) and
//! CPU time (`utime + stime`), summed over a process and its children (nginx's master and
//! workers).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bin serve` with `config` written to `dir/portcullis.toml`, logging warnings only: the
/// portcullis child both benchmarks start (spawn it with [`Server::spawn`] or as they need).
pub fn portcullis_serve(bin: &Path, dir: &Path, config: &str) -> Command {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).expect("write the portcullis config");
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn");
    command
}

/// A spawned server in its own process group; dropping it kills the group and reaps it.
pub struct Server {
    child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Server {
    /// Spawns `command` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Server {
        use std::os::unix::process::CommandExt;
        let file =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().expect("clone the log file handle");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Server {
            child,
            name: name.to_string(),
        }
    }

    /// The process id of the spawned process (nginx: the master).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log's tail if the process has exited.
    pub fn check_alive(&mut self, log: &Path) {
        if let Some(exit) = self.exit_note(log) {
            panic!("{exit}");
        }
    }

    /// If the process has exited: its status and the last lines of its log.
    pub fn exit_note(&mut self, log: &Path) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        Some(format!(
            "{} exited ({status}); log tail (newest first): {}",
            self.name,
            tail.join(" / ")
        ))
    }

    /// Resident memory of the process and its descendants.
    pub fn usage(&self) -> Usage {
        tree_usage(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The group is ours (process_group(0) above): this reaches nginx's workers too.
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals exactly the group we created.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Memory and CPU of a process tree at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Sum of `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Sum of `VmHWM` (each process's peak RSS), KiB.
    pub hwm_kib: u64,
    /// Sum of user + system CPU time, seconds.
    pub cpu_secs: f64,
}

/// [`Usage`] of `pid` plus every descendant.
pub fn tree_usage(pid: u32) -> Usage {
    let mut total = Usage::default();
    for pid in tree(pid) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        total.rss_kib += status_kib(&status, "VmRSS:");
        total.hwm_kib += status_kib(&status, "VmHWM:");
        total.cpu_secs += cpu_secs(pid);
    }
    total
}

/// The bench process's own peak RSS, KiB.
pub fn own_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_kib(&status, "VmHWM:")
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid` (all its threads, live and exited), seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, parent_of(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            all.iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found
}

/// Waits until 127.0.0.1:`port` accepts a TCP connection (or panics after `limit`).
pub fn wait_for_port(server: &mut Server, log: &Path, port: u16, limit: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        server.check_alive(log);
        assert!(
            start.elapsed() < limit,
            "{} did not listen on port {port} within {limit:?}",
            server.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until RSS stops changing by more than 1% over `quiet` (at most `limit`) and returns
/// the last usage: lets freed memory go back and lazy allocations settle before reading.
pub fn settle(server: &Server, quiet: Duration, limit: Duration) -> Usage {
    let start = Instant::now();
    let mut last = server.usage();
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.usage();
        let change = now.rss_kib.abs_diff(last.rss_kib) as f64;
        if change > last.rss_kib as f64 * 0.01 {
            stable_since = Instant::now();
            last = now;
        }
        if stable_since.elapsed() >= quiet || start.elapsed() >= limit {
            return server.usage();
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}
