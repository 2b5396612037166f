//! What wakes a relay loop up (shared by both protocols' sessions and the driver): shutdown,
//! bytes from either peer, the memory budget ([`crate::budget`]) or a deadline.

use super::SessionError;
use crate::net::Stream;
use crate::read_buffer::ReadBuffer;

/// What woke a relay loop up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The process is shutting down.
    Shutdown,
    /// This many client bytes are in the client buffer.
    Client(usize),
    /// This many backend bytes are in the backend buffer.
    Backend(usize),
    /// The client closed its side.
    ClientClosed,
    /// The backend closed its side.
    BackendClosed,
    /// The pre-login or idle deadline passed.
    Deadline,
    /// The memory budget now covers what the session waited for.
    Memory,
    /// The session waited `memory_wait` for the memory budget in vain.
    MemoryExhausted,
}

/// The two streams of a relay and their read buffers.
pub struct Relay<'a> {
    /// Client stream.
    pub client: &'a mut Stream,
    /// Backend stream (none before a routed login: nothing to read from).
    pub backend: Option<&'a mut Stream>,
    /// Buffer for client reads.
    pub client_buffer: &'a mut ReadBuffer,
    /// Buffer for backend reads.
    pub backend_buffer: &'a mut ReadBuffer,
}

/// A wait for the memory budget: completes with [`Input::Memory`] or
/// [`Input::MemoryExhausted`].
pub type BudgetWait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Input> + Send + 'a>>;

/// Which inputs a relay loop waits for besides shutdown and the deadline.
pub struct Wanted<'a> {
    /// Whether client bytes are read (a session applies back-pressure by saying no).
    pub client: bool,
    /// Whether backend bytes are read (not while the memory budget does not cover them).
    pub backend: bool,
    /// The wait while the session waits for the memory budget; `None` otherwise.
    pub memory: Option<BudgetWait<'a>>,
}

/// Waits for the next input of a relay loop shared by both protocols: shutdown (unless already
/// draining), client bytes (when wanted), backend bytes (when wanted), the memory budget, or
/// the deadline. Cancel-safe reads: nothing is lost when another branch wins.
pub async fn next_input(
    relay: Relay<'_>,
    shutdown: &tokio_util::sync::CancellationToken,
    draining: bool,
    wanted: Wanted<'_>,
    deadline: tokio::time::Instant,
) -> Result<Input, SessionError> {
    let read_backend = wanted.backend;
    tokio::select! {
        _ = shutdown.cancelled(), if !draining => Ok(Input::Shutdown),
        read = relay.client_buffer.read_from(relay.client), if wanted.client => match read.map_err(SessionError::ClientIo)? {
            0 => Ok(Input::ClientClosed),
            n => Ok(Input::Client(n)),
        },
        read = read_optional(relay.backend, relay.backend_buffer), if read_backend => match read.map_err(SessionError::BackendIo)? {
            0 => Ok(Input::BackendClosed),
            n => Ok(Input::Backend(n)),
        },
        input = budget_or_never(wanted.memory) => Ok(input),
        _ = tokio::time::sleep_until(deadline) => Ok(Input::Deadline),
    }
}

/// The budget wait's outcome, or never when the session is not waiting.
async fn budget_or_never(wait: Option<BudgetWait<'_>>) -> Input {
    match wait {
        Some(wait) => wait.await,
        None => std::future::pending().await,
    }
}

/// Reads from `stream`, or never completes when there is none.
async fn read_optional(
    stream: Option<&mut Stream>,
    buffer: &mut ReadBuffer,
) -> std::io::Result<usize> {
    match stream {
        Some(stream) => buffer.read_from(stream).await,
        None => std::future::pending().await,
    }
}
