//! Produce to a topic under a cut-over's fence is parked: held right here, before the
//! connection reads its next request, so a producer's writes keep their order; when the
//! fence lifts the request goes on with the snapshot of that moment (to the destination
//! once the mirror is promoted, back to the source if the cut-over aborted). A request
//! held as long as it may wait is answered with REQUEST_TIMED_OUT, which producers
//! retry. What is parked is bounded by the connections: one request each.
//!
//! Produce to a forwarded mirror is held the same way while this instance's lease on
//! forwarding has run out (`registry::fence::Lease`): it cannot be sure no cut-over
//! went on without it.
//!
//! Produce forwarded to a source is counted (`registry::fence::InFlight`) from before
//! the last look at the fence until its answer, so an instance confirming a fence knows
//! nothing of its own is still on the way to the source.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::Shared;
use crate::registry::fence::Entered;
use crate::registry::Snapshot;

/// Longest a forwarded write waits for this instance's lease to come back.
const LEASE_WAIT_MS: u64 = 10_000;
const LEASE_RECHECK: Duration = Duration::from_millis(100);

/// A parked write is answered before its producer would give up on it: Produce's
/// `timeout_ms` is the client's request timeout, so keep a margin under it.
const CLIENT_MARGIN: f64 = 0.8;

pub enum Held {
    /// Not fenced (any more): go on with this snapshot; forwarded topics are counted.
    Go {
        snapshot: Arc<Snapshot>,
        entered: Option<Entered>,
    },
    /// Parked as long as it may wait: refuse the fenced topics retriably.
    TimedOut(Arc<Snapshot>),
    Closing,
}

/// Holds a request naming `topics` while any of them is fenced.
pub async fn hold(shared: &Arc<Shared>, topics: &[&str], timeout_ms: i32) -> Held {
    let registry = &shared.registry;
    let mut changes = registry.changes();
    let mut deadline: Option<Instant> = None;
    loop {
        changes.borrow_and_update();
        let snapshot = registry.load();
        let fence = topics.iter().find_map(|t| snapshot.fence_of(t));
        let lease_lapsed = fence.is_none()
            && topics.iter().any(|t| snapshot.forward_of(t).is_some())
            && !registry.lease().valid();
        if fence.is_none() && !lease_lapsed {
            let forwarded: Vec<Arc<str>> = topics
                .iter()
                .filter(|t| snapshot.forward_of(t).is_some())
                .map(|t| Arc::from(*t))
                .collect();
            if forwarded.is_empty() {
                return Held::Go {
                    snapshot,
                    entered: None,
                };
            }
            let entered = registry.in_flight().enter(forwarded);
            // Counted now: a fence published after `snapshot` either shows here or
            // waits for this request's answer before it is confirmed.
            let now = registry.load();
            if !topics.iter().any(|t| now.fence_of(t).is_some()) {
                return Held::Go {
                    snapshot,
                    entered: Some(entered),
                };
            }
            continue;
        }
        // Fenced, or this instance cannot be sure it may forward (no recent heartbeat):
        // held until that changes or the limit.
        let fence_timeout_ms = fence.map_or(LEASE_WAIT_MS, |f| f.timeout_ms);
        let until = *deadline.get_or_insert_with(|| {
            shared.metrics.produce_parked.increment(1);
            Instant::now() + park_limit(fence_timeout_ms, timeout_ms)
        });
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Held::Closing,
            _ = tokio::time::sleep_until(until) => {
                shared.metrics.produce_park_timeouts.increment(1);
                return Held::TimedOut(registry.load());
            }
            // A lease is renewed without a catalog change: look again soon.
            _ = tokio::time::sleep(LEASE_RECHECK), if lease_lapsed => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // No more changes can come: wait out the limit.
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }
}

/// The longest a write may stay parked: the cut-over's timeout, and under the client's.
fn park_limit(fence_timeout_ms: u64, request_timeout_ms: i32) -> Duration {
    let client = match u64::try_from(request_timeout_ms) {
        Ok(ms) if ms > 0 => (ms as f64 * CLIENT_MARGIN) as u64,
        _ => fence_timeout_ms,
    };
    Duration::from_millis(fence_timeout_ms.min(client))
}

#[cfg(test)]
mod tests {
    use super::park_limit;
    use std::time::Duration;

    #[test]
    fn parked_no_longer_than_the_fence_nor_the_client_waits() {
        assert_eq!(park_limit(60_000, 30_000), Duration::from_millis(24_000));
        assert_eq!(park_limit(10_000, 30_000), Duration::from_millis(10_000));
        assert_eq!(park_limit(10_000, 0), Duration::from_millis(10_000));
        assert_eq!(park_limit(10_000, -1), Duration::from_millis(10_000));
    }
}
