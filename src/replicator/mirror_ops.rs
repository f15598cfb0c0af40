//! State changes of mirror topics: pause, resume, promote, failover; and `alter`, of a
//! mirror's own settings. Each is decided on facts read from a snapshot, then written
//! to the metadata topic and applied when read back, like every command (`manager`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog::{Catalog, MIRROR_PREFIX};
use super::controller::Snapshot;
use super::final_sync::FinalSync;
use super::link_config::{parse_throttled_rate, THROTTLED_RATE_KEY};
use super::manager::{lost_race, ApiError, Change, Inner, Replicator};
use super::source::Source;
use super::store::{self, LastMirrored, MirrorRecord, MirrorState};
use super::transitions;
use super::{now_ms, Destination};

impl Replicator {
    /// Applies `change` to each of `topics` (never an implied "all": an empty list is
    /// refused); one result per topic, as Confluent answers.
    pub async fn change(
        &self,
        link: &str,
        topics: &[String],
        change: Change,
    ) -> Result<Vec<(String, Result<(), String>)>, ApiError> {
        if matches!(change, Change::Promote | Change::Failover) {
            self.inner.require_replicating("promote and failover")?;
        }
        if topics.is_empty() {
            return Err(ApiError::Invalid(
                "mirror_topic_names: name the mirror topics".into(),
            ));
        }
        let mut results = Vec::new();
        for topic in topics.iter().cloned() {
            // Each topic's facts come from a snapshot as of the metadata topic's end.
            let prepared = {
                let state = self.inner.current_state().await?;
                if link != "-" && !state.links.contains_key(link) {
                    return Err(ApiError::NotFound(format!(
                        "Cluster link '{link}' does not exist."
                    )));
                }
                Prepared::of(&state, link, &topic, change)
            };
            let result = match prepared {
                Ok(prepared) => self.inner.change_one(prepared, &topic, change).await,
                Err(e) => Err(e),
            };
            results.push((topic, result));
        }
        Ok(results)
    }
}

impl Replicator {
    /// `mirrors --alter`: sets (`set`) or removes (`delete`) the mirror's own settings,
    /// today only `mirror.replication.throttled.rate`; applied live, without a restart.
    /// Every bad key is reported at once; then one result per topic.
    pub async fn alter_mirrors(
        &self,
        link: &str,
        topics: &[String],
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<Vec<(String, Result<(), String>)>, ApiError> {
        let mut errors: Vec<String> = set
            .keys()
            .chain(delete)
            .filter(|k| k.as_str() != THROTTLED_RATE_KEY)
            .map(|k| {
                format!("{k}: not a mirror setting ({THROTTLED_RATE_KEY} is; topic configs are altered with kafka-configs)")
            })
            .collect();
        let rate = match set.get(THROTTLED_RATE_KEY).map(|v| parse_throttled_rate(v)) {
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            Some(Ok(rate)) => Some(rate),
            None => None,
        };
        if topics.is_empty() {
            errors.push("mirror_topic_names: name the mirror topics".into());
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors.join("; ")));
        }
        let removed = delete.iter().any(|k| k == THROTTLED_RATE_KEY);
        let mut results = Vec::new();
        for topic in topics {
            let state = self.inner.current_state().await?;
            if link != "-" && !state.links.contains_key(link) {
                return Err(ApiError::NotFound(format!(
                    "Cluster link '{link}' does not exist."
                )));
            }
            let Some(entry) = state
                .mirrors
                .get(topic)
                .filter(|m| link == "-" || m.record.link == link)
            else {
                results.push((
                    topic.clone(),
                    Err(format!(
                        "Topic '{topic}' is not a mirror topic of link '{link}'."
                    )),
                ));
                continue;
            };
            let mut record = entry.record.clone();
            record.throttled_rate = if removed {
                None
            } else {
                rate.or(record.throttled_rate)
            };
            let key = format!("{MIRROR_PREFIX}{topic}");
            record.version = state.catalog.next_version(&key);
            let result = self.inner.write_mirror(topic, record).await;
            results.push((topic.clone(), result));
        }
        Ok(results)
    }
}

/// What a state change of one mirror needs, read from a snapshot.
struct Prepared {
    record: MirrorRecord,
    source: Option<Source>,
    catalog: Arc<Catalog>,
    unavailable_source: bool,
    final_sync: Option<FinalSync>,
}

impl Prepared {
    fn of(state: &Snapshot, link: &str, topic: &str, change: Change) -> Result<Self, String> {
        let entry = state
            .mirrors
            .get(topic)
            .filter(|m| link == "-" || m.record.link == link)
            .ok_or_else(|| format!("Topic '{topic}' is not a mirror topic of link '{link}'."))?;
        let unavailable_source = state
            .runtimes
            .get(&entry.record.link)
            .is_some_and(|r| r.status.source_unavailable());
        let final_sync = match change {
            Change::Promote | Change::Failover => FinalSync::prepare(state, topic),
            _ => None,
        };
        Ok(Self {
            record: entry.record.clone(),
            source: state.source_of(&entry.record.link),
            catalog: state.catalog.clone(),
            unavailable_source,
            final_sync,
        })
    }
}

impl Inner {
    async fn change_one(
        self: &Arc<Self>,
        prepared: Prepared,
        topic: &str,
        change: Change,
    ) -> Result<(), String> {
        let Prepared {
            record: current_record,
            source,
            catalog,
            unavailable_source,
            final_sync,
        } = prepared;
        let link = current_record.link.clone();
        if current_record.restoring.is_some() {
            return Err(format!(
                "Topic '{topic}' is being restored by truncate-and-restore; run that command again to finish it."
            ));
        }
        if let Some(reversing) = &current_record.reversing {
            if change != Change::Failover {
                return Err(format!(
                    "Topic '{topic}' is being reversed by cut-over {} on the link's cluster and becomes a mirror when that ends; to release it here instead, fail it over.",
                    reversing.cutover_id
                ));
            }
        }
        let next = transitions::next_state(topic, &link, change, current_record.state)?;
        let epochs_from = source.clone();
        match change {
            Change::Failover => {
                if let Some(sync) = &final_sync {
                    sync.before_failover(&link).await;
                }
            }
            Change::Promote => {
                if unavailable_source {
                    return Err(format!(
                        "Topic '{topic}' cannot be promoted while the source cluster of '{link}' is unavailable; use failover."
                    ));
                }
                let lagging = fresh_lag(&self.dest, source, &current_record).await?;
                if !lagging.is_empty() {
                    return Err(format!(
                        "Topic '{topic}' cannot be promoted while it has mirroring lag: {}",
                        lagging.join(", ")
                    ));
                }
                if let Some(sync) = &final_sync {
                    let source_topic = current_record.source_topic.clone();
                    sync.before_promote(topic, &source_topic).await?;
                }
            }
            Change::Pause | Change::Resume => {}
        }
        let key = format!("{MIRROR_PREFIX}{topic}");
        let mut record = current_record;
        if next == MirrorState::Stopped {
            // Read while the topic is still read-only: only its copiers wrote there.
            record.last_mirrored = last_mirrored(&self.dest, epochs_from, &record).await;
        }
        record.state = next;
        record.reason = None;
        record.state_time_ms = now_ms();
        record.version = catalog.next_version(&key);
        self.write_mirror(topic, record).await
    }

    /// Writes `record` (its version taken from the snapshot the change was decided on)
    /// and waits until it is applied; another instance's record written first wins.
    pub(super) async fn write_mirror(
        self: &Arc<Self>,
        topic: &str,
        record: MirrorRecord,
    ) -> Result<(), String> {
        let offset = store::put_mirror(&self.dest, topic, Some(&record))
            .await
            .map_err(|e| e.to_string())?;
        let view = self.commit(offset).await.map_err(|e| e.to_string())?;
        if view.catalog.mirror(topic).and_then(|m| m.record.as_ref()) != Some(&record) {
            return Err(lost_race(&format!("{MIRROR_PREFIX}{topic}")).to_string());
        }
        Ok(())
    }
}

/// Partitions of the mirror behind their source right now, as "partition P lag N":
/// both ends are asked at this moment, never taken from the last fetch.
async fn fresh_lag(
    dest: &Destination,
    source: Option<Source>,
    record: &MirrorRecord,
) -> Result<Vec<String>, String> {
    let link = &record.link;
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "Topic '{}' cannot be promoted while the source cluster of '{link}' is unavailable ({e}); use failover.",
            record.topic
        )
    };
    let source = source.ok_or_else(|| format!("Cluster link '{link}' cannot run."))?;
    let source_ends = source
        .end_offsets(&record.source_topic)
        .await
        .map_err(|e| unreachable(&e))?;
    let mut any = dest.connect_any().await.map_err(|e| e.to_string())?;
    let mirror_ends = dest
        .end_offsets(&mut any, &record.topic)
        .await
        .map_err(|e| e.to_string())?;
    Ok(source_ends
        .iter()
        .map(|(p, end)| (*p, end - mirror_ends.get(p).copied().unwrap_or(0)))
        .filter(|(_, lag)| *lag > 0)
        .map(|(p, lag)| format!("partition {p} lag {lag}"))
        .collect())
}

/// How long a failover waits for the source's leader epochs (it is often down).
const EPOCHS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The mirror's last offset per partition now, with the source's leader epoch of that
/// record where the source's end is the same offset. Empty when the destination cannot
/// say: the mirror still stops (a failover must not wait), and truncate-and-restore
/// then refuses for want of these figures.
async fn last_mirrored(
    dest: &Destination,
    source: Option<Source>,
    record: &MirrorRecord,
) -> Vec<LastMirrored> {
    let ends = match dest.connect_any().await {
        Ok(mut any) => dest
            .end_offsets(&mut any, &record.topic)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let ends = match ends {
        Ok(ends) => ends,
        Err(error) => {
            tracing::warn!(topic = %record.topic, %error, "last mirrored offsets not recorded");
            return Vec::new();
        }
    };
    let epochs = match source {
        Some(source) => tokio::time::timeout(
            EPOCHS_WAIT,
            source.end_offsets_with_epochs(&record.source_topic),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default(),
        None => Default::default(),
    };
    ends.into_iter()
        .map(|(partition, end)| LastMirrored {
            partition,
            offset: end - 1,
            source_leader_epoch: epochs
                .get(&partition)
                .filter(|(source_end, epoch)| *source_end == end && *epoch >= 0)
                .map(|(_, epoch)| *epoch),
        })
        .collect()
}
