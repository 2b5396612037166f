//! clamd engine: INSTREAM scans over TCP or a unix socket via `clamav-client`, with failover
//! between endpoints, connect and scan timeouts, our own reply parsing and signature-version
//! polling.
//!
//! clamav-client has no timeouts and its `clean()` cannot tell `ERROR` replies from `FOUND`, so we
//! connect ourselves (under `connect_timeout`), hand the connected stream to the crate, wrap the
//! scan in `tokio::time::timeout` and parse the reply into OK / FOUND / error. Anything that is
//! not exactly `stream: OK` is never treated as clean.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use clamav_client::tokio::{self as clam, TransportProtocol};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

use super::config::ClamdEndpoint;
use super::verdict::ScanErrorCause;

/// The engine name reported in verdicts.
pub const ENGINE_NAME: &str = "clamd";

/// Outcome of one scan by an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOutcome {
    /// `stream: OK`.
    Clean,
    /// `stream: SIGNATURE FOUND`.
    Found(String),
    /// Anything else.
    Error(ScanErrorCause),
}

/// Parses a clamd INSTREAM reply (`stream: OK`, `stream: Sig FOUND`, `... ERROR`).
pub fn parse_reply(reply: &[u8]) -> EngineOutcome {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r', ' ']);
    let body = text.strip_prefix("stream: ").unwrap_or(text);
    if text == "stream: OK" {
        return EngineOutcome::Clean;
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        if text.starts_with("stream: ") && !signature.is_empty() && !signature.contains('\0') {
            return EngineOutcome::Found(signature.to_string());
        }
    }
    if text.contains("size limit exceeded") {
        return EngineOutcome::Error(ScanErrorCause::SizeLimit);
    }
    let shown: String = text.chars().take(200).collect();
    EngineOutcome::Error(ScanErrorCause::BadReply(shown))
}

/// A transport that hands clamav-client a stream we already connected (under our timeout).
struct Connected<S>(Mutex<Option<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TransportProtocol for Connected<S> {
    type Stream = S;

    fn connect(&self) -> impl std::future::Future<Output = io::Result<S>> {
        let stream = self.0.lock().ok().and_then(|mut slot| slot.take());
        async move { stream.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "used")) }
    }
}

/// What a request to clamd does once connected.
#[derive(Clone, Copy)]
enum Request<'a> {
    Scan(&'a [u8], usize),
    Ping,
    Version,
}

/// Shared record of a write that failed because clamd closed the connection.
type WriteFailure = Arc<Mutex<Option<String>>>;

/// A stream that swallows writes after clamd closed its side (it does so after replying
/// `INSTREAM size limit exceeded. ERROR`), so that the reply it sent can still be read.
struct Lenient<S> {
    inner: S,
    failed: WriteFailure,
}

impl<S> Lenient<S> {
    fn has_failed(&self) -> bool {
        self.failed.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn record(&self, error: &io::Error) {
        if let Ok(mut slot) = self.failed.lock() {
            slot.get_or_insert_with(|| error.to_string());
        }
    }
}

fn peer_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Lenient<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lenient<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.has_failed() {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.record(&e);
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_failed() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.record(&e);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `req` on a connected stream; the reply and, if writing failed, why.
async fn run_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    req: Request<'_>,
) -> io::Result<(Vec<u8>, Option<String>)> {
    let failed = WriteFailure::default();
    let lenient = Lenient {
        inner: stream,
        failed: failed.clone(),
    };
    let conn = Connected(Mutex::new(Some(lenient)));
    let reply = match req {
        Request::Scan(data, chunk) => clam::scan_buffer(data, &conn, Some(chunk)).await,
        Request::Ping => clam::ping(&conn).await,
        Request::Version => clam::get_version(&conn).await,
    };
    let write_failure = failed.lock().ok().and_then(|mut f| f.take());
    match (reply, write_failure) {
        (Ok(reply), failure) => Ok((reply, failure)),
        (Err(_), Some(failure)) => Err(io::Error::other(failure)),
        (Err(e), None) => Err(e),
    }
}

/// The clamd engine: endpoints tried in order, with timeouts.
#[derive(Debug, Clone)]
pub struct ClamdEngine {
    endpoints: Vec<ClamdEndpoint>,
    connect_timeout: Duration,
    scan_timeout: Duration,
    chunk_size: usize,
}

/// A connected stream to one endpoint.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ClamdEngine {
    /// Creates an engine; nothing is connected yet.
    pub fn new(
        endpoints: Vec<ClamdEndpoint>,
        connect_timeout: Duration,
        scan_timeout: Duration,
        chunk_size: usize,
    ) -> ClamdEngine {
        ClamdEngine {
            endpoints,
            connect_timeout,
            scan_timeout,
            chunk_size: chunk_size.max(1),
        }
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[ClamdEndpoint] {
        &self.endpoints
    }

    async fn connect_one(&self, endpoint: &ClamdEndpoint) -> Result<Stream, ScanErrorCause> {
        let attempt = async {
            match endpoint {
                ClamdEndpoint::Tcp(addr) => {
                    TcpStream::connect(addr.as_str()).await.map(Stream::Tcp)
                }
                ClamdEndpoint::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
            }
        };
        match timeout(self.connect_timeout, attempt).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => {
                tracing::warn!(%endpoint, error = %e, "clamd connect failed");
                Err(ScanErrorCause::ScannerUnavailable)
            }
            Err(_) => {
                tracing::warn!(%endpoint, "clamd connect timed out");
                Err(ScanErrorCause::ScannerUnavailable)
            }
        }
    }

    /// Connects to the first reachable endpoint (failover in order) and runs `req` on it under
    /// `limit`. Failures after a connection was made are not retried elsewhere.
    async fn request(&self, req: Request<'_>, limit: Duration) -> Result<Vec<u8>, ScanErrorCause> {
        for endpoint in &self.endpoints {
            let Ok(stream) = self.connect_one(endpoint).await else {
                continue;
            };
            let work = async {
                match stream {
                    Stream::Tcp(s) => run_request(s, req).await,
                    Stream::Unix(s) => run_request(s, req).await,
                }
            };
            return match timeout(limit, work).await {
                // clamd closed while we were still sending: only its own error reply counts
                Ok(Ok((reply, Some(failure))))
                    if reply.is_empty() || parse_reply(&reply) == EngineOutcome::Clean =>
                {
                    Err(ScanErrorCause::Io(failure))
                }
                Ok(Ok((reply, _))) => Ok(reply),
                Ok(Err(e)) => Err(ScanErrorCause::Io(e.to_string())),
                Err(_) => Err(ScanErrorCause::Timeout),
            };
        }
        Err(ScanErrorCause::ScannerUnavailable)
    }

    /// Scans `data` with INSTREAM.
    pub async fn scan(&self, data: &[u8]) -> EngineOutcome {
        match self
            .request(Request::Scan(data, self.chunk_size), self.scan_timeout)
            .await
        {
            Ok(reply) => parse_reply(&reply),
            Err(cause) => EngineOutcome::Error(cause),
        }
    }

    /// PINGs every endpoint; Ok if at least one answers PONG.
    pub async fn ping(&self) -> Result<(), ScanErrorCause> {
        let mut last = ScanErrorCause::ScannerUnavailable;
        for endpoint in &self.endpoints {
            let single = ClamdEngine {
                endpoints: vec![endpoint.clone()],
                ..self.clone()
            };
            match single.request(Request::Ping, self.connect_timeout).await {
                Ok(reply) if reply.as_slice() == clamav_client::PONG => return Ok(()),
                Ok(reply) => {
                    last = ScanErrorCause::BadReply(String::from_utf8_lossy(&reply).into())
                }
                Err(cause) => last = cause,
            }
        }
        Err(last)
    }

    /// The VERSION string of the first reachable endpoint (`ClamAV 1.4.6/27000/date`).
    pub async fn version(&self) -> Result<String, ScanErrorCause> {
        let reply = self.request(Request::Version, self.connect_timeout).await?;
        let text = String::from_utf8_lossy(&reply);
        let text = text.trim_end_matches(['\0', '\n', '\r']).to_string();
        match text.starts_with("ClamAV ") {
            true => Ok(text),
            false => Err(ScanErrorCause::BadReply(text.chars().take(200).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), EngineOutcome::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature FOUND\0"),
            EngineOutcome::Found("Eicar-Test-Signature".into())
        );
        assert_eq!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            EngineOutcome::Error(ScanErrorCause::SizeLimit)
        );
        assert!(matches!(parse_reply(b""), EngineOutcome::Error(_)));
        assert!(matches!(
            parse_reply(b"stream: OK FOUND ERROR"),
            EngineOutcome::Error(_)
        ));
        assert!(matches!(
            parse_reply(b"stream: OKAY"),
            EngineOutcome::Error(_)
        ));
    }

    #[tokio::test]
    async fn no_endpoint_reachable() {
        let engine = ClamdEngine::new(
            vec![ClamdEndpoint::Unix("/nonexistent/clamd.sock".into())],
            Duration::from_millis(200),
            Duration::from_secs(1),
            65536,
        );
        assert_eq!(
            engine.scan(b"x").await,
            EngineOutcome::Error(ScanErrorCause::ScannerUnavailable)
        );
        assert!(engine.ping().await.is_err());
    }
}
