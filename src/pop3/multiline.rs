//! Multi-line responses and dot-stuffing (RFC 1939 §3): a response is kept exactly as the
//! server sent it, so a clean message can be relayed byte for byte; [`unstuff`] gives the message
//! as stored for scanning and [`stuff`] turns a replacement back into wire form.

use bytes::Bytes;

/// A complete multi-line response, kept exactly as received (still dot-stuffed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiLine {
    raw: Bytes,
    status_len: usize,
    terminator_len: usize,
}

impl MultiLine {
    /// Builds a response from a status line (CRLF included) and an unstuffed body.
    pub fn from_parts(status_line: &[u8], body: &[u8]) -> MultiLine {
        let mut raw = status_line.to_vec();
        raw.extend_from_slice(&stuff(body));
        if needs_line_end(body) {
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b".\r\n");
        MultiLine {
            raw: Bytes::from(raw),
            status_len: status_line.len(),
            terminator_len: 3,
        }
    }

    /// Wraps raw bytes the framer delimited: `status_len` octets of status line, then the body,
    /// then a terminator line of `terminator_len` octets.
    pub(crate) fn from_raw(raw: Bytes, status_len: usize, terminator_len: usize) -> MultiLine {
        MultiLine {
            raw,
            status_len,
            terminator_len,
        }
    }

    /// Every byte as received: status line, stuffed body, terminator.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The `+OK ...` line, CRLF included.
    pub fn status_line(&self) -> &[u8] {
        &self.raw[..self.status_len]
    }

    /// The body between status line and terminator line, still dot-stuffed.
    pub fn stuffed_body(&self) -> &[u8] {
        &self.raw[self.status_len..self.raw.len() - self.terminator_len]
    }

    /// The body with dot-stuffing undone (for a message: its bytes as stored).
    pub fn body(&self) -> Vec<u8> {
        unstuff(self.stuffed_body())
    }
}

/// Whether [`MultiLine::from_parts`] ends `body` with a CRLF of its own (the last line of a
/// multi-line response must be complete before the terminator, RFC 1939 §3).
fn needs_line_end(body: &[u8]) -> bool {
    !body.is_empty() && !body.ends_with(b"\n")
}

/// The octets of the message a client receives when `body` is served with
/// [`MultiLine::from_parts`]: `body` plus the line end added to an incomplete last line, before
/// dot-stuffing — the size RFC 1939 §5 `LIST` and `STAT` report for it.
pub fn served_len(body: &[u8]) -> u64 {
    let added = if needs_line_end(body) { 2 } else { 0 };
    body.len() as u64 + added
}

/// Undoes dot-stuffing (RFC 1939 §3): removes the first `.` of every line that starts with one.
pub fn unstuff(stuffed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stuffed.len());
    let mut at_line_start = true;
    for &byte in stuffed {
        if !(at_line_start && byte == b'.') {
            out.push(byte);
        }
        at_line_start = byte == b'\n';
    }
    out
}

/// Applies dot-stuffing (RFC 1939 §3): doubles the `.` at the start of every line;
/// `unstuff(&stuff(x)) == x` for all `x`.
pub fn stuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 64 + 1);
    let mut at_line_start = true;
    for &byte in text {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    out
}
