//! Logging that never affects service.
//!
//! Log lines are formatted by `tracing-subscriber` on the thread that logs, then handed to a
//! bounded queue ([`QUEUE_LINES`] lines) drained by one writer thread. Nothing that logs ever
//! waits for the log sink: a full queue (a pipe nobody reads, a slow disk) and a failing sink
//! (closed pipe, full disk) drop lines, counted in `portcullis_log_lines_dropped_total`. The
//! writer thread writes to its own duplicate of file descriptor 2, so it never holds the lock of
//! `std::io::stderr()`; panics are reported through the same queue (see [`init`]).
//!
//! Formats: `text` (ANSI colours only when stderr is a terminal and `NO_COLOR` is unset or
//! empty), `json` (one object per line) and `journald` (plain text without a timestamp,
//! prefixed with the `<N>` syslog priority that journald reads from a service's stderr,
//! sd-daemon(3)).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Lines that may wait for the writer thread; beyond that new lines are dropped.
pub const QUEUE_LINES: usize = 16 * 1024;

/// How long [`LogGuard`] waits for queued lines to be written when the process exits.
const EXIT_FLUSH: Duration = Duration::from_secs(1);

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// File descriptor 2 could not be duplicated for the writer thread.
    #[error("log sink (stderr): cannot duplicate the file descriptor: {0}")]
    Duplicate(#[source] std::io::Error),
    /// The writer thread could not be started.
    #[error("log writer thread: cannot start: {0}")]
    Thread(#[source] std::io::Error),
    /// A global subscriber was already installed.
    #[error("log subscriber: {0}")]
    Install(String),
}

/// How log lines are rendered (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with a timestamp.
    Text,
    /// One JSON object per line.
    Json,
    /// Text without a timestamp, each line prefixed with its syslog priority (`<6>`), for
    /// journald or any collector that stamps lines itself.
    Journald,
}

/// Whether text logs may use ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>).
pub fn use_color() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// One message for the writer thread.
enum Message {
    /// A formatted log line (or several, for a multi-line event).
    Line(Vec<u8>),
    /// Write everything queued before this, then acknowledge.
    Flush(mpsc::Sender<()>),
}

/// Counts a dropped line (queue full, or the sink failed).
fn count_dropped() {
    crate::metrics::metrics().log_lines_dropped.inc();
}

/// The `MakeWriter` handed to `tracing-subscriber`: every event becomes one queue message.
#[derive(Debug, Clone)]
struct QueueWriter {
    sender: SyncSender<Message>,
    journald: bool,
}

/// Collects one event's bytes and queues them when dropped.
struct LineWriter {
    sender: SyncSender<Message>,
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buffer);
        match self.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => count_dropped(),
        }
    }
}

/// The `<N>` prefix of sd-daemon(3) for a level.
fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sender: self.sender.clone(),
            buffer: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        let mut writer = self.make_writer();
        if self.journald {
            writer.buffer.extend_from_slice(priority(meta.level()));
        }
        writer
    }
}

/// Drains the queue into `sink`; a failed write drops that line (counted) and goes on.
fn drain(receiver: Receiver<Message>, mut sink: impl Write) {
    for message in receiver {
        match message {
            Message::Line(line) => {
                if sink.write_all(&line).is_err() {
                    count_dropped();
                }
            }
            Message::Flush(ack) => {
                let _ = sink.flush();
                let _ = ack.send(());
            }
        }
    }
}

/// Keeps the writer thread's queue; dropping it waits (at most one second) for the queued
/// lines to be written.
#[derive(Debug)]
pub struct LogGuard {
    sender: SyncSender<Message>,
}

impl LogGuard {
    /// Waits up to `timeout` for every line queued so far to be written; returns whether they
    /// were. Never blocks longer, whatever the sink does.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack, acked) = mpsc::channel();
        let mut message = Message::Flush(ack);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        acked.recv_timeout(left).is_ok()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.flush(EXIT_FLUSH);
    }
}

/// Installs the global subscriber (level from `RUST_LOG`, default `info`) writing through the
/// bounded queue to stderr, and a panic hook that logs panics through it too (the default hook
/// writes to stderr directly and could block, or fail, on a broken sink).
pub fn init(format: LogFormat) -> Result<LogGuard, LoggingError> {
    use std::os::fd::AsFd;
    let sink = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(LoggingError::Duplicate)?;
    let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || drain(receiver, sink))
        .map_err(LoggingError::Thread)?;
    let writer = QueueWriter {
        sender: sender.clone(),
        journald: format == LogFormat::Journald,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(use_color()).try_init(),
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Journald => builder.with_ansi(false).without_time().try_init(),
    };
    installed.map_err(|e| LoggingError::Install(e.to_string()))?;
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
    Ok(LogGuard { sender })
}

/// Writes `text` and a newline to stdout, ignoring errors: `println!` panics on a closed pipe
/// (`portcullis check-config … | head -1`).
pub fn stdout_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Writes `text` and a newline to stderr, ignoring errors (`eprintln!` panics on a closed pipe).
pub fn stderr_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails every write, like a closed pipe.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (sender, receiver) = mpsc::sync_channel(2);
        let writer = QueueWriter {
            sender,
            journald: false,
        };
        let before = crate::metrics::metrics().log_lines_dropped.get();
        for _ in 0..5 {
            let mut line = writer.make_writer();
            line.write_all(b"line\n").unwrap();
        }
        assert!(crate::metrics::metrics().log_lines_dropped.get() >= before + 3);
        assert_eq!(receiver.try_iter().count(), 2);
    }

    #[test]
    fn a_failing_sink_counts_and_keeps_draining_and_flush_never_hangs() {
        let (sender, receiver) = mpsc::sync_channel(8);
        let thread = std::thread::spawn(move || drain(receiver, Broken));
        let guard = LogGuard {
            sender: sender.clone(),
        };
        let before = crate::metrics::metrics().log_lines_dropped.get();
        sender.try_send(Message::Line(b"a\n".to_vec())).unwrap();
        sender.try_send(Message::Line(b"b\n".to_vec())).unwrap();
        assert!(guard.flush(Duration::from_secs(5)));
        assert!(crate::metrics::metrics().log_lines_dropped.get() >= before + 2);
        drop((guard, sender));
        thread.join().unwrap();
    }

    #[test]
    fn flush_gives_up_when_the_writer_is_stuck() {
        let (sender, _receiver) = mpsc::sync_channel(1);
        sender.try_send(Message::Line(b"x\n".to_vec())).unwrap();
        let guard = LogGuard { sender };
        let started = Instant::now();
        assert!(!guard.flush(Duration::from_millis(100)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn journald_lines_carry_the_priority() {
        let (sender, receiver) = mpsc::sync_channel(4);
        let writer = QueueWriter {
            sender,
            journald: true,
        };
        assert_eq!(priority(&Level::WARN), b"<4>");
        drop(writer.make_writer());
        assert!(receiver.try_recv().is_err(), "empty events are not queued");
    }
}
