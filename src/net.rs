//! Byte streams shared by both protocols and both sides: a TCP stream that is either still
//! plaintext or wrapped in TLS, plus a bounded line reader for handshakes done before a codec
//! takes over (backend greetings, STARTTLS/STLS negotiation).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection in one of its two phases: plaintext, or after a TLS handshake (either role).
///
/// A STARTTLS upgrade consumes the plaintext variant and yields the TLS one; whatever plaintext
/// was buffered next to the old stream is dropped with it.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP: before STARTTLS, or a listener/backend configured without TLS.
    Plain(TcpStream),
    /// TLS over TCP, server role (client connections) or client role (backend connections).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether TLS protects this stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Negotiated TLS version label (`TLSv1_3`), or `none`.
    pub fn tls_version(&self) -> &'static str {
        match self {
            Stream::Plain(_) => "none",
            Stream::Tls(tls) => match tls.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1_3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1_2",
                _ => "other",
            },
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Errors of [`LineReader`].
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed the connection before a full line arrived.
    #[error("connection closed")]
    Closed,
    /// A line exceeded the limit.
    #[error("line longer than {0} octets")]
    TooLong(usize),
    /// Socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads CRLF-terminated lines with a hard length limit. Used only for short handshakes; the
/// bytes it has read past the last returned line are available as [`LineReader::into_leftover`]
/// or are discarded with it (which is what a STARTTLS upgrade needs).
#[derive(Debug)]
pub struct LineReader {
    buffer: Vec<u8>,
    max_line: usize,
}

impl LineReader {
    /// A reader refusing lines longer than `max_line`.
    pub fn new(max_line: usize) -> LineReader {
        LineReader {
            buffer: Vec::new(),
            max_line,
        }
    }

    /// Reads the next line including its line ending.
    pub async fn read_line<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Vec<u8>, LineError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let rest = self.buffer.split_off(end + 1);
                return Ok(std::mem::replace(&mut self.buffer, rest));
            }
            if self.buffer.len() > self.max_line {
                return Err(LineError::TooLong(self.max_line));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(LineError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Bytes received after the last line returned.
    pub fn into_leftover(self) -> Vec<u8> {
        self.buffer
    }
}

/// Sets `TCP_NODELAY`: interactive protocols lose ~40 ms per round trip to Nagle + delayed ACK.
pub fn set_nodelay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_leftover_kept() {
        let mut input: &[u8] = b"* OK hi\r\na OK done\r\nextra";
        let mut reader = LineReader::new(1024);
        assert_eq!(reader.read_line(&mut input).await.unwrap(), b"* OK hi\r\n");
        assert_eq!(
            reader.read_line(&mut input).await.unwrap(),
            b"a OK done\r\n"
        );
        assert_eq!(reader.into_leftover(), b"extra");
    }

    #[tokio::test]
    async fn long_lines_are_refused() {
        let long = vec![b'x'; 10_000];
        let mut input: &[u8] = &long;
        let mut reader = LineReader::new(100);
        assert!(matches!(
            reader.read_line(&mut input).await,
            Err(LineError::TooLong(100))
        ));
    }
}
