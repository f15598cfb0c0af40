//! Links and mirrors live in a compacted topic on the destination, `_mirrorgate-metadata`
//! (ARCHITECTURE.md, "State"): one record per link (`link/<name>`) and per mirror
//! (`mirror/<topic>`), a null value deletes. Every instance tails it (`catalog_feed`)
//! into a `catalog`; this module holds the record types and the writes.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use serde::{Deserialize, Serialize};

use super::catalog::{LINK_PREFIX, MIRROR_PREFIX, SYNCED_CONFIGS_PREFIX};
use super::secrets::{seal_config, Sealer};
use super::Destination;
use crate::config::DestinationConfig;
use crate::kafka::admin::{self, topic_name, AdminError};
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::{
    LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::kafka::kept::KeptConnection;
use crate::kafka::record_codec::plain_record;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkRecord {
    pub name: String,
    pub link_id: String,
    /// The link config (credentials sealed when stored, see `secrets`).
    pub config: BTreeMap<String, String>,
    pub source_cluster_id: String,
    pub created_ms: i64,
    /// One more than the version its writer read (see `catalog`); 0 before versions.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MirrorState {
    Active,
    Paused,
    PendingStopped,
    Stopped,
    Failed,
}

impl MirrorState {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorState::Active => "ACTIVE",
            MirrorState::Paused => "PAUSED",
            MirrorState::PendingStopped => "PENDING_STOPPED",
            MirrorState::Stopped => "STOPPED",
            MirrorState::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MirrorRecord {
    pub topic: String,
    pub source_topic: String,
    pub link: String,
    pub partitions: i32,
    pub state: MirrorState,
    pub reason: Option<String>,
    pub state_time_ms: i64,
    /// The source topic's id when the mirror was created: a different id later means
    /// the source topic was deleted and recreated.
    #[serde(default)]
    pub source_topic_id: Option<String>,
    /// Topic configs set at creation (`--config`): they no longer follow the source.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// Source offset each partition starts at while its mirror partition is empty
    /// (`mirror.start.offset.spec` at creation); none listed means the log start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_offsets: Vec<i64>,
    /// One more than the version its writer read (see `catalog`); 0 before versions.
    #[serde(default)]
    pub version: u64,
    /// The one idempotent producer every copier of this mirror writes with, on any
    /// instance, so the broker's sequence check makes appends conditional (records of
    /// older versions have none: each copier start then takes a fresh one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<i16>,
    /// `mirror.replication.throttled.rate` of this mirror (bytes/s over every
    /// instance), within its link's; set at creation or by `mirrors --alter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_rate: Option<u64>,
    /// Per partition, the last source offset copied when the mirror was promoted or
    /// failed over (read from the mirror's end just before it turned STOPPED): what
    /// `truncate-and-restore` on the old source keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_mirrored: Vec<LastMirrored>,
    /// Set while `mirrors --truncate-and-restore` turns this topic back into a mirror.
    /// The topic stays read-only and nothing is copied to it until the restore writes
    /// the new mirror record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<Restoring>,
    /// Set while a reverse on the link's cluster (`reverse`) turns this topic, the
    /// source of a mirror there, into a mirror of that one: read-only through every
    /// proxy of this fleet, nothing copied to it, until the mirror there is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversing: Option<Reversing>,
    /// Set by `mirrors --create` until the mirror's topic exists on the destination
    /// (`mirror_topic`): whoever finds it set later creates the topic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub topic_pending: bool,
}

impl MirrorRecord {
    /// A PAUSED mirror of `source_topic` over `link` with nothing else known yet: its
    /// writer sets the state, version and the rest.
    pub fn paused(topic: &str, source_topic: &str, link: &str, partitions: i32) -> Self {
        Self {
            topic: topic.to_string(),
            source_topic: source_topic.to_string(),
            link: link.to_string(),
            partitions,
            state: MirrorState::Paused,
            reason: None,
            state_time_ms: super::now_ms(),
            source_topic_id: None,
            overrides: BTreeMap::new(),
            start_offsets: Vec::new(),
            version: 0,
            producer_id: None,
            producer_epoch: None,
            throttled_rate: None,
            last_mirrored: Vec::new(),
            restoring: None,
            reversing: None,
            topic_pending: false,
        }
    }
}

/// A reverse under way on the link's cluster, by its cut-over there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reversing {
    pub cutover_id: String,
}

/// A truncate-and-restore under way (`restore`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Restoring {
    /// Where the records past the last mirrored offsets go.
    pub set_aside_topic: String,
    /// That topic's end offsets when this restore began: what it wrote is past them,
    /// so a run that resumes after a crash finds where it stopped.
    pub set_aside_from: Vec<i64>,
}

/// The last offset of one partition mirrored before the mirror stopped; -1 when
/// nothing was. The source leader epoch of that record, when the source could say.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastMirrored {
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_leader_epoch: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata topic: {0}")]
    Admin(#[from] AdminError),
    #[error("metadata topic: {0}")]
    Client(#[from] ClientError),
    #[error("metadata topic: {0}")]
    Invalid(String),
    /// The leader answered the write with this error code.
    #[error("metadata topic: write failed with error {0}")]
    Refused(i16),
}

impl StoreError {
    /// The write met a leader that moved or is not serving the partition yet (a topic
    /// just created, a leader election): worth asking the leader again shortly.
    fn leader_moving(&self) -> bool {
        matches!(
            self,
            StoreError::Refused(
                NOT_LEADER_OR_FOLLOWER | LEADER_NOT_AVAILABLE | UNKNOWN_TOPIC_OR_PARTITION
            )
        )
    }
}

/// Attempts of one write while its leader moves, and the pauses between them.
const WRITE_ATTEMPTS: u32 = 6;
fn write_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(50),
        Duration::from_secs(1),
        Jitter::Equal,
    )
}

/// After a failed write: true, once the pause is over, when it is worth another
/// attempt (its leader moved, and attempts are left).
async fn paused_for_retry(result: &Result<i64, StoreError>, backoff: &mut Backoff) -> bool {
    match result {
        Err(e) if e.leader_moving() && backoff.attempts() + 1 < WRITE_ATTEMPTS => {
            tokio::time::sleep(backoff.next_delay()).await;
            true
        }
        _ => false,
    }
}

/// Creates the metadata topic if it does not exist (compacted, one partition). Segments
/// roll hourly: compaction never cleans the active segment, and every instance's
/// heartbeat (every 2 s) would otherwise pile up for a week (the broker's default) and be
/// read again by every instance that starts.
pub async fn ensure_topic(dest: &Destination) -> Result<(), StoreError> {
    let mut conn = dest.connect_any().await?;
    let topic = dest.metadata_topic();
    let replication_factor = dest.metadata_topic_replication_factor();
    let configs = [("cleanup.policy", "compact"), ("segment.ms", "3600000")];
    match admin::create_topic(&mut conn, &topic, 1, replication_factor, &configs).await {
        Ok(()) => Ok(()),
        Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes a link; its credentials are sealed with `sealer` first. Returns the record's
/// offset in the metadata topic.
pub async fn put_link(
    dest: &Destination,
    link: &str,
    record: Option<&LinkRecord>,
    sealer: Option<&Sealer>,
) -> Result<i64, StoreError> {
    let key = format!("{LINK_PREFIX}{link}");
    let sealed = record
        .map(|r| {
            let config = seal_config(&r.config, sealer, &key).map_err(StoreError::Invalid)?;
            Ok::<_, StoreError>(LinkRecord {
                config,
                ..r.clone()
            })
        })
        .transpose()?;
    let value = sealed
        .as_ref()
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(dest, key, value).await
}

/// Writes a mirror; returns the record's offset in the metadata topic.
pub async fn put_mirror(
    dest: &Destination,
    topic: &str,
    record: Option<&MirrorRecord>,
) -> Result<i64, StoreError> {
    let value = record
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(dest, format!("{MIRROR_PREFIX}{topic}"), value).await
}

/// Writes the config sync's memory of mirror `topic` (see `SYNCED_CONFIGS_PREFIX`).
pub async fn put_synced_configs(
    dest: &Destination,
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<i64, StoreError> {
    let value = serde_json::to_vec(configs).map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(dest, format!("{SYNCED_CONFIGS_PREFIX}{topic}"), Some(value)).await
}

/// Writes the ACL sync's memory of `link` (see `ACLS_PREFIX`).
pub async fn put_synced_acls(
    dest: &Destination,
    link: &str,
    acls: &std::collections::BTreeSet<crate::kafka::acls::AclBinding>,
) -> Result<i64, StoreError> {
    let value = serde_json::to_vec(acls).map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(
        dest,
        format!("{}{link}", super::catalog::ACLS_PREFIX),
        Some(value),
    )
    .await
}

/// Writes forward mode's source producer for a client producer (see `PRODUCER_PREFIX`).
pub async fn put_producer(
    dest: &Destination,
    key_rest: &str,
    producer: &super::catalog::SourceProducer,
) -> Result<i64, StoreError> {
    let value = serde_json::to_vec(producer).map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(
        dest,
        format!("{}{key_rest}", super::catalog::PRODUCER_PREFIX),
        Some(value),
    )
    .await
}

/// Writes a JSON record under `key` (the cut-over's records), or deletes it (`None`).
pub async fn put_json<T: serde::Serialize>(
    dest: &Destination,
    key: String,
    value: Option<&T>,
) -> Result<i64, StoreError> {
    put(dest, key, json(value)?).await
}

fn json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<Vec<u8>>, StoreError> {
    value
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

async fn put(dest: &Destination, key: String, value: Option<Vec<u8>>) -> Result<i64, StoreError> {
    let topic = dest.metadata_topic();
    let mut backoff = write_backoff();
    loop {
        let mut conn = dest.connect_leader(&topic, 0).await?;
        let written = put_on(&mut conn, &topic, key.clone(), value.clone()).await;
        if !paused_for_retry(&written, &mut backoff).await {
            return written;
        }
    }
}

/// A periodic writer of the metadata topic (the fleet heartbeat): its connections to
/// any broker (to find the leader) and to the leader are kept from one write to the
/// next.
#[derive(Default)]
pub struct KeptWriter {
    any: KeptConnection<DestinationConfig>,
    leader: KeptConnection<(DestinationConfig, String)>,
}

impl KeptWriter {
    /// As [`put_json`]; a write made twice is the same record.
    pub async fn put_json<T: serde::Serialize>(
        &mut self,
        dest: &Destination,
        key: String,
        value: Option<&T>,
    ) -> Result<i64, StoreError> {
        let value = json(value)?;
        let topic = dest.metadata_topic();
        let mut backoff = write_backoff();
        loop {
            let connect = dest.connect_leader_through(&mut self.any, &topic, 0);
            let written = self
                .leader
                .call((dest.settings(), topic.clone()), connect, |mut conn| {
                    let (topic, key, value) = (topic.clone(), key.clone(), value.clone());
                    async move {
                        let written = put_on(&mut conn, &topic, key, value).await;
                        (conn, written)
                    }
                })
                .await;
            if !paused_for_retry(&written, &mut backoff).await {
                return written;
            }
            // Asked again of the leader as a fresh lookup sees it.
            self.forget();
        }
    }

    /// Closes both connections (a write on them was given up).
    pub fn forget(&mut self) {
        self.any.forget();
        self.leader.forget();
    }
}

/// Writes one record to partition 0 of the metadata topic `topic` over `conn` (its
/// leader): ours, or another fleet's through a link (`remote_catalog`).
pub(super) async fn put_on(
    conn: &mut KafkaConnection,
    topic: &str,
    key: String,
    value: Option<Vec<u8>>,
) -> Result<i64, StoreError> {
    put_batch_on(conn, topic, vec![(key, value)]).await
}

/// Tombstones for `keys`, in batches on one connection to the metadata topic's leader.
pub async fn delete_keys(dest: &Destination, keys: Vec<String>) -> Result<(), StoreError> {
    /// Tombstones per batch: a key of up to ~300 bytes each stays well under the
    /// topic's 1 MiB `max.message.bytes`.
    const PER_BATCH: usize = 2_048;
    if keys.is_empty() {
        return Ok(());
    }
    let topic = dest.metadata_topic();
    let mut conn = dest.connect_leader(&topic, 0).await?;
    let mut keys = keys.into_iter().peekable();
    while keys.peek().is_some() {
        let chunk = keys.by_ref().take(PER_BATCH).map(|k| (k, None)).collect();
        put_batch_on(&mut conn, &topic, chunk).await?;
    }
    Ok(())
}

/// Writes `records` (key, value or tombstone) as one batch; the offset of the first.
async fn put_batch_on(
    conn: &mut KafkaConnection,
    topic: &str,
    records: Vec<(String, Option<Vec<u8>>)>,
) -> Result<i64, StoreError> {
    let timestamp = super::now_ms();
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| {
            plain_record(
                i as i64,
                timestamp,
                Some(Bytes::from(key)),
                value.map(Bytes::from),
            )
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let response = tokio::time::timeout(Duration::from_secs(40), conn.call(&request, 9))
        .await
        .map_err(|_| StoreError::Invalid("write timed out".into()))??;
    let answer = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| (p.error_code, p.base_offset))
        .unwrap_or((-1, -1));
    match answer {
        (0, offset) if offset >= 0 => Ok(offset),
        (code, _) => Err(StoreError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_asked_again_only_while_its_leader_moves() {
        for code in [
            NOT_LEADER_OR_FOLLOWER,
            LEADER_NOT_AVAILABLE,
            UNKNOWN_TOPIC_OR_PARTITION,
        ] {
            assert!(StoreError::Refused(code).leader_moving(), "{code}");
        }
        assert!(!StoreError::Refused(crate::kafka::error_code::CORRUPT_MESSAGE).leader_moving());
        assert!(!StoreError::Invalid("write timed out".into()).leader_moving());
        assert_eq!(
            StoreError::Refused(6).to_string(),
            "metadata topic: write failed with error 6"
        );
    }
}
