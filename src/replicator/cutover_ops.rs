//! The cut-over's commands, behind `mirrorgate cutover` and its REST resource: start
//! one (a `cutover/<link>` record the link's instance then drives, `cutover`), look at
//! it, abort it, or dry-run its checks without fencing anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog::{CutoverRecord, CutoverStep, Reverse, CUTOVER_PREFIX};
use super::controller::Snapshot;
use super::manager::{lost_race, ApiError, Inner, Replicator};
use super::store::{self, MirrorState};
use super::{cutover, reverse};
use super::{now_ms, offset_sync};

/// Accepted `timeout_ms`: long enough for a fleet to confirm, short of what a
/// producer's delivery timeout (2 minutes by default) would bear.
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1_000..=600_000;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The fence goes up once the mirrors are this close; the rest is copied under it. Lag
/// under steady writes is seldom 0, so 0 would wait for a quiet moment that may not come.
const DEFAULT_MAX_LAG_RECORDS: i64 = 10_000;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverRequest {
    /// Mirror topics of the link; empty means every ACTIVE one.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default = "default_max_lag")]
    pub max_lag_records: i64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub dry_run: bool,
    /// A reverse: the source topics on the link's cluster become mirrors of these
    /// (`mirrors --reverse-and-start-mirror` / `--reverse-and-pause-mirror`).
    #[serde(default)]
    pub reverse: Option<Reverse>,
}

impl Default for CutoverRequest {
    fn default() -> Self {
        Self {
            topics: Vec::new(),
            max_lag_records: DEFAULT_MAX_LAG_RECORDS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            dry_run: false,
            reverse: None,
        }
    }
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_lag() -> i64 {
    DEFAULT_MAX_LAG_RECORDS
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceView {
    pub instance_id: String,
    pub live: bool,
    pub replicating: bool,
    /// Confirmed the fence of the cut-over shown.
    pub confirmed: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CutoverView {
    pub link_name: String,
    #[serde(flatten)]
    pub record: CutoverRecord,
    pub instances: Vec<InstanceView>,
    /// Records the mirrors are behind their source, while the cut-over is under way and
    /// the source answers (for progress; the driver decides on its own reading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DryRunView {
    pub link_name: String,
    pub topics: Vec<String>,
    /// Records behind, by "topic partition".
    pub lag: BTreeMap<String, i64>,
    pub total_lag: i64,
    pub max_lag_records: i64,
    pub instances: Vec<InstanceView>,
    /// Source partitions whose end moved within a second (unfenced, forwarded writes
    /// move them too; under the fence any of these aborts the cut-over).
    pub source_moving: Vec<String>,
    /// Consumer groups with members on the source: they have not moved yet.
    pub source_groups: Vec<String>,
    /// What the cut-over would do, line by line.
    pub plan: Vec<String>,
}

impl Replicator {
    pub async fn start_cutover(
        &self,
        link: &str,
        request: CutoverRequest,
    ) -> Result<CutoverView, ApiError> {
        self.inner.require_replicating("cut-over")?;
        let state = self.inner.current_state().await?;
        let topics = checked(&state, link, &request)?;
        if let Some(current) = state.catalog.cutover(link) {
            if !current.step.is_final() {
                return Err(ApiError::Conflict(format!(
                    "A cut-over of link '{link}' is under way (step {}); abort it first.",
                    current.step.as_str()
                )));
            }
        }
        if let Some(reverse) = request.reverse {
            reverse::check(&self.inner, link, &topics, reverse).await?;
        }
        let now = now_ms();
        let record = CutoverRecord {
            id: format!("{now:x}-{:04x}", rand::random::<u16>()),
            topics,
            step: CutoverStep::WaitingForLag,
            max_lag_records: request.max_lag_records,
            timeout_ms: request.timeout_ms,
            started_ms: now,
            step_time_ms: now,
            fenced_ms: None,
            fenced_source_ends: None,
            reason: None,
            reverse: request.reverse,
            version: state
                .catalog
                .cutover(link)
                .map_or(1, |c| c.version.saturating_add(1)),
        };
        let applied = self.inner.put_cutover(link, &record).await?;
        Ok(view(
            &applied,
            link,
            &applied.catalog.cutover(link).cloned().unwrap_or(record),
        ))
    }

    pub async fn cutover(&self, link: &str) -> Result<CutoverView, ApiError> {
        let state = self.inner.loaded_state()?;
        let record =
            state.catalog.cutover(link).cloned().ok_or_else(|| {
                ApiError::NotFound(format!("Cluster link '{link}' has no cut-over."))
            })?;
        let mut shown = view(&state, link, &record);
        if !record.step.is_final() {
            shown.total_lag = cutover::lag(&self.inner, link, &record)
                .await
                .ok()
                .map(|lag| lag.values().sum());
        }
        Ok(shown)
    }

    /// Aborts the link's cut-over while it can be: once promoting, it is finished.
    pub async fn abort_cutover(&self, link: &str) -> Result<CutoverView, ApiError> {
        let state = self.inner.current_state().await?;
        let current =
            state.catalog.cutover(link).cloned().ok_or_else(|| {
                ApiError::NotFound(format!("Cluster link '{link}' has no cut-over."))
            })?;
        match current.step {
            CutoverStep::WaitingForLag | CutoverStep::Fencing | CutoverStep::Verifying => {}
            CutoverStep::Syncing | CutoverStep::Reversing => {
                return Err(ApiError::Conflict(format!(
                    "The cut-over of link '{link}' is promoting its topics and cannot be aborted."
                )))
            }
            CutoverStep::Done | CutoverStep::Aborted => return Ok(view(&state, link, &current)),
        }
        cutover::release_other_side(&self.inner, link, &current)
            .await
            .map_err(ApiError::Unavailable)?;
        let mut record = current.clone();
        record.step = CutoverStep::Aborted;
        record.reason = Some("aborted by the operator".into());
        record.step_time_ms = now_ms();
        record.version = current.version.saturating_add(1);
        let applied = self.inner.put_cutover(link, &record).await?;
        let shown = applied.catalog.cutover(link).cloned().unwrap_or(record);
        Ok(view(&applied, link, &shown))
    }

    /// Steps 1 and 3 checked, nothing fenced: lag, instances, moving source partitions,
    /// groups still on the source.
    pub async fn cutover_dry_run(
        &self,
        link: &str,
        request: CutoverRequest,
    ) -> Result<DryRunView, ApiError> {
        let state = self.inner.current_state().await?;
        let topics = checked(&state, link, &request)?;
        let probe = CutoverRecord {
            id: String::new(),
            topics: topics.clone(),
            step: CutoverStep::WaitingForLag,
            max_lag_records: request.max_lag_records,
            timeout_ms: request.timeout_ms,
            started_ms: 0,
            step_time_ms: 0,
            fenced_ms: None,
            fenced_source_ends: None,
            reason: None,
            reverse: request.reverse,
            version: 0,
        };
        let unavailable = |e: anyhow::Error| ApiError::Unavailable(format!("{e:#}"));
        let lag = cutover::lag(&self.inner, link, &probe)
            .await
            .map_err(unavailable)?;
        let source_moving = cutover::moving_source(&self.inner, link, &probe)
            .await
            .map_err(unavailable)?;
        let source = state
            .source_of(link)
            .ok_or_else(|| ApiError::Unavailable(format!("Cluster link '{link}' cannot run.")))?;
        let source_groups = offset_sync::active_source_groups(&source)
            .await
            .map_err(unavailable)?;
        let instances = instances(&state, link, "");
        let total_lag: i64 = lag.values().sum();
        let mut plan = vec![if total_lag <= request.max_lag_records {
            format!(
                "1. lag {total_lag} is within {}: fence at once",
                request.max_lag_records
            )
        } else {
            format!(
                "1. lag {total_lag} is over {}: wait for the mirrors first",
                request.max_lag_records
            )
        }];
        let live: Vec<&str> = instances
            .iter()
            .filter(|i| i.live)
            .map(|i| i.instance_id.as_str())
            .collect();
        plan.push(format!(
            "2. park Produce to {} topic(s) on {} live instance(s) ({}) and wait up to {} ms for each to confirm",
            topics.len(),
            live.len(),
            live.join(", "),
            request.timeout_ms
        ));
        plan.push(
            "3. abort if the source's end offsets move while fenced (a producer writing to the source directly)"
                .into(),
        );
        plan.push(format!(
            "4-5. promote {} after the final offset and config sync, then release parked writes to the destination",
            topics.join(", ")
        ));
        if let Some(reverse) = request.reverse {
            plan.extend(reverse::check(&self.inner, link, &topics, reverse).await?);
        }
        if !source_groups.is_empty() {
            plan.push(format!(
                "consumer groups still active on the source (not moved to mirrorgate): {}",
                source_groups.join(", ")
            ));
        }
        Ok(DryRunView {
            link_name: link.to_string(),
            topics,
            lag,
            total_lag,
            max_lag_records: request.max_lag_records,
            instances,
            source_moving,
            source_groups,
            plan,
        })
    }
}

impl Inner {
    /// Writes a cut-over record and waits until it is applied here; a record another
    /// writer got in first with is a 409.
    async fn put_cutover(
        self: &Arc<Self>,
        link: &str,
        record: &CutoverRecord,
    ) -> Result<Arc<Snapshot>, ApiError> {
        let key = format!("{CUTOVER_PREFIX}{link}");
        let offset = store::put_json(&self.dest, key.clone(), Some(record))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.commit(offset).await?;
        let state = self.loaded_state()?;
        if state.catalog.cutover(link) != Some(record) {
            return Err(lost_race(&key));
        }
        Ok(state)
    }
}

/// The topics a request names, checked: ACTIVE mirrors of `link` (all of them when it
/// names none), and sane limits.
fn checked(
    state: &Snapshot,
    link: &str,
    request: &CutoverRequest,
) -> Result<Vec<String>, ApiError> {
    let mut errors = Vec::new();
    if !state.links.contains_key(link) {
        return Err(ApiError::NotFound(format!(
            "Cluster link '{link}' does not exist."
        )));
    }
    if !TIMEOUT_RANGE.contains(&request.timeout_ms) {
        errors.push(format!(
            "timeout_ms: {} is outside {}..={}",
            request.timeout_ms,
            TIMEOUT_RANGE.start(),
            TIMEOUT_RANGE.end()
        ));
    }
    if request.max_lag_records < 0 {
        errors.push(format!(
            "max_lag_records: {} is negative",
            request.max_lag_records
        ));
    }
    let active = |topic: &str| {
        state
            .mirrors
            .get(topic)
            .is_some_and(|m| m.record.link == link && m.record.state == MirrorState::Active)
    };
    let topics: Vec<String> = if request.topics.is_empty() {
        state
            .mirrors
            .iter()
            .filter(|(t, _)| active(t))
            .map(|(t, _)| t.clone())
            .collect()
    } else {
        for topic in &request.topics {
            if !active(topic) {
                errors.push(format!(
                    "topics: '{topic}' is not an ACTIVE mirror topic of link '{link}'"
                ));
            }
        }
        request.topics.clone()
    };
    if topics.is_empty() && errors.is_empty() {
        errors.push(format!("topics: link '{link}' has no ACTIVE mirror topic"));
    }
    if topics.len() > super::catalog::MAX_CUTOVER_TOPICS {
        errors.push(format!(
            "topics: {} topics, more than {} in one cut-over",
            topics.len(),
            super::catalog::MAX_CUTOVER_TOPICS
        ));
    }
    match errors.is_empty() {
        true => Ok(topics),
        false => Err(ApiError::Invalid(errors.join("; "))),
    }
}

fn instances(state: &Snapshot, link: &str, id: &str) -> Vec<InstanceView> {
    let catalog = &state.catalog;
    let live: Vec<&str> = catalog.live_instances(now_ms());
    catalog
        .instances()
        .iter()
        .map(|(instance, record)| InstanceView {
            instance_id: instance.clone(),
            live: live.contains(&instance.as_str()),
            replicating: record.replicating,
            confirmed: !id.is_empty() && catalog.acked(link, instance, id),
        })
        .collect()
}

fn view(state: &Snapshot, link: &str, record: &CutoverRecord) -> CutoverView {
    CutoverView {
        link_name: link.to_string(),
        record: record.clone(),
        instances: instances(state, link, &record.id),
        total_lag: None,
    }
}
