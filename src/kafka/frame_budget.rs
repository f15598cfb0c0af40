//! One byte budget shared by every reader of untrusted frames (the proxy's client
//! connections): bytes are taken as they arrive, not when a frame's length is announced,
//! so a peer that announces a 100 MiB frame and trickles it holds only what it sent, and
//! all connections together never buffer more than the budget. A reader that finds the
//! budget spent waits (it stops reading its socket) until others release.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Permits are bytes; tokio caps a semaphore below `usize::MAX >> 3` and one acquire
/// at `u32::MAX`, far above any budget or read here.
#[derive(Clone, Debug)]
pub struct FrameBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl FrameBudget {
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes nobody holds right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Waits for `n` bytes; the caller owns them until it calls `release`.
    pub async fn take(&self, n: usize) {
        let Ok(n32) = u32::try_from(n) else {
            return;
        };
        if let Ok(permit) = self.bytes.acquire_many(n32).await {
            permit.forget();
        }
    }

    /// Takes between `min` and `max` bytes: as many as are free now, waiting only while
    /// fewer than `min` are. Returns how many were taken.
    pub async fn take_up_to(&self, min: usize, max: usize) -> usize {
        let min = min.min(max);
        loop {
            let free = self.bytes.available_permits().min(max);
            if free >= min {
                let Ok(n32) = u32::try_from(free) else {
                    return 0;
                };
                if free == 0 {
                    return 0;
                }
                if let Ok(permit) = self.bytes.try_acquire_many(n32) {
                    permit.forget();
                    return free;
                }
                continue; // someone took them first
            }
            self.take(min).await;
            return min;
        }
    }

    /// Returns `n` bytes taken earlier.
    pub fn release(&self, n: usize) {
        if n > 0 {
            self.bytes.add_permits(n);
        }
    }
}
