//! The async shell around the logged-in core ([`super::relay`]): feed it bytes, perform its
//! actions in order — writes to either side, scans (`scan_with_permit`, with `* OK` keep-alives
//! from [`Relay::tick`] every [`KEEPALIVE_INTERVAL`] while one runs, RFC 9051 §7.1), cache
//! look-ups and probes, APPEND verdicts — feed each answer back, and map [`Close`] to the
//! driver's [`Flow`]. Also the backend framing the proxy needs before login.

use std::collections::VecDeque;

use bytes::Bytes;

use super::assembler::ResponseError;
use super::codec::{Event, Framer, Role};
use super::relay::{self, has_capability, Action, Close, Relay};
use super::relay_fetch::KEEPALIVE_INTERVAL;
use super::session::{backend_limits, max_command, Flow, Session};
use crate::scan::{Disposition, MessageRef};
use crate::session::{
    count_limit, scan_with_permit, write_backend, write_client, write_client_pieces, SessionEnd,
    SessionError, SessionStats, BACKEND_EXCHANGE_TIMEOUT,
};

impl Session {
    /// Enters the logged-in phase: the core takes the client framer (with whatever was
    /// pipelined after login) and the backend framer.
    pub(super) fn enter_relay(&mut self, client_framer: Framer, user: Option<String>) {
        let limits = &self.context.listener.limits;
        let settings = relay::Settings {
            peer: self.context.peer,
            user,
            backend: crate::session::backend_name(&self.context, self.route.as_deref()),
            policy: self.policy(),
            literal_plus: self.backend_literal_plus,
            max_command: max_command(&self.context),
            max_response: limits.max_backend_literal.saturating_mul(2),
        };
        let fresh = Framer::new(Role::Server, backend_limits(&self.context));
        let backend_framer = std::mem::replace(&mut self.backend_framer, fresh);
        let mut core = Relay::new(settings, client_framer, backend_framer);
        if self.draining {
            core.start_draining();
        }
        self.relay = Some(Box::new(core));
    }

    /// Feeds client bytes to the core and performs what it says.
    pub(super) async fn relay_client(
        &mut self,
        data: &[u8],
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let scan_append = self.context.listener.scanner.policy().scan_append;
        let Some(core) = &mut self.relay else {
            return Ok(Flow::Continue);
        };
        core.set_scan_append(scan_append);
        let actions = core.client(data);
        self.perform(actions, stats).await
    }

    /// Performs the core's actions in order, feeding back every answer it asks for.
    pub(super) async fn perform(
        &mut self,
        actions: Vec<Action>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let sent = actions.iter().any(|a| matches!(a, Action::ToBackend(_)));
        let result = self.perform_all(actions, sent).await;
        if let Some(core) = &mut self.relay {
            stats.add(core.take_tally());
        }
        result
    }

    async fn perform_all(
        &mut self,
        actions: Vec<Action>,
        mut sent: bool,
    ) -> Result<Flow, SessionError> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let Some(core) = self.relay.as_deref_mut() else {
                return Ok(Flow::Continue);
            };
            let scanner = &self.context.listener.scanner;
            let more = match action {
                Action::ToClient(bytes) => {
                    // Consecutive pieces (a served FETCH response) go out in one vectored
                    // write and one flush.
                    let mut pieces = vec![bytes];
                    while let Some(Action::ToClient(_)) = queue.front() {
                        if let Some(Action::ToClient(next)) = queue.pop_front() {
                            pieces.push(next);
                        }
                    }
                    write_client_pieces(&mut self.client, &pieces).await?;
                    continue;
                }
                Action::ToBackend(bytes) => {
                    write_backend(crate::session::connected(&mut self.backend)?, &bytes).await?;
                    continue;
                }
                Action::Scan {
                    id,
                    message,
                    reference,
                } => {
                    let disposition = scan_with_keepalive(
                        &self.context,
                        &mut self.client,
                        core,
                        message,
                        &reference,
                    )
                    .await?;
                    core.scanned(id, disposition)
                }
                Action::Lookup { id, reference } => {
                    let cached = scanner.cached(&reference).await;
                    core.looked_up(id, cached)
                }
                Action::Probe { id, references } => {
                    let mut all_cached = true;
                    for reference in &references {
                        if scanner.cached(reference).await.is_none() {
                            all_cached = false;
                            break;
                        }
                    }
                    core.probed(id, all_cached)
                }
                Action::Remember { reference, message } => {
                    // Same path as a FETCH of it: the verdict is cached by content already, so
                    // this hashes the message and files the disposition under its identity.
                    scanner.process(message, &reference).await;
                    continue;
                }
                Action::Verify { id, message } => {
                    let verdict = {
                        let _permit = self.context.scan_permits.acquire().await;
                        scanner.verdict(message).await
                    };
                    core.verified(id, &verdict, &scanner.policy())
                }
                Action::Close(close) => return closed(close),
            };
            sent |= more.iter().any(|a| matches!(a, Action::ToBackend(_)));
            queue.extend(more);
        }
        self.note_continuation(sent);
        Ok(Flow::Continue)
    }

    /// Starts the [`BACKEND_EXCHANGE_TIMEOUT`] while the core waits for the backend in an
    /// exchange of its own — a literal waiting for the backend's `+`, the proxy's own FETCH —
    /// (again after every piece sent), or ends it.
    fn note_continuation(&mut self, sent: bool) {
        let awaiting = self
            .relay
            .as_ref()
            .is_some_and(|core| core.awaiting_backend());
        self.continuation_deadline = match (awaiting, self.continuation_deadline) {
            (false, _) => None,
            (true, Some(deadline)) if !sent => Some(deadline),
            (true, _) => Some(tokio::time::Instant::now() + BACKEND_EXCHANGE_TIMEOUT),
        };
    }

    /// The next complete backend response from bytes already fed, if any (before login).
    pub(super) fn next_backend_response(&mut self) -> Result<Option<Vec<Event>>, SessionError> {
        self.response
            .next(&mut self.backend_framer)
            .map_err(|error| backend_violation(&error))
    }

    /// Remembers what a backend capability list offers (LITERAL+, SASL-IR).
    pub(super) fn note_capability_list(&mut self, list: &str) {
        self.backend_literal_plus = has_capability(list, "LITERAL+");
        self.backend_sasl_ir = has_capability(list, "SASL-IR");
    }
}

/// Runs one scan; every [`KEEPALIVE_INTERVAL`] the core's keep-alives go to the client.
async fn scan_with_keepalive(
    context: &crate::context::SessionContext,
    client: &mut crate::net::Stream,
    core: &mut Relay,
    message: Bytes,
    reference: &MessageRef,
) -> Result<Disposition, SessionError> {
    let scan = scan_with_permit(context, message, reference);
    tokio::pin!(scan);
    let start = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
    let mut ticker = tokio::time::interval_at(start, KEEPALIVE_INTERVAL);
    loop {
        tokio::select! {
            disposition = &mut scan => return Ok(disposition),
            _ = ticker.tick() => {
                for action in core.tick() {
                    if let Action::ToClient(bytes) = action {
                        crate::metrics::metrics()
                            .keepalives_sent
                            .with_label_values(&[crate::metrics::Protocol::Imap.as_str()])
                            .inc();
                        write_client(client, &bytes).await?;
                    }
                }
            }
        }
    }
}

/// How the session ends when the core closes it.
fn closed(close: Close) -> Result<Flow, SessionError> {
    match close {
        Close::Logout => Ok(Flow::End(SessionEnd::Logout)),
        Close::Client { reason, limit } => {
            if let Some(limit) = limit {
                count_limit(limit);
            }
            Err(SessionError::ClientProtocol(reason))
        }
        Close::Backend(reason) => Err(SessionError::BackendProtocol(reason)),
    }
}

fn backend_violation(error: &ResponseError) -> SessionError {
    if let ResponseError::Frame(frame) = error {
        tracing::warn!(%error, limit = frame.limit().as_str(), "backend framing error");
    }
    SessionError::BackendProtocol(error.to_string())
}
