//! The one async loop both protocol sessions run under: it owns the read buffers, waits for
//! the next input (client bytes, backend bytes, shutdown, the idle or pre-login deadline),
//! hands it to the protocol, performs the STARTTLS/STLS upgrade the protocol asks for, enforces
//! `max_errors`, drains on shutdown, and closes the client connection with the protocol's last
//! words. What a byte means is the protocol's business ([`ProtocolSession`]); when and how it
//! is read is the driver's.
//!
//! The driver also keeps the session within the memory budget ([`crate::budget`]), the same way
//! for both protocols: before it reads a peer, the session's reservation must cover what the
//! session holds ([`ProtocolSession::demand`]), what that peer announced and has yet to send,
//! and one read buffer. While it does not, that peer is not read (TCP back-pressure) and the
//! session waits for budget, still serving the other peer, shutdown and its deadlines; after
//! `memory_wait` it ends with the protocol's [`Notices::memory`] line. Writes happen within a
//! step, before the reservation is fitted again, so output on its way to a slow client stays
//! covered by the reservation that admitted it.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::budget::{BudgetError, Demand, Reservation};
use crate::context::SessionContext;
use crate::metrics::Limit;
use crate::net::Stream;
use crate::read_buffer::ReadBuffer;
use crate::session::{
    count_limit, linger_close, next_input, write_client, BudgetWait, Input, Relay, SessionEnd,
    SessionError, SessionStats, Wanted,
};

/// Longest the driver waits for a client to take its closing bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a protocol session asks the driver to do after an input.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Wait for the next input.
    Continue,
    /// Upgrade the client stream to TLS (STARTTLS/STLS was accepted).
    StartTls,
    /// End the session.
    End(SessionEnd),
}

/// The lines a protocol sends when the driver ends a session on its own.
pub(crate) struct Notices {
    /// The idle or pre-login deadline passed.
    pub timeout: &'static [u8],
    /// The process is shutting down and the session is idle.
    pub shutdown: &'static [u8],
    /// `max_errors` was reached.
    pub too_many_errors: &'static [u8],
    /// The session waited `memory_wait` for the memory budget in vain.
    pub memory: &'static [u8],
}

/// A protocol session as the driver sees it (IMAP and POP3 implement it).
pub(crate) trait ProtocolSession: Sized + Send {
    /// The protocol's closing lines.
    const NOTICES: Notices;
    /// The shortest idle timeout once logged in (RFC 9051 §5.4: 30 minutes; RFC 1939 §3: 10).
    const MIN_IDLE: Duration;

    /// The connection's context.
    fn context(&self) -> &SessionContext;
    /// The client stream and the backend stream (none before a routed login).
    fn streams(&mut self) -> (&mut Stream, Option<&mut Stream>);
    /// Whether the client has logged in.
    fn logged_in(&self) -> bool;
    /// Whether more client bytes may be read now (bounded back-pressure).
    fn wants_client(&self) -> bool;
    /// What the session buffers on behalf of its peers now and what they announced (the
    /// memory budget's view of it).
    fn demand(&self) -> Demand;
    /// No command in flight and none partly received.
    fn is_idle(&self) -> bool;
    /// Protocol errors answered so far.
    fn errors(&self) -> u32;
    /// Whether the session was told to drain.
    fn draining(&self) -> bool;
    /// Tells the session the process is shutting down (new commands are refused).
    fn start_draining(&mut self);
    /// When an exchange the proxy runs itself (a literal waiting for the backend's `+`) times
    /// out; passing it is a backend failure, not an idle timeout.
    fn exchange_deadline(&self) -> Option<Instant> {
        None
    }
    /// Client bytes arrived.
    async fn on_client_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError>;
    /// Backend bytes arrived.
    async fn on_backend_bytes(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError>;
    /// The backend closed its side; tell the client if it is owed an answer.
    async fn on_backend_closed(&mut self) -> Result<Flow, SessionError>;
    /// Upgrades the client stream after STARTTLS/STLS; the protocol drops buffered plaintext.
    async fn upgrade(self) -> Result<Self, SessionError>;
    /// The last words after a failure (`* BYE …` / `-ERR …`); whether any were sent.
    async fn farewell(&mut self, error: &SessionError) -> bool;
}

/// Runs `session` until it ends; returns how.
pub(crate) async fn drive<P: ProtocolSession>(
    mut session: P,
    stats: &mut SessionStats,
) -> SessionEnd {
    let mut buffers = Buffers {
        client: ReadBuffer::default(),
        backend: ReadBuffer::default(),
        last_activity: Instant::now(),
        reservation: session.context().memory.reservation(),
        waiting_since: None,
    };
    // The protocol's handlers (and the upgrade, the farewell) are boxed: their futures are large
    // and alive only while an input is handled, so the task an idle session keeps (waiting in
    // `next_input`) does not carry their space (about 9 KiB of the session task before).
    let (end, linger) = loop {
        match step(&mut session, &mut buffers, stats).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::StartTls) => match Box::pin(session.upgrade()).await {
                Ok(upgraded) => session = upgraded,
                Err(error) => return SessionEnd::Error(error),
            },
            Ok(Flow::End(end)) => break (end, false),
            Err(error) => {
                let linger = Box::pin(session.farewell(&error)).await;
                break (SessionEnd::Error(error), linger);
            }
        }
        if let Some(end) = stop_reason(&mut session).await {
            break (end, true);
        }
    };
    let (client, _) = session.streams();
    if linger {
        Box::pin(linger_close(client)).await;
    } else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.shutdown()).await;
    }
    end
}

/// The read buffers ([`ReadBuffer`]: none is allocated while its stream is quiet) and the time
/// of the last input.
struct Buffers {
    client: ReadBuffer,
    backend: ReadBuffer,
    last_activity: Instant,
    /// The session's share of the memory budget.
    reservation: Reservation,
    /// Since when the session waits for budget.
    waiting_since: Option<Instant>,
}

/// What to read next given the memory budget: fits the reservation to the session's demand
/// and starts (or ends) a wait for budget.
fn gate<P: ProtocolSession>(session: &P, buffers: &mut Buffers) -> crate::budget::Gate {
    let (client_read, backend_read) = (buffers.client.next_read(), buffers.backend.next_read());
    let gate = buffers
        .reservation
        .gate(session.demand(), client_read as u64, backend_read as u64);
    match (gate.wanted, buffers.waiting_since) {
        (Some(_), None) => {
            crate::metrics::metrics().memory.waits.inc();
            buffers.waiting_since = Some(Instant::now());
        }
        (None, Some(_)) => buffers.waiting_since = None,
        _ => {}
    }
    gate
}

/// Waits until `reservation` covers `wanted`, or reports that `until` passed.
async fn wait_for_budget(
    reservation: &mut Reservation,
    (wanted, keep_free): (u64, u64),
    until: Instant,
) -> Input {
    tokio::select! {
        _ = reservation.grow(wanted, keep_free) => Input::Memory,
        _ = tokio::time::sleep_until(until) => Input::MemoryExhausted,
    }
}

/// `max_errors` reached, or shutting down with nothing in flight: the closing line is sent.
async fn stop_reason<P: ProtocolSession>(session: &mut P) -> Option<SessionEnd> {
    let max_errors = session.context().listener.limits.max_errors;
    let (notice, end) = if session.errors() >= max_errors && session.is_idle() {
        count_limit(Limit::MaxErrors);
        let error = SessionError::ClientProtocol("too many protocol errors".into());
        (P::NOTICES.too_many_errors, SessionEnd::Error(error))
    } else if session.draining() && session.is_idle() {
        (P::NOTICES.shutdown, SessionEnd::Shutdown)
    } else {
        return None;
    };
    let (client, _) = session.streams();
    let _ = write_client(client, notice).await;
    Some(end)
}

/// Waits for one input and hands it to the session.
async fn step<P: ProtocolSession>(
    session: &mut P,
    buffers: &mut Buffers,
    stats: &mut SessionStats,
) -> Result<Flow, SessionError> {
    let limits = &session.context().listener.limits;
    let timeout = match session.logged_in() {
        true => limits.idle_timeout.max(P::MIN_IDLE),
        false => limits.prelogin_timeout,
    };
    let idle_deadline = buffers.last_activity + timeout;
    let exchange = session.exchange_deadline().filter(|e| *e < idle_deadline);
    let deadline = exchange.unwrap_or(idle_deadline);
    let shutdown = session.context().shutdown.clone();
    let gate = gate(session, buffers);
    let memory_wait = session.context().memory.wait();
    let (draining, wants_client) = (session.draining(), session.wants_client());
    if !wants_client {
        // Back-pressure: no client read until the session has caught up.
        buffers.client.release();
    }
    let (client, backend) = session.streams();
    let relay = Relay {
        client,
        backend,
        client_buffer: &mut buffers.client,
        backend_buffer: &mut buffers.backend,
    };
    let reservation = &mut buffers.reservation;
    let waiting = gate
        .wanted
        .map(|wanted| (wanted, gate.keep_free))
        .zip(buffers.waiting_since);
    // Boxed, and only while waiting: an idle session's task does not carry the wait's state.
    let memory = waiting.map(|(wanted, since)| {
        Box::pin(wait_for_budget(reservation, wanted, since + memory_wait)) as BudgetWait<'_>
    });
    let wanted = Wanted {
        client: wants_client && gate.read_client,
        backend: gate.read_backend,
        memory,
    };
    match next_input(relay, &shutdown, draining, wanted, deadline).await? {
        Input::Memory => Ok(Flow::Continue),
        Input::MemoryExhausted => {
            count_limit(Limit::Memory);
            let waited = buffers.waiting_since.map(|since| since.elapsed());
            let error = BudgetError::Exhausted {
                waited: waited.unwrap_or_default(),
                wanted: gate.wanted.unwrap_or_default(),
            };
            tracing::warn!(%error, "memory budget exhausted");
            let (client, _) = session.streams();
            let _ = write_client(client, P::NOTICES.memory).await;
            Ok(Flow::End(SessionEnd::Error(error.into())))
        }
        Input::Shutdown => {
            session.start_draining();
            Ok(Flow::Continue)
        }
        Input::ClientClosed => Ok(Flow::End(SessionEnd::ClientClosed)),
        Input::BackendClosed => Box::pin(session.on_backend_closed()).await,
        Input::Client(n) => {
            buffers.last_activity = Instant::now();
            Box::pin(session.on_client_bytes(&buffers.client.filled()[..n], stats)).await
        }
        Input::Backend(n) => {
            buffers.last_activity = Instant::now();
            Box::pin(session.on_backend_bytes(&buffers.backend.filled()[..n], stats)).await
        }
        Input::Deadline if exchange.is_some() => {
            Err(SessionError::BackendIo(std::io::ErrorKind::TimedOut.into()))
        }
        Input::Deadline => {
            count_limit(match session.logged_in() {
                true => Limit::IdleTimeout,
                false => Limit::PreloginTimeout,
            });
            let (client, _) = session.streams();
            let _ = write_client(client, P::NOTICES.timeout).await;
            Ok(Flow::End(SessionEnd::Timeout))
        }
    }
}
