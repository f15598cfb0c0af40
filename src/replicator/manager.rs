//! Links and mirror topics: create, list, describe, pause/resume, promote/failover.
//! Every change is written to the metadata topic first, then applied in memory and
//! published to the proxy (read-only topics) through the registry.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::config_sync::{MirrorConfigs, ALWAYS_MIRRORED, NOT_COPIED, TIMESTAMP_TYPE};
use super::cut_over::{self, FinalSync};
use super::link_config::LinkConfig;
use super::link_runtime::{self, LinkRuntime};
use super::offset_sync::MirrorOffsets;
use super::secrets::Sealer;
use super::source::Source;
use super::store::{self, LinkRecord, MirrorRecord, MirrorState};
use super::task::{self, PartitionJob, PartitionStatus};
use super::{now_ms, Destination};
use crate::kafka::admin::{self, AdminError, TOPIC_ALREADY_EXISTS};
use crate::kafka::producer::init_producer_id;
use crate::registry::Registry;

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

pub(super) struct MirrorEntry {
    pub(super) record: MirrorRecord,
    pub(super) statuses: Vec<Arc<PartitionStatus>>,
    pub(super) stop: Option<CancellationToken>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) links: BTreeMap<String, LinkRecord>,
    pub(super) mirrors: BTreeMap<String, MirrorEntry>,
    /// The running task of each link.
    pub(super) runtimes: BTreeMap<String, LinkRuntime>,
    loaded: bool,
}

impl State {
    pub(super) fn link_paused(&self, link: &str) -> bool {
        link_paused(&self.links, link)
    }

    /// The state users see: an ACTIVE mirror shows its link's trouble.
    fn shown_state(&self, record: &MirrorRecord) -> &'static str {
        if record.state != MirrorState::Active {
            return record.state.as_str();
        }
        if self.link_paused(&record.link) {
            "LINK_PAUSED"
        } else if self
            .runtimes
            .get(&record.link)
            .is_some_and(|r| r.status.source_unavailable())
        {
            "SOURCE_UNAVAILABLE"
        } else {
            record.state.as_str()
        }
    }
}

fn link_paused(links: &BTreeMap<String, LinkRecord>, link: &str) -> bool {
    links
        .get(link)
        .and_then(|l| LinkConfig::from_properties(l.config.clone()).ok())
        .is_some_and(|c| c.paused)
}

pub struct Inner {
    pub dest: Destination,
    pub(super) sealer: Option<Sealer>,
    registry: Arc<Registry>,
    pub(super) state: Mutex<State>,
    pub(super) shutdown: CancellationToken,
    pub(super) fetchers: super::fetcher::Fetchers,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub lag: i64,
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
    pub mirror_lags: Vec<PartitionView>,
}

#[derive(Clone)]
pub struct Replicator {
    pub(super) inner: Arc<Inner>,
}

impl Replicator {
    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Loads links and mirrors from the metadata topic (retrying until the destination
    /// answers) and restarts every active mirror.
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
        let inner = Arc::new(Inner {
            dest: Destination::new(registry.clone()),
            sealer,
            registry,
            state: Mutex::new(State::default()),
            shutdown,
            fetchers: Default::default(),
        });
        if inner.registry.load().config.replicator.enabled {
            tokio::spawn(load(inner.clone()));
            tokio::spawn(super::source_watch::watch_sources(inner.clone()));
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
        let mut state = self.inner.loaded_state().await?;
        let link_record = state
            .links
            .get(link)
            .ok_or_else(|| ApiError::NotFound(format!("Cluster link '{link}' does not exist.")))?;
        let config = LinkConfig::from_properties(link_record.config.clone())
            .map_err(|e| ApiError::Invalid(e.join("; ")))?;
        let source_topic = source_topic_of(&config, mirror, source_topic)?;
        let link_source = Source::from_config(&config).map_err(ApiError::Invalid)?;
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
        // Allocated once: every copier of the mirror shares it (task.rs).
        let producer = init_producer_id(&mut dest).await.map_err(unavailable)?;
        match admin::create_topic(&mut dest, mirror, partitions, -1, &configs).await {
            Ok(()) => {}
            Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => {
                return Err(ApiError::Conflict(format!(
                    "Topic '{mirror}' already exists."
                )));
            }
            Err(e) => return Err(unavailable(e)),
        }
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
            producer_id: Some(producer.id),
            producer_epoch: Some(producer.epoch),
        };
        store::put_mirror(&self.inner.dest, mirror, Some(&record))
            .await
            .map_err(unavailable)?;
        let entry = self.inner.entry(record, &state.links);
        state.mirrors.insert(mirror.to_string(), entry);
        self.inner.publish(&state);
        Ok(())
    }

    pub async fn mirrors(&self, link: Option<&str>) -> Result<Vec<MirrorView>, ApiError> {
        let state = self.inner.loaded_state().await?;
        Ok(state
            .mirrors
            .values()
            .filter(|m| link.is_none_or(|l| m.record.link == l))
            .map(|m| view(m, &state))
            .collect())
    }

    /// Applies `change` to each of `topics` (never an implied "all": an empty list is
    /// refused); one result per topic, as Confluent answers.
    pub async fn change(
        &self,
        link: &str,
        topics: &[String],
        change: Change,
    ) -> Result<Vec<(String, Result<(), String>)>, ApiError> {
        let mut state = self.inner.loaded_state().await?;
        let any_link = link == "-";
        if !any_link && !state.links.contains_key(link) {
            return Err(ApiError::NotFound(format!(
                "Cluster link '{link}' does not exist."
            )));
        }
        if topics.is_empty() {
            return Err(ApiError::Invalid(
                "mirror_topic_names: name the mirror topics".into(),
            ));
        }
        let mut results = Vec::new();
        for topic in topics.iter().cloned() {
            let result = self
                .inner
                .change_one(&mut state, link, &topic, change)
                .await;
            results.push((topic, result));
        }
        self.inner.publish(&state);
        Ok(results)
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
async fn mirror_configs(
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

/// How to reach the source of `link` (None when its stored config no longer validates).
pub(super) fn source_of(links: &BTreeMap<String, LinkRecord>, link: &str) -> Option<Source> {
    let config = LinkConfig::from_properties(links.get(link)?.config.clone()).ok()?;
    match Source::from_config(&config) {
        Ok(source) => Some(source),
        Err(e) => {
            tracing::error!(link, error = %e, "cannot reach the link's source");
            None
        }
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

fn view(m: &MirrorEntry, state: &State) -> MirrorView {
    MirrorView {
        link_name: m.record.link.clone(),
        mirror_topic_name: m.record.topic.clone(),
        source_topic_name: m.record.source_topic.clone(),
        num_partitions: m.record.partitions,
        mirror_status: state.shown_state(&m.record).to_string(),
        reason: m.record.reason.clone(),
        state_time_ms: m.record.state_time_ms,
        mirror_lags: lags(m),
    }
}

fn lags(m: &MirrorEntry) -> Vec<PartitionView> {
    let now = now_ms();
    m.statuses
        .iter()
        .enumerate()
        .map(|(partition, s)| {
            let end = s.dest_end_offset.load(Ordering::Relaxed);
            let hw = s.source_high_watermark.load(Ordering::Relaxed);
            let last = s.last_fetch_ms.load(Ordering::Relaxed);
            PartitionView {
                partition: partition as i32,
                lag: (hw - end).max(0),
                last_source_fetch_offset: hw,
                dest_log_end_offset: end,
                time_since_last_fetch_ms: if last > 0 { now - last } else { -1 },
            }
        })
        .collect()
}

async fn load(inner: Arc<Inner>) {
    loop {
        let loaded = async {
            store::ensure_topic(&inner.dest).await?;
            store::load(&inner.dest, inner.sealer.as_ref()).await
        }
        .await;
        match loaded {
            Ok(loaded) => {
                let mut state = inner.state.lock().await;
                state.links = loaded.links;
                for link in state.links.keys().cloned().collect::<Vec<_>>() {
                    let runtime = link_runtime::spawn(inner.clone(), &link, true);
                    state.runtimes.insert(link, runtime);
                }
                for (topic, record) in loaded.mirrors {
                    let entry = inner.entry(record, &state.links);
                    state.mirrors.insert(topic, entry);
                }
                state.loaded = true;
                inner.publish(&state);
                tracing::info!(
                    links = state.links.len(),
                    mirrors = state.mirrors.len(),
                    "replicator state loaded"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, side = "upstream", "cannot load replicator state; retrying");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

impl Inner {
    pub(super) async fn loaded_state(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, State>, ApiError> {
        if !self.registry.load().config.replicator.enabled {
            return Err(ApiError::Unavailable(
                "the replicator is not enabled here ([replicator] enabled = true)".into(),
            ));
        }
        let state = self.state.lock().await;
        if !state.loaded {
            return Err(ApiError::Unavailable(
                "the replicator state is not loaded yet".into(),
            ));
        }
        Ok(state)
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

    /// An in-memory mirror, with its partition tasks running when it is active.
    fn entry(
        self: &Arc<Self>,
        record: MirrorRecord,
        links: &BTreeMap<String, LinkRecord>,
    ) -> MirrorEntry {
        let statuses: Vec<Arc<PartitionStatus>> =
            (0..record.partitions).map(|_| Arc::default()).collect();
        let mut entry = MirrorEntry {
            record,
            statuses,
            stop: None,
        };
        if entry.record.state == MirrorState::Active {
            self.start_tasks(&mut entry, links);
        }
        entry
    }

    /// The link's mirrors whose configs follow the source (all but STOPPED and FAILED).
    pub(super) async fn config_targets(&self, link: &str) -> Vec<MirrorConfigs> {
        cut_over::config_targets(&*self.state.lock().await, link)
    }

    /// The largest partition lag (records) among the link's mirrors.
    pub(super) async fn max_lag(&self, link: &str) -> i64 {
        let state = self.state.lock().await;
        state
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
    pub(super) async fn offset_targets(&self, link: &str) -> Vec<MirrorOffsets> {
        cut_over::offset_targets(&*self.state.lock().await, link)
    }

    /// True while the link's last availability probe reached the source.
    pub(super) async fn link_source_answers(&self, link: &str) -> bool {
        let state = self.state.lock().await;
        state
            .runtimes
            .get(link)
            .is_some_and(|r| r.status.available())
    }

    /// Every mirror topic's name, whatever its link or state.
    pub(super) async fn mirror_names(&self) -> HashSet<String> {
        self.state.lock().await.mirrors.keys().cloned().collect()
    }

    /// The current config of `link` (None once deleted or when it no longer parses).
    pub(super) async fn link_config(&self, link: &str) -> Option<LinkConfig> {
        let state = self.state.lock().await;
        LinkConfig::from_properties(state.links.get(link)?.config.clone()).ok()
    }

    /// A link went SOURCE_UNAVAILABLE or came back: refresh the state gauges.
    pub(super) async fn link_availability_changed(&self) {
        let state = self.state.lock().await;
        self.publish(&state);
    }

    /// Stops and restarts the tasks of the link's active mirrors (new way to reach the
    /// source, or the link paused/resumed); copying resumes where the destination ends.
    pub(super) fn restart_link_tasks(self: &Arc<Self>, state: &mut State, link: &str) {
        let links = state.links.clone();
        let paused = link_paused(&links, link);
        for entry in state.mirrors.values_mut() {
            if entry.record.link != link || entry.record.state != MirrorState::Active {
                continue;
            }
            if let Some(stop) = entry.stop.take() {
                stop.cancel();
            }
            if !paused {
                self.start_tasks(entry, &links);
            }
        }
    }

    fn start_tasks(
        self: &Arc<Self>,
        entry: &mut MirrorEntry,
        links: &BTreeMap<String, LinkRecord>,
    ) {
        // A paused link copies nothing; its mirrors show LINK_PAUSED.
        if link_paused(links, &entry.record.link) {
            return;
        }
        let Some(source) = source_of(links, &entry.record.link) else {
            return;
        };
        let stop = self.shutdown.child_token();
        let all = 0..entry.record.partitions;
        self.spawn_partition_tasks(entry, &source, all, &stop);
        entry.stop = Some(stop);
    }

    pub(super) fn spawn_partitions(
        self: &Arc<Self>,
        entry: &MirrorEntry,
        links: &BTreeMap<String, LinkRecord>,
        partitions: std::ops::Range<i32>,
        stop: CancellationToken,
    ) {
        let Some(source) = source_of(links, &entry.record.link) else {
            return;
        };
        self.spawn_partition_tasks(entry, &source, partitions, &stop);
    }

    fn spawn_partition_tasks(
        self: &Arc<Self>,
        entry: &MirrorEntry,
        source: &Source,
        partitions: std::ops::Range<i32>,
        stop: &CancellationToken,
    ) {
        for partition in partitions {
            let Some(status) = entry.statuses.get(partition as usize) else {
                continue;
            };
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
        }
    }

    /// Tells the proxy which topics are read-only (every mirror not STOPPED) and
    /// updates the link and mirror-state gauges.
    pub(super) fn publish(&self, state: &State) {
        metrics::gauge!("mirrorgate_links").set(state.links.len() as f64);
        for link_state in ["ACTIVE", "PAUSED", "SOURCE_UNAVAILABLE"] {
            let count = state
                .runtimes
                .iter()
                .filter(|(link, r)| r.status.state(state.link_paused(link)) == link_state)
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
        let read_only: HashSet<String> = state
            .mirrors
            .values()
            .filter(|m| m.record.state != MirrorState::Stopped)
            .map(|m| m.record.topic.clone())
            .collect();
        self.registry.set_link_mirrors(read_only);
    }

    /// A partition task hit a fatal error: the whole mirror goes FAILED with the reason.
    pub async fn fail(&self, topic: &str, reason: String) {
        let mut state = self.state.lock().await;
        let Some(entry) = state.mirrors.get_mut(topic) else {
            return;
        };
        if entry.record.state == MirrorState::Failed {
            return;
        }
        if let Some(stop) = entry.stop.take() {
            stop.cancel();
        }
        // The reason's leading code (OFFSET_MISMATCH, ...) is a bounded label.
        let code = reason.split(':').next().unwrap_or("UNKNOWN").to_string();
        metrics::counter!("mirrorgate_mirror_failures_total", "reason" => code).increment(1);
        entry.record.state = MirrorState::Failed;
        entry.record.reason = Some(reason);
        entry.record.state_time_ms = now_ms();
        let record = entry.record.clone();
        if let Err(e) = store::put_mirror(&self.dest, topic, Some(&record)).await {
            tracing::error!(error = %e, topic, "cannot record the FAILED state");
        }
        self.publish(&state);
    }

    async fn change_one(
        self: &Arc<Self>,
        state: &mut State,
        link: &str,
        topic: &str,
        change: Change,
    ) -> Result<(), String> {
        let links = state.links.clone();
        let unavailable_source = state.mirrors.get(topic).is_some_and(|m| {
            state
                .runtimes
                .get(&m.record.link)
                .is_some_and(|r| r.status.source_unavailable())
        });
        let final_sync = match change {
            Change::Promote | Change::Failover => FinalSync::prepare(state, topic),
            _ => None,
        };
        let entry = state
            .mirrors
            .get_mut(topic)
            .filter(|m| link == "-" || m.record.link == link)
            .ok_or_else(|| format!("Topic '{topic}' is not a mirror topic of link '{link}'."))?;
        let link = entry.record.link.clone();
        let current = entry.record.state;
        if current == MirrorState::Stopped && matches!(change, Change::Promote | Change::Failover) {
            return Err(format!(
                "Topic '{topic}' has already stopped its mirror from '{link}'"
            ));
        }
        let next = match (change, current) {
            (Change::Pause, MirrorState::Active) => MirrorState::Paused,
            (Change::Resume, MirrorState::Paused) => MirrorState::Active,
            (Change::Failover, _) => {
                if let Some(sync) = &final_sync {
                    sync.before_failover(&self.dest, &link).await;
                }
                MirrorState::Stopped
            }
            (Change::Promote, MirrorState::Active | MirrorState::Paused) => {
                if unavailable_source {
                    return Err(format!(
                        "Topic '{topic}' cannot be promoted while the source cluster of '{link}' is unavailable; use failover."
                    ));
                }
                let lagging: Vec<String> = lags(entry)
                    .iter()
                    .filter(|p| p.lag > 0 || p.time_since_last_fetch_ms < 0)
                    .map(|p| format!("partition {} lag {}", p.partition, p.lag))
                    .collect();
                if !lagging.is_empty() {
                    return Err(format!(
                        "Topic '{topic}' cannot be promoted while it has mirroring lag: {}",
                        lagging.join(", ")
                    ));
                }
                if let Some(sync) = &final_sync {
                    let source_topic = entry.record.source_topic.clone();
                    sync.before_promote(&self.dest, &link, topic, &source_topic)
                        .await?;
                }
                MirrorState::Stopped
            }
            (_, state) => {
                return Err(format!(
                    "Topic '{topic}' is {}; {change:?} does not apply.",
                    state.as_str()
                ))
            }
        };
        let mut record = entry.record.clone();
        record.state = next;
        record.reason = None;
        record.state_time_ms = now_ms();
        store::put_mirror(&self.dest, topic, Some(&record))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(stop) = entry.stop.take() {
            stop.cancel();
        }
        entry.record = record;
        if next == MirrorState::Active {
            self.start_tasks(entry, &links);
        }
        Ok(())
    }
}
