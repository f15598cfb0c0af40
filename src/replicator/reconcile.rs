//! Brings the controller's state in line with the catalog: links started, restarted
//! or stopped, mirror tasks started or stopped as records change. The only way state
//! changes, on every instance: commands here and on other instances arrive alike, as
//! records read back from the metadata topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog_feed::CatalogView;
use super::controller::{MirrorEntry, State};
use super::link_runtime;
use super::manager::Inner;
use super::store::{LinkRecord, MirrorRecord};
use super::transitions::{self, LinkChange};

impl Inner {
    /// False when nothing but the catalog's heartbeats changed: no link, mirror or task.
    pub(super) fn reconcile(self: &Arc<Self>, state: &mut State, view: &CatalogView) -> bool {
        state.next_offset = state.next_offset.max(view.next_offset);
        state.loaded = true;
        if Arc::ptr_eq(&state.catalog, &view.catalog) {
            return false;
        }
        if state.catalog.revision() == view.catalog.revision() {
            // Only heartbeats came: nothing to start or stop. The view is kept for
            // those who read instances from the snapshot.
            state.catalog = view.catalog.clone();
            return false;
        }
        metrics::counter!("mirrorgate_replicator_reconciles_total").increment(1);
        let catalog = &view.catalog;
        let mut usable = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for (name, entry) in catalog.links() {
            match entry.usable() {
                Some(record) => {
                    usable.insert(name.clone(), record.clone());
                }
                None => {
                    let reason = entry.problem.clone().unwrap_or_default();
                    failed.insert(name.clone(), (entry.record.clone(), reason));
                }
            }
        }
        state.failed_links = failed;
        state.link_configs = transitions::parse_links(&usable);
        let old_links = std::mem::replace(&mut state.links, usable);
        self.reconcile_links(state, &old_links);

        let mirrors: BTreeMap<&String, &MirrorRecord> = catalog
            .mirrors()
            .iter()
            .filter(|(_, m)| m.problem.is_none())
            .filter_map(|(topic, m)| Some((topic, m.record.as_ref()?)))
            // Dropping an entry stops its tasks.
            .collect();
        state.mirrors.retain(|topic, _| {
            let kept = mirrors.contains_key(topic);
            if !kept {
                self.fetchers.remove_mirror_throttle(topic);
            }
            kept
        });
        for (topic, record) in mirrors {
            let entry = state
                .mirrors
                .entry(topic.clone())
                .or_insert_with(|| MirrorEntry::new(record.clone()));
            if entry.record != *record {
                entry.update(record.clone());
            }
            self.converge(state, topic);
        }
        state.catalog = catalog.clone();
        self.publish(state);
        true
    }

    /// A new share: partition tasks and link runtimes start and stop to match it.
    pub(super) fn apply_share(self: &Arc<Self>, state: &mut State) {
        self.converge_runtimes(state);
        self.converge_all(state);
        self.publish(state);
    }

    /// One runtime (availability probe, link jobs) per usable link in this instance's
    /// share; the others' stop (dropped).
    fn converge_runtimes(self: &Arc<Self>, state: &mut State) {
        let (links, share) = (&state.links, &state.share);
        state
            .runtimes
            .retain(|name, _| links.contains_key(name) && share.owns_link(name));
        if !self.replicating {
            return;
        }
        for name in state.links.keys() {
            if state.share.owns_link(name) && !state.runtimes.contains_key(name) {
                let runtime = link_runtime::spawn(self.clone(), name, true);
                state.runtimes.insert(name.clone(), runtime);
            }
        }
    }

    /// Link runtimes follow the links: new ones start, gone ones stop, and a new way
    /// to reach the source or a pause change restarts the link's mirror tasks.
    fn reconcile_links(self: &Arc<Self>, state: &mut State, old: &BTreeMap<String, LinkRecord>) {
        for name in old.keys().filter(|n| !state.links.contains_key(*n)) {
            self.fetchers.remove_link(name);
            self.fetchers.remove_throttle(name);
        }
        self.converge_runtimes(state);
        let changes: Vec<(String, LinkChange)> = state
            .links
            .iter()
            .filter_map(|(name, now)| Some((name.clone(), LinkChange::of(old.get(name)?, now))))
            .collect();
        for (name, change) in changes {
            if change.connection {
                // New credentials or TLS settings need new source connections.
                self.fetchers.remove_link(&name);
            }
            if change.restarts_tasks() {
                self.restart_link_tasks(state, &name);
            }
        }
        // `mirror.replication.throttled.rate` applies live, without a restart.
        let names: Vec<String> = state.links.keys().cloned().collect();
        for name in names {
            self.throttle_link(state, &name);
        }
    }
}
