//! What the logged-in core holds on behalf of its peers, for the memory budget
//! ([`crate::budget`]): a pure query on the core's state, no I/O.
//!
//! Held: both framers' unframed bytes, the command and the response being assembled, responses
//! set aside or replayed, a response held while its verdict is looked up or fetched again, the
//! pieces of a command waiting for the backend's `+`, the proxy's own FETCH result, and a
//! verified APPEND's message kept until its `APPENDUID` answer.
//! Announced: the rest of a literal being received, counted as it will peak, so a message is
//! reserved whole when its `{n}` arrives, not half-reserved. A backend literal is received once
//! and then only sliced (FETCH responses are parsed over the framed events); a client literal is
//! also copied once when its command is assembled, so it counts twice.

use super::codec::{Event, Framer};
use super::grammar::Fragment;
use super::relay::{Kind, Relay};
use super::relay_client::Waiting;
use crate::budget::Demand;

impl Relay {
    /// What the core holds now and what its peers announced (see the module doc).
    pub fn demand(&self) -> Demand {
        let events = |list: &[Event]| list.iter().map(|e| e.bytes().len() as u64).sum::<u64>();
        let set_aside: u64 = self.replay.iter().map(|r| events(r)).sum::<u64>();
        let continuation = self.continuation.as_ref().map_or(0, |c| {
            c.fragments
                .iter()
                .map(|f| match f {
                    Fragment::Line(b) | Fragment::Literal(b) => b.len() as u64,
                })
                .sum()
        });
        let waiting = match &self.waiting {
            Some((_, Waiting::Scan(h) | Waiting::Lookup(h) | Waiting::Own(h))) => h.len(),
            _ => 0,
        };
        let appended: u64 = self
            .pending
            .iter()
            .map(|p| match &p.kind {
                Kind::Append(appended) => appended.message.len() as u64,
                _ => 0,
            })
            .sum();
        let assembled = self.assembler.partial().len() as u64;
        let response = self.response.held();
        let held = [
            self.client_framer.buffered() as u64,
            self.backend_framer.buffered() as u64,
            assembled,
            response,
            self.set_aside_octets,
            set_aside,
            continuation,
            waiting,
            self.own.as_ref().map_or(0, |own| own.held()),
            appended,
        ]
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n));
        Demand {
            held,
            client_next: announced(&self.client_framer, Some(assembled)),
            backend_next: announced(&self.backend_framer, None),
        }
    }
}

/// The octets a literal being received will still take: the rest of it, plus, when it is
/// copied on assembly (`assembled` is the command so far), one copy of the whole command.
fn announced(framer: &Framer, assembled: Option<u64>) -> u64 {
    match (framer.literal_progress(), assembled) {
        (Some((length, received)), Some(assembled)) => (length - received)
            .saturating_add(length)
            .saturating_add(assembled),
        (Some((length, received)), None) => length - received,
        (None, _) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{Limits, Role};
    use super::super::relay::Settings;
    use super::*;

    fn relay() -> Relay {
        let settings = Settings {
            peer: "192.0.2.1:1000".parse().unwrap(),
            user: Some("alice".into()),
            backend: None,
            policy: super::super::capability::CapabilityPolicy {
                offer_starttls: false,
                login_disabled: false,
                pre_login: false,
            },
            literal_plus: true,
            max_command: 1 << 20,
            max_response: 1 << 24,
        };
        Relay::new(
            settings,
            Framer::new(Role::Client, Limits::default()),
            Framer::new(Role::Server, Limits::default()),
        )
    }

    #[test]
    fn an_announced_backend_literal_is_reserved_whole_at_once() {
        let mut core = relay();
        core.client(b"a FETCH 1 BODY.PEEK[]\r\n");
        assert_eq!(core.demand(), Demand::default());
        let head = b"* 1 FETCH (BODY[] {100000}\r\n";
        core.backend(head);
        let first = core.demand();
        // The line is assembled; the literal's 100000 octets will arrive (and only be sliced).
        assert_eq!(first.held, head.len() as u64);
        assert_eq!(first.backend_next, 100_000);
        core.backend(&[b'x'; 40_000]);
        let later = core.demand();
        assert_eq!(later.held, (head.len() + 40_000) as u64);
        assert_eq!(
            later.held + later.backend_next,
            first.held + first.backend_next,
            "the total does not change while the literal arrives"
        );
        assert_eq!(later.client_next, 0);
    }

    #[test]
    fn a_client_literal_counts_as_announced_and_nothing_is_held_after_it() {
        let mut core = relay();
        core.client(b"a APPEND INBOX {5000+}\r\n");
        let demand = core.demand();
        assert!(demand.client_next >= 2 * 5000, "{demand:?}");
        assert_eq!(demand.backend_next, 0);
        core.client(&[b'y'; 5000]);
        core.client(b"\r\n");
        // Forwarded (no scan): nothing stays in the core.
        let after = core.demand();
        assert_eq!(after.client_next, 0);
        assert!(after.held < 100, "{after:?}");
    }
}
