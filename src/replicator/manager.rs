//! Mirror topics: create, list, describe (state changes: `mirror_ops`), and what
//! the replicator's parts share (`Inner`: connections, the feed, the controller's
//! snapshots and event channel).
//! A command is validated against the catalog, written to the metadata topic as a
//! record one version newer than what it read, and applied only when the catalog feed
//! reads it back (`reconcile`): every instance applies the same history, and a command
//! that lost a race to another instance's is answered 409.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::catalog::MIRROR_PREFIX;
use super::catalog_feed::{CatalogFeed, CatalogView};
use super::config_sync::{MirrorConfigs, ALWAYS_MIRRORED, NOT_COPIED, TIMESTAMP_TYPE};
use super::controller::{self, Event, MirrorSnapshot, Snapshot, State};
use super::failure::MirrorFailure;
use super::final_sync;
use super::fleet::{Fleet, FleetView};
use super::link_config::{parse_throttled_rate, LinkConfig, THROTTLED_RATE_KEY};
use super::offset_sync::MirrorOffsets;
use super::partition::log_end_offset;
use super::secrets::Sealer;
use super::source::Source;
use super::store::{self, LastMirrored, MirrorRecord, MirrorState};
use super::{now_ms, Destination};
use crate::kafka::admin::{self, AdminError};
use crate::kafka::error_code::TOPIC_ALREADY_EXISTS;
use crate::kafka::producer::init_producer_id;
use crate::registry::Registry;

/// How long a command waits to read its own record back from the metadata topic.
const COMMIT_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::Invalid(_) => 400,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
        }
    }
}

/// A mirror state change asked for by an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Promote,
    Failover,
}

pub struct Inner {
    pub dest: Destination,
    pub(super) sealer: Option<Sealer>,
    /// The controller's latest state (`controller`): read, never written, here.
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Events for the controller.
    events: mpsc::Sender<Event>,
    pub(super) shutdown: CancellationToken,
    pub(super) fetchers: super::fetcher::Fetchers,
    pub(super) feed: CatalogFeed,
    /// `[replicator] enabled` at start: this instance copies and runs link jobs.
    pub(super) replicating: bool,
    /// Membership of the fleet's group (replicating instances only).
    pub(super) fleet: Option<Fleet>,
    /// Heartbeats and cut-over fence confirmations of this instance.
    pub(super) member: super::fence_member::FenceMember,
    /// The copiers' shared Produce connections, one per destination broker.
    pub(super) produce_muxes: super::produce_mux::ProduceMuxes,
    /// Where the mirror partitions' tasks run (`copy_runtime`).
    pub(super) copy_runtime: super::copy_runtime::CopyRuntime,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub lag: i64,
    /// The lag in bytes, estimated from the bytes per record copied so far; -1 before
    /// any record was copied here.
    pub lag_bytes: i64,
    pub last_source_fetch_offset: i64,
    pub dest_log_end_offset: i64,
    pub time_since_last_fetch_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorView {
    pub link_name: String,
    pub mirror_topic_name: String,
    pub source_topic_name: String,
    pub num_partitions: i32,
    pub mirror_status: String,
    pub reason: Option<String>,
    pub state_time_ms: i64,
    /// The mirror's own `mirror.replication.throttled.rate` (bytes/s), if any.
    pub throttled_rate: Option<u64>,
    pub mirror_lags: Vec<PartitionView>,
    /// Recorded when the mirror stopped (promote, failover); empty before.
    pub last_mirrored_offsets: Vec<LastMirrored>,
}

#[derive(Clone)]
pub struct Replicator {
    pub(super) inner: Arc<Inner>,
}

impl Replicator {
    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Starts the catalog feed (every instance) and follows it: the state here is the
    /// catalog's; a replicating instance also runs every active mirror's copy.
    pub fn start(registry: Arc<Registry>, shutdown: CancellationToken) -> Self {
        let sealer = match &registry.load().config.replicator.secret_key_file {
            Some(path) => match Sealer::from_file(path) {
                Ok(sealer) => Some(sealer),
                Err(e) => {
                    tracing::error!(error = %e, "link credentials cannot be stored or read");
                    None
                }
            },
            None => None,
        };
        let dest = Destination::new(registry.clone());
        let config = registry.load().config.clone();
        let replicating = config.replicator.enabled;
        let fleet = replicating
            .then(|| {
                Fleet::start(
                    dest.clone(),
                    &config.replicator,
                    config.destination.bootstrap_list(),
                    &shutdown,
                )
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot join the fleet's group: nothing is copied here")
                })
                .ok()
            })
            .flatten();
        let feed = CatalogFeed::start(
            dest.clone(),
            registry.clone(),
            sealer.clone(),
            replicating,
            &shutdown,
        );
        registry.set_forwarder(Arc::new(super::produce_forward::Forwarder::new(
            dest.clone(),
            feed.subscribe(),
            shutdown.child_token(),
        )));
        let member = super::fence_member::FenceMember::start(
            dest.clone(),
            registry.clone(),
            feed.subscribe(),
            replicating,
            &shutdown,
        );
        let (snapshot_tx, snapshots) = watch::channel(Arc::default());
        let (events, events_rx) = mpsc::channel(controller::EVENT_ROOM);
        let inner = Arc::new(Inner {
            dest,
            sealer,
            snapshots,
            events,
            shutdown,
            fetchers: Default::default(),
            feed,
            replicating,
            fleet,
            member,
            produce_muxes: Default::default(),
            copy_runtime: super::copy_runtime::CopyRuntime::start(config.replicator.copy_threads),
        });
        controller::spawn(inner.clone(), events_rx, snapshot_tx);
        if replicating {
            tokio::spawn(super::source_watch::watch_sources(inner.clone()));
            tokio::spawn(super::cutover::supervise(inner.clone()));
        }
        Self { inner }
    }

    /// Creates the mirror topic with the source's partition count and own configs
    /// (`overrides` win), then starts copying.
    pub async fn create_mirror(
        &self,
        link: &str,
        mirror: &str,
        source_topic: Option<&str>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        if !crate::config::valid_topic_name(mirror) {
            return Err(ApiError::Invalid(format!(
                "Topic name '{mirror}' is not valid."
            )));
        }
        // The mirror's own throttle is the replicator's, not a topic config.
        let mut overrides = overrides.clone();
        let throttled_rate = overrides
            .remove(THROTTLED_RATE_KEY)
            .map(|v| parse_throttled_rate(&v))
            .transpose()
            .map_err(ApiError::Invalid)?;
        let overrides = &overrides;
        let state = self.inner.current_state().await?;
        let config = runnable_link(&state, link)?;
        let catalog = state.catalog.clone();
        // A mirror of that name is never replaced, even while its topic is still being
        // created (a broker may not list a new topic for a moment): its copiers and
        // every proxy go by its record. A restore's own record is replaced by design.
        let existing = catalog.mirror(mirror).and_then(|m| m.record.as_ref());
        let source_topic = source_topic_of(&config, mirror, source_topic)?;
        let link_source = Source::from_config(&config).map_err(ApiError::Invalid)?;
        // The same command, retried after its topic was not created: finish it.
        if let Some(pending) = super::mirror_topic::retry_of(existing, link, &source_topic) {
            let pending = pending.clone();
            return self
                .inner
                .finish_pending_topic(&pending, &link_source)
                .await;
        }
        if existing.is_some_and(|r| r.restoring.is_none() && r.state != MirrorState::Stopped) {
            return Err(ApiError::Conflict(format!(
                "Topic '{mirror}' already exists."
            )));
        }
        if config.bidirectional {
            let ours = self.inner.destination_cluster_id().await;
            super::remote_catalog::refuse_loop(
                &link_source,
                &self.inner.remote_metadata_topic(&config),
                &source_topic,
                &ours,
            )
            .await?;
        }
        let mut source = link_source.connect_any().await.map_err(unavailable)?;
        let metadata = admin::metadata(&mut source, Some(&[source_topic.as_str()]))
            .await
            .map_err(unavailable)?;
        let partitions = admin::partition_count(&metadata, &source_topic).map_err(|code| {
            ApiError::NotFound(format!(
                "Source topic '{source_topic}' is not available (error {code})."
            ))
        })?;
        let source_topic_id = admin::topic_id(&metadata, &source_topic);
        let start_offsets = super::start_offsets::resolve(
            &link_source,
            &metadata,
            &source_topic,
            partitions,
            config.start_offset,
        )
        .await
        .map_err(unavailable)?;
        let mut configs = mirror_configs(&mut source, &source_topic, overrides).await?;
        // Explicit, so a LogAppendTime broker default cannot restamp copied batches.
        configs.insert(TIMESTAMP_TYPE.to_string(), "CreateTime".to_string());
        let configs: Vec<(&str, &str)> = configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut dest = self.inner.dest.connect_any().await.map_err(unavailable)?;
        if admin::topic_exists(&mut dest, mirror)
            .await
            .map_err(unavailable)?
        {
            return Err(ApiError::Conflict(format!(
                "Topic '{mirror}' already exists."
            )));
        }
        // Allocated once: every copier of the mirror, on any instance, shares it
        // (task.rs), so the broker's sequence check makes appends conditional.
        let producer = init_producer_id(&mut dest).await.map_err(unavailable)?;
        let key = format!("{MIRROR_PREFIX}{mirror}");
        let record = MirrorRecord {
            topic: mirror.to_string(),
            source_topic,
            link: link.to_string(),
            partitions,
            // A paused link shows its mirrors as LINK_PAUSED until it resumes.
            state: MirrorState::Active,
            reason: None,
            state_time_ms: now_ms(),
            source_topic_id,
            overrides: overrides.clone(),
            start_offsets,
            version: catalog.next_version(&key),
            producer_id: Some(producer.id),
            producer_epoch: Some(producer.epoch),
            throttled_rate,
            last_mirrored: Vec::new(),
            restoring: None,
            reversing: None,
            topic_pending: true,
        };
        // The name is read-only on every instance before the topic exists, so no client
        // write can land in it first.
        let offset = store::put_mirror(&self.inner.dest, mirror, Some(&record))
            .await
            .map_err(unavailable)?;
        let view = self.inner.commit(offset).await?;
        if view.catalog.mirror(mirror).and_then(|m| m.record.as_ref()) != Some(&record) {
            return Err(lost_race(&key));
        }
        match admin::create_topic(&mut dest, mirror, partitions, -1, &configs).await {
            Ok(()) => {
                // Left set, the link's owner clears it later (`mirror_topic`).
                if let Err(e) = self.inner.clear_topic_pending(mirror).await {
                    tracing::warn!(mirror, error = %e, "mirror created; its record still says pending");
                }
                Ok(())
            }
            Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => {
                // Created by someone else between the check and now: not ours to mirror.
                // Our record goes, unless another writer's replaced it meanwhile.
                let current = self.inner.snapshot();
                if current
                    .catalog
                    .mirror(mirror)
                    .and_then(|m| m.record.as_ref())
                    == Some(&record)
                {
                    let offset = store::put_mirror(&self.inner.dest, mirror, None)
                        .await
                        .map_err(unavailable)?;
                    self.inner.commit(offset).await?;
                }
                Err(ApiError::Conflict(format!(
                    "Topic '{mirror}' already exists."
                )))
            }
            // The record stays: the mirror is read-only and its copiers wait for the
            // topic, which a retry of the command or the link's owner creates.
            Err(e) => Err(unavailable(e)),
        }
    }

    /// What this instance holds of the fleet's work.
    pub async fn fleet(&self) -> FleetView {
        let state = self.inner.snapshot();
        FleetView {
            instance_id: self.inner.member.id.to_string(),
            replicating: self.inner.replicating,
            member: self.inner.fleet.as_ref().map(|f| f.describe()),
            links: state.runtimes.keys().cloned().collect(),
            mirror_partitions: state
                .mirrors
                .iter()
                .flat_map(|(topic, m)| m.running.iter().map(move |p| format!("{topic}-{p}")))
                .collect(),
        }
    }

    pub async fn mirrors(&self, link: Option<&str>) -> Result<Vec<MirrorView>, ApiError> {
        let state = self.inner.loaded_state()?;
        Ok(state
            .mirrors
            .values()
            .filter(|m| link.is_none_or(|l| m.record.link == l))
            .map(|m| view(m, &state))
            .collect())
    }
}

/// The source topic of `mirror`: on a prefixed link the mirror is named prefix +
/// source topic; otherwise `--source-topic`, defaulting to the mirror's own name.
fn source_topic_of(
    config: &LinkConfig,
    mirror: &str,
    given: Option<&str>,
) -> Result<String, ApiError> {
    let Some(prefix) = &config.prefix else {
        return Ok(given.unwrap_or(mirror).to_string());
    };
    let stripped = mirror.strip_prefix(prefix.as_str()).unwrap_or_default();
    if stripped.is_empty() || given.is_some_and(|g| g != stripped) {
        return Err(ApiError::Invalid(format!(
            "Mirror topic '{mirror}' must be named '{prefix}' + the source topic on this link."
        )));
    }
    Ok(stripped.to_string())
}

/// The source topic's own configs, then the operator's overrides from `--config`.
pub(super) async fn mirror_configs(
    source: &mut crate::kafka::client::KafkaConnection,
    topic: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut configs: BTreeMap<String, String> = admin::topic_configs(source, topic)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect();
    for (key, value) in overrides {
        if NOT_COPIED.contains(&key.as_str()) || ALWAYS_MIRRORED.contains(&key.as_str()) {
            return Err(ApiError::Invalid(format!(
                "{key}: cannot be set on a mirror topic"
            )));
        }
        configs.insert(key.clone(), value.clone());
    }
    Ok(configs)
}

/// The config of `link` as it runs; the link must exist and its config validate.
pub(super) fn runnable_link(state: &Snapshot, link: &str) -> Result<Arc<LinkConfig>, ApiError> {
    if !state.links.contains_key(link) {
        return Err(ApiError::NotFound(format!(
            "Cluster link '{link}' does not exist."
        )));
    }
    state.link_config(link).ok_or_else(|| {
        ApiError::Invalid(format!(
            "Cluster link '{link}' has a config that cannot run."
        ))
    })
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// Another instance's command on the same link or mirror was written first.
pub(super) fn lost_race(key: &str) -> ApiError {
    ApiError::Conflict(format!(
        "'{key}' was changed by another command at the same time; nothing was applied, try again"
    ))
}

fn view(m: &MirrorSnapshot, state: &Snapshot) -> MirrorView {
    MirrorView {
        link_name: m.record.link.clone(),
        mirror_topic_name: m.record.topic.clone(),
        source_topic_name: m.record.source_topic.clone(),
        num_partitions: m.record.partitions,
        mirror_status: state.shown_state(&m.record).to_string(),
        reason: m.record.reason.clone(),
        state_time_ms: m.record.state_time_ms,
        throttled_rate: m.record.throttled_rate,
        mirror_lags: lags(m),
        last_mirrored_offsets: m.record.last_mirrored.clone(),
    }
}

fn lags(m: &MirrorSnapshot) -> Vec<PartitionView> {
    let now = now_ms();
    m.statuses
        .iter()
        .enumerate()
        .map(|(partition, s)| {
            let end = s.dest_end_offset.load(Ordering::Relaxed);
            let hw = s.source_high_watermark.load(Ordering::Relaxed);
            let last = s.last_fetch_ms.load(Ordering::Relaxed);
            let lag = (hw - end).max(0);
            let records = s.copied_records.load(Ordering::Relaxed);
            let bytes = s.copied_bytes.load(Ordering::Relaxed);
            let lag_bytes = match records {
                0 => -1,
                n => (lag as u128 * u128::from(bytes) / u128::from(n)).min(i64::MAX as u128) as i64,
            };
            PartitionView {
                partition: partition as i32,
                lag,
                lag_bytes,
                last_source_fetch_offset: hw,
                dest_log_end_offset: end,
                time_since_last_fetch_ms: if last > 0 { now - last } else { -1 },
            }
        })
        .collect()
}

impl Inner {
    /// The other fleet's metadata topic on `config`'s link: its own key, else our name.
    pub(super) fn remote_metadata_topic(&self, config: &LinkConfig) -> String {
        config
            .remote_metadata_topic
            .clone()
            .unwrap_or_else(|| self.dest.metadata_topic())
    }

    /// The controller's latest snapshot.
    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// The latest snapshot, once the controller applied a loaded catalog.
    pub(super) fn loaded_state(&self) -> Result<Arc<Snapshot>, ApiError> {
        let state = self.snapshot();
        if !state.loaded {
            let view = self.feed.view();
            let why = view
                .problem
                .as_deref()
                .unwrap_or("reading the metadata topic");
            return Err(ApiError::Unavailable(format!(
                "the catalog is not loaded yet: {why}"
            )));
        }
        Ok(state)
    }

    /// The state as of every record in the metadata topic now, for a command's
    /// read-modify-write: another instance's change made a moment ago (a pause through
    /// a load balancer, then a resume) is seen here, not answered from a lagging view.
    pub(super) async fn current_state(self: &Arc<Self>) -> Result<Arc<Snapshot>, ApiError> {
        let topic = self.dest.metadata_topic();
        let end = match self.dest.connect_leader(&topic, 0).await {
            Ok(mut conn) => log_end_offset(&mut conn, &topic, 0)
                .await
                .map_err(|e| unavailable(format!("the metadata topic's end: {e}")))?,
            Err(e) => return Err(unavailable(format!("the metadata topic's leader: {e}"))),
        };
        if end > 0 {
            self.commit(end - 1).await?;
        }
        self.loaded_state()
    }

    /// Commands that need this instance's link jobs (final syncs).
    pub(super) fn require_replicating(&self, what: &str) -> Result<(), ApiError> {
        if self.replicating {
            Ok(())
        } else {
            Err(ApiError::Unavailable(format!(
                "{what} runs on an instance with [replicator] enabled = true"
            )))
        }
    }

    /// Waits until the catalog feed has read our record at `offset` back and the
    /// controller has applied it.
    pub(super) async fn commit(
        self: &Arc<Self>,
        offset: i64,
    ) -> Result<Arc<CatalogView>, ApiError> {
        let view = self
            .feed
            .applied(offset, COMMIT_WAIT)
            .await
            .map_err(unavailable)?;
        let mut snapshots = self.snapshots.clone();
        let applied = async move {
            snapshots
                .wait_for(|s| s.loaded && s.next_offset > offset)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(COMMIT_WAIT, applied).await {
            Ok(Ok(_)) => Ok(view),
            Ok(Err(_)) => Err(unavailable("the replicator is shutting down")),
            Err(_) => Err(unavailable(format!(
                "the record at offset {offset} was read but not applied in time"
            ))),
        }
    }

    pub(super) async fn destination_cluster_id(&self) -> String {
        match self.dest.connect_any().await {
            Ok(mut conn) => admin::metadata(&mut conn, Some(&[]))
                .await
                .ok()
                .and_then(|m| m.cluster_id)
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The link's mirrors whose configs follow the source (all but STOPPED and FAILED).
    pub(super) fn config_targets(&self, link: &str) -> Vec<MirrorConfigs> {
        final_sync::config_targets(&self.snapshot(), link)
    }

    /// The largest partition lag (records) among the link's mirrors.
    pub(super) fn max_lag(&self, link: &str) -> i64 {
        self.snapshot()
            .mirrors
            .values()
            .filter(|m| m.record.link == link)
            .flat_map(lags)
            .map(|p| p.lag)
            .max()
            .unwrap_or(0)
    }

    /// The link's mirrors whose consumer offsets are synced (all but STOPPED and
    /// FAILED), with how far each partition is mirrored.
    pub(super) fn offset_targets(&self, link: &str) -> Vec<MirrorOffsets> {
        final_sync::offset_targets(&self.snapshot(), link)
    }

    /// True while the link's last availability probe reached the source.
    pub(super) fn link_source_answers(&self, link: &str) -> bool {
        self.snapshot()
            .runtimes
            .get(link)
            .is_some_and(|r| r.status.available())
    }

    /// Every mirror topic's name, whatever its link or state.
    pub(super) fn mirror_names(&self) -> HashSet<String> {
        self.snapshot().mirrors.keys().cloned().collect()
    }

    /// The current config of `link` (None once deleted or when it no longer parses).
    pub(super) fn link_config(&self, link: &str) -> Option<Arc<LinkConfig>> {
        self.snapshot().link_config(link)
    }

    /// A link went SOURCE_UNAVAILABLE or came back: the controller refreshes the gauges.
    pub(super) async fn link_availability_changed(&self) {
        let _ = self.events.send(Event::AvailabilityChanged).await;
    }

    /// Updates the link and mirror-state gauges (the read-only set reaches the proxy
    /// from the catalog feed).
    pub(super) fn publish(&self, state: &State) {
        metrics::gauge!("mirrorgate_links").set(state.links.len() as f64);
        let copied_here: usize = state.mirrors.values().map(|m| m.running.len()).sum();
        metrics::gauge!("mirrorgate_fleet_assigned_partitions").set(copied_here as f64);
        for link_state in ["ACTIVE", "PAUSED", "SOURCE_UNAVAILABLE"] {
            let count = state
                .runtimes
                .iter()
                .filter(|(link, r)| {
                    let paused = super::transitions::link_paused(&state.link_configs, link);
                    r.status.state(paused) == link_state
                })
                .count();
            metrics::gauge!("mirrorgate_links_by_state", "state" => link_state).set(count as f64);
        }
        for shown in [
            "ACTIVE",
            "PAUSED",
            "PENDING_STOPPED",
            "STOPPED",
            "FAILED",
            "LINK_PAUSED",
            "SOURCE_UNAVAILABLE",
        ] {
            let count = state
                .mirrors
                .values()
                .filter(|m| state.shown_state(&m.record) == shown)
                .count();
            metrics::gauge!("mirrorgate_mirror_topics", "state" => shown).set(count as f64);
        }
    }

    /// A partition task hit a fatal error: the whole mirror goes FAILED with the reason.
    /// A STOPPED mirror is writable for good and never becomes FAILED.
    pub async fn fail(self: &Arc<Self>, topic: &str, failure: MirrorFailure) {
        let state = self.snapshot();
        let Some(entry) = state.mirrors.get(topic) else {
            return;
        };
        if matches!(
            entry.record.state,
            MirrorState::Failed | MirrorState::Stopped
        ) {
            return;
        }
        // Nothing more is copied here, whatever becomes of the record.
        let _ = self.events.send(Event::Halt(topic.to_string())).await;
        metrics::counter!("mirrorgate_mirror_failures_total", "reason" => failure.reason.code())
            .increment(1);
        let key = format!("{MIRROR_PREFIX}{topic}");
        let mut record = entry.record.clone();
        record.state = MirrorState::Failed;
        record.reason = Some(failure.to_string());
        record.state_time_ms = now_ms();
        record.version = state.catalog.next_version(&key);
        let written = match store::put_mirror(&self.dest, topic, Some(&record)).await {
            Ok(offset) => self.commit(offset).await.map(|_| ()),
            Err(e) => Err(unavailable(e)),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, topic, "cannot record the FAILED state");
        }
    }
}
