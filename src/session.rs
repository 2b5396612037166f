//! Pieces every protocol session shares: errors that name the failing side, how a session
//! ended, the STARTTLS/STLS upgrade of a client stream, log redaction and the session summary.

mod input;
mod pieces;
mod redacted;

pub use input::{next_input, BudgetWait, Input, Relay, Wanted};
pub use pieces::write_client_pieces;
pub use redacted::Redacted;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::BackendError;
use crate::context::SessionContext;
use crate::metrics::{ByteDirection, Limit, LoginOutcome, SessionEndLabel};
use crate::net::Stream;

/// Which party a failure is attributed to (also a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The mail client.
    Client,
    /// The legacy server.
    Backend,
}

impl Side {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading from or writing to the client failed.
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    /// Reading from or writing to the backend failed.
    #[error("backend connection: {0}")]
    BackendIo(std::io::Error),
    /// The client broke the protocol or a limit.
    #[error("client protocol violation: {0}")]
    ClientProtocol(String),
    /// The backend broke the protocol or a limit.
    #[error("backend protocol violation: {0}")]
    BackendProtocol(String),
    /// The backend could not be reached or set up.
    #[error(transparent)]
    Connect(#[from] BackendError),
    /// The client's TLS handshake after STARTTLS/STLS failed.
    #[error("client TLS handshake: {0}")]
    ClientTls(std::io::Error),
    /// The session waited too long for the memory budget ([`crate::budget`]).
    #[error(transparent)]
    Memory(#[from] crate::budget::BudgetError),
}

impl SessionError {
    /// The side at fault.
    pub fn side(&self) -> Side {
        match self {
            // The proxy declined to buffer more for the client's session, as a connection
            // cap declines a connection: counted against the client side.
            SessionError::ClientIo(_)
            | SessionError::ClientProtocol(_)
            | SessionError::ClientTls(_)
            | SessionError::Memory(_) => Side::Client,
            SessionError::BackendIo(_)
            | SessionError::BackendProtocol(_)
            | SessionError::Connect(_) => Side::Backend,
        }
    }
}

/// How a session ended (the `end` label of the session summary).
#[derive(Debug)]
pub enum SessionEnd {
    /// The client logged out / quit.
    Logout,
    /// The client closed the connection.
    ClientClosed,
    /// The backend closed the connection.
    BackendClosed,
    /// The process is shutting down.
    Shutdown,
    /// Pre-login or idle timeout.
    Timeout,
    /// A failure; see the error for the side.
    Error(SessionError),
}

impl SessionEnd {
    /// The `end` label of `sessions_total` (also logged as `end`).
    pub fn label(&self) -> SessionEndLabel {
        match self {
            SessionEnd::Logout => SessionEndLabel::Logout,
            SessionEnd::ClientClosed => SessionEndLabel::ClientClosed,
            SessionEnd::BackendClosed => SessionEndLabel::BackendClosed,
            SessionEnd::Shutdown => SessionEndLabel::Shutdown,
            SessionEnd::Timeout => SessionEndLabel::Timeout,
            SessionEnd::Error(_) => SessionEndLabel::Error,
        }
    }
}

impl From<SessionError> for SessionEnd {
    fn from(error: SessionError) -> Self {
        SessionEnd::Error(error)
    }
}

/// What a session core counted since its shell last asked (`take_tally` of the IMAP relay and
/// the POP3 transaction core); the shell adds it to the session's [`SessionStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Octets forwarded client → backend.
    pub bytes_up: u64,
    /// Octets relayed backend → client (the proxy's own answers are not counted).
    pub bytes_down: u64,
    /// Messages scanned.
    pub scanned: u64,
    /// Messages blocked, modified or withheld by a scan.
    pub blocked: u64,
}

/// Counters kept per session for the summary line.
#[derive(Debug)]
pub struct SessionStats {
    /// When the connection was accepted.
    pub started: Instant,
    /// Octets relayed client → backend.
    pub bytes_up: u64,
    /// Octets relayed backend → client.
    pub bytes_down: u64,
    /// The login name once known.
    pub user: Option<String>,
    /// The backend the session was relayed to once logged in (logged as `route`).
    pub route: Option<String>,
    /// Messages scanned.
    pub scanned: u64,
    /// Messages blocked or withheld.
    pub blocked: u64,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            started: Instant::now(),
            bytes_up: 0,
            bytes_down: 0,
            user: None,
            route: None,
            scanned: 0,
            blocked: 0,
        }
    }
}

impl SessionStats {
    /// Adds what a session core counted.
    pub fn add(&mut self, tally: Tally) {
        self.bytes_up += tally.bytes_up;
        self.bytes_down += tally.bytes_down;
        self.scanned += tally.scanned;
        self.blocked += tally.blocked;
    }

    /// Records the user on the session span and in the summary.
    pub fn set_user(&mut self, user: String) {
        tracing::Span::current().record("user", user.as_str());
        self.user = Some(user);
    }

    /// Logs the one summary line of a finished session and counts it in the metrics.
    pub fn log_summary(&self, context: &SessionContext, end: &SessionEnd) {
        let duration: Duration = self.started.elapsed();
        let user = self.user.as_deref().unwrap_or("-");
        let route = self.route.as_deref().unwrap_or("-");
        let protocol = context.listener.protocol().as_str();
        let metrics = crate::metrics::metrics();
        let listener = context.listener.name();
        metrics
            .bytes
            .with_label_values(&[listener, ByteDirection::ClientToBackend.as_str()])
            .inc_by(self.bytes_up);
        metrics
            .bytes
            .with_label_values(&[listener, ByteDirection::BackendToClient.as_str()])
            .inc_by(self.bytes_down);
        metrics
            .sessions
            .with_label_values(&[listener, protocol, end.label().as_str()])
            .inc();
        match end {
            SessionEnd::Error(error) => tracing::info!(
                peer = %context.peer, listener = context.listener.name(), protocol, user, route,
                bytes_up = self.bytes_up, bytes_down = self.bytes_down, duration_ms = duration.as_millis() as u64,
                scanned = self.scanned, blocked = self.blocked, end = end.label().as_str(), side = error.side().as_str(),
                %error, "session closed"
            ),
            _ => tracing::info!(
                peer = %context.peer, listener = context.listener.name(), protocol, user, route,
                bytes_up = self.bytes_up, bytes_down = self.bytes_down, duration_ms = duration.as_millis() as u64,
                scanned = self.scanned, blocked = self.blocked, end = end.label().as_str(), "session closed"
            ),
        }
    }
}

/// Connects this client's backend; on failure tells the client `{prefix} {reason}` (IMAP
/// `* BYE [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`), closes its side, logs which side failed and
/// returns how the session ended. No client byte has been forwarded at that point.
pub async fn connect_or_refuse<D: crate::backend::Dialect>(
    context: &SessionContext,
    client: &mut Stream,
    prefix: &str,
) -> Result<crate::backend::BackendConn, SessionEnd> {
    match context.connect_backend::<D>().await {
        Ok(backend) => Ok(backend),
        Err(error) => {
            tracing::warn!(%error, side = "backend", "backend connection failed");
            let reply = format!("{prefix} {}\r\n", error.client_reason());
            let _ = write_client(client, reply.as_bytes()).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), client.shutdown()).await;
            Err(SessionEnd::Error(error.into()))
        }
    }
}

/// Counts a login attempt: `ok`, `fail` (backend said no) or `refused` (policy, not forwarded).
pub fn count_login(context: &SessionContext, outcome: LoginOutcome) {
    crate::metrics::metrics()
        .logins
        .with_label_values(&[
            context.listener.name(),
            context.listener.protocol().as_str(),
            outcome.as_str(),
        ])
        .inc();
}

/// Records the outcome of a login the backend answered: the metric, and the per-address
/// auth-failure penalty (doubling delays for repeated failures, cleared on success).
pub fn record_auth(context: &SessionContext, ok: bool) {
    count_login(
        context,
        if ok {
            LoginOutcome::Ok
        } else {
            LoginOutcome::Fail
        },
    );
    let penalty = context.penalty.clone();
    let ip = context.peer.ip();
    tokio::spawn(async move {
        if ok {
            penalty.succeeded(ip).await;
        } else {
            penalty.failed(ip).await;
        }
    });
}

/// Scans a message through the shared pipeline, waiting for one of the `max_scans` permits
/// first (back-pressure instead of an unbounded queue of scans).
pub async fn scan_with_permit(
    context: &SessionContext,
    message: bytes::Bytes,
    reference: &crate::scan::MessageRef,
) -> crate::scan::Disposition {
    let _permit = context.scan_permits.acquire().await;
    context.listener.scanner.process(message, reference).await
}

/// [`scan_with_permit`], the disposition also remembered under `key` (a POP3 unique-id, see
/// [`crate::scan::Scanner::process_as`]).
pub async fn scan_as_with_permit(
    context: &SessionContext,
    message: bytes::Bytes,
    reference: &crate::scan::MessageRef,
    key: Option<crate::scan::MessageKey>,
) -> crate::scan::Disposition {
    let _permit = context.scan_permits.acquire().await;
    context
        .listener
        .scanner
        .process_as(message, reference, key)
        .await
}

/// Counts a protocol limit that was hit (`line_length`, `literal_size`, ...).
pub fn count_limit(limit: Limit) {
    crate::metrics::metrics()
        .limit_rejections
        .with_label_values(&[limit.as_str()])
        .inc();
}

/// Upgrades a plaintext client stream after STARTTLS/STLS (RFC 2595 §3.1/§4). The caller has
/// already dropped every byte it buffered after the command; a stream that is already TLS is a
/// protocol violation.
pub async fn upgrade_client(
    stream: Stream,
    context: &SessionContext,
) -> Result<Stream, SessionError> {
    match stream {
        Stream::Plain(tcp) => crate::context::accept_tls(&context.listener.tls, tcp)
            .await
            .map_err(SessionError::ClientTls),
        Stream::Tls(_) => Err(SessionError::ClientProtocol("STARTTLS inside TLS".into())),
    }
}

/// Reads some bytes from the backend.
pub async fn read_backend(stream: &mut Stream, buffer: &mut [u8]) -> Result<usize, SessionError> {
    stream.read(buffer).await.map_err(SessionError::BackendIo)
}

/// Longest the proxy waits for the backend during an exchange it runs itself (its login, its
/// CAPA, a literal continuation); Dovecot delays failed logins by seconds.
pub const BACKEND_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads more backend bytes for an exchange the proxy runs itself: at least one byte before
/// `deadline`, else a backend error (timeout, or the backend closed the connection).
pub async fn read_backend_by(
    stream: &mut Stream,
    buffer: &mut [u8],
    deadline: tokio::time::Instant,
) -> Result<usize, SessionError> {
    let read = tokio::time::timeout_at(deadline, read_backend(stream, buffer));
    match read.await {
        Err(_) => Err(SessionError::BackendIo(std::io::ErrorKind::TimedOut.into())),
        Ok(Ok(0)) => Err(SessionError::BackendIo(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
        Ok(result) => result,
    }
}

/// Writes all bytes to the client and flushes.
///
/// A client that stops reading cannot hold the session forever: every 64 KiB must be accepted
/// within [`CLIENT_WRITE_STALL`].
pub async fn write_client(stream: &mut Stream, bytes: &[u8]) -> Result<(), SessionError> {
    let stalled = || SessionError::ClientIo(std::io::ErrorKind::TimedOut.into());
    for chunk in bytes.chunks(64 * 1024) {
        tokio::time::timeout(CLIENT_WRITE_STALL, stream.write_all(chunk))
            .await
            .map_err(|_| stalled())?
            .map_err(SessionError::ClientIo)?;
    }
    tokio::time::timeout(CLIENT_WRITE_STALL, stream.flush())
        .await
        .map_err(|_| stalled())?
        .map_err(SessionError::ClientIo)
}

/// The backend stream, or an error when none is connected (a routed session before login).
pub fn connected(backend: &mut Option<Stream>) -> Result<&mut Stream, SessionError> {
    backend
        .as_mut()
        .ok_or_else(|| SessionError::BackendIo(std::io::ErrorKind::NotConnected.into()))
}

/// Writes all bytes to the backend and flushes.
pub async fn write_backend(stream: &mut Stream, bytes: &[u8]) -> Result<(), SessionError> {
    stream
        .write_all(bytes)
        .await
        .map_err(SessionError::BackendIo)?;
    stream.flush().await.map_err(SessionError::BackendIo)
}

/// Longest a client may leave 64 KiB of output unaccepted before the session is closed.
pub const CLIENT_WRITE_STALL: Duration = Duration::from_secs(120);

/// Most bytes read and discarded while closing after an error (see [`linger_close`]).
const LINGER_BYTES: usize = 32 * 1024 * 1024;
/// Longest time spent discarding while closing after an error.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes the client side after a final error message: shuts down our sending side, then reads
/// and discards what the client is still sending for a bounded time and volume, so the kernel
/// does not answer unread data with a reset that would destroy the error message in flight.
pub async fn linger_close(stream: &mut Stream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// The `[[backend]]` a logged-in session talks to: the route chosen at login, or the listener's
/// single backend. It scopes the scanner's cache keys (the same user and UID on two backends are
/// two messages).
pub fn backend_name(context: &SessionContext, route: Option<&str>) -> Option<String> {
    route.map(str::to_string).or_else(|| {
        context
            .listener
            .upstream
            .single()
            .map(|target| target.config.name.clone())
    })
}
