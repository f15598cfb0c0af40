//! The cut-over fence as the proxy sees it: which topics' Produce is parked, how many
//! forwarded Produce requests are still on their way to a source, and this instance's
//! lease on forwarding. An instance confirms a fence only once none to a fenced topic is
//! left, so after every instance confirmed, nothing more reaches the source through
//! mirrorgate. An instance that stops confirming (frozen, cut off from the metadata
//! topic) is taken for gone by the others only after its lease has run out, so by then
//! it no longer forwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a heartbeat the metadata topic acknowledged lets this instance forward,
/// counted from when it was sent. Other instances wait `GONE_AFTER` from when they
/// *saw* it before they stop waiting for this one: well after the lease ran out, on
/// either clock.
pub const LEASE_VALID_FOR: Duration = Duration::from_secs(6);
pub const GONE_AFTER: Duration = Duration::from_secs(12);
const TRUST_MARGIN: Duration = Duration::from_secs(2);

/// This instance's lease on forwarding Produce to a source.
#[derive(Default)]
pub struct Lease {
    renewed: Mutex<Option<Instant>>,
}

impl Lease {
    /// A heartbeat sent at `sent` was acknowledged.
    pub fn renew(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        if renewed.is_none_or(|r| r < sent) {
            *renewed = Some(sent);
        }
    }

    /// May a write be sent to a source now.
    pub fn valid(&self) -> bool {
        self.renewed_within(LEASE_VALID_FOR)
    }

    /// May a source's answer to a write sent under the lease be believed now: the write
    /// landed before this moment, and no other instance can have taken this one for gone
    /// (and cut the topic over without it) before `GONE_AFTER` from its last heartbeat
    /// the destination acknowledged; a margin is kept for clock rates.
    pub fn answer_trusted(&self) -> bool {
        self.renewed_within(GONE_AFTER - TRUST_MARGIN)
    }

    fn renewed_within(&self, window: Duration) -> bool {
        let renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        renewed.is_some_and(|r| r.elapsed() < window)
    }
}

/// A topic under a cut-over's fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub link: Arc<str>,
    /// The cut-over's timeout: no write is parked longer.
    pub timeout_ms: u64,
}

/// Forwarded Produce requests not yet answered by their source, per mirror topic.
#[derive(Default)]
pub struct InFlight {
    counts: Mutex<HashMap<Arc<str>, usize>>,
    drained: Notify,
}

/// One forwarded request's count; dropped when its answer arrived (or it was given up).
pub struct Entered {
    owner: Arc<InFlight>,
    topics: Vec<Arc<str>>,
}

impl InFlight {
    pub fn enter(self: &Arc<Self>, topics: Vec<Arc<str>>) -> Entered {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for topic in &topics {
            *counts.entry(topic.clone()).or_default() += 1;
        }
        Entered {
            owner: self.clone(),
            topics,
        }
    }

    pub fn busy<'a>(&self, mut topics: impl Iterator<Item = &'a str>) -> bool {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        topics.any(|t| counts.get(t).is_some_and(|n| *n > 0))
    }

    /// Waits until no forwarded request to `topics` is in flight; false when `within`
    /// passed first.
    pub async fn drained(&self, topics: &[String], within: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                // Registered before the check, so a drop in between is not missed.
                notified.as_mut().enable();
                if !self.busy(topics.iter().map(String::as_str)) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, wait).await.is_ok()
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut emptied = false;
        for topic in &self.topics {
            if let Some(n) = counts.get_mut(topic) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(topic);
                    emptied = true;
                }
            }
        }
        drop(counts);
        if emptied {
            self.owner.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_from_the_send_of_the_last_acknowledged_heartbeat() {
        let lease = Lease::default();
        assert!(!lease.valid(), "no heartbeat yet: not forwarding");
        lease.renew(Instant::now());
        assert!(lease.valid());
        assert!(lease.answer_trusted());
        let Some(long_ago) = Instant::now().checked_sub(LEASE_VALID_FOR * 2) else {
            return;
        };
        let expired = Lease::default();
        expired.renew(long_ago);
        assert!(!expired.valid());
        assert!(!expired.answer_trusted());
        // An older acknowledgement arriving late does not move the lease back.
        lease.renew(long_ago);
        assert!(lease.valid());
    }

    #[tokio::test]
    async fn drained_waits_for_the_last_request_of_those_topics() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.enter(vec![Arc::from("a"), Arc::from("b")]);
        let other = in_flight.enter(vec![Arc::from("c")]);
        let topics = vec!["a".to_string()];
        assert!(!in_flight.drained(&topics, Duration::from_millis(20)).await);
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.drained(&topics, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert!(waiter.await.unwrap_or(false));
        // Another topic's request does not hold a fence of these.
        assert!(in_flight.busy(["c"].into_iter()));
        drop(other);
        assert!(!in_flight.busy(["a", "b", "c"].into_iter()));
    }
}
