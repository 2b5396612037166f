//! Tiny blocking protocol clients for tests: raw lines, IMAP responses with literals
//! (RFC 3501 §4.3), POP3 multi-line responses with dot-stuffing (RFC 1939 §3), plain or TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::certs::TestCa;

/// A TLS client stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Read timeout applied to every connection made here.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects to 127.0.0.1:`port` with [`IO_TIMEOUT`].
pub fn connect(port: u16) -> LineClient<TcpStream> {
    LineClient::new(tcp(port))
}

/// Connects to 127.0.0.1:`port` with implicit TLS, verifying `localhost` against `ca`.
pub fn connect_tls(port: u16, ca: &TestCa) -> LineClient<TlsStream> {
    LineClient::new(tls_over(tcp(port), ca))
}

/// Wraps an established TCP stream in TLS (for STARTTLS/STLS after the server's OK).
pub fn tls_over(tcp: TcpStream, ca: &TestCa) -> TlsStream {
    let name = ServerName::try_from("localhost").expect("server name");
    let connection = ClientConnection::new(ca.client_config(), name).expect("TLS client");
    StreamOwned::new(connection, tcp)
}

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// One IMAP response: the full text (literals inlined) and the literals separately.
#[derive(Debug, Clone, Default)]
pub struct ImapResponse {
    /// The response bytes exactly as received, including CRLFs and literal contents.
    pub raw: Vec<u8>,
    /// The contents of each `{n}` / `~{n}` literal, in order.
    pub literals: Vec<Vec<u8>>,
}

impl ImapResponse {
    /// The raw bytes as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// A blocking line-oriented client over any stream.
pub struct LineClient<S: Read + Write> {
    reader: BufReader<S>,
}

impl<S: Read + Write> LineClient<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        LineClient {
            reader: BufReader::new(stream),
        }
    }

    /// Reads one line including its line ending; panics on EOF or timeout.
    pub fn read_raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let read = self.reader.read_until(b'\n', &mut line).expect("read line");
        assert!(read > 0, "connection closed while waiting for a line");
        line
    }

    /// Reads one line without its CRLF, as (lossy) text.
    pub fn read_line(&mut self) -> String {
        let line = self.read_raw_line();
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }

    /// Reads exactly `count` bytes.
    pub fn read_exact(&mut self, count: usize) -> Vec<u8> {
        let mut data = vec![0; count];
        self.reader.read_exact(&mut data).expect("read_exact");
        data
    }

    /// Sends `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, data: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(data).expect("write");
        stream.flush().expect("flush");
    }

    /// Reads one IMAP response (a line plus any literals it announces).
    pub fn read_imap_response(&mut self) -> ImapResponse {
        let mut response = ImapResponse::default();
        loop {
            let line = self.read_raw_line();
            response.raw.extend_from_slice(&line);
            let Some(size) = literal_size(&line) else {
                return response;
            };
            let literal = self.read_exact(size);
            response.raw.extend_from_slice(&literal);
            response.literals.push(literal);
        }
    }

    /// Sends `tag command` and collects responses up to and including the tagged one.
    /// Returns (untagged/continuation responses, tagged status line without CRLF).
    pub fn imap(&mut self, tag: &str, command: &str) -> (Vec<ImapResponse>, String) {
        self.send_line(&format!("{tag} {command}"));
        let prefix = format!("{tag} ");
        let mut untagged = Vec::new();
        loop {
            let response = self.read_imap_response();
            if response.raw.starts_with(prefix.as_bytes()) {
                let status = response.text().trim_end().to_string();
                return (untagged, status);
            }
            untagged.push(response);
        }
    }

    /// Sends a POP3 command and returns the status line (without CRLF).
    pub fn pop3(&mut self, command: &str) -> String {
        self.send_line(command);
        self.read_line()
    }

    /// Reads a POP3 multi-line body up to `.CRLF`, undoing dot-stuffing; CRLFs are kept.
    pub fn read_pop3_multiline(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.read_raw_line();
            if line == b".\r\n" {
                return body;
            }
            let unstuffed = if line.starts_with(b".") {
                &line[1..]
            } else {
                &line[..]
            };
            body.extend_from_slice(unstuffed);
        }
    }

    /// Gives the stream back (bytes already buffered are lost; use after a final status line).
    pub fn into_inner(self) -> S {
        self.reader.into_inner()
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        self.reader.get_mut()
    }
}

/// The size of a literal announced at the end of an IMAP line (`{n}`, `{n+}`, `~{n}`).
pub fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl<S: Read + Write> LineClient<S> {
    /// Like [`LineClient::read_imap_response`], but `Ok(None)` at EOF and errors (timeouts,
    /// resets) returned instead of panicking — for tests that report a closed session as a
    /// property failure.
    pub fn try_read_imap_response(&mut self) -> std::io::Result<Option<ImapResponse>> {
        let mut response = ImapResponse::default();
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(None);
            }
            response.raw.extend_from_slice(&line);
            let Some(size) = literal_size(&line) else {
                return Ok(Some(response));
            };
            let mut literal = vec![0; size];
            self.reader.read_exact(&mut literal)?;
            response.raw.extend_from_slice(&literal);
            response.literals.push(literal);
        }
    }
}

/// The literal a client command line announces, the way a server frames it: `{n}`, `{n+}` or
/// `~{n}` at the very end of the line (before CRLF) and outside any quoted string (a `"{12}`
/// inside an unterminated quote announces nothing). Returns `(n, synchronizing)`.
pub fn announced_literal(line: &[u8]) -> Option<(usize, bool)> {
    let body = line.strip_suffix(b"\r\n")?;
    let mut quoted = false;
    let mut escaped = false;
    for &b in body {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    let inner = body.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let (digits, sync) = match digits.strip_suffix(b"+") {
        Some(digits) => (digits, false),
        None => (digits, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, sync))
}
