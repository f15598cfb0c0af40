//! Copies one source partition to its mirror partition batch for batch, so every
//! record lands at the offset it has on the source (ARCHITECTURE.md, "Identical
//! offsets").
//!
//! Progress is the destination's log end offset: a copier starts where
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
//!
//! The copier is fed either by its own single-partition fetch (`copy_once`) or by the
//! link's per-broker fetcher (`process`); both go through the same code and hand the
//! batches to a `ProducerWindow` that keeps up to 16 produces in flight.
//!
//! An empty mirror partition starts where `mirror.start.offset.spec` says (earliest,
//! latest, or the first offset at a timestamp), filled and deleted up to there like the
//! log start. When the source log start passes offsets the mirror had not copied yet,
//! those are counted as lost (`Progress::lost`) and logged.

use std::sync::Arc;

use std::collections::HashSet;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, NO_TIMESTAMP};

use super::budget::{ByteBudget, Charge};
use super::failure::{FailureReason, MirrorFailure};
use super::produce_mux::ProduceMux;
use super::producer_window::{ProducerWindow, Tally};
use super::resume_check;
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::OFFSET_OUT_OF_RANGE;
use crate::kafka::filler::{self, max_fillers_per_batch, DEFAULT_MAX_MESSAGE_BYTES};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::{BatchError, BatchView, RecordBatches};
use crate::kafka::record_codec::decode_bound;

const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
const DELETE_RECORDS_VERSION: i16 = 1;
const READ_COMMITTED: i8 = 1;
pub(crate) const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const FETCH_MAX_BYTES: i32 = 8 << 20;
/// ListOffsets' answer when no record has a timestamp at or after the one asked.
pub(crate) const NO_OFFSET: i64 = -1;
/// Codec of filler batches that fill gaps: ~0.8 byte per filler.
const FILLER_CODEC: Compression = Compression::Zstd;

/// Why a partition stops. The fatal ones fail the mirror (`failure`); the others are
/// retried.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source batch at offset {expected} landed at {got} on the destination")]
    OffsetMismatch { expected: i64, got: i64 },
    /// The destination's last batch differs from the source at the same offsets.
    #[error("{0}")]
    Diverged(String),
    /// The broker's sequence check refused a batch: another copier of the mirror is
    /// ahead (`producer_window`). Resume from the destination's end.
    #[error("append at offset {offset} refused with error {code}: another copier is ahead")]
    Refused { code: i16, offset: i64 },
    #[error("the partition already failed: {0}")]
    AlreadyFailed(String),
    #[error("fetch from the source failed with error {0}")]
    Fetch(i16),
    #[error("produce to the destination failed with error {code}: {message}")]
    Produce { code: i16, message: String },
    #[error("log offset lookup failed with error {0}")]
    ListOffsets(i16),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A source batch that cannot be copied as it is (its format or layout).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The source holds a batch that fails its own check (its CRC).
    #[error("partition {partition}, the source batch at offsets {first}..={last}: {reason}")]
    CorruptSource {
        partition: i32,
        first: i64,
        last: i64,
        reason: BatchError,
    },
}

impl CopyError {
    /// Errors after which the partition must not be written again: the mirror FAILS
    /// for them. The others are transient (connections, leader moves), worth a retry.
    pub fn failure(&self) -> Option<MirrorFailure> {
        let reason = match self {
            CopyError::OffsetMismatch { .. } | CopyError::Diverged(_) => {
                FailureReason::OffsetMismatch
            }
            CopyError::Batch(_) => FailureReason::UnsupportedShape,
            CopyError::CorruptSource { .. } => FailureReason::CorruptSource,
            CopyError::AlreadyFailed(_) => FailureReason::IllegalState,
            CopyError::Refused { .. }
            | CopyError::Fetch(_)
            | CopyError::Produce { .. }
            | CopyError::ListOffsets(_)
            | CopyError::Client(_) => return None,
        };
        Some(MirrorFailure::new(reason, self.to_string()))
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
    /// Offsets the source's retention removed before the mirror copied them.
    pub lost: u64,
}

pub struct PartitionCopier {
    source_topic: TopicName,
    partition: i32,
    /// The source partition's leader: log offsets, and the fetches of `copy_once`.
    /// Detached while a link fetcher feeds the copier, so an idle copier holds no
    /// source connection of its own.
    source: Option<KafkaConnection>,
    window: ProducerWindow,
    failed: Option<String>,
    /// Most fillers in one produced batch (from the destination's max.message.bytes).
    max_fillers: u32,
    /// Whether the source log start was compared with the destination end since the
    /// start.
    log_start_checked: bool,
    /// The mirror's log start as this copier last set it (-1: not yet).
    dest_log_start: i64,
    /// Where an empty mirror partition starts (`mirror.start.offset.spec`, resolved
    /// at the mirror's creation); `None` is the source's log start.
    start_at: Option<i64>,
    /// Acknowledged work not yet reported.
    report: Progress,
    /// The link budget of the data being processed, charged while batches are decoded
    /// (none for the copier's own fetches).
    budget: Option<ByteBudget>,
    /// The max timestamp of the last data copied, for the fillers after it
    /// (`filler::filler_timestamp`).
    last_data_timestamp: i64,
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// One partition's part of a Fetch response.
pub struct SourceData {
    /// The offset the fetch asked for.
    pub fetch_offset: i64,
    pub error_code: i16,
    pub records: Bytes,
    pub high_watermark: i64,
    /// The source partition's log start (-1 unknown).
    pub log_start_offset: i64,
    pub aborted: Vec<AbortedTransaction>,
    /// The link budget these bytes hold until they are acknowledged downstream.
    pub charge: Option<Charge>,
}

impl PartitionCopier {
    /// A copier that resumes at the destination partition's log end offset. `source`
    /// and `dest` are connections to the partition's leaders, `mux` the destination
    /// leader's shared Produce connection.
    pub async fn resume(
        source_topic: &str,
        dest_topic: &str,
        partition: i32,
        source: KafkaConnection,
        mut dest: KafkaConnection,
        mux: Arc<ProduceMux>,
        producer: ProducerIdentity,
    ) -> Result<Self, CopyError> {
        let end = settled_end_offset(&mut dest, dest_topic, partition).await?;
        Ok(Self {
            source_topic: name(source_topic),
            partition,
            source: Some(source),
            window: ProducerWindow::new(dest, mux, name(dest_topic), partition, producer, end),
            failed: None,
            max_fillers: max_fillers_per_batch(DEFAULT_MAX_MESSAGE_BYTES),
            log_start_checked: false,
            dest_log_start: -1,
            start_at: None,
            report: Progress {
                next_offset: end,
                ..Progress::default()
            },
            budget: None,
            last_data_timestamp: NO_TIMESTAMP,
        })
    }

    /// Sizes filler batches for the destination topic's `max.message.bytes` (the
    /// default assumes Kafka's default).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_fillers = max_fillers_per_batch(max_message_bytes);
        self
    }

    /// The source offset to start at when the destination partition is still empty
    /// (below the source's log start, the log start wins).
    pub fn with_start_offset(mut self, start_at: Option<i64>) -> Self {
        self.start_at = start_at;
        self
    }

    /// Gives back the source connection (ListOffsets need one again: `attach_source`).
    pub fn detach_source(&mut self) -> Option<KafkaConnection> {
        self.source.take()
    }

    pub fn attach_source(&mut self, source: KafkaConnection) {
        self.source = Some(source);
    }

    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Next source offset the destination has acknowledged up to.
    pub fn next_offset(&self) -> i64 {
        self.window.acked_offset()
    }

    /// Next source offset to fetch: past everything sent, acknowledged or not.
    pub fn fetch_offset(&self) -> i64 {
        self.window.sent_offset()
    }

    /// One fetch from the source (waiting up to `max_wait_ms` for data) and the copy of
    /// every whole batch it returned, acknowledged. After a fatal error the copier is
    /// failed for good.
    pub async fn copy_once(&mut self, max_wait_ms: i32) -> Result<Progress, CopyError> {
        self.check_failed()?;
        let result = async {
            self.prepare_inner().await?;
            let data = self.fetch(max_wait_ms).await?;
            self.process_inner(data).await?;
            self.flush_inner().await
        }
        .await;
        self.settle(result)
    }

    /// Before the first fetch: catch the destination up with the source's log start
    /// (and, for an empty mirror, with `mirror.start.offset.spec`).
    pub async fn prepare(&mut self) -> Result<Progress, CopyError> {
        self.check_failed()?;
        let result = async {
            self.prepare_inner().await?;
            Ok(self.take_report())
        }
        .await;
        self.settle(result)
    }

    /// Copies what one fetch returned for the partition, pipelined: returns once every
    /// batch is sent, with what was acknowledged meanwhile.
    pub async fn process(&mut self, data: SourceData) -> Result<Progress, CopyError> {
        self.check_failed()?;
        let result = async {
            self.process_inner(data).await?;
            Ok(self.take_report())
        }
        .await;
        self.settle(result)
    }

    /// Waits for every batch in flight to be acknowledged.
    pub async fn flush(&mut self) -> Result<Progress, CopyError> {
        self.check_failed()?;
        let result = self.flush_inner().await;
        self.settle(result)
    }

    fn check_failed(&self) -> Result<(), CopyError> {
        match &self.failed {
            Some(reason) => Err(CopyError::AlreadyFailed(reason.clone())),
            None => Ok(()),
        }
    }

    fn settle<T>(&mut self, result: Result<T, CopyError>) -> Result<T, CopyError> {
        if let Err(e) = &result {
            if let Some(failure) = e.failure() {
                self.failed = Some(failure.to_string());
            }
        }
        result
    }

    fn take_report(&mut self) -> Progress {
        let next_offset = self.window.acked_offset();
        let report = std::mem::take(&mut self.report);
        self.report.source_high_watermark = report.source_high_watermark;
        Progress {
            next_offset,
            ..report
        }
    }

    fn acked(&mut self, tally: Tally) {
        self.report.batches += tally.batches;
        self.report.records += tally.records;
        self.report.fillers += tally.fillers;
        self.report.bytes += tally.bytes;
    }

    async fn flush_inner(&mut self) -> Result<Progress, CopyError> {
        let tally = self.window.flush().await?;
        self.acked(tally);
        Ok(self.take_report())
    }

    async fn prepare_inner(&mut self) -> Result<(), CopyError> {
        if self.log_start_checked {
            return Ok(());
        }
        let end = self.window.sent_offset();
        let mut target = self.source_offset(EARLIEST).await?;
        if end == 0 {
            // An empty mirror starts where the spec says; that skips no copied data.
            target = target.max(self.start_at.unwrap_or(0));
        } else if target > end {
            self.lost(end, target);
        }
        self.catch_up_to(target).await?;
        self.log_start_checked = true;
        Ok(())
    }

    /// Retention on the source passed offsets the mirror never got.
    fn lost(&mut self, from: i64, to: i64) {
        tracing::warn!(
            topic = self.source_topic.0.as_str(),
            partition = self.partition,
            from,
            to,
            "the source log start passed the mirror: offsets [{from}, {to}) are lost"
        );
        self.report.lost += (to - from).max(0) as u64;
    }

    fn source(&mut self) -> Result<&mut KafkaConnection, CopyError> {
        self.source
            .as_mut()
            .ok_or(CopyError::Client(ClientError::Closed))
    }

    async fn source_offset(&mut self, spec: i64) -> Result<i64, CopyError> {
        let topic = self.source_topic.0.to_string();
        let partition = self.partition;
        list_offset(self.source()?, &topic, partition, spec).await
    }

    async fn process_inner(&mut self, data: SourceData) -> Result<(), CopyError> {
        if data.fetch_offset != self.window.sent_offset() {
            // Fetched for an older position (before a catch-up): nothing to copy.
            return Ok(());
        }
        if data.error_code == OFFSET_OUT_OF_RANGE {
            // Retention (or DeleteRecords) on the source outran us.
            let before = self.window.sent_offset();
            let log_start = self.source_offset(EARLIEST).await?;
            if log_start <= before {
                // Past the source's log end (the source lost data): not ours to fix.
                return Err(CopyError::Fetch(OFFSET_OUT_OF_RANGE));
            }
            self.lost(before, log_start);
            return self.catch_up_to(log_start).await;
        }
        if data.error_code != 0 {
            return Err(CopyError::Fetch(data.error_code));
        }
        self.report.source_high_watermark = data.high_watermark;
        if data.log_start_offset > self.dest_log_start {
            self.follow_log_start(data.log_start_offset).await?;
        }
        // Decoding charges the link's budget too (the one these bytes were fetched on).
        self.budget = data.charge.as_ref().map(|c| c.budget().clone());
        let serial = self.window.sent_serial();
        let mut aborted = Aborted::new(data.aborted);
        // Offsets in [sent offset, cursor) are to be filled; data batches flush them.
        let mut cursor = self.window.sent_offset();
        for batch in RecordBatches::new(data.records) {
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
            self.fill_to(cursor).await?;
            if batch.base_offset() == cursor && batch.is_gap_free() {
                let records = batch.records_count() as u64;
                self.send(&batch, records, 0).await?;
                self.last_data_timestamp = batch.max_timestamp();
            } else {
                // Holes (compaction) or a batch that starts below `cursor` (the source
                // log start moved into it): re-encode what is at or past `cursor`.
                let decoding = match &self.budget {
                    Some(budget) => Some(budget.reserve(decode_bound(&batch)).await),
                    None => None,
                };
                let parts = filler::re_encode_from_after(
                    &batch,
                    cursor,
                    self.max_fillers,
                    self.last_data_timestamp,
                )?;
                drop(decoding);
                for part in parts {
                    let part = BatchView::parse(part)?;
                    let count = part.last_offset_delta().saturating_add(1) as u64;
                    if filler::is_filler_batch(&part)? {
                        self.send(&part, 0, count).await?;
                    } else {
                        self.send(&part, count, 0).await?;
                        self.last_data_timestamp = part.max_timestamp();
                    }
                }
            }
            cursor = self.window.sent_offset();
        }
        self.fill_to(cursor).await?;
        if let Some(charge) = data.charge {
            self.window.hold_until_acked(serial, charge);
        }
        Ok(())
    }

    /// Fillers up to `target`, then DeleteRecords on the destination so the mirror
    /// starts where the source does.
    async fn catch_up_to(&mut self, target: i64) -> Result<(), CopyError> {
        if target <= self.window.sent_offset() {
            return Ok(());
        }
        self.fill_to(target).await?;
        let tally = self.window.flush().await?;
        self.acked(tally);
        self.delete_records(target).await?;
        self.dest_log_start = self.dest_log_start.max(target);
        Ok(())
    }

    /// The source's log start moved (DeleteRecords, retention) below what is already
    /// mirrored: the mirror's moves with it, so both start at the same offset.
    async fn follow_log_start(&mut self, source_log_start: i64) -> Result<(), CopyError> {
        let tally = self.window.flush().await?;
        self.acked(tally);
        let target = source_log_start.min(self.window.acked_offset());
        if target > self.dest_log_start.max(0) {
            self.delete_records(target).await?;
        }
        self.dest_log_start = self.dest_log_start.max(target);
        Ok(())
    }

    /// Produces filler batches for `[sent offset, end)`.
    async fn fill_to(&mut self, end: i64) -> Result<(), CopyError> {
        while self.window.sent_offset() < end {
            let count = (end - self.window.sent_offset()).min(i64::from(self.max_fillers));
            let stamp = filler::filler_timestamp(self.last_data_timestamp);
            let batch = BatchView::parse(filler::filler_batch(count, FILLER_CODEC, stamp)?)?;
            self.send(&batch, 0, count as u64).await?;
        }
        Ok(())
    }

    async fn send(
        &mut self,
        batch: &BatchView,
        records: u64,
        fillers: u64,
    ) -> Result<(), CopyError> {
        let tally = Tally {
            batches: 1,
            records,
            fillers,
            bytes: 0,
        };
        let acked = self
            .window
            .send(batch, tally, None, self.budget.as_ref())
            .await?;
        self.acked(acked);
        Ok(())
    }

    async fn delete_records(&mut self, before: i64) -> Result<(), CopyError> {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(self.window.topic().clone())
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(self.partition)
                    .with_offset(before)])]);
        let response = self
            .window
            .idle_connection()
            .await?
            .call(&request, DELETE_RECORDS_VERSION)
            .await?;
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
                topic = self.window.topic().0.as_str(),
                partition = self.partition,
                error = code,
                "DeleteRecords below the source log start failed; fillers stay"
            );
        }
        Ok(())
    }

    /// Before copying into a partition that holds data: its last batch must be what the
    /// source has at those offsets (`resume_check`), or the mirror fails with
    /// OFFSET_MISMATCH before anything more is written.
    pub async fn verify_resume(&mut self) -> Result<(), CopyError> {
        let end = self.window.sent_offset();
        let topic = self.window.topic().0.to_string();
        let partition = self.partition;
        let dest = self.window.idle_connection().await?;
        if end <= log_start_offset(dest, &topic, partition).await? {
            return Ok(());
        }
        let Some(last) = resume_check::last_batch(dest, &topic, partition, end).await? else {
            return Ok(());
        };
        let is_filler = filler::is_filler_batch(&last)?;
        if !is_filler || last.max_timestamp() != NO_TIMESTAMP {
            self.last_data_timestamp = last.max_timestamp();
        }
        if is_filler
            && self
                .start_at
                .is_some_and(|start| last.last_offset() < start)
        {
            // Fillers below `mirror.start.offset.spec` stand where the source has data.
            return Ok(());
        }
        let source_topic = self.source_topic.0.to_string();
        let source = self.source()?;
        let verdict =
            resume_check::verify(source, &source_topic, partition, &last, is_filler).await?;
        match verdict {
            resume_check::Verdict::Same => Ok(()),
            resume_check::Verdict::Unverifiable(why) => {
                tracing::warn!(
                    topic = topic.as_str(),
                    partition,
                    offset = last.base_offset(),
                    "cannot compare the destination's last batch with the source: {why}"
                );
                Ok(())
            }
            resume_check::Verdict::Differs(why) => Err(CopyError::Diverged(why)),
        }
    }

    /// A single-partition fetch on the copier's own source connection.
    async fn fetch(&mut self, max_wait_ms: i32) -> Result<SourceData, CopyError> {
        let fetch_offset = self.window.sent_offset();
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
                    .with_fetch_offset(fetch_offset)
                    .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
        let response = self.source()?.call(&request, FETCH_VERSION).await?;
        if response.error_code != 0 {
            return Err(CopyError::Fetch(response.error_code));
        }
        let partition = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == self.partition)
            .ok_or(CopyError::Fetch(-1))?;
        Ok(SourceData {
            fetch_offset,
            error_code: partition.error_code,
            records: partition.records.unwrap_or_default(),
            high_watermark: partition.high_watermark,
            log_start_offset: partition.log_start_offset,
            aborted: partition.aborted_transactions.unwrap_or_default(),
            charge: None,
        })
    }
}

/// Which transactional batches belong to aborted transactions, as a READ_COMMITTED
/// consumer decides: a transaction listed with (producer id, first offset) is aborted
/// from its first offset up to its producer's next control batch (the abort marker).
pub(crate) struct Aborted {
    /// Not yet reached, by descending first offset (pop from the end).
    pending: Vec<(i64, i64)>,
    /// Producers whose aborted transaction is open at the current batch.
    open: HashSet<i64>,
}

impl Aborted {
    pub(crate) fn new(list: Vec<AbortedTransaction>) -> Self {
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
    pub(crate) fn is_aborted(&mut self, batch: &BatchView) -> bool {
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

/// ListOffsets of one partition as a consumer: `timestamp` is LATEST, EARLIEST or a
/// time in milliseconds.
pub(crate) async fn list_offset_at(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, CopyError> {
    list_offset_as(conn, topic, partition, timestamp, CONSUMER).await
}

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
