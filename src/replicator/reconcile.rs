//! Brings the replicator's running state in line with the catalog: links started,
//! restarted or stopped, mirror tasks started or stopped as records change. The only
//! way state changes, on every instance: commands here and on other instances arrive
//! alike, as records read back from the metadata topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog_feed::CatalogView;
use super::fleet::Share;
use super::link_config::LinkConfig;
use super::link_runtime;
use super::manager::{Inner, MirrorEntry, State};
use super::store::{LinkRecord, MirrorRecord};

/// Follows the catalog feed, and the fleet's assignment on a replicating instance, for
/// as long as the replicator runs.
pub(super) async fn follow(inner: Arc<Inner>) {
    let mut views = inner.feed.subscribe();
    let (mut assignments, shards) = match &inner.fleet {
        Some(fleet) => (Some(fleet.subscribe()), fleet.shards()),
        None => (None, 0),
    };
    loop {
        let view = views.borrow_and_update().clone();
        let share = assignments
            .as_mut()
            .map(|a| Share::new(&a.borrow_and_update(), shards));
        {
            let mut state = inner.state.lock().await;
            if let Some(share) = share {
                if share.generation() != state.share.generation()
                    || share_differs(&state.share, &share)
                {
                    tracing::info!(generation = share.generation(), "fleet assignment changed");
                    state.share = share;
                    inner.apply_share(&mut state);
                }
            }
            if view.loaded {
                inner.reconcile(&mut state, &view);
            }
        }
        let assignment_changed = async {
            match assignments.as_mut() {
                Some(a) => a.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
            alive = assignment_changed => if !alive { assignments = None },
        }
    }
}

fn share_differs(a: &Share, b: &Share) -> bool {
    a.shards() != b.shards()
}

impl Inner {
    pub(super) fn reconcile(self: &Arc<Self>, state: &mut State, view: &CatalogView) {
        if Arc::ptr_eq(&state.catalog, &view.catalog) {
            return;
        }
        if state.catalog == view.catalog {
            // The same records (a read that added none): nothing to start or stop.
            state.catalog = view.catalog.clone();
            return;
        }
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
        let old_links = std::mem::replace(&mut state.links, usable);
        self.reconcile_links(state, &old_links);

        let mirrors: BTreeMap<&String, &MirrorRecord> = catalog
            .mirrors()
            .iter()
            .filter(|(_, m)| m.problem.is_none())
            .filter_map(|(topic, m)| Some((topic, m.record.as_ref()?)))
            .collect();
        state.mirrors.retain(|topic, entry| {
            let keep = mirrors.contains_key(topic);
            if !keep {
                entry.stop_all();
            }
            keep
        });
        let links = state.links.clone();
        let share = state.share.clone();
        for (topic, record) in mirrors {
            let entry = state
                .mirrors
                .entry(topic.clone())
                .or_insert_with(|| MirrorEntry::new(record.clone()));
            if entry.record != *record {
                entry.update(record.clone());
            }
            self.converge(entry, &links, &share);
        }
        state.catalog = catalog.clone();
        self.publish(state);
    }

    /// A new share: partition tasks and link runtimes start and stop to match it.
    pub(super) fn apply_share(self: &Arc<Self>, state: &mut State) {
        self.converge_runtimes(state);
        let links = state.links.clone();
        let share = state.share.clone();
        for entry in state.mirrors.values_mut() {
            self.converge(entry, &links, &share);
        }
        self.publish(state);
    }

    /// One runtime (availability probe, link jobs) per usable link in this instance's
    /// share; the others' stop.
    fn converge_runtimes(self: &Arc<Self>, state: &mut State) {
        let unwanted: Vec<String> = state
            .runtimes
            .keys()
            .filter(|name| !state.links.contains_key(*name) || !state.share.owns_link(name))
            .cloned()
            .collect();
        for name in unwanted {
            if let Some(runtime) = state.runtimes.remove(&name) {
                runtime.stop();
            }
        }
        if !self.replicating {
            return;
        }
        let names: Vec<String> = state.links.keys().cloned().collect();
        for name in names {
            if state.share.owns_link(&name) && !state.runtimes.contains_key(&name) {
                let runtime = link_runtime::spawn(self.clone(), &name, true);
                state.runtimes.insert(name, runtime);
            }
        }
    }

    /// Link runtimes follow the links: new ones start, gone ones stop, and a new way
    /// to reach the source or a pause change restarts the link's mirror tasks.
    fn reconcile_links(self: &Arc<Self>, state: &mut State, old: &BTreeMap<String, LinkRecord>) {
        for name in old.keys().filter(|n| !state.links.contains_key(*n)) {
            self.fetchers.remove_link(name);
        }
        self.converge_runtimes(state);
        let names: Vec<String> = state.links.keys().cloned().collect();
        for name in names {
            let (Some(before), Some(now)) = (old.get(&name), state.links.get(&name)) else {
                continue;
            };
            if before.config == now.config {
                continue;
            }
            let connection_changed = before.config.keys().chain(now.config.keys()).any(|k| {
                super::link_ops::is_connection_key(k) && before.config.get(k) != now.config.get(k)
            });
            let paused = |r: &LinkRecord| {
                LinkConfig::from_properties(r.config.clone())
                    .map(|c| c.paused)
                    .ok()
            };
            if connection_changed {
                // New credentials or TLS settings need new source connections.
                self.fetchers.remove_link(&name);
            }
            if connection_changed || paused(before) != paused(now) {
                let links = state.links.clone();
                let share = state.share.clone();
                self.restart_link_tasks(&mut state.mirrors, &links, &share, &name);
            }
        }
    }
}
