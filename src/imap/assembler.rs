//! Assembles complete client commands from framing events (the step between the fragmentizer
//! and the grammar, as in imap-next): a command is its first line, every literal it announces
//! and the line text after each literal, up to a line that announces nothing (RFC 9051 §2.2.1,
//! §4.3). Nothing of a command is forwarded until it is complete and parsed, so the proxy
//! answers synchronizing literals with its own `+` (RFC 9051 §7.5) and the backend never
//! decides where a command ends.
//!
//! Sans-I/O: events in, [`Assembled`] out. The whole command is bounded by `max_size`.

use bytes::Bytes;

use super::codec::Event;

/// What the session does after one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// More events are needed; nothing to send.
    Pending,
    /// The client waits for `+` before sending the synchronizing literal just announced.
    SendContinuation,
    /// A complete command, exactly as received.
    Complete(Vec<u8>),
    /// The client announced a synchronizing literal over the limit: the command ends here and
    /// is answered `NO [TOOBIG]` (RFC 9051 §7.1; RFC 7888 §4).
    LiteralTooLarge {
        /// The announcing line (its tag names the command).
        line: Bytes,
        /// The announced size.
        length: u64,
    },
}

/// The command was larger in total than the limit (several literals together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client command larger than {0} octets")]
pub struct CommandTooLarge(pub u64);

/// Collects the fragments of the client command in progress.
#[derive(Debug)]
pub struct Assembler {
    buffer: Vec<u8>,
    max_size: u64,
}

impl Assembler {
    /// An assembler for commands of at most `max_size` octets in total.
    pub fn new(max_size: u64) -> Assembler {
        Assembler {
            buffer: Vec::new(),
            max_size,
        }
    }

    /// Whether no command is partly assembled.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The bytes of the command received so far.
    pub fn partial(&self) -> &[u8] {
        &self.buffer
    }

    /// Drops a partly assembled command (after STARTTLS, RFC 2595 §3.1).
    pub fn clear(&mut self) {
        self.buffer = Vec::new();
    }

    /// Adds one framing event.
    pub fn push(&mut self, event: Event) -> Result<Assembled, CommandTooLarge> {
        let (bytes, outcome) = match event {
            Event::LiteralRejected { bytes, length } => {
                self.clear();
                return Ok(Assembled::LiteralTooLarge {
                    line: bytes,
                    length,
                });
            }
            Event::Line {
                bytes,
                literal: None,
                ..
            } => (bytes, None),
            Event::Line {
                bytes,
                literal: Some(announcement),
                ..
            } => {
                let step = match announcement.synchronizing {
                    true => Assembled::SendContinuation,
                    false => Assembled::Pending,
                };
                (bytes, Some(step))
            }
            Event::Literal(bytes) => (bytes, Some(Assembled::Pending)),
        };
        let total = self.buffer.len() as u64 + bytes.len() as u64;
        if total > self.max_size {
            self.clear();
            return Err(CommandTooLarge(self.max_size));
        }
        self.buffer.extend_from_slice(&bytes);
        Ok(match outcome {
            Some(step) => step,
            None => Assembled::Complete(std::mem::take(&mut self.buffer)),
        })
    }
}

/// Why a backend response could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The backend's bytes broke the framing.
    #[error("{0}")]
    Frame(#[from] super::codec::FrameError),
    /// The response was larger in total than the limit.
    #[error("response too large")]
    TooLarge,
}

/// Collects the fragments of backend responses (RFC 9051 §7: a line, its literals and the line
/// text after each) until one is complete; bounded in total size.
#[derive(Debug)]
pub struct ResponseAssembler {
    events: Vec<Event>,
    size: u64,
    limit: u64,
}

impl ResponseAssembler {
    /// An assembler for responses of at most `limit` octets in total.
    pub fn new(limit: u64) -> ResponseAssembler {
        ResponseAssembler {
            events: Vec::new(),
            size: 0,
            limit,
        }
    }

    /// Whether no response is partly assembled.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Octets of the response partly assembled.
    pub fn held(&self) -> u64 {
        self.size
    }

    /// The next complete response from the bytes `framer` holds, if any.
    pub fn next(
        &mut self,
        framer: &mut super::codec::Framer,
    ) -> Result<Option<Vec<Event>>, ResponseError> {
        while let Some(event) = framer.next_event()? {
            let complete = matches!(event, Event::Line { literal: None, .. });
            self.size += event.bytes().len() as u64;
            if self.size > self.limit {
                return Err(ResponseError::TooLarge);
            }
            self.events.push(event);
            if complete {
                self.size = 0;
                return Ok(Some(std::mem::take(&mut self.events)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::codec::{Framer, Limits, Role};

    /// Feeds `script` in chunks of `chunk` octets and collects every outcome.
    fn run(script: &[u8], chunk: usize) -> Vec<Assembled> {
        let mut framer = Framer::new(Role::Client, Limits::default());
        let mut assembler = Assembler::new(1024);
        let mut out = Vec::new();
        for piece in script.chunks(chunk) {
            framer.feed(piece);
            while let Some(event) = framer.next_event().expect("frames") {
                match assembler.push(event).expect("fits") {
                    Assembled::Pending => {}
                    other => out.push(other),
                }
            }
        }
        out
    }

    #[test]
    fn literals_are_part_of_their_command_at_every_chunk_size() {
        let script = b"a LOGIN {5}\r\nalice {2+}\r\npw\r\nb NOOP\r\n";
        for chunk in 1..=512 {
            assert_eq!(
                run(script, chunk),
                vec![
                    Assembled::SendContinuation,
                    Assembled::Complete(b"a LOGIN {5}\r\nalice {2+}\r\npw\r\n".to_vec()),
                    Assembled::Complete(b"b NOOP\r\n".to_vec()),
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn a_literal_inside_quotes_is_not_announced() {
        let script = b"a NOOP \"{5}\r\nb SELECT x\r\n";
        for chunk in 1..=512 {
            assert_eq!(
                run(script, chunk),
                vec![
                    Assembled::Complete(b"a NOOP \"{5}\r\n".to_vec()),
                    Assembled::Complete(b"b SELECT x\r\n".to_vec()),
                ]
            );
        }
    }

    #[test]
    fn the_total_is_bounded() {
        let mut assembler = Assembler::new(16);
        let line = Event::Line {
            bytes: Bytes::from_static(b"a APPEND x {10+}\r\n"),
            first: true,
            literal: None,
        };
        assert_eq!(assembler.push(line), Err(CommandTooLarge(16)));
        assert!(assembler.is_empty());
    }

    #[test]
    fn responses_are_assembled_whole_and_bounded_at_every_chunk_size() {
        let script = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\na OK done\r\n";
        for chunk in 1..=512 {
            let mut framer = Framer::new(Role::Server, Limits::default());
            let mut responses = ResponseAssembler::new(1024);
            let mut out = Vec::new();
            for piece in script.chunks(chunk) {
                framer.feed(piece);
                while let Some(events) = responses.next(&mut framer).expect("fits") {
                    out.push(
                        events
                            .iter()
                            .flat_map(|e| e.bytes().to_vec())
                            .collect::<Vec<u8>>(),
                    );
                }
            }
            assert_eq!(
                out,
                vec![
                    b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n".to_vec(),
                    b"a OK done\r\n".to_vec()
                ],
                "chunk size {chunk}"
            );
            assert!(responses.is_empty());
        }
        let mut framer = Framer::new(Role::Server, Limits::default());
        framer.feed(b"* 1 FETCH (BODY[] {40}\r\n0123456789012345678901234567890123456789)\r\n");
        let mut responses = ResponseAssembler::new(32);
        assert_eq!(responses.next(&mut framer), Err(ResponseError::TooLarge));
    }
}
