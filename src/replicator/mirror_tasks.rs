//! The partition tasks of each mirror on this instance: `converge` starts and stops
//! them so that exactly the wanted ones run (`transitions::wanted_partitions`),
//! whatever changed: the mirror's record, its link, or the share. Run by the
//! controller only.

use std::sync::Arc;

use super::controller::{source_of, MirrorEntry, State};
use super::manager::Inner;
use super::store::MirrorRecord;
use super::task::{self, PartitionJob};
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
    /// others.
    pub(super) fn converge(self: &Arc<Self>, state: &mut State, topic: &str) {
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
                    stop: stop.clone(),
                },
            );
            entry.running.insert(partition, stop.drop_guard());
        }
    }

    /// Every mirror converges (a new share, or a link's config changed).
    pub(super) fn converge_all(self: &Arc<Self>, state: &mut State) {
        let topics: Vec<String> = state.mirrors.keys().cloned().collect();
        for topic in topics {
            self.converge(state, &topic);
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
