//! The controller: one task per instance, the only writer of the replicator's state.
//! It follows the catalog feed (every instance), the fleet's assignment (replicating
//! instances) and the events of its tasks; it starts and stops link runtimes and
//! partition tasks to match (`reconcile`, `mirror_tasks`), and publishes a snapshot
//! after every change. Everything else (REST, commands, link jobs) reads snapshots.
//! It never does I/O, so nothing ever waits for it behind a network call.
//!
//! Ownership: the state owns every link runtime and every partition task's stop
//! guard; dropping an entry stops what runs under it, and dropping the state (at
//! shutdown) stops everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::DropGuard;
use tracing::Instrument;

use super::catalog::Catalog;
use super::fleet::Share;
use super::link_config::LinkConfig;
use super::link_runtime::{LinkHandle, LinkRuntime, LinkStatus};
use super::manager::Inner;
use super::source::Source;
use super::store::{LinkRecord, MirrorRecord};
use super::task::PartitionStatus;
use super::transitions::{self, LinkConfigs};

/// What tasks tell the controller.
#[derive(Debug)]
pub(super) enum Event {
    /// A partition task hit a fatal error: stop copying the mirror here at once; its
    /// FAILED record follows through the metadata topic.
    Halt(String),
    /// A link's source became unavailable or came back: refresh the state gauges.
    AvailabilityChanged,
}

/// Room for events; a task waits when it is full (the controller never waits on tasks).
pub(super) const EVENT_ROOM: usize = 256;

/// One mirror as the controller holds it.
pub(super) struct MirrorEntry {
    pub(super) record: MirrorRecord,
    pub(super) statuses: Vec<Arc<PartitionStatus>>,
    /// The partitions copied here; dropping a guard stops its task.
    pub(super) running: BTreeMap<i32, DropGuard>,
}

/// The controller's state; only its task touches it.
#[derive(Default)]
pub(super) struct State {
    /// Links that can run: readable, credentials opened.
    pub(super) links: BTreeMap<String, LinkRecord>,
    pub(super) link_configs: LinkConfigs,
    /// Links whose latest record cannot be used, with the reason (shown FAILED).
    pub(super) failed_links: BTreeMap<String, (Option<LinkRecord>, String)>,
    pub(super) mirrors: BTreeMap<String, MirrorEntry>,
    /// The runtime of each link whose jobs run here.
    pub(super) runtimes: BTreeMap<String, LinkRuntime>,
    /// The catalog this state was last reconciled with.
    pub(super) catalog: Arc<Catalog>,
    /// This instance's share of the fleet's work (nothing until assigned).
    pub(super) share: Share,
    /// Every metadata record before this offset is applied.
    pub(super) next_offset: i64,
    /// A loaded catalog was applied.
    pub(super) loaded: bool,
}

/// A mirror as readers see it.
#[derive(Clone)]
pub(super) struct MirrorSnapshot {
    pub(super) record: MirrorRecord,
    pub(super) statuses: Vec<Arc<PartitionStatus>>,
    /// The partitions copied here.
    pub(super) running: Vec<i32>,
}

/// The state at one moment, for readers. The parts behind `Arc` are shared with the
/// snapshot before when only the catalog's heartbeats or offset moved (`refreshed`).
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) links: Arc<BTreeMap<String, LinkRecord>>,
    pub(super) link_configs: Arc<LinkConfigs>,
    pub(super) failed_links: Arc<BTreeMap<String, (Option<LinkRecord>, String)>>,
    pub(super) mirrors: Arc<BTreeMap<String, MirrorSnapshot>>,
    pub(super) runtimes: Arc<BTreeMap<String, LinkHandle>>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) share: Share,
    pub(super) next_offset: i64,
    pub(super) loaded: bool,
}

impl State {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            links: Arc::new(self.links.clone()),
            link_configs: Arc::new(self.link_configs.clone()),
            failed_links: Arc::new(self.failed_links.clone()),
            mirrors: Arc::new(
                self.mirrors
                    .iter()
                    .map(|(topic, m)| {
                        let snapshot = MirrorSnapshot {
                            record: m.record.clone(),
                            statuses: m.statuses.clone(),
                            running: m.running.keys().copied().collect(),
                        };
                        (topic.clone(), snapshot)
                    })
                    .collect(),
            ),
            runtimes: Arc::new(
                self.runtimes
                    .iter()
                    .map(|(link, r)| (link.clone(), r.handle()))
                    .collect(),
            ),
            catalog: self.catalog.clone(),
            share: self.share.clone(),
            next_offset: self.next_offset,
            loaded: self.loaded,
        }
    }

    /// `before` with this state's catalog, offset and share: for a view that changed
    /// no link, mirror or task (only heartbeats came), without copying every mirror.
    fn refreshed(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            links: before.links.clone(),
            link_configs: before.link_configs.clone(),
            failed_links: before.failed_links.clone(),
            mirrors: before.mirrors.clone(),
            runtimes: before.runtimes.clone(),
            catalog: self.catalog.clone(),
            share: self.share.clone(),
            next_offset: self.next_offset,
            loaded: self.loaded,
        }
    }

    pub(super) fn shown_state(&self, record: &MirrorRecord) -> &'static str {
        let status = self.runtimes.get(&record.link).map(|r| &*r.status);
        shown_state(record, &self.link_configs, status)
    }
}

/// The state users see of `record`, given its link's config and runtime status.
fn shown_state(
    record: &MirrorRecord,
    configs: &LinkConfigs,
    status: Option<&LinkStatus>,
) -> &'static str {
    let unavailable = status.is_some_and(LinkStatus::source_unavailable);
    let paused = transitions::link_paused(configs, &record.link);
    transitions::shown_state(record, paused, unavailable)
}

impl Snapshot {
    pub(super) fn link_paused(&self, link: &str) -> bool {
        transitions::link_paused(&self.link_configs, link)
    }

    pub(super) fn shown_state(&self, record: &MirrorRecord) -> &'static str {
        let status = self.runtimes.get(&record.link).map(|r| &*r.status);
        shown_state(record, &self.link_configs, status)
    }

    pub(super) fn link_config(&self, link: &str) -> Option<Arc<LinkConfig>> {
        self.link_configs.get(link).cloned()
    }

    /// How to reach the source of `link` (None when its config no longer validates).
    pub(super) fn source_of(&self, link: &str) -> Option<Source> {
        source_of(&self.link_configs, link)
    }
}

pub(super) fn source_of(configs: &LinkConfigs, link: &str) -> Option<Source> {
    match Source::from_config(configs.get(link)?) {
        Ok(source) => Some(source),
        Err(e) => {
            tracing::error!(link, error = %e, "cannot reach the link's source");
            None
        }
    }
}

/// Starts the controller; it runs until the replicator shuts down.
pub(super) fn spawn(
    inner: Arc<Inner>,
    events: mpsc::Receiver<Event>,
    snapshots: watch::Sender<Arc<Snapshot>>,
) {
    tokio::spawn(run(inner, events, snapshots).instrument(tracing::info_span!("controller")));
}

async fn run(
    inner: Arc<Inner>,
    mut events: mpsc::Receiver<Event>,
    snapshots: watch::Sender<Arc<Snapshot>>,
) {
    let mut state = State::default();
    let mut views = inner.feed.subscribe();
    // Whether anything but the catalog's heartbeats and offset changed since the last
    // snapshot (everything did, before the first).
    let mut changed = true;
    let (mut assignments, shards) = match &inner.fleet {
        Some(fleet) => (Some(fleet.subscribe()), fleet.shards()),
        None => (None, 0),
    };
    loop {
        let view = views.borrow_and_update().clone();
        if let Some(assignment) = assignments.as_mut() {
            let share = Share::new(&assignment.borrow_and_update(), shards);
            if share.generation() != state.share.generation()
                || share.shards() != state.share.shards()
            {
                tracing::info!(generation = share.generation(), "fleet assignment changed");
                state.share = share;
                inner.apply_share(&mut state);
                changed = true;
            }
        }
        if view.loaded {
            changed |= inner.reconcile(&mut state, &view);
        }
        let snapshot = if changed {
            state.snapshot()
        } else {
            state.refreshed(&snapshots.borrow())
        };
        snapshots.send_replace(Arc::new(snapshot));
        changed = false;
        let assignment_changed = async {
            match assignments.as_mut() {
                Some(a) => a.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Dropping the state stops every task under it.
            _ = inner.shutdown.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
            alive = assignment_changed => if !alive { assignments = None },
            event = events.recv() => match event {
                Some(Event::Halt(topic)) => {
                    if let Some(entry) = state.mirrors.get_mut(&topic) {
                        entry.stop_all();
                    }
                    changed = true;
                }
                Some(Event::AvailabilityChanged) => {
                    inner.publish(&state);
                    changed = true;
                }
                None => return,
            },
        }
    }
}
