//! The cap on bytes in flight per link: fetched from the source and not yet
//! acknowledged by the destination (ARCHITECTURE.md, "Everything bounded").
//!
//! A fetcher waits for room before each fetch and asks the broker for at most the
//! room left; what the broker returns is then charged in full (a fetch's max bytes is
//! a soft limit, so the charge may overshoot the cap by one response). Each charge is
//! a [`Charge`] that returns its bytes when dropped, so data discarded on any path
//! (a stale fetch, a dropped producer window, a stopped task) frees its budget.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
struct Shared {
    cap: usize,
    used: Mutex<Usage>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct Usage {
    bytes: usize,
    /// Reservations ([`ByteBudget::reserve`]) not yet returned.
    reservations: usize,
}

/// A per-link byte budget; clones share it.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    shared: Arc<Shared>,
}

impl ByteBudget {
    /// A budget of `cap` bytes (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                cap: cap.max(1),
                used: Mutex::new(Usage::default()),
                freed: Notify::new(),
            }),
        }
    }

    pub fn cap(&self) -> usize {
        self.shared.cap
    }

    /// Bytes charged and not yet returned.
    pub fn used(&self) -> usize {
        self.lock().bytes
    }

    /// The room left now (0 when the budget is spent or overshot).
    pub fn room(&self) -> usize {
        self.shared.cap.saturating_sub(self.used())
    }

    /// Waits until some room is left and returns it.
    pub async fn wait_for_room(&self) -> usize {
        loop {
            // Register before checking, so a release between the check and the wait
            // is not missed.
            let freed = self.shared.freed.notified();
            let room = self.room();
            if room > 0 {
                return room;
            }
            freed.await;
        }
    }

    /// Charges `bytes` (never waits: the data is already here) until the returned
    /// charge is dropped.
    pub fn charge(&self, bytes: usize) -> Charge {
        let mut used = self.lock();
        used.bytes = used.bytes.saturating_add(bytes);
        Charge {
            budget: self.clone(),
            bytes,
            reservation: false,
        }
    }

    /// Charges `bytes` of memory about to be allocated (decoding a batch), waiting
    /// first until they fit the room left, or until no other reservation is held: the
    /// rest of the budget may be held by tasks waiting here, so one always proceeds.
    /// Hold it only while decoding, never across a wait for the budget.
    pub async fn reserve(&self, bytes: usize) -> Charge {
        loop {
            let freed = self.shared.freed.notified();
            {
                let mut used = self.lock();
                let fits = used.bytes.saturating_add(bytes) <= self.shared.cap;
                if fits || used.reservations == 0 {
                    used.bytes = used.bytes.saturating_add(bytes);
                    used.reservations += 1;
                    return Charge {
                        budget: self.clone(),
                        bytes,
                        reservation: true,
                    };
                }
            }
            freed.await;
        }
    }

    fn release(&self, bytes: usize, reservation: bool) {
        {
            let mut used = self.lock();
            used.bytes = used.bytes.saturating_sub(bytes);
            if reservation {
                used.reservations = used.reservations.saturating_sub(1);
            }
        }
        self.shared.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        // A poisoned counter is still a counter: a panic elsewhere must not stop
        // the whole link.
        self.shared
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Bytes held against a [`ByteBudget`]; returned on drop.
#[derive(Debug)]
pub struct Charge {
    budget: ByteBudget,
    bytes: usize,
    reservation: bool,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget charged, for more charges of the same link.
    pub fn budget(&self) -> &ByteBudget {
        &self.budget
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 || self.reservation {
            self.budget.release(self.bytes, self.reservation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteBudget;
    use std::time::Duration;

    #[test]
    fn charges_count_until_dropped() {
        let budget = ByteBudget::new(100);
        assert_eq!(budget.room(), 100);
        let a = budget.charge(30);
        let b = budget.charge(50);
        assert_eq!(budget.used(), 80);
        assert_eq!(budget.room(), 20);
        drop(a);
        assert_eq!(budget.room(), 50);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_charge_may_overshoot_but_leaves_no_room() {
        let budget = ByteBudget::new(10);
        let big = budget.charge(25);
        assert_eq!(budget.used(), 25);
        assert_eq!(budget.room(), 0);
        drop(big);
        assert_eq!(budget.room(), 10);
    }

    #[test]
    fn a_zero_cap_is_one_byte() {
        assert_eq!(ByteBudget::new(0).cap(), 1);
    }

    #[tokio::test]
    async fn waiting_for_room_returns_at_once_when_there_is_some() {
        let budget = ByteBudget::new(64);
        let _held = budget.charge(60);
        assert_eq!(budget.wait_for_room().await, 4);
    }

    #[tokio::test]
    async fn a_spent_budget_blocks_until_a_charge_is_returned() {
        let budget = ByteBudget::new(64);
        let held = budget.charge(64);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.wait_for_room().await })
        };
        // The waiter cannot finish while the budget is spent.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let room = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the release")
            .expect("waiter task");
        assert_eq!(room, 64);
    }

    #[tokio::test]
    async fn a_reservation_waits_for_room_unless_it_is_the_only_one() {
        let budget = ByteBudget::new(100);
        let fetched = budget.charge(90);
        // No other reservation: it proceeds even past the cap, and counts.
        let first = budget.reserve(50).await;
        assert_eq!(budget.used(), 140);
        let second = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(20).await.bytes() })
        };
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "no room and another reservation is held"
        );
        drop(first);
        let reserved = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("woken by the release")
            .expect("reserving task");
        assert_eq!(reserved, 20);
        drop(fetched);
        assert_eq!(budget.used(), 0);
        // Small reservations that fit run side by side.
        let (a, b) = (budget.reserve(30).await, budget.reserve(30).await);
        assert_eq!(budget.used(), 60);
        drop((a, b));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn clones_share_one_budget() {
        let budget = ByteBudget::new(8);
        let other = budget.clone();
        let charge = other.charge(8);
        assert_eq!(budget.room(), 0);
        assert_eq!(charge.bytes(), 8);
        drop(charge);
        assert_eq!(budget.room(), 8);
    }
}
