//! What the TRANSACTION core holds on behalf of its peers, for the memory budget
//! ([`crate::budget`]): a pure query on the core's state, no I/O.
//!
//! A multi-line answer's unframed bytes count twice — the complete answer is copied once when
//! it is framed and unstuffed for the scan — as do answers queued for the client and messages
//! being scanned. A RETR answer whose status line gives its size (`+OK 1234 octets`, as
//! Dovecot sends) is reserved whole when that line arrives; one without is reserved read by
//! read (sessions growing that way can wait on each other until `memory_wait` ends one).

use super::{Slot, Transaction};
use crate::budget::Demand;

impl Transaction {
    /// What the core holds now (see the module doc); POP3 peers announce nothing ahead.
    pub fn demand(&self) -> Demand {
        let slots: u64 = self
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Scanning {
                    response, message, ..
                } => (response.raw().len() + message.len()) as u64,
                Slot::Ready { bytes, .. } | Slot::Local(bytes) => bytes.len() as u64,
                _ => 0,
            })
            .sum();
        let backend = 2 * self.backend_framer.buffered() as u64;
        let announced = self
            .backend_framer
            .multiline_progress()
            .map_or(0, |(size, received)| 2 * size.saturating_sub(received));
        Demand {
            held: (self.client_framer.buffered() as u64)
                .saturating_add(backend)
                .saturating_add(slots),
            client_next: 0,
            backend_next: announced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::codec::{Framer, Limits, Role};
    use super::*;

    #[test]
    fn a_retr_answer_counts_twice_and_its_announced_size_is_reserved_ahead() {
        let limits = Limits::default();
        let mut core = Transaction::new(limits, Framer::new(Role::Server, limits), 0);
        assert_eq!(core.demand(), Demand::default());
        core.client(b"RETR 1\r\n");
        core.backend(b"+OK 5000 octets\r\n");
        core.backend(&[b'x'; 1000]);
        let demand = core.demand();
        assert!(demand.held >= 2 * 1000, "{demand:?}");
        // The status line announced 5000 octets: the rest is reserved ahead, twice.
        assert_eq!((demand.client_next, demand.backend_next), (0, 2 * 4000));
        core.backend(b"\r\n.\r\n");
        // The answer waits for its verdict: the message is still held, now in its slot.
        assert!(core.demand().held >= 1000, "{:?}", core.demand());
    }
}
