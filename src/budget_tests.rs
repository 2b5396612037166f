use std::time::Duration;

use super::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

#[test]
fn reservations_grow_shrink_and_return_on_drop() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    assert_eq!(budget.total_bytes(), MIB);
    let mut a = budget.reservation();
    assert!(a.try_grow(300 * KIB + 1), "rounded up to whole KiB");
    assert_eq!(a.bytes(), 301 * KIB);
    let mut b = budget.reservation();
    assert!(!b.try_grow(800 * KIB), "only 723 KiB left");
    assert_eq!(b.bytes(), 0, "a failed grow takes nothing");
    assert!(b.try_grow(700 * KIB));
    assert_eq!(budget.reserved_bytes(), 1001 * KIB);
    a.shrink(100 * KIB);
    assert_eq!(a.bytes(), 100 * KIB);
    a.shrink(200 * KIB);
    assert_eq!(a.bytes(), 100 * KIB, "shrinking never grows");
    drop(b);
    assert_eq!(budget.reserved_bytes(), 100 * KIB);
    drop(a);
    assert_eq!(budget.reserved_bytes(), 0);
}

#[test]
fn a_need_larger_than_the_budget_is_capped_and_proceeds_alone() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut small = budget.reservation();
    assert!(small.try_grow(KIB));
    let mut huge = budget.reservation();
    assert!(
        !huge.try_grow(10 * MIB),
        "not while another session holds some"
    );
    drop(small);
    assert!(huge.try_grow(10 * MIB));
    assert_eq!(huge.bytes(), MIB);
    assert!(huge.covers(u64::MAX), "the whole budget covers any need");
}

#[tokio::test]
async fn a_wait_completes_when_another_session_releases() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut holder = budget.reservation();
    assert!(holder.try_grow(MIB));
    let mut waiter = budget.reservation();
    let wait = tokio::spawn(async move {
        waiter.grow(512 * KIB, 0).await;
        waiter.bytes()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!wait.is_finished(), "no budget yet");
    holder.shrink(256 * KIB);
    assert_eq!(wait.await.unwrap(), 512 * KIB);
}

#[tokio::test]
async fn a_cancelled_wait_takes_nothing() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut holder = budget.reservation();
    assert!(holder.try_grow(MIB));
    let mut waiter = budget.reservation();
    let timed_out = tokio::time::timeout(Duration::from_millis(50), waiter.grow(KIB, 0)).await;
    assert!(timed_out.is_err());
    assert_eq!(waiter.bytes(), 0);
    drop(holder);
    assert_eq!(
        budget.reserved_bytes(),
        0,
        "nothing leaked by the cancelled wait"
    );
}

#[test]
fn the_gate_reads_a_peer_only_when_its_announced_bytes_are_covered() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut other = budget.reservation();
    assert!(other.try_grow(600 * KIB));
    let mut session = budget.reservation();
    // Idle: both read buffers fit.
    let idle = session.gate(Demand::default(), 4 * KIB, 4 * KIB);
    assert!(idle.read_client && idle.read_backend && idle.wanted.is_none());
    assert_eq!(session.bytes(), 8 * KIB);
    // The backend announced a literal that does not fit next to `other`: the backend is not
    // read, the client still is, and the whole need is waited for.
    let demand = Demand {
        held: 10 * KIB,
        client_next: 0,
        backend_next: 500 * KIB,
    };
    let gate = session.gate(demand, 4 * KIB, 64 * KIB);
    assert!(gate.read_client && !gate.read_backend);
    assert_eq!(gate.wanted, Some(578 * KIB));
    // Once `other` is gone it fits; after the literal the reservation shrinks again.
    drop(other);
    let gate = session.gate(demand, 4 * KIB, 64 * KIB);
    assert!(gate.read_client && gate.read_backend && gate.wanted.is_none());
    assert_eq!(budget.reserved_bytes(), 578 * KIB);
    let done = session.gate(Demand::default(), 4 * KIB, 64 * KIB);
    assert!(done.wanted.is_none());
    assert_eq!(budget.reserved_bytes(), 68 * KIB);
}

#[tokio::test]
async fn a_large_wait_does_not_hold_up_a_small_need() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut holder = budget.reservation();
    assert!(holder.try_grow(900 * KIB));
    let mut large = budget.reservation();
    let wait = tokio::spawn(async move {
        large.grow(MIB, 0).await;
        large
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut small = budget.reservation();
    assert!(
        small.try_grow(64 * KIB),
        "free budget is not held for the large waiter"
    );
    assert_eq!(
        budget.reserved_bytes(),
        964 * KIB,
        "the waiter holds nothing while it waits"
    );
    drop(small);
    drop(holder);
    let large = wait.await.unwrap();
    assert_eq!(large.bytes(), MIB);
}

#[test]
fn growth_read_by_read_leaves_headroom_for_other_sessions() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut idle = budget.reservation();
    assert!(idle.gate(Demand::default(), 4 * KIB, 4 * KIB).read_client);
    let mut big = budget.reservation();
    // A POP3 answer without a size: held grows read by read, nothing announced.
    let mut held = 0;
    while big
        .gate(
            Demand {
                held,
                ..Demand::default()
            },
            4 * KIB,
            64 * KIB,
        )
        .read_backend
    {
        held += 64 * KIB;
        assert!(held <= MIB, "never stopped");
    }
    let free = budget.total_bytes() - budget.reserved_bytes();
    assert!(free >= MIB / 16, "{free} octets left");
    // A new session's first reads still fit.
    let mut login = budget.reservation();
    let gate = login.gate(Demand::default(), 4 * KIB, 4 * KIB);
    assert!(gate.read_client && gate.read_backend);
    // An announced literal may use the headroom.
    let announced = Demand {
        held: 0,
        client_next: 0,
        backend_next: free - 16 * KIB,
    };
    assert!(
        budget
            .reservation()
            .gate(announced, 4 * KIB, 4 * KIB)
            .read_backend
    );
}

#[test]
fn the_headroom_never_keeps_a_lone_need_from_proceeding() {
    let budget = MemoryBudget::new(MIB, Duration::from_secs(1));
    let mut alone = budget.reservation();
    assert!(alone.try_grow_keeping(2 * MIB, MIB / 16));
    assert_eq!(alone.bytes(), MIB);
}
