//! Driving one client session through the proxy: sending rendered commands (waiting for
//! continuations and, where asked, tagged responses) and collecting what came back.

use crate::render::Rendered;
use crate::support::certs::TestCa;
use crate::support::raw::{self, LineClient, TlsStream};
use crate::READ_TIMEOUT;

/// What one session produced on the client side.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Every tagged status line, in arrival order: (tag, line).
    pub(crate) tagged: Vec<(String, String)>,
    /// Why the session ended early, if it did.
    pub(crate) broken: Option<String>,
    /// The final `zz NOOP` status.
    pub(crate) final_noop: Option<String>,
}

impl Outcome {
    fn answered(&self, tag: &str) -> bool {
        self.tagged.iter().any(|(t, _)| t == tag)
    }

    /// Whether the stream's login got its OK.
    pub(crate) fn logged_in(&self, commands: &[Rendered]) -> bool {
        commands.iter().filter(|c| c.login).any(|c| {
            let ok = format!("{} OK", c.tag);
            self.tagged.iter().any(|(_, line)| line.starts_with(&ok))
        })
    }
}

pub(crate) struct Session {
    client: LineClient<TlsStream>,
    outcome: Outcome,
    pending: Vec<u8>,
}

impl Session {
    pub(crate) fn new(port: u16, ca: &TestCa) -> Session {
        let mut client = raw::connect_tls(port, ca);
        client
            .get_mut()
            .sock
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let greeting = client.read_line();
        assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");
        Session {
            client,
            outcome: Outcome::default(),
            pending: Vec::new(),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.pending);
        let stream = self.client.get_mut();
        std::io::Write::write_all(stream, &data)
            .and_then(|()| std::io::Write::flush(stream))
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one response; `Ok(true)` for a continuation request.
    fn read_one(&mut self) -> Result<bool, String> {
        let response = match self.client.try_read_imap_response() {
            Ok(Some(response)) => response,
            Ok(None) => return Err("connection closed by the proxy".into()),
            Err(e) => return Err(format!("read: {e}")),
        };
        let text = response.text();
        let line = text.trim_end().to_string();
        if line.starts_with('+') {
            return Ok(true);
        }
        if line.starts_with("* BYE") {
            return Err(format!("proxy said {line:?}"));
        }
        if !line.starts_with('*') {
            let tag = line.split(' ').next().unwrap_or("").to_string();
            self.outcome.tagged.push((tag, line));
        }
        Ok(false)
    }

    fn wait_tagged(&mut self, tag: &str) -> Result<(), String> {
        self.flush()?;
        while !self.outcome.answered(tag) {
            self.read_one()?;
        }
        Ok(())
    }

    fn send(&mut self, command: &Rendered) -> Result<(), String> {
        self.pending.extend_from_slice(&command.chunks[0]);
        for chunk in &command.chunks[1..] {
            self.flush()?;
            loop {
                if self.outcome.answered(&command.tag) {
                    // Refused before the continuation: the rest is not sent.
                    return Ok(());
                }
                if self.read_one()? {
                    break;
                }
            }
            self.pending.extend_from_slice(chunk);
        }
        if command.wait {
            self.wait_tagged(&command.tag)?;
        }
        Ok(())
    }

    pub(crate) fn run(mut self, commands: &[Rendered]) -> Outcome {
        let result = (|| {
            for command in commands {
                self.send(command)?;
            }
            self.pending.extend_from_slice(b"zz NOOP\r\n");
            self.wait_tagged("zz")?;
            Ok::<(), String>(())
        })();
        self.outcome.final_noop = self
            .outcome
            .tagged
            .iter()
            .find(|(t, _)| t == "zz")
            .map(|(_, line)| line.clone());
        match result {
            Ok(()) => {
                // Best effort: end the backend session.
                self.pending.extend_from_slice(b"zq LOGOUT\r\n");
                let _ = self.wait_tagged("zq");
            }
            Err(reason) => self.outcome.broken = Some(reason),
        }
        self.outcome
    }
}
