//! The cut-over fence as the proxy sees it: which topics' Produce is parked, and how
//! many forwarded Produce requests are still on their way to a source. An instance
//! confirms a fence only once none to a fenced topic is left, so after every instance
//! confirmed, nothing more reaches the source through mirrorgate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

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
