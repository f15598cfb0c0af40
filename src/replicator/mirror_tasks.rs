//! The partition tasks of each mirror on this instance: `converge` starts and stops
//! them so that exactly the wanted ones run (`transitions::wanted_partitions`),
//! whatever changed: the mirror's record, its link, or the share. Run by the
//! controller only.

use std::sync::Arc;

use super::controller::{source_of, MirrorEntry, State};
use super::manager::Inner;
use super::store::{MirrorRecord, MirrorState};
use super::task::{self, PartitionJob};
use super::throttle;
use super::transitions;

impl MirrorEntry {
    pub(super) fn new(record: MirrorRecord) -> Self {
        let statuses = (0..record.partitions).map(|_| Arc::default()).collect();
        Self {
            record,
            statuses,
            running: Default::default(),
        }
    }

    /// Stops every partition task of the mirror here.
    pub(super) fn stop_all(&mut self) {
        self.running.clear();
    }

    /// Takes a new record: tasks restart when what they copy changed; more partitions
    /// only add tasks.
    pub(super) fn update(&mut self, record: MirrorRecord) {
        if transitions::tasks_restart(&self.record, &record) {
            self.stop_all();
        }
        self.statuses
            .resize_with(record.partitions.max(0) as usize, Arc::default);
        self.record = record;
    }
}

impl Inner {
    /// Starts the wanted partition tasks of `topic` that are not running and stops the
    /// others; the link's throttle then follows this instance's new share.
    pub(super) fn converge(self: &Arc<Self>, state: &mut State, topic: &str) {
        self.converge_tasks(state, topic);
        self.throttle_mirror(state, topic);
        if let Some(entry) = state.mirrors.get(topic) {
            self.throttle_link(state, &entry.record.link);
        }
    }

    /// The mirror's own rate, shared out like the link's.
    fn throttle_mirror(&self, state: &State, topic: &str) {
        if let Some(entry) = state.mirrors.get(topic) {
            let rate = throttle::share_of(
                entry.record.throttled_rate,
                entry.running.len(),
                entry.record.partitions.max(0) as usize,
            );
            self.fetchers.mirror_throttle(topic).set_rate(rate);
        }
    }

    /// This instance's part of the link's `mirror.replication.throttled.rate`: the share
    /// of the link's copied partitions running here.
    pub(super) fn throttle_link(&self, state: &State, link: &str) {
        let rate = state
            .link_configs
            .get(link)
            .and_then(|c| c.replication_throttled_rate);
        let (here, total) = state
            .mirrors
            .values()
            .filter(|m| m.record.link == link && m.record.state == MirrorState::Active)
            .fold((0, 0), |(here, total), m| {
                (
                    here + m.running.len(),
                    total + m.record.partitions.max(0) as usize,
                )
            });
        self.fetchers
            .throttle(link)
            .set_rate(throttle::share_of(rate, here, total));
    }

    fn converge_tasks(self: &Arc<Self>, state: &mut State, topic: &str) {
        let Some(entry) = state.mirrors.get_mut(topic) else {
            return;
        };
        let wanted = transitions::wanted_partitions(
            &entry.record,
            &state.link_configs,
            &state.share,
            self.replicating,
        );
        // A dropped guard stops its task.
        entry
            .running
            .retain(|partition, _| wanted.contains(partition));
        let missing: Vec<i32> = wanted
            .into_iter()
            .filter(|p| !entry.running.contains_key(p))
            .collect();
        if missing.is_empty() {
            return;
        }
        let Some(source) = source_of(&state.link_configs, &entry.record.link) else {
            return;
        };
        for partition in missing {
            let Some(status) = entry.statuses.get(partition as usize) else {
                continue;
            };
            let stop = self.shutdown.child_token();
            task::spawn(
                self.clone(),
                PartitionJob {
                    link: entry.record.link.clone(),
                    mirror: entry.record.topic.clone(),
                    source_topic: entry.record.source_topic.clone(),
                    partition,
                    start_at: entry.record.start_offsets.get(partition as usize).copied(),
                    producer: task::mirror_producer(&entry.record),
                    source: source.clone(),
                    status: status.clone(),
                    throttle: self.fetchers.mirror_throttle(&entry.record.topic),
                    stop: stop.clone(),
                },
            );
            entry.running.insert(partition, stop.drop_guard());
        }
    }

    /// Every mirror converges (a new share, or a link's config changed).
    pub(super) fn converge_all(self: &Arc<Self>, state: &mut State) {
        let topics: Vec<String> = state.mirrors.keys().cloned().collect();
        for topic in &topics {
            self.converge_tasks(state, topic);
            self.throttle_mirror(state, topic);
        }
        // Each link's share once, after every mirror converged.
        let links: std::collections::BTreeSet<String> = state
            .mirrors
            .values()
            .map(|m| m.record.link.clone())
            .collect();
        for link in links {
            self.throttle_link(state, &link);
        }
    }

    /// Restarts the running tasks of the link's mirrors (a new way to reach the source,
    /// or the link paused or resumed); copying resumes where the destination ends.
    pub(super) fn restart_link_tasks(self: &Arc<Self>, state: &mut State, link: &str) {
        let topics: Vec<String> = state
            .mirrors
            .iter()
            .filter(|(_, m)| m.record.link == link)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in topics {
            if let Some(entry) = state.mirrors.get_mut(&topic) {
                entry.stop_all();
            }
            self.converge(state, &topic);
        }
    }
}
