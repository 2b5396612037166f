//! The TRANSACTION half of a POP3 [`Session`]: performs what [`super::super::transaction`]
//! decides — bytes to the client and the backend, scans (RFC 1939 §7 RETR/TOP) run with a
//! `max_scans` permit and fed back as verdicts, cache lookups by unique-id for `LIST`/`STAT`
//! fed back as answers — and maps the core's ends to the driver's.

use super::super::transaction::Close;
use super::*;
use crate::scan::MessageKey;

/// The scanner's key for message `uidl` of the logged-in `user` (RFC 1939 §7 unique-id).
fn key(user: Option<&String>, backend: Option<&str>, uidl: String) -> Option<MessageKey> {
    Some(MessageKey::Pop3 {
        user: crate::scan::scoped_user(backend, user?),
        uidl,
    })
}

impl Session {
    /// Performs the core's actions in order, feeding scan verdicts back.
    pub(super) async fn act(
        &mut self,
        actions: Vec<Action>,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        self.absorb_tally(stats);
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::ToClient(bytes) => write_client(&mut self.client, &bytes).await?,
                Action::ToBackend(line) => {
                    write_backend(crate::session::connected(&mut self.backend)?, &line).await?
                }
                Action::Scan {
                    id,
                    message,
                    request,
                    uidl,
                } => {
                    let backend =
                        crate::session::backend_name(&self.context, self.route.as_deref());
                    let key =
                        uidl.and_then(|uidl| key(stats.user.as_ref(), backend.as_deref(), uidl));
                    let reference =
                        request.reference(self.context.peer, stats.user.clone(), backend);
                    let disposition = crate::session::scan_as_with_permit(
                        &self.context,
                        message,
                        &reference,
                        key,
                    )
                    .await;
                    if let Phase::Transaction(core) = &mut self.phase {
                        queue.extend(core.scanned(id, &disposition));
                    }
                    self.absorb_tally(stats);
                }
                Action::Lookup { id, messages } => {
                    let scanner = &self.context.listener.scanner;
                    let scope = crate::session::backend_name(&self.context, self.route.as_deref());
                    let mut answers = Vec::with_capacity(messages.len());
                    for (_, uidl) in messages {
                        answers.push(match key(stats.user.as_ref(), scope.as_deref(), uidl) {
                            Some(key) => scanner.peek(&key).await,
                            None => None,
                        });
                    }
                    if let Phase::Transaction(core) = &mut self.phase {
                        queue.extend(core.looked_up(id, &answers));
                    }
                }
                Action::Close(close) => return ended(close),
            }
        }
        Ok(Flow::Continue)
    }

    /// Adds the core's statistics since the last call to the session's.
    fn absorb_tally(&mut self, stats: &mut SessionStats) {
        if let Phase::Transaction(core) = &mut self.phase {
            stats.add(core.take_tally());
        }
    }
}

/// How the session ends when the core closes it.
fn ended(close: Close) -> Result<Flow, SessionError> {
    match close {
        Close::Logout => Ok(Flow::End(SessionEnd::Logout)),
        Close::BackendClosed => Ok(Flow::End(SessionEnd::BackendClosed)),
        Close::ClientFraming(error) => Err(client_violation(&error)),
        Close::BackendFraming(error) => Err(backend_violation(&error)),
    }
}
