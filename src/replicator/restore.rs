//! `mirrors --truncate-and-restore`: after a failover, the old primary's topic becomes
//! a mirror of the new primary's again, with identical offsets, and the records only
//! the old primary had are set aside first, never destroyed.
//!
//! Run on the old primary's fleet, with a link to the new primary. The new primary's
//! mirrorgate recorded, when its mirror stopped, the last offset it had copied of each
//! partition (`LastMirrored`, in its metadata topic, read here through the link).
//! The steps, each safe to run again (a crash midway is finished by running the
//! command again):
//! 1. a mirror record marks the topic `restoring`: read-only through every proxy of
//!    this fleet, nothing copied to it yet;
//! 2. records past the last mirrored offsets are copied to the set-aside topic
//!    (`set_aside`), until the topic's ends stop moving;
//! 3. Kafka cannot cut a log's tail through its API, so the topic is deleted and
//!    created again as a mirror of the new primary's (`create_mirror`): the copier
//!    brings every record back at its offset, those both clusters had included, and
//!    the offset sync brings the consumer groups' offsets. A topic with nothing past
//!    its last mirrored offsets (a planned failback) is instead made a mirror in place
//!    (`adopt`): the copier goes on from its end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::catalog::{Catalog, MIRROR_PREFIX};
use super::config_sync::TIMESTAMP_TYPE;
use super::manager::{runnable_link, unavailable, ApiError, Replicator};
use super::partition::{log_end_offset, log_start_offset};
use super::set_aside::{self, Copy};
use super::source::Source;
use super::store::{self, MirrorRecord, MirrorState, Restoring};
use super::{remote_catalog, Destination};
use crate::kafka::admin::{self, AdminError};
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::KafkaConnection;
use crate::kafka::error_code::{TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION};
use crate::kafka::producer::init_producer_id;

/// The set-aside topic's name: the topic's, with this suffix, unless given.
pub const SET_ASIDE_SUFFIX: &str = ".mirrorgate-truncated";
/// How long the topic's deletion may take before the command gives up (run it again).
const DELETE_WAIT: Duration = Duration::from_secs(60);
/// How often the waits below look again: soon at first (metadata usually settles in
/// well under a second), then less often while the brokers are slow.
const RECHECK_MIN: Duration = Duration::from_millis(200);
const RECHECK_MAX: Duration = Duration::from_secs(2);
/// A partition's end must stand still this long before the topic is deleted: a proxy
/// of this fleet that had not yet read step 1 may still have let a write through.
const QUIET: Duration = Duration::from_secs(1);
const MAX_QUIET_ROUNDS: usize = 10;

/// The waits' schedule: `RECHECK_MIN` doubling to `RECHECK_MAX`, with jitter.
fn recheck() -> Backoff {
    Backoff::new(RECHECK_MIN, RECHECK_MAX, Jitter::Equal)
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only these partitions may have records to set aside; `None`: every partition.
    pub include_partitions: Option<BTreeSet<i32>>,
    pub dry_run: bool,
    pub set_aside_topic: Option<String>,
    /// The new primary fleet's metadata topic; `None`: the link's
    /// `mirror.remote.metadata.topic`, else the same name as ours.
    pub source_metadata_topic: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub mirror_topic_name: String,
    pub source_topic_name: String,
    pub set_aside_topic: String,
    pub dry_run: bool,
    /// Nothing was past the last mirrored offsets: the topic became a mirror in place
    /// (not deleted, nothing copied again).
    pub kept_in_place: bool,
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub partition: i32,
    /// -1: nothing of this partition was mirrored.
    pub last_mirrored_offset: i64,
    pub log_end_offset: i64,
    /// Records set aside (or, in a dry run, that would be).
    pub set_aside_records: u64,
}

/// One partition of the topic here.
struct Plan {
    partition: i32,
    last_mirrored: i64,
    /// Where setting aside starts: past the last mirrored offset and the log start.
    from: i64,
    end: i64,
}

impl Replicator {
    pub async fn truncate_and_restore(
        &self,
        link: &str,
        topic: &str,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, ApiError> {
        let state = self.inner.current_state().await?;
        let config = runnable_link(&state, link)?;
        let source = Source::from_config(&config).map_err(ApiError::Invalid)?;
        let here = state.mirrors.get(topic).map(|m| m.record.clone());
        let resumed = match &here {
            None => None,
            Some(r) if r.restoring.is_some() && r.link == link => r.restoring.clone(),
            Some(r) if r.state == MirrorState::Stopped => None,
            Some(r) => {
                return Err(ApiError::Invalid(format!(
                    "Topic '{topic}' is a {} mirror topic of link '{}' here; truncate-and-restore applies to a topic that was mirrored to the link's cluster and failed over there.",
                    r.state.as_str(),
                    r.link
                )))
            }
        };
        let remote_topic = options
            .source_metadata_topic
            .clone()
            .unwrap_or_else(|| self.inner.remote_metadata_topic(&config));
        let remote = remote_catalog::read(&source, &remote_topic)
            .await
            .map_err(|e| unavailable(format!("the link's cluster's catalog: {e}")))?;
        let there = stopped_mirror_of(&remote, topic)?;
        let set_aside_topic = match (&resumed, &options.set_aside_topic) {
            (Some(r), _) => r.set_aside_topic.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => format!("{topic}{SET_ASIDE_SUFFIX}"),
        };
        if !crate::config::valid_topic_name(&set_aside_topic) || set_aside_topic == topic {
            return Err(ApiError::Invalid(format!(
                "set_aside_topic: '{set_aside_topic}' is not a valid topic name for the set-aside records"
            )));
        }
        let dest = &self.inner.dest;
        let mut any = dest.connect_any().await.map_err(unavailable)?;
        let metadata = admin::metadata(&mut any, Some(&[topic]))
            .await
            .map_err(unavailable)?;
        let partitions = match admin::partition_count(&metadata, topic) {
            Ok(count) => Some(count),
            // Deleted by an earlier run that stopped before creating the mirror.
            Err(UNKNOWN_TOPIC_OR_PARTITION) if resumed.is_some() => None,
            Err(code) => {
                return Err(ApiError::NotFound(format!(
                    "Topic '{topic}' is not available here (error {code})."
                )))
            }
        };
        let mut report = RestoreReport {
            mirror_topic_name: topic.to_string(),
            source_topic_name: there.topic.clone(),
            set_aside_topic: set_aside_topic.clone(),
            dry_run: options.dry_run,
            kept_in_place: false,
            partitions: Vec::new(),
        };
        if let Some(partitions) = partitions {
            let plans = plan(dest, topic, partitions, &there).await?;
            check_included(&plans, options.include_partitions.as_ref())?;
            if options.dry_run {
                for p in &plans {
                    let mut read = dest
                        .connect_leader(topic, p.partition)
                        .await
                        .map_err(unavailable)?;
                    let copy = Copy {
                        topic,
                        partition: p.partition,
                        set_aside: &set_aside_topic,
                    };
                    let counted = copy
                        .run(&mut read, None, p.from, p.end)
                        .await
                        .map_err(unavailable)?;
                    report.partitions.push(p.report(counted));
                }
                return Ok(report);
            }
            let restoring = match resumed {
                Some(restoring) => restoring,
                None => start(self, topic, link, &there, partitions, &set_aside_topic).await?,
            };
            report.partitions = set_aside_all(dest, topic, partitions, &there, &restoring).await?;
            let prefix_of_there = report
                .partitions
                .iter()
                .all(|p| p.log_end_offset <= p.last_mirrored_offset + 1);
            if prefix_of_there && adopt(self, link, topic, &there, partitions).await? {
                report.kept_in_place = true;
                return Ok(report);
            }
            delete_and_wait(dest, topic).await?;
        } else if options.dry_run {
            return Ok(report);
        }
        self.create_mirror(link, topic, Some(&there.topic), &BTreeMap::new())
            .await?;
        Ok(report)
    }
}

impl Plan {
    fn report(&self, set_aside_records: u64) -> PartitionReport {
        PartitionReport {
            partition: self.partition,
            last_mirrored_offset: self.last_mirrored,
            log_end_offset: self.end,
            set_aside_records,
        }
    }
}

/// The mirror of `topic` on the link's cluster: the one of that name, else the only
/// one copying a topic of that name; it must have stopped, with its offsets recorded.
fn stopped_mirror_of(remote: &Catalog, topic: &str) -> Result<MirrorRecord, ApiError> {
    let records: Vec<&MirrorRecord> = remote
        .mirrors()
        .values()
        .filter_map(|m| m.record.as_ref())
        .filter(|r| r.source_topic == topic)
        .collect();
    let record = match records.iter().find(|r| r.topic == topic) {
        Some(record) => *record,
        None if records.len() == 1 => records[0],
        None if records.is_empty() => {
            return Err(ApiError::NotFound(format!(
                "The link's cluster has no mirror of topic '{topic}'."
            )))
        }
        None => {
            return Err(ApiError::Invalid(format!(
                "The link's cluster has several mirrors of topic '{topic}' and none of that name."
            )))
        }
    };
    if record.state != MirrorState::Stopped {
        return Err(ApiError::Invalid(format!(
            "Its mirror '{}' on the link's cluster is {}; promote or fail it over there first.",
            record.topic,
            record.state.as_str()
        )));
    }
    if record.last_mirrored.is_empty() {
        return Err(ApiError::Invalid(format!(
            "Its mirror '{}' on the link's cluster stopped without recording its last mirrored offsets; nothing here can tell which records it has.",
            record.topic
        )));
    }
    Ok(record.clone())
}

/// Each partition's last mirrored offset, log start and end here.
async fn plan(
    dest: &Destination,
    topic: &str,
    partitions: i32,
    there: &MirrorRecord,
) -> Result<Vec<Plan>, ApiError> {
    let mut plans = Vec::new();
    for partition in 0..partitions {
        let last_mirrored = there
            .last_mirrored
            .iter()
            .find(|l| l.partition == partition)
            .map_or(-1, |l| l.offset);
        let mut conn = dest
            .connect_leader(topic, partition)
            .await
            .map_err(unavailable)?;
        let start = log_start_offset(&mut conn, topic, partition)
            .await
            .map_err(unavailable)?;
        let end = log_end_offset(&mut conn, topic, partition)
            .await
            .map_err(unavailable)?;
        plans.push(Plan {
            partition,
            last_mirrored,
            from: (last_mirrored + 1).max(start),
            end,
        });
    }
    Ok(plans)
}

/// `--include-partitions` narrows what may be set aside, but the whole topic is
/// restored: a partition left out with records past its last mirrored offset would lose
/// them, so that is refused.
fn check_included(plans: &[Plan], included: Option<&BTreeSet<i32>>) -> Result<(), ApiError> {
    let Some(included) = included else {
        return Ok(());
    };
    let left_out: Vec<String> = plans
        .iter()
        .filter(|p| !included.contains(&p.partition) && p.end > p.from)
        .map(|p| format!("{} ({} offsets)", p.partition, p.end - p.from))
        .collect();
    if !left_out.is_empty() {
        return Err(ApiError::Invalid(format!(
            "Partitions not included have records past their last mirrored offset: {}; the whole topic is restored, so include them.",
            left_out.join(", ")
        )));
    }
    Ok(())
}

/// Step 1: the set-aside topic exists, and the topic is marked `restoring` (read-only)
/// in the metadata topic, with where this run starts writing the set-aside topic.
async fn start(
    replicator: &Replicator,
    topic: &str,
    link: &str,
    there: &MirrorRecord,
    partitions: i32,
    set_aside_topic: &str,
) -> Result<Restoring, ApiError> {
    let inner = &replicator.inner;
    let dest = &inner.dest;
    let mut any = dest.connect_any().await.map_err(unavailable)?;
    let existed = match admin::create_topic(&mut any, set_aside_topic, partitions, -1, &[]).await {
        Ok(()) => false,
        Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => true,
        Err(e) => return Err(unavailable(e)),
    };
    let count = partitions_known(&mut any, set_aside_topic, partitions, existed).await?;
    if count < partitions {
        return Err(ApiError::Invalid(format!(
            "The set-aside topic '{set_aside_topic}' has {count} partitions; {partitions} are needed."
        )));
    }
    let set_aside_from: Vec<i64> = wait_for_ends(dest, set_aside_topic)
        .await?
        .into_iter()
        .take(partitions as usize)
        .collect();
    let restoring = Restoring {
        set_aside_topic: set_aside_topic.to_string(),
        set_aside_from,
    };
    let state = inner.current_state().await?;
    if state
        .mirrors
        .get(topic)
        .is_some_and(|m| m.record.state == MirrorState::Stopped)
    {
        // A STOPPED record is never replaced (a promoted topic stays writable); no
        // record reads the same, and a topic mirrored before can be restored again.
        let offset = store::put_mirror(dest, topic, None)
            .await
            .map_err(unavailable)?;
        inner.commit(offset).await?;
    }
    let state = inner.current_state().await?;
    let key = format!("{MIRROR_PREFIX}{topic}");
    let record = MirrorRecord {
        state: MirrorState::Paused,
        reason: Some(format!(
            "truncate-and-restore: setting records aside to '{set_aside_topic}'"
        )),
        version: state.catalog.next_version(&key),
        restoring: Some(restoring.clone()),
        ..mirror_of(topic, there, link, partitions)
    };
    inner
        .write_mirror(topic, record)
        .await
        .map_err(ApiError::Conflict)?;
    Ok(restoring)
}

/// A record making `topic` here a mirror of `there`'s topic on `link`; the caller sets
/// state, version and what else it knows.
fn mirror_of(topic: &str, there: &MirrorRecord, link: &str, partitions: i32) -> MirrorRecord {
    MirrorRecord::paused(topic, &there.topic, link, partitions)
}

/// Step 3 when the topic holds nothing past its last mirrored offsets: it is a prefix
/// of the new primary's, so it becomes its mirror in place. The copier goes on from its
/// end, after the resume check compares its last batch with the new primary's; nothing
/// is deleted or copied again, and consumers here keep their offsets. `false` when the
/// partition counts differ: the topic is recreated instead.
async fn adopt(
    replicator: &Replicator,
    link: &str,
    topic: &str,
    there: &MirrorRecord,
    partitions: i32,
) -> Result<bool, ApiError> {
    let inner = &replicator.inner;
    let state = inner.current_state().await?;
    let config = runnable_link(&state, link)?;
    let source = Source::from_config(&config).map_err(ApiError::Invalid)?;
    let mut conn = source.connect_any().await.map_err(unavailable)?;
    let metadata = admin::metadata(&mut conn, Some(&[there.topic.as_str()]))
        .await
        .map_err(unavailable)?;
    let count = admin::partition_count(&metadata, &there.topic).map_err(|code| {
        ApiError::NotFound(format!(
            "Source topic '{}' is not available (error {code}).",
            there.topic
        ))
    })?;
    if count != partitions {
        return Ok(false);
    }
    let mut dest = inner.dest.connect_any().await.map_err(unavailable)?;
    // As at creation: a LogAppendTime default would restamp the copied batches.
    let timestamps = BTreeMap::from([(TIMESTAMP_TYPE.to_string(), Some("CreateTime".to_string()))]);
    for (_, result) in admin::alter_topic_configs(&mut dest, &[(topic.to_string(), timestamps)])
        .await
        .map_err(unavailable)?
    {
        result.map_err(unavailable)?;
    }
    // Its own producer id, as every mirror has (conditional appends).
    let producer = init_producer_id(&mut dest).await.map_err(unavailable)?;
    let key = format!("{MIRROR_PREFIX}{topic}");
    let record = MirrorRecord {
        state: MirrorState::Active,
        source_topic_id: admin::topic_id(&metadata, &there.topic),
        version: state.catalog.next_version(&key),
        producer_id: Some(producer.id),
        producer_epoch: Some(producer.epoch),
        ..mirror_of(topic, there, link, partitions)
    };
    inner
        .write_mirror(topic, record)
        .await
        .map_err(ApiError::Conflict)?;
    Ok(true)
}

/// A just-created topic's end offsets, once every partition has a leader.
/// The partition count of `topic` once the brokers' metadata has it: a topic just
/// created may be missing from the first answers (count 0). One that existed before
/// is taken as it is.
async fn partitions_known(
    any: &mut KafkaConnection,
    topic: &str,
    needed: i32,
    existed: bool,
) -> Result<i32, ApiError> {
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    let mut backoff = recheck();
    loop {
        let metadata = admin::metadata(any, Some(&[topic]))
            .await
            .map_err(unavailable)?;
        let count = admin::partition_count(&metadata, topic).unwrap_or(0);
        if count >= needed || (existed && count > 0) || tokio::time::Instant::now() > deadline {
            return Ok(count);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn wait_for_ends(dest: &Destination, topic: &str) -> Result<Vec<i64>, ApiError> {
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    let mut backoff = recheck();
    loop {
        let ends = match dest.connect_any().await {
            Ok(mut any) => dest
                .end_offsets(&mut any, topic)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match ends {
            Ok(ends) => return Ok(ends.into_values().collect()),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(unavailable(e)),
            Err(_) => tokio::time::sleep(backoff.next_delay()).await,
        }
    }
}

/// Step 2 for every partition, until the topic's ends stand still.
async fn set_aside_all(
    dest: &Destination,
    topic: &str,
    partitions: i32,
    there: &MirrorRecord,
    restoring: &Restoring,
) -> Result<Vec<PartitionReport>, ApiError> {
    let mut reports = Vec::new();
    for p in plan(dest, topic, partitions, there).await? {
        let copy = Copy {
            topic,
            partition: p.partition,
            set_aside: &restoring.set_aside_topic,
        };
        let mut read = dest
            .connect_leader(topic, p.partition)
            .await
            .map_err(unavailable)?;
        let mut write = dest
            .connect_leader(&restoring.set_aside_topic, p.partition)
            .await
            .map_err(unavailable)?;
        let written_from = restoring
            .set_aside_from
            .get(p.partition as usize)
            .copied()
            .unwrap_or(0);
        let mut from = p
            .from
            .max(resume_point(&mut write, &copy, written_from).await?);
        let mut end = p.end;
        let mut copied = 0;
        for _ in 0..MAX_QUIET_ROUNDS {
            copied += copy
                .run(&mut read, Some(&mut write), from, end)
                .await
                .map_err(unavailable)?;
            tokio::time::sleep(QUIET).await;
            let now = log_end_offset(&mut read, topic, p.partition)
                .await
                .map_err(unavailable)?;
            if now == end {
                break;
            }
            tracing::warn!(
                topic,
                partition = p.partition,
                "written to while being restored; setting aside the rest too"
            );
            from = end;
            end = now;
        }
        reports.push(PartitionReport {
            log_end_offset: end,
            ..p.report(copied)
        });
    }
    Ok(reports)
}

/// Past the last record an earlier run of this restore set aside, if any.
async fn resume_point(
    write: &mut KafkaConnection,
    copy: &Copy<'_>,
    written_from: i64,
) -> Result<i64, ApiError> {
    let end = log_end_offset(write, copy.set_aside, copy.partition)
        .await
        .map_err(unavailable)?;
    if end <= written_from {
        return Ok(0);
    }
    let records =
        match super::catalog_feed::fetch(write, copy.set_aside, copy.partition, end - 1, 0)
            .await
            .map_err(unavailable)?
        {
            super::catalog_feed::Fetched::Records(records, _) => records,
            super::catalog_feed::Fetched::OutOfRange => return Ok(0),
        };
    Ok(set_aside::last_origin(records).map_or(0, |o| o + 1))
}

/// Step 3's first half: the topic deleted, and gone from the metadata.
async fn delete_and_wait(dest: &Destination, topic: &str) -> Result<(), ApiError> {
    let mut any = dest.connect_any().await.map_err(unavailable)?;
    admin::delete_topic(&mut any, topic)
        .await
        .map_err(unavailable)?;
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    let mut backoff = recheck();
    loop {
        if !admin::topic_exists(&mut any, topic)
            .await
            .map_err(unavailable)?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Unavailable(format!(
                "Topic '{topic}' is still being deleted; run the command again to finish."
            )));
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(partition: i32, from: i64, end: i64) -> Plan {
        Plan {
            partition,
            last_mirrored: from - 1,
            from,
            end,
        }
    }

    #[test]
    fn a_partition_left_out_with_records_to_set_aside_is_refused() {
        let plans = [plan(0, 100, 700), plan(1, 100, 100), plan(2, 50, 60)];
        assert!(check_included(&plans, None).is_ok());
        let only = |ps: &[i32]| ps.iter().copied().collect::<BTreeSet<i32>>();
        assert!(check_included(&plans, Some(&only(&[0, 2]))).is_ok());
        let refused = check_included(&plans, Some(&only(&[0, 1])))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("2 (10 offsets)"), "{refused}");
        assert!(!refused.contains("1 ("), "{refused}");
    }

    fn record(topic: &str, source: &str, state: MirrorState, last: i64) -> MirrorRecord {
        let json = format!(
            r#"{{"topic":"{topic}","source_topic":"{source}","link":"l","partitions":1,"state":"{}","reason":null,"state_time_ms":1,"version":1{}}}"#,
            state.as_str(),
            if last >= 0 {
                format!(r#","last_mirrored":[{{"partition":0,"offset":{last}}}]"#)
            } else {
                String::new()
            }
        );
        serde_json::from_str(&json).unwrap()
    }

    fn catalog(records: &[MirrorRecord]) -> Catalog {
        let mut catalog = Catalog::default();
        for r in records {
            let value = serde_json::to_vec(r).unwrap();
            let key = format!("{MIRROR_PREFIX}{}", r.topic);
            catalog.apply(Some(key.as_bytes()), Some(&value), None);
        }
        catalog
    }

    #[test]
    fn the_stopped_mirror_of_the_topic_is_found_or_the_reason_given() {
        let stopped = record("t", "t", MirrorState::Stopped, 9);
        let found = stopped_mirror_of(&catalog(std::slice::from_ref(&stopped)), "t").unwrap();
        assert_eq!(found.last_mirrored[0].offset, 9);
        // Named differently there: the only mirror of that source topic.
        let renamed = record("dr.t", "t", MirrorState::Stopped, 4);
        assert_eq!(
            stopped_mirror_of(&catalog(&[renamed]), "t").unwrap().topic,
            "dr.t"
        );
        let reason = |records: &[MirrorRecord]| {
            stopped_mirror_of(&catalog(records), "t")
                .unwrap_err()
                .to_string()
        };
        assert!(reason(&[]).contains("no mirror"));
        assert!(reason(&[record("t", "t", MirrorState::Active, 9)]).contains("ACTIVE"));
        assert!(reason(&[record("t", "t", MirrorState::Stopped, -1)]).contains("without recording"));
        assert!(reason(&[
            record("a.t", "t", MirrorState::Stopped, 1),
            record("b.t", "t", MirrorState::Stopped, 1)
        ])
        .contains("several"));
    }
}
