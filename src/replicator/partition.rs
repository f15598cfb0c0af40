//! Copies one source partition to its mirror partition batch for batch, so every
//! record lands at the offset it has on the source (DESIGN.md decision 1).
//!
//! Progress is the destination's log end offset (decision 2): a copier starts where
//! the destination log ends, so a restart neither duplicates nor skips. Each batch
//! goes out with mirrorgate's idempotent producer id and the next sequence, and the
//! offset the broker assigns must equal the source offset; anything else fails the
//! partition (OFFSET_MISMATCH) and the copier writes nothing more.
//!
//! Offsets the source has but cannot be produced as data are filled with filler
//! records (`kafka::filler`), produced like any batch (same producer id, next
//! sequence, assigned offset checked):
//! - gaps between batches (compaction removed whole batches) and empty batches;
//! - holes inside a batch (compaction): the batch is re-encoded with fillers;
//! - control batches (transaction markers) and batches of aborted transactions;
//! - offsets below the source log start (retention, DeleteRecords on the source):
//!   fillers up to the log start, then DeleteRecords on the destination partition up
//!   to the same offset so they vanish. That needs `cleanup.policy` to include
//!   `delete` on the mirror topic; otherwise the fillers stay (the proxy still hides
//!   them from consumers) and the mirror's log start offset stays below the source's.
//!
//! Gap-free data batches take the fast path: forwarded with only the header rewritten.

use std::collections::HashSet;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, NO_TIMESTAMP};

use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::filler::{self, max_fillers_per_batch, DEFAULT_MAX_MESSAGE_BYTES};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::{self, next_sequence, BatchError, BatchView, RecordBatches};

const FETCH_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 7;
const DELETE_RECORDS_VERSION: i16 = 1;
const READ_COMMITTED: i8 = 1;
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const FETCH_MAX_BYTES: i32 = 8 << 20;
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Codec of filler batches that fill gaps: ~0.8 byte per filler.
const FILLER_CODEC: Compression = Compression::Zstd;

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
    #[error("log offset lookup failed with error {0}")]
    ListOffsets(i16),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl CopyError {
    /// Errors after which the partition must not be written again (the mirror FAILS);
    /// the others are transient (connections, leader moves) and worth a retry.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            CopyError::OffsetMismatch { .. }
                | CopyError::Unsupported(_)
                | CopyError::Batch(_)
                | CopyError::AlreadyFailed(_)
        )
    }
}

/// What one round copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Next source offset to copy (= the destination's log end offset).
    pub next_offset: i64,
    /// The source's high watermark at the last fetch.
    pub source_high_watermark: i64,
    /// Batches produced, filler batches included.
    pub batches: u64,
    /// Source records copied (fillers not included).
    pub records: u64,
    /// Filler records produced for offsets without data to copy.
    pub fillers: u64,
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
    /// Most fillers in one produced batch (from the destination's max.message.bytes).
    max_fillers: u32,
    /// Whether the source log start was compared with `next_offset` since the start.
    log_start_checked: bool,
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
        let next_offset = settled_end_offset(&mut dest, dest_topic, partition).await?;
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
            max_fillers: max_fillers_per_batch(DEFAULT_MAX_MESSAGE_BYTES),
            log_start_checked: false,
        })
    }

    /// Sizes filler batches for the destination topic's `max.message.bytes` (the
    /// default assumes Kafka's default).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_fillers = max_fillers_per_batch(max_message_bytes);
        self
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
            if e.is_fatal() {
                self.failed = Some(e.to_string());
            }
        }
        result
    }

    async fn copy_round(&mut self, max_wait_ms: i32) -> Result<Progress, CopyError> {
        let mut progress = Progress {
            next_offset: self.next_offset,
            ..Progress::default()
        };
        if !self.log_start_checked {
            self.catch_up_to_log_start(&mut progress).await?;
            self.log_start_checked = true;
        }
        let fetched = match self.fetch(max_wait_ms).await {
            // Retention (or DeleteRecords) on the source outran us.
            Err(CopyError::Fetch(OFFSET_OUT_OF_RANGE)) => {
                let before = self.next_offset;
                self.catch_up_to_log_start(&mut progress).await?;
                if self.next_offset == before {
                    // Past the source's log end (the source lost data): not ours to fix.
                    return Err(CopyError::Fetch(OFFSET_OUT_OF_RANGE));
                }
                progress.next_offset = self.next_offset;
                return Ok(progress);
            }
            other => other?,
        };
        progress.source_high_watermark = fetched.high_watermark;
        let mut aborted = Aborted::new(fetched.aborted);
        // Offsets in [self.next_offset, cursor) are to be filled; data batches flush them.
        let mut cursor = self.next_offset;
        for batch in RecordBatches::new(fetched.records) {
            let batch = batch?;
            let skip = aborted.is_aborted(&batch);
            if batch.last_offset() < cursor {
                continue; // the fetch may start before the requested offset
            }
            // A gap before the batch (whole batches compacted away) is filled too.
            cursor = cursor.max(batch.base_offset());
            if skip || batch.is_control() || batch.records_count() <= 0 {
                cursor = batch.next_offset();
                continue;
            }
            self.fill_to(cursor, &mut progress).await?;
            if batch.base_offset() == cursor && batch.is_gap_free() {
                let count = batch.records_count();
                let size = self.send(&batch, batch.base_offset()).await?;
                progress.batches += 1;
                progress.records += count as u64;
                progress.bytes += size;
            } else {
                // Holes (compaction) or a batch that starts below `cursor` (the source
                // log start moved into it): re-encode what is at or past `cursor`.
                let span = batch.next_offset() - cursor;
                let mut fillers = 0u64;
                for part in filler::re_encode_from(&batch, cursor, self.max_fillers)? {
                    let part = BatchView::parse(part)?;
                    if filler::is_filler_batch(&part)? {
                        fillers += part.records_count() as u64;
                    }
                    progress.bytes += self.send(&part, part.base_offset()).await?;
                    progress.batches += 1;
                }
                progress.fillers += fillers;
                progress.records += (span as u64).saturating_sub(fillers);
            }
            cursor = self.next_offset;
        }
        self.fill_to(cursor, &mut progress).await?;
        progress.next_offset = self.next_offset;
        Ok(progress)
    }

    /// When the source log starts above `next_offset`: fillers up to the log start, then
    /// DeleteRecords on the destination so the mirror starts where the source does.
    async fn catch_up_to_log_start(&mut self, progress: &mut Progress) -> Result<(), CopyError> {
        let topic = self.source_topic.0.to_string();
        let log_start = list_offset(&mut self.source, &topic, self.partition, EARLIEST).await?;
        if log_start <= self.next_offset {
            return Ok(());
        }
        self.fill_to(log_start, progress).await?;
        self.delete_records(log_start).await
    }

    /// Produces filler batches for `[next_offset, end)`.
    async fn fill_to(&mut self, end: i64, progress: &mut Progress) -> Result<(), CopyError> {
        while self.next_offset < end {
            let count = (end - self.next_offset).min(i64::from(self.max_fillers));
            let batch = BatchView::parse(filler::filler_batch(count, FILLER_CODEC, NO_TIMESTAMP)?)?;
            progress.bytes += self.send(&batch, self.next_offset).await?;
            progress.batches += 1;
            progress.fillers += count as u64;
        }
        Ok(())
    }

    /// Produces one gap-free batch that must land at `expected`; returns its size.
    async fn send(&mut self, batch: &BatchView, expected: i64) -> Result<u64, CopyError> {
        let count = batch.last_offset_delta().saturating_add(1);
        let stamped = record_batch::rewrite_for_produce(
            batch,
            self.producer.id,
            self.producer.epoch,
            self.next_sequence,
        )?;
        let size = stamped.len() as u64;
        let assigned = self.produce(stamped).await?;
        if assigned != expected {
            return Err(CopyError::OffsetMismatch {
                expected,
                got: assigned,
            });
        }
        self.next_sequence = next_sequence(self.next_sequence, count);
        self.next_offset = expected + i64::from(count);
        Ok(size)
    }

    async fn delete_records(&mut self, before: i64) -> Result<(), CopyError> {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(self.dest_topic.clone())
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(self.partition)
                    .with_offset(before)])]);
        let response = self.dest.call(&request, DELETE_RECORDS_VERSION).await?;
        let code = response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == self.partition)
            .map_or(-1, |p| p.error_code);
        if code != 0 {
            // Not fatal: offsets stay aligned and the proxy hides the fillers; only the
            // mirror's log start stays below the source's (POLICY_VIOLATION on a
            // compact-only topic).
            tracing::warn!(
                topic = self.dest_topic.0.as_str(),
                partition = self.partition,
                error = code,
                "DeleteRecords below the source log start failed; fillers stay"
            );
        }
        Ok(())
    }

    async fn fetch(&mut self, max_wait_ms: i32) -> Result<Fetched, CopyError> {
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
        Ok(Fetched {
            records: partition.records.unwrap_or_default(),
            high_watermark: partition.high_watermark,
            aborted: partition.aborted_transactions.unwrap_or_default(),
        })
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

struct Fetched {
    records: Bytes,
    high_watermark: i64,
    aborted: Vec<AbortedTransaction>,
}

/// Which transactional batches belong to aborted transactions, as a READ_COMMITTED
/// consumer decides: a transaction listed with (producer id, first offset) is aborted
/// from its first offset up to its producer's next control batch (the abort marker).
struct Aborted {
    /// Not yet reached, by descending first offset (pop from the end).
    pending: Vec<(i64, i64)>,
    /// Producers whose aborted transaction is open at the current batch.
    open: HashSet<i64>,
}

impl Aborted {
    fn new(list: Vec<AbortedTransaction>) -> Self {
        let mut pending: Vec<(i64, i64)> = list
            .into_iter()
            .map(|t| (t.first_offset, t.producer_id.0))
            .collect();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            pending,
            open: HashSet::new(),
        }
    }

    /// True for a data batch of an aborted transaction. Call for every batch in order.
    fn is_aborted(&mut self, batch: &BatchView) -> bool {
        while let Some(&(first, producer)) = self.pending.last() {
            if first > batch.last_offset() {
                break;
            }
            self.open.insert(producer);
            self.pending.pop();
        }
        if !batch.is_transactional() {
            return false;
        }
        if batch.is_control() {
            // The marker ends the producer's transaction, aborted or not.
            self.open.remove(&batch.producer_id());
            return false;
        }
        self.open.contains(&batch.producer_id())
    }
}

/// The log end offset of a partition, from its leader.
pub async fn log_end_offset(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
) -> Result<i64, CopyError> {
    list_offset(conn, topic, partition, LATEST).await
}

/// How long a resume waits for the destination's uncommitted tail to settle.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where copying may resume: the destination's end once nothing is in flight. A
/// produce cut short (crash, timeout) can leave a batch in the leader's log above the
/// high watermark; resuming at the high watermark would then land the next batch one
/// offset late. So wait until the high watermark reaches the log end offset (the batch
/// committed) or the log end drops back (it was truncated).
pub async fn settled_end_offset(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
) -> Result<i64, CopyError> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let high_watermark = list_offset_as(conn, topic, partition, LATEST, CONSUMER).await?;
        let log_end = list_offset_as(conn, topic, partition, LATEST, DEBUGGING).await?;
        if high_watermark >= log_end {
            return Ok(high_watermark);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CopyError::ListOffsets(UNSETTLED));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The log start offset of a partition, from its leader.
pub async fn log_start_offset(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
) -> Result<i64, CopyError> {
    list_offset(conn, topic, partition, EARLIEST).await
}

/// ListOffsets as a consumer: LATEST is the high watermark.
const CONSUMER: i32 = -1;
/// ListOffsets as Kafka's debugging replica id: LATEST is the log end offset.
const DEBUGGING: i32 = -2;
/// Reported when the destination's tail does not settle in time (retried).
const UNSETTLED: i16 = -2;

async fn list_offset(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, CopyError> {
    list_offset_as(conn, topic, partition, timestamp, CONSUMER).await
}

async fn list_offset_as(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    timestamp: i64,
    replica_id: i32,
) -> Result<i64, CopyError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
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
