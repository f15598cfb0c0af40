//! The partition tasks of each mirror on this instance: `converge` starts and stops
//! them so that exactly the wanted ones run (active mirror, usable and unpaused link,
//! a replicating instance, a partition of this instance's share), whatever changed:
//! the mirror's record, its link, or the share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::fleet::Share;
use super::manager::{link_paused, source_of, Inner};
use super::store::{LinkRecord, MirrorRecord, MirrorState};
use super::task::{self, PartitionJob, PartitionStatus};

pub(super) struct MirrorEntry {
    pub(super) record: MirrorRecord,
    pub(super) statuses: Vec<Arc<PartitionStatus>>,
    /// The partitions this instance copies, each with its task's stop token.
    pub(super) running: BTreeMap<i32, CancellationToken>,
}

impl MirrorEntry {
    pub(super) fn new(record: MirrorRecord) -> Self {
        let statuses = (0..record.partitions).map(|_| Arc::default()).collect();
        Self {
            record,
            statuses,
            running: BTreeMap::new(),
        }
    }

    /// Stops every partition task of the mirror here.
    pub(super) fn stop_all(&mut self) {
        for (_, stop) in std::mem::take(&mut self.running) {
            stop.cancel();
        }
    }

    /// Takes a new record: tasks restart when what they copy changed (state, link,
    /// source topic); more partitions only add tasks.
    pub(super) fn update(&mut self, record: MirrorRecord) {
        let before = &self.record;
        let restart = before.state != record.state
            || before.link != record.link
            || before.source_topic != record.source_topic
            || record.partitions < before.partitions;
        if restart {
            self.stop_all();
        }
        self.statuses
            .resize_with(record.partitions.max(0) as usize, Arc::default);
        self.record = record;
    }
}

impl Inner {
    /// The partitions of `entry` that should be copied here now.
    fn wanted(
        &self,
        entry: &MirrorEntry,
        links: &BTreeMap<String, LinkRecord>,
        share: &Share,
    ) -> BTreeSet<i32> {
        let runs = self.replicating
            && entry.record.state == MirrorState::Active
            && links.contains_key(&entry.record.link)
            // A paused link copies nothing; its mirrors show LINK_PAUSED.
            && !link_paused(links, &entry.record.link);
        if !runs {
            return BTreeSet::new();
        }
        (0..entry.record.partitions)
            .filter(|p| share.owns_partition(&entry.record.topic, *p))
            .collect()
    }

    /// Starts the wanted partition tasks that are not running and stops the others.
    pub(super) fn converge(
        self: &Arc<Self>,
        entry: &mut MirrorEntry,
        links: &BTreeMap<String, LinkRecord>,
        share: &Share,
    ) {
        let wanted = self.wanted(entry, links, share);
        entry.running.retain(|partition, stop| {
            let keep = wanted.contains(partition);
            if !keep {
                stop.cancel();
            }
            keep
        });
        let missing: Vec<i32> = wanted
            .into_iter()
            .filter(|p| !entry.running.contains_key(p))
            .collect();
        if missing.is_empty() {
            return;
        }
        let Some(source) = source_of(links, &entry.record.link) else {
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
            entry.running.insert(partition, stop);
        }
    }

    /// Restarts the running tasks of the link's mirrors (a new way to reach the source,
    /// or the link paused or resumed); copying resumes where the destination ends.
    pub(super) fn restart_link_tasks(
        self: &Arc<Self>,
        mirrors: &mut BTreeMap<String, MirrorEntry>,
        links: &BTreeMap<String, LinkRecord>,
        share: &Share,
        link: &str,
    ) {
        for entry in mirrors.values_mut().filter(|m| m.record.link == link) {
            entry.stop_all();
            self.converge(entry, links, share);
        }
    }
}
