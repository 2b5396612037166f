//! RETR/TOP scanning (RFC 1939 §7; RFC 3206 `[SYS/TEMP]`): every message a POP3 client
//! retrieves is scanned before any byte of it is relayed.
//!
//! * RETR: the whole message is scanned; a clean one is relayed byte for byte, a blocked one is
//!   replaced (dot-stuffed anew), a temporary failure is answered `-ERR [SYS/TEMP]` instead.
//! * `TOP n m` is forwarded as `RETR n`, so the verdict covers the whole message; the client then
//!   gets the headers, the blank line and the first m body lines of the original or of the
//!   replacement. That includes `TOP n 0` (issue 9): a header is content too (clamd finds EICAR
//!   in a header line) and a message without a blank line is *all* header, so it is never passed
//!   through unscanned.

use std::net::SocketAddr;

use bytes::Bytes;

use super::codec::MultiLine;
use super::grammar::Command;
use crate::scan::{Disposition, MessageRef, Protocol};

/// What a message-bearing command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRequest {
    /// `RETR n`.
    Retr(u32),
    /// `TOP n m` (m may be 0), forwarded as `RETR n`.
    Top(u32, u64),
}

impl MessageRequest {
    /// The request a parsed command makes; `None` for every command that retrieves no message.
    pub fn of(command: &Command) -> Option<MessageRequest> {
        match *command {
            Command::Retr(n) => Some(MessageRequest::Retr(n)),
            Command::Top(n, lines) => Some(MessageRequest::Top(n, u64::from(lines))),
            _ => None,
        }
    }

    /// The command the backend gets: always `RETR n`, so the verdict covers the whole message.
    pub fn forwarded(self) -> Command {
        match self {
            MessageRequest::Retr(n) | MessageRequest::Top(n, _) => Command::Retr(n),
        }
    }
}

impl MessageRequest {
    /// The message number asked for.
    pub fn msgno(self) -> u32 {
        match self {
            MessageRequest::Retr(n) | MessageRequest::Top(n, _) => n,
        }
    }

    /// The reference the scanner logs and quarantines the message under; `backend` is the
    /// `[[backend]]` logged in to.
    pub fn reference(
        self,
        client_addr: SocketAddr,
        user: Option<String>,
        backend: Option<String>,
    ) -> MessageRef {
        MessageRef {
            client_addr,
            user,
            protocol: Protocol::Pop3,
            mailbox: None,
            uidvalidity: None,
            uid: None,
            msgno: Some(self.msgno()),
            backend,
        }
    }
}

/// What the client gets for a scanned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The complete answer: the original response, a dot-stuffed replacement, a TOP cut of
    /// either, or `-ERR [SYS/TEMP]`.
    pub bytes: Bytes,
    /// Whether the message was blocked, modified or withheld (the `blocked` statistic).
    pub blocked: bool,
}

/// The bytes the client gets for a complete RETR `response` answering `request`, whose
/// unstuffed `message` the scanner judged as `disposition`.
pub fn serve(
    response: &MultiLine,
    message: Bytes,
    request: MessageRequest,
    disposition: &Disposition,
) -> Served {
    let served = match disposition {
        Disposition::Deliver {
            modified: false, ..
        } => None,
        Disposition::Deliver { bytes, .. } | Disposition::Replace { bytes, .. } => {
            Some(bytes.clone())
        }
        Disposition::TempFail { reason } => {
            tracing::info!(%reason, "RETR withheld: message could not be scanned");
            return Served {
                bytes: Bytes::from_static(
                    b"-ERR [SYS/TEMP] message could not be scanned now; try again later\r\n",
                ),
                blocked: true,
            };
        }
    };
    let blocked = served.is_some();
    let bytes = match (request, served) {
        (MessageRequest::Retr(_), None) => response.raw().clone(),
        (MessageRequest::Retr(_), Some(bytes)) => {
            let status = format!("+OK {} octets\r\n", super::multiline::served_len(&bytes));
            MultiLine::from_parts(status.as_bytes(), &bytes)
                .raw()
                .clone()
        }
        (MessageRequest::Top(_, lines), served) => {
            let source = served.unwrap_or(message);
            MultiLine::from_parts(b"+OK\r\n", &top(&source, lines))
                .raw()
                .clone()
        }
    };
    Served { bytes, blocked }
}

/// The headers, the blank line and the first `lines` body lines of `message` (RFC 1939 TOP).
pub fn top(message: &[u8], lines: u64) -> Vec<u8> {
    let body_start = header_end(message);
    let mut end = body_start;
    let mut remaining = lines;
    while remaining > 0 && end < message.len() {
        end = match message[end..].iter().position(|&b| b == b'\n') {
            Some(offset) => end + offset + 1,
            None => message.len(),
        };
        remaining -= 1;
    }
    message[..end].to_vec()
}

/// Offset just after the blank line ending the header (or the whole message if none).
fn header_end(message: &[u8]) -> usize {
    let crlf = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = message.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => message.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let retr = MessageRequest::of(&Command::Retr(3));
        assert_eq!(retr, Some(MessageRequest::Retr(3)));
        let top = MessageRequest::of(&Command::Top(3, 5)).unwrap();
        assert_eq!(top, MessageRequest::Top(3, 5));
        assert_eq!(top.forwarded().to_line(), b"RETR 3\r\n");
        // TOP n 0 is scanned like any other retrieval (issue 9).
        let headers = MessageRequest::of(&Command::Top(3, 0)).unwrap();
        assert_eq!(headers.forwarded().to_line(), b"RETR 3\r\n");
        assert_eq!(MessageRequest::of(&Command::Dele(3)), None);
    }

    #[test]
    fn top_takes_headers_and_lines() {
        let message = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(message, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(message, 9), message);
        assert_eq!(top(b"A: 1\r\n", 3), b"A: 1\r\n");
        assert_eq!(top(message, 0), b"A: 1\r\nB: 2\r\n\r\n");
    }
}
