//! Links and mirrors live in a compacted topic on the destination, `_mirrorgate-metadata`
//! (DESIGN.md decision 3): one record per link (`link/<name>`) and per mirror
//! (`mirror/<topic>`), the latest value wins, a null value deletes. Read whole at start.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use super::secrets::{open_config, seal_config, Sealer};
use super::Destination;
use crate::kafka::admin::{self, topic_name, AdminError, TOPIC_ALREADY_EXISTS};
use crate::kafka::client::ClientError;
use crate::kafka::record_batch::RecordBatches;
use crate::kafka::record_codec::decode_records;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkRecord {
    pub name: String,
    pub link_id: String,
    /// The link config (credentials sealed when stored, see `secrets`).
    pub config: BTreeMap<String, String>,
    pub source_cluster_id: String,
    pub created_ms: i64,
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
    /// The one idempotent producer every copier of this mirror writes with, on any
    /// instance, so the broker's sequence check makes appends conditional (records of
    /// older versions have none: each copier start then takes a fresh one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<i16>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata topic: {0}")]
    Admin(#[from] AdminError),
    #[error("metadata topic: {0}")]
    Client(#[from] ClientError),
    #[error("metadata topic: {0}")]
    Invalid(String),
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub links: BTreeMap<String, LinkRecord>,
    pub mirrors: BTreeMap<String, MirrorRecord>,
}

/// Creates the metadata topic if it does not exist (compacted, one partition).
pub async fn ensure_topic(dest: &Destination) -> Result<(), StoreError> {
    let mut conn = dest.connect_any().await?;
    let topic = dest.metadata_topic();
    let replication_factor = dest.metadata_topic_replication_factor();
    let configs = [("cleanup.policy", "compact")];
    match admin::create_topic(&mut conn, &topic, 1, replication_factor, &configs).await {
        Ok(()) => Ok(()),
        Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Bytes asked for per fetch of the metadata topic (a soft limit: one larger batch may
/// come whole; the client's frame limit bounds that).
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// Longest key: `mirror/` plus a topic name (Kafka allows 249 characters), with room.
const MAX_KEY_BYTES: usize = 512;
/// Longest value: Kafka's default `max.message.bytes`; real ones are a few kilobytes.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most partitions a mirror record may claim. Kafka has no per-topic maximum, but
/// clusters are sized for a few hundred thousand partitions in all; a record claiming
/// more than this is forged or corrupt, and starting that many tasks would exhaust
/// memory.
pub const MAX_MIRROR_PARTITIONS: i32 = 100_000;

/// Why a metadata record was skipped; the label of
/// `mirrorgate_metadata_records_invalid_total` (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Batch,
    Key,
    ValueSize,
    Json,
    Partitions,
    StartOffsets,
    SealedConfig,
}

impl Invalid {
    fn label(self) -> &'static str {
        match self {
            Invalid::Batch => "batch",
            Invalid::Key => "key",
            Invalid::ValueSize => "value_size",
            Invalid::Json => "json",
            Invalid::Partitions => "partitions",
            Invalid::StartOffsets => "start_offsets",
            Invalid::SealedConfig => "sealed_config",
        }
    }
}

/// Logs and counts a skipped record: the topic is ours, but anyone who can write to it
/// could have put anything there, so a bad record never stops the load.
fn skip(topic: &str, offset: i64, reason: Invalid, detail: &str) {
    tracing::warn!(
        topic,
        partition = 0,
        offset,
        reason = reason.label(),
        detail,
        "metadata record skipped"
    );
    metrics::counter!("mirrorgate_metadata_records_invalid_total", "reason" => reason.label())
        .increment(1);
}

/// Reads every record up to the high watermark; the last value of each key wins.
/// Sealed credentials are opened with `sealer`. Invalid records are skipped.
pub async fn load(dest: &Destination, sealer: Option<&Sealer>) -> Result<Loaded, StoreError> {
    let topic = dest.metadata_topic();
    let mut loaded = read_all(dest).await?;
    open_links(&mut loaded, &topic, sealer)?;
    Ok(loaded)
}

fn open_links(loaded: &mut Loaded, topic: &str, sealer: Option<&Sealer>) -> Result<(), StoreError> {
    let mut unreadable = Vec::new();
    for (name, link) in loaded.links.iter_mut() {
        match open_config(&link.config, sealer) {
            Ok(config) => link.config = config,
            // No key configured is the operator's to fix: say so instead of starting
            // without the link.
            Err(e) if sealer.is_none() => return Err(StoreError::Invalid(e)),
            Err(e) => {
                skip(
                    topic,
                    -1,
                    Invalid::SealedConfig,
                    &format!("link {name}: {e}"),
                );
                unreadable.push(name.clone());
            }
        }
    }
    for name in unreadable {
        loaded.links.remove(&name);
    }
    Ok(())
}

async fn read_all(dest: &Destination) -> Result<Loaded, StoreError> {
    let topic = dest.metadata_topic();
    let mut conn = dest.connect_leader(&topic, 0).await?;
    let mut loaded = Loaded::default();
    let mut offset = 0i64;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
        let response = conn.call(&request, 12).await?;
        let partition = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| StoreError::Invalid("no partition in the fetch answer".into()))?;
        if partition.error_code != 0 {
            return Err(StoreError::Invalid(format!(
                "fetch error {}",
                partition.error_code
            )));
        }
        let records = partition.records.unwrap_or_default();
        if records.is_empty() || offset >= partition.high_watermark {
            return Ok(loaded);
        }
        let before = offset;
        offset = apply_records(&mut loaded, &topic, records, offset);
        if offset == before {
            return Ok(loaded);
        }
    }
}

/// Applies the records at or past `offset` of a fetched record set, with our bounded
/// decoder (kafka-protocol's reserves counts from the wire and decompresses without a
/// limit); returns the offset to fetch next. A batch that does not decode is skipped
/// whole; one whose framing is broken ends the set (the offset stops there).
fn apply_records(loaded: &mut Loaded, topic: &str, records: Bytes, mut offset: i64) -> i64 {
    for batch in RecordBatches::new(records) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                skip(topic, offset, Invalid::Batch, &e.to_string());
                break;
            }
        };
        if batch.last_offset() < offset {
            continue;
        }
        let decoded = if !batch.verify_crc() {
            Err("CRC mismatch".to_string())
        } else if batch.is_control() {
            Ok(Vec::new())
        } else {
            decode_records(&batch).map_err(|e| e.to_string())
        };
        match decoded {
            Ok(decoded) => {
                for record in decoded {
                    let at = batch
                        .base_offset()
                        .saturating_add(i64::from(record.offset_delta));
                    if at < offset {
                        continue;
                    }
                    if let Err((reason, detail)) =
                        apply(loaded, record.key.as_deref(), record.value.as_deref())
                    {
                        skip(topic, at, reason, &detail);
                    }
                }
            }
            Err(e) => skip(topic, batch.base_offset(), Invalid::Batch, &e),
        }
        offset = offset.max(batch.next_offset());
    }
    offset
}

fn apply(
    loaded: &mut Loaded,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), (Invalid, String)> {
    let key = key.unwrap_or_default();
    if key.len() > MAX_KEY_BYTES {
        return Err((Invalid::Key, format!("key of {} bytes", key.len())));
    }
    let key = std::str::from_utf8(key).map_err(|_| (Invalid::Key, "key is not UTF-8".into()))?;
    if let Some(v) = value.filter(|v| v.len() > MAX_VALUE_BYTES) {
        return Err((
            Invalid::ValueSize,
            format!("{key}: value of {} bytes", v.len()),
        ));
    }
    let json = |e: serde_json::Error| (Invalid::Json, format!("{key}: {e}"));
    if let Some(name) = key.strip_prefix("link/") {
        match value {
            Some(v) => {
                let link: LinkRecord = serde_json::from_slice(v).map_err(json)?;
                loaded.links.insert(name.to_string(), link);
            }
            None => {
                loaded.links.remove(name);
            }
        }
    } else if let Some(topic) = key.strip_prefix("mirror/") {
        match value {
            Some(v) => {
                let mirror: MirrorRecord = serde_json::from_slice(v).map_err(json)?;
                validate_mirror(&mirror).map_err(|(reason, e)| (reason, format!("{key}: {e}")))?;
                loaded.mirrors.insert(topic.to_string(), mirror);
            }
            None => {
                loaded.mirrors.remove(topic);
            }
        }
    }
    Ok(())
}

/// What the replicator sizes by a mirror record: tasks and status per partition, and
/// a start offset per partition.
fn validate_mirror(mirror: &MirrorRecord) -> Result<(), (Invalid, String)> {
    if !(1..=MAX_MIRROR_PARTITIONS).contains(&mirror.partitions) {
        return Err((
            Invalid::Partitions,
            format!(
                "{} partitions, outside 1..={MAX_MIRROR_PARTITIONS}",
                mirror.partitions
            ),
        ));
    }
    if mirror.start_offsets.len() > mirror.partitions as usize {
        return Err((
            Invalid::StartOffsets,
            format!(
                "{} start offsets for {} partitions",
                mirror.start_offsets.len(),
                mirror.partitions
            ),
        ));
    }
    Ok(())
}

/// Writes a link; its credentials are sealed with `sealer` first.
pub async fn put_link(
    dest: &Destination,
    link: &str,
    record: Option<&LinkRecord>,
    sealer: Option<&Sealer>,
) -> Result<(), StoreError> {
    let sealed = record
        .map(|r| {
            let config = seal_config(&r.config, sealer).map_err(StoreError::Invalid)?;
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
    put(dest, format!("link/{link}"), value).await
}

pub async fn put_mirror(
    dest: &Destination,
    topic: &str,
    record: Option<&MirrorRecord>,
) -> Result<(), StoreError> {
    let value = record
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    put(dest, format!("mirror/{topic}"), value).await
}

async fn put(dest: &Destination, key: String, value: Option<Vec<u8>>) -> Result<(), StoreError> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: super::now_ms(),
        key: Some(Bytes::from(key)),
        value: value.map(Bytes::from),
        headers: Default::default(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let topic = dest.metadata_topic();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let mut conn = dest.connect_leader(&topic, 0).await?;
    let response = tokio::time::timeout(Duration::from_secs(40), conn.call(&request, 9))
        .await
        .map_err(|_| StoreError::Invalid("write timed out".into()))??;
    let code = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .unwrap_or(-1);
    if code != 0 {
        return Err(StoreError::Invalid(format!(
            "write failed with error {code}"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
