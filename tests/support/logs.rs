//! Capturing the in-process proxy's log lines: a sink the global `tracing` subscriber writes to,
//! read back as text by tests that check what is (and is not) logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything the global subscriber wrote since [`capture`].
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log sink").extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// The captured lines.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log sink")).into_owned()
    }
}

/// Installs the process-wide subscriber at `level`, without colours, writing to the returned
/// sink (once per test binary).
pub fn capture(level: tracing::Level) -> CapturedLog {
    let captured = CapturedLog::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    captured
}
