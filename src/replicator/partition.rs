//! Copies one source partition to its mirror partition batch for batch, so every
//! record lands at the offset it has on the source (DESIGN.md decision 1).
//!
//! Progress is the destination's log end offset (decision 2): a copier starts where
//! the destination log ends, so a restart neither duplicates nor skips. Each batch
//! goes out with mirrorgate's idempotent producer id and the next sequence, and the
//! offset the broker assigns must equal the source offset; anything else fails the
//! partition (OFFSET_MISMATCH) and the copier writes nothing more.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::{self, next_sequence, BatchError, RecordBatches};

const FETCH_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 7;
const READ_COMMITTED: i8 = 1;
const LATEST: i64 = -1;
const FETCH_MAX_BYTES: i32 = 8 << 20;

/// Why a partition stops; the first words are the FAILED reason users see.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "OFFSET_MISMATCH: source batch at offset {expected} landed at {got} on the destination"
    )]
    OffsetMismatch { expected: i64, got: i64 },
    #[error("UNSUPPORTED_SHAPE: {0}")]
    Unsupported(String),
    #[error("ILLEGAL_STATE: the partition already failed: {0}")]
    AlreadyFailed(String),
    #[error("fetch from the source failed with error {0}")]
    Fetch(i16),
    #[error("produce to the destination failed with error {code}: {message}")]
    Produce { code: i16, message: String },
    #[error("destination log end offset lookup failed with error {0}")]
    ListOffsets(i16),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// What one round copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Next source offset to copy (= the destination's log end offset).
    pub next_offset: i64,
    /// The source's high watermark at the last fetch.
    pub source_high_watermark: i64,
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
}

pub struct PartitionCopier {
    source_topic: TopicName,
    dest_topic: TopicName,
    partition: i32,
    source: KafkaConnection,
    dest: KafkaConnection,
    producer: ProducerIdentity,
    next_sequence: i32,
    next_offset: i64,
    failed: Option<String>,
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

impl PartitionCopier {
    /// A copier that resumes at the destination partition's log end offset. `source`
    /// and `dest` are connections to the partition's leaders.
    pub async fn resume(
        source_topic: &str,
        dest_topic: &str,
        partition: i32,
        source: KafkaConnection,
        mut dest: KafkaConnection,
        producer: ProducerIdentity,
    ) -> Result<Self, CopyError> {
        let next_offset = log_end_offset(&mut dest, dest_topic, partition).await?;
        Ok(Self {
            source_topic: name(source_topic),
            dest_topic: name(dest_topic),
            partition,
            source,
            dest,
            producer,
            next_sequence: 0,
            next_offset,
            failed: None,
        })
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// One fetch from the source (waiting up to `max_wait_ms` for data) and the copy of
    /// every whole batch it returned. After an error the copier is failed for good.
    pub async fn copy_once(&mut self, max_wait_ms: i32) -> Result<Progress, CopyError> {
        if let Some(reason) = &self.failed {
            return Err(CopyError::AlreadyFailed(reason.clone()));
        }
        let result = self.copy_round(max_wait_ms).await;
        if let Err(e) = &result {
            if matches!(
                e,
                CopyError::OffsetMismatch { .. } | CopyError::Unsupported(_)
            ) {
                self.failed = Some(e.to_string());
            }
        }
        result
    }

    async fn copy_round(&mut self, max_wait_ms: i32) -> Result<Progress, CopyError> {
        let (records, high_watermark) = self.fetch(max_wait_ms).await?;
        let mut progress = Progress {
            next_offset: self.next_offset,
            source_high_watermark: high_watermark,
            ..Progress::default()
        };
        for batch in RecordBatches::new(records) {
            let batch = batch?;
            if batch.last_offset() < self.next_offset {
                continue; // the fetch may start before the requested offset
            }
            if batch.base_offset() != self.next_offset {
                return Err(CopyError::Unsupported(format!(
                    "source offsets {}..{} have no batch to copy (compaction, retention or \
                     transaction markers need filler records)",
                    self.next_offset,
                    batch.base_offset()
                )));
            }
            if batch.is_control() {
                return Err(CopyError::Unsupported(format!(
                    "transaction marker at offset {} needs a filler record",
                    batch.base_offset()
                )));
            }
            let stamped = record_batch::rewrite_for_produce(
                &batch,
                self.producer.id,
                self.producer.epoch,
                self.next_sequence,
            )?;
            let size = stamped.len() as u64;
            let assigned = self.produce(stamped).await?;
            if assigned != batch.base_offset() {
                return Err(CopyError::OffsetMismatch {
                    expected: batch.base_offset(),
                    got: assigned,
                });
            }
            self.next_sequence = next_sequence(self.next_sequence, batch.records_count());
            self.next_offset = batch.next_offset();
            progress.batches += 1;
            progress.records += batch.records_count().max(0) as u64;
            progress.bytes += size;
        }
        progress.next_offset = self.next_offset;
        Ok(progress)
    }

    async fn fetch(&mut self, max_wait_ms: i32) -> Result<(Bytes, i64), CopyError> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(self.source_topic.clone())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(self.partition)
                    .with_fetch_offset(self.next_offset)
                    .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
        let response = self.source.call(&request, FETCH_VERSION).await?;
        if response.error_code != 0 {
            return Err(CopyError::Fetch(response.error_code));
        }
        let partition = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == self.partition)
            .ok_or(CopyError::Fetch(-1))?;
        if partition.error_code != 0 {
            return Err(CopyError::Fetch(partition.error_code));
        }
        if partition
            .aborted_transactions
            .as_ref()
            .is_some_and(|a| !a.is_empty())
        {
            return Err(CopyError::Unsupported(
                "aborted transactions need filler records".into(),
            ));
        }
        Ok((
            partition.records.unwrap_or_default(),
            partition.high_watermark,
        ))
    }

    /// Produces one batch; returns the base offset the destination assigned.
    async fn produce(&mut self, batch: Bytes) -> Result<i64, CopyError> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(self.dest_topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(batch))])]);
        let response = self.dest.call(&request, PRODUCE_VERSION).await?;
        let partition = response
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .find(|p| p.index == self.partition)
            .ok_or(CopyError::Produce {
                code: -1,
                message: "no answer for the partition".into(),
            })?;
        if partition.error_code != 0 {
            let message = partition
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            return Err(CopyError::Produce {
                code: partition.error_code,
                message,
            });
        }
        Ok(partition.base_offset)
    }
}

/// The log end offset of a partition, from its leader.
pub async fn log_end_offset(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
) -> Result<i64, CopyError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(LATEST)])]);
    let response = conn.call(&request, LIST_OFFSETS_VERSION).await?;
    let partition = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or(CopyError::ListOffsets(-1))?;
    if partition.error_code != 0 {
        return Err(CopyError::ListOffsets(partition.error_code));
    }
    Ok(partition.offset)
}
