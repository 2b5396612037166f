//! The backend half of a POP3 [`Session`] after login: complete responses from the framer are
//! matched with the command they answer (in order), rewritten where policy says so (CAPA through
//! the allow-list), scanned for RETR/TOP ([`super::scanning`]), and relayed to the client.

use super::*;

impl Session {
    /// Handles every complete backend response.
    pub(super) async fn drain_backend(
        &mut self,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        loop {
            let event = self
                .backend_framer
                .next_event()
                .map_err(|e| backend_violation(&e))?;
            let flow = match event {
                None => return Ok(Flow::Continue),
                Some(Event::Reply(reply)) => self.on_reply(reply, stats).await?,
                Some(Event::MultiLine(response)) => self.on_multiline(response, stats).await?,
                Some(Event::Line(_)) => Flow::Continue,
            };
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
    }

    /// Takes the forwarded command a completed response answers.
    fn complete(&mut self) -> Kind {
        match self.pending.pop_front() {
            Some(Pending::Forwarded(kind)) => kind,
            _ => Kind::Other,
        }
    }

    async fn on_reply(
        &mut self,
        reply: super::super::codec::Reply,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        if reply.answered.is_none() {
            // A notice the backend sends before closing.
            return self
                .relay(&reply.line, stats)
                .await
                .map(|()| Flow::Continue);
        }
        let kind = self.complete();
        if reply.status != super::super::codec::Status::Ok {
            self.errors += 1;
        }
        self.relay(&reply.line, stats).await?;
        if kind == Kind::Quit {
            return Ok(Flow::End(SessionEnd::Logout));
        }
        self.flush_local().await
    }

    async fn on_multiline(
        &mut self,
        response: super::super::codec::MultiLine,
        stats: &mut SessionStats,
    ) -> Result<Flow, SessionError> {
        let output = match self.complete() {
            Kind::Capa => Bytes::from(
                Capabilities::from_body(&response.body())
                    .response(response.status_line(), CapaPolicy::default()),
            ),
            Kind::Message(request) => self.scan_message(response, request, stats).await?,
            _ => response.raw().clone(),
        };
        self.relay(&output, stats).await?;
        self.flush_local().await
    }

    async fn relay(&mut self, bytes: &[u8], stats: &mut SessionStats) -> Result<(), SessionError> {
        stats.bytes_down += bytes.len() as u64;
        write_client(&mut self.client, bytes).await
    }
}
