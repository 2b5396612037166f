//! The process-wide memory budget (`[limits] memory`): everything sessions buffer on behalf of
//! their peers — partly received commands and responses, announced literals, messages held for
//! scanning, output being written to a slow client — is covered by a [`Reservation`] taken from
//! one [`MemoryBudget`] before the bytes are read. When the budget is spent, a session stops
//! reading the peer that would need more (TCP back-pressure) until other sessions release
//! theirs; a session that waits longer than `[limits] memory_wait` ends cleanly.
//!
//! The budget counts KiB in a tokio [`Semaphore`], always taken all-or-nothing: a session
//! waiting for budget holds none of what it waits for (no partial holds to deadlock on) and
//! does not hold up smaller needs queued behind it; waiters retry whenever budget is returned.
//! A reservation is RAII: dropping it (the session ended) returns its KiB. A single need larger than the whole budget is capped
//! at the budget, so it proceeds once it is alone instead of waiting forever on arithmetic.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

/// Granularity of the budget: one semaphore permit.
const UNIT: u64 = 1024;
/// A session that holds this share of the budget (1/16) and announced nothing it is about to
/// receive (a POP3 answer without `n octets`, grown read by read) may not take the last share:
/// when such sessions wait on each other, logins and commands of other sessions still fit.
const HEADROOM_DIVISOR: u64 = 16;

/// Why a reservation could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The session waited `memory_wait` for budget that other sessions held.
    #[error("memory budget exhausted: waited {waited:?} for {wanted} octets")]
    Exhausted {
        /// How long the session waited.
        waited: Duration,
        /// What it wanted to hold in total.
        wanted: u64,
    },
}

/// The memory budget shared by every session of the process.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Free units; only ever taken all-or-nothing (`try_acquire_many`).
    permits: Semaphore,
    /// Wakes the sessions waiting for budget when some is returned.
    released: Notify,
    /// The whole budget in units.
    units: u32,
    /// Longest a session waits for budget before it is ended (`memory_wait`).
    wait: Duration,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded up to whole KiB, at most 4 TiB) with `wait` as the longest
    /// wait; records `portcullis_memory_budget_bytes`.
    pub fn new(bytes: u64, wait: Duration) -> Arc<MemoryBudget> {
        let units = u32::try_from(units_of(bytes).max(1)).unwrap_or(u32::MAX);
        let budget = MemoryBudget {
            permits: Semaphore::new(units as usize),
            released: Notify::new(),
            units,
            wait,
        };
        crate::metrics::metrics()
            .memory
            .budget_bytes
            .set(i64::try_from(budget.total_bytes()).unwrap_or(i64::MAX));
        Arc::new(budget)
    }

    /// The whole budget in octets.
    pub fn total_bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Octets reserved by sessions now.
    pub fn reserved_bytes(&self) -> u64 {
        (u64::from(self.units) - self.permits.available_permits() as u64) * UNIT
    }

    /// Longest a session waits for budget.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// An empty reservation against this budget.
    pub fn reservation(self: &Arc<MemoryBudget>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            units: 0,
        }
    }

    /// Units that cover `bytes`, capped at the whole budget.
    fn capped(&self, bytes: u64) -> u32 {
        u32::try_from(units_of(bytes).min(u64::from(self.units))).unwrap_or(self.units)
    }
}

fn units_of(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

/// What a session buffers on behalf of its peers, as its protocol core reports it (sans I/O):
/// the driver reserves this plus its read buffers before reading more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Octets held now (partial commands and responses, held messages, queued answers).
    pub held: u64,
    /// Octets still to come of what the client announced (a literal being received), counted
    /// as they will be held: reserved whole, so one literal is never half-reserved.
    pub client_next: u64,
    /// The same for the backend (a message body announced as `{n}`).
    pub backend_next: u64,
}

/// Which peers a session may read now, after [`Reservation::gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The reservation covers what the session holds, the client's announced bytes and one
    /// client read.
    pub read_client: bool,
    /// The same for the backend.
    pub read_backend: bool,
    /// The total the session waits for when the budget had no room for everything.
    pub wanted: Option<u64>,
    /// Octets of the budget the wait must leave free (the headroom, for growth read by read).
    pub keep_free: u64,
}

/// What one session holds of the budget; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    units: u32,
}

impl Reservation {
    /// Octets reserved.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// The budget this reservation is part of.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Whether the reservation covers `bytes` (or the whole budget, for more than that).
    pub fn covers(&self, bytes: u64) -> bool {
        self.units >= self.budget.capped(bytes)
    }

    /// Grows the reservation to cover `bytes` if the budget has room now; `false` otherwise.
    pub fn try_grow(&mut self, bytes: u64) -> bool {
        self.try_grow_keeping(bytes, 0)
    }

    /// [`Reservation::try_grow`], leaving at least `keep_free` octets of the budget free.
    pub fn try_grow_keeping(&mut self, bytes: u64, keep_free: u64) -> bool {
        let wanted = self.budget.capped(bytes);
        if wanted <= self.units {
            return true;
        }
        let more = wanted - self.units;
        let available = self.budget.permits.available_permits() as u64;
        let others = u64::from(self.budget.units - self.units).saturating_sub(available);
        // The headroom never keeps a need from proceeding once it is alone.
        let keep = if others == 0 { 0 } else { units_of(keep_free) };
        if keep > 0 && available < u64::from(more) + keep {
            return false;
        }
        let acquired = match self.budget.permits.try_acquire_many(more) {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        };
        if acquired {
            self.add(more);
        }
        acquired
    }

    /// Waits until the reservation covers `bytes` (capped at the whole budget) with `keep_free`
    /// octets of the budget left free, taking it all
    /// at once when it is free: a waiter never holds part of what it waits for, and a large
    /// wait does not hold up smaller needs behind it (a session's few KiB to read its next
    /// command are served whenever they are free). Cancel-safe: dropping the future before it
    /// completes leaves the reservation as it was.
    pub async fn grow(&mut self, bytes: u64, keep_free: u64) {
        let budget = Arc::clone(&self.budget);
        loop {
            let released = budget.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_grow_keeping(bytes, keep_free) {
                return;
            }
            released.await;
        }
    }

    /// Returns what exceeds `bytes` to the budget.
    pub fn shrink(&mut self, bytes: u64) {
        let keep = self.budget.capped(bytes);
        if keep < self.units {
            let release = self.units - keep;
            self.units = keep;
            self.budget.permits.add_permits(release as usize);
            self.budget.released.notify_waiters();
            gauge_add(-i64::from(release));
        }
    }

    /// Fits the reservation to `demand` plus one read of `client_read` and `backend_read`
    /// octets: shrinks it to that when it holds more, grows it when the budget has room, and
    /// says which peer may be read. A peer whose next read the reservation does not cover is
    /// not read (back-pressure) until [`Reservation::grow`] to [`Gate::wanted`] completes.
    pub fn gate(&mut self, demand: Demand, client_read: u64, backend_read: u64) -> Gate {
        let held = demand.held;
        let client = held
            .saturating_add(demand.client_next)
            .saturating_add(client_read);
        let backend = held
            .saturating_add(demand.backend_next)
            .saturating_add(backend_read);
        let full = client.saturating_add(backend).saturating_sub(held);
        let headroom = self.budget.total_bytes() / HEADROOM_DIVISOR;
        let unannounced = demand.client_next == 0 && demand.backend_next == 0;
        let keep_free = if unannounced && held >= headroom {
            headroom
        } else {
            0
        };
        if self.covers(full) {
            self.shrink(full);
        } else if !self.try_grow_keeping(full, keep_free) {
            // At least one peer may go on: the one needing less first.
            self.try_grow_keeping(client.min(backend), keep_free);
            self.try_grow_keeping(client.max(backend), keep_free);
        }
        Gate {
            read_client: self.covers(client),
            read_backend: self.covers(backend),
            wanted: (!self.covers(full)).then_some(full),
            keep_free,
        }
    }

    fn add(&mut self, units: u32) {
        self.units += units;
        gauge_add(i64::from(units));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(0);
    }
}

fn gauge_add(units: i64) {
    crate::metrics::metrics()
        .memory
        .reserved_bytes
        .add(units * UNIT as i64);
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
