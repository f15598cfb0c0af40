//! This instance's part in a fleet-wide cut-over fence, on every instance (replicating
//! or not): it says it is alive (`instance/<id>` heartbeats), and once the proxy here
//! parks Produce to a cut-over's topics and none of its forwarded writes to them is
//! still on the way to the source, it confirms the fence (`cutover-ack/<link>/<id>`).
//! The cut-over goes on only when every live instance confirmed; which are live is
//! judged by `HeartbeatClock`, fed here from every catalog view.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::catalog::{
    ack_key, AckRecord, CutoverStep, InstanceRecord, CUTOVER_ACK_PREFIX, INSTANCE_PREFIX,
};
use super::catalog_feed::CatalogView;
use super::{now_ms, store, Destination};
use crate::registry::fence::GONE_AFTER;
use crate::registry::Registry;

/// Well within the lease (`registry::fence::LEASE_VALID_FOR`), so one slow write does
/// not stop forwarding.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat write given up after this is made anew on new connections, so the
/// lease (6 s) is renewed in time even when a kept connection died silently.
const HEARTBEAT_WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Records of long-gone instances deleted per heartbeat, at most.
const STALE_PER_ROUND: usize = 8;
/// How often unconfirmed fences are looked at again, besides every catalog change.
const RECHECK: Duration = Duration::from_millis(500);

/// The running member; dropping it stops heartbeats and confirmations.
pub struct FenceMember {
    pub id: Arc<str>,
    /// When this instance saw each instance's heartbeat change (for a cut-over's driver).
    pub heartbeats: Arc<HeartbeatClock>,
    _stop: DropGuard,
}

/// When this instance saw each instance's heartbeat change, on its own clock, from every
/// catalog view since it started: an instance is gone once its heartbeat has not changed
/// for `GONE_AFTER` (by then its lease on forwarding ran out, `registry::fence`), or when
/// it was already far older than that by the wall clock when first seen here (an
/// instance killed long ago). Clocks of different machines are never compared closely.
pub struct HeartbeatClock {
    changed: Mutex<HashMap<String, (i64, Instant)>>,
}

/// Wall-clock age at which a heartbeat is old whatever the clocks' skew.
const LONG_GONE_MS: i64 = 60_000;

impl HeartbeatClock {
    fn new() -> Self {
        Self {
            changed: Mutex::new(HashMap::new()),
        }
    }

    /// Notes the heartbeats of `instances`; returns those not gone.
    pub fn live(&self, instances: &BTreeMap<String, InstanceRecord>, now_ms: i64) -> Vec<String> {
        let now = Instant::now();
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        changed.retain(|id, _| instances.contains_key(id));
        let mut live = Vec::new();
        for (id, record) in instances {
            let long_gone = now_ms.saturating_sub(record.heartbeat_ms) > LONG_GONE_MS;
            let seen_at = if long_gone {
                now.checked_sub(GONE_AFTER).unwrap_or(now)
            } else {
                now
            };
            let entry = changed
                .entry(id.clone())
                .or_insert((record.heartbeat_ms, seen_at));
            if entry.0 != record.heartbeat_ms {
                *entry = (record.heartbeat_ms, now);
            }
            if entry.1.elapsed() < GONE_AFTER {
                live.push(id.clone());
            }
        }
        live
    }
}

impl FenceMember {
    pub fn start(
        dest: Destination,
        registry: Arc<Registry>,
        views: watch::Receiver<Arc<CatalogView>>,
        replicating: bool,
        shutdown: &CancellationToken,
    ) -> Self {
        let id: Arc<str> = match &registry.load().config.replicator.instance_id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(format!("mirrorgate-{}", uuid::Uuid::new_v4().simple()).as_str()),
        };
        let stop = shutdown.child_token();
        let heartbeats = Arc::new(HeartbeatClock::new());
        let member = Member {
            heartbeats: heartbeats.clone(),
            id: id.clone(),
            views: views.clone(),
            dest,
            registry,
            replicating,
            started_ms: now_ms(),
        };
        tokio::spawn(member.clone().heartbeat(stop.clone()));
        tokio::spawn(member.confirm(views, stop.clone()));
        Self {
            id,
            heartbeats,
            _stop: stop.drop_guard(),
        }
    }
}

#[derive(Clone)]
struct Member {
    id: Arc<str>,
    heartbeats: Arc<HeartbeatClock>,
    views: watch::Receiver<Arc<CatalogView>>,
    dest: Destination,
    registry: Arc<Registry>,
    replicating: bool,
    started_ms: i64,
}

impl Member {
    async fn heartbeat(self, stop: CancellationToken) {
        let key = format!("{INSTANCE_PREFIX}{}", self.id);
        let mut writer = store::KeptWriter::default();
        loop {
            let record = InstanceRecord {
                heartbeat_ms: now_ms(),
                started_ms: self.started_ms,
                replicating: self.replicating,
            };
            let sent = std::time::Instant::now();
            let write = writer.put_json(&self.dest, key.clone(), Some(&record));
            match tokio::time::timeout(HEARTBEAT_WRITE_TIMEOUT, write).await {
                Ok(Ok(_)) => self.registry.lease().renew(sent),
                Ok(Err(e)) => {
                    tracing::debug!(side = "upstream", error = %e, "heartbeat not written")
                }
                Err(_) => {
                    // A kept connection may be dead without a reset: start afresh.
                    writer.forget();
                    tracing::debug!(side = "upstream", "heartbeat not written in time");
                }
            }
            self.forget_stale(&mut writer).await;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
        // Leaving: no cut-over should wait for us (best effort; silence does it too).
        let leave = writer.put_json::<InstanceRecord>(&self.dest, key, None);
        let _ = tokio::time::timeout(Duration::from_secs(2), leave).await;
    }

    /// Deletes a few records of instances long gone (any instance may: a delete written
    /// twice is the same delete).
    async fn forget_stale(&self, writer: &mut store::KeptWriter) {
        let stale = self
            .views
            .borrow()
            .catalog
            .stale_instances(now_ms(), STALE_PER_ROUND);
        for (id, acks) in stale {
            for ack in acks {
                let key = format!("{CUTOVER_ACK_PREFIX}{ack}");
                let _ = writer.put_json::<AckRecord>(&self.dest, key, None).await;
            }
            let key = format!("{INSTANCE_PREFIX}{id}");
            if writer
                .put_json::<InstanceRecord>(&self.dest, key, None)
                .await
                .is_ok()
            {
                tracing::info!(instance = id, "forgot an instance silent for long");
            }
        }
    }

    async fn confirm(self, mut views: watch::Receiver<Arc<CatalogView>>, stop: CancellationToken) {
        let mut confirmed: HashSet<(String, String)> = HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = views.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RECHECK) => {}
            }
            let view = views.borrow_and_update().clone();
            let catalog = &view.catalog;
            self.heartbeats.live(catalog.instances(), now_ms());
            let wanted: Vec<(String, String, Vec<String>, u64)> = catalog
                .cutovers()
                .iter()
                .filter(|(_, c)| c.step == CutoverStep::Fencing)
                .filter(|(link, c)| {
                    !catalog.acked(link, &self.id, &c.id)
                        && !confirmed.contains(&((*link).clone(), c.id.clone()))
                })
                .map(|(link, c)| (link.clone(), c.id.clone(), c.topics.clone(), c.timeout_ms))
                .collect();
            for (link, id, topics, timeout_ms) in wanted {
                // The registry took the fence before this view was sent (catalog_feed),
                // so new writes to these topics are parked; wait out those already sent.
                let in_flight = self.registry.in_flight().clone();
                let within = Duration::from_millis(timeout_ms);
                let drained = tokio::select! {
                    _ = stop.cancelled() => return,
                    drained = in_flight.drained(&topics, within) => drained,
                };
                if !drained {
                    tracing::warn!(
                        link,
                        cutover = id,
                        "forwarded writes still unanswered; fence not confirmed"
                    );
                    continue;
                }
                let ack = AckRecord {
                    id: id.clone(),
                    at_ms: now_ms(),
                };
                let key = format!("{CUTOVER_ACK_PREFIX}{}", ack_key(&link, &self.id));
                match store::put_json(&self.dest, key, Some(&ack)).await {
                    Ok(_) => {
                        tracing::info!(link, cutover = id, "fence holds here; confirmed");
                        confirmed.insert((link, id));
                    }
                    Err(e) => {
                        tracing::warn!(side = "upstream", link, error = %e, "fence confirmation not written; retrying")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(at_ms: i64) -> InstanceRecord {
        InstanceRecord {
            heartbeat_ms: at_ms,
            started_ms: 0,
            replicating: true,
        }
    }

    #[test]
    fn an_instance_is_live_until_its_heartbeat_stands_still() {
        let clock = HeartbeatClock::new();
        let now = 1_000_000;
        let mut instances = BTreeMap::new();
        instances.insert("a".to_string(), beat(now));
        // Killed long ago by any clock: not waited for.
        instances.insert("old".to_string(), beat(now - 10 * LONG_GONE_MS));
        assert_eq!(clock.live(&instances, now), vec!["a"]);
        // Seen standing still for longer than GONE_AFTER: gone.
        if let Some(earlier) = Instant::now().checked_sub(GONE_AFTER * 2) {
            let mut changed = clock.changed.lock().unwrap_or_else(|e| e.into_inner());
            changed.insert("a".to_string(), (now, earlier));
        }
        assert!(clock.live(&instances, now).is_empty());
        // A new heartbeat makes it live again.
        instances.insert("a".to_string(), beat(now + 2_000));
        assert_eq!(clock.live(&instances, now + 2_000), vec!["a"]);
    }
}
