//! The resume check: before a copier writes into a mirror partition that already holds
//! data, the destination's last batch is compared with what the source has at the same
//! offsets. Someone else's write behind the proxy (or a mirror recreated over the wrong
//! topic) then fails the mirror with OFFSET_MISMATCH before anything more is appended,
//! instead of going unnoticed until a later batch lands at the wrong offset.
//!
//! What is comparable: the copier rewrites producer id, epoch, sequence and attributes
//! (so the CRC differs), re-encodes LogAppendTime batches as CreateTime with every record
//! at the source's max timestamp, splits batches around compaction holes, and the
//! destination may recompress. So a batch is the same when it covers the same offsets
//! and holds the same records as consumers see them: offset, timestamp, key, value,
//! headers, plus the same max timestamp. The fast path compares the records block as
//! bytes; anything else is decoded (bounded like every batch the copier decodes).
//!
//! A filler batch on the destination stands for offsets the source cannot serve as data
//! (transaction markers, aborted data, compaction holes, below the log start): it is
//! the same when the source has no committed record at any of its offsets.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::TimestampType;

use super::partition::{log_start_offset, Aborted, CopyError};
use crate::kafka::client::KafkaConnection;
use crate::kafka::error_code::OFFSET_OUT_OF_RANGE;
use crate::kafka::record_batch::{BatchError, BatchView, RecordBatches};
use crate::kafka::record_codec::decode_records;

const FETCH_VERSION: i16 = 12;
const FETCH_MAX_BYTES: i32 = 8 << 20;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;
/// Source fetches one check may take (a filler batch can cover many source batches).
const MAX_FETCHES: usize = 4;

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// Nothing contradicts, but part could not be compared (say why).
    Unverifiable(String),
    /// The destination holds something else than the source: the OFFSET_MISMATCH reason.
    Differs(String),
}

/// A record as consumers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// The records of a batch with their offsets and the timestamps consumers see
/// (LogAppendTime: the batch's max timestamp). None for control batches.
pub fn seen_records(batch: &BatchView) -> Result<Vec<Seen>, BatchError> {
    if batch.is_control() || batch.records_count() <= 0 {
        return Ok(Vec::new());
    }
    let base = batch.base_offset();
    let log_append = batch.timestamp_type() == TimestampType::LogAppend;
    Ok(decode_records(batch)?
        .into_iter()
        .map(|r| Seen {
            offset: base.wrapping_add(i64::from(r.offset_delta)),
            timestamp: if log_append {
                batch.max_timestamp()
            } else {
                batch.base_timestamp().wrapping_add(r.timestamp_delta)
            },
            key: r.key,
            value: r.value,
            headers: r.headers,
        })
        .collect())
}

/// What the source answered from some offset on: whole batches in offset order, the
/// aborted transactions among them, and its high watermark.
#[derive(Default)]
pub struct SourceSpan {
    pub batches: Vec<BatchView>,
    pub aborted: Vec<AbortedTransaction>,
    pub high_watermark: i64,
}

/// The source's batches that overlap `[first, last]`, split into committed data and
/// the offset ranges of markers and aborted data; and the last offset the span covers.
struct Overlap {
    data: Vec<BatchView>,
    unservable: Vec<(i64, i64)>,
    covered: i64,
}

fn overlap(span: &SourceSpan, first: i64, last: i64) -> Overlap {
    let mut aborted = Aborted::new(span.aborted.clone());
    let mut out = Overlap {
        data: Vec::new(),
        unservable: Vec::new(),
        covered: first - 1,
    };
    for batch in &span.batches {
        // Every batch in order: the aborted state follows the markers.
        let skip = aborted.is_aborted(batch);
        out.covered = out.covered.max(batch.last_offset());
        if batch.last_offset() < first || batch.base_offset() > last {
            continue;
        }
        if skip || batch.is_control() {
            out.unservable
                .push((batch.base_offset(), batch.last_offset()));
        } else {
            out.data.push(batch.clone());
        }
    }
    out
}

/// Compares the destination's last data batch with the source's batches from its base
/// offset on.
pub fn compare_data(dest: &BatchView, span: &SourceSpan) -> Result<Verdict, BatchError> {
    let (first, last) = (dest.base_offset(), dest.last_offset());
    if last >= span.high_watermark {
        return Ok(Verdict::Differs(format!(
            "the destination holds records at offsets {first}..={last}, but the source \
             partition ends at {}",
            span.high_watermark
        )));
    }
    let overlap = overlap(span, first, last);
    if let [source] = overlap.data.as_slice() {
        let same_shape = source.base_offset() == first
            && source.last_offset() == last
            && source.timestamp_type() == TimestampType::Creation
            && source.records_count() == dest.records_count()
            && source.base_timestamp() == dest.base_timestamp()
            && source.max_timestamp() == dest.max_timestamp()
            && source.compression().ok() == dest.compression().ok();
        if same_shape && source.records_payload() == dest.records_payload() {
            return Ok(Verdict::Same);
        }
    }
    let mut expected = Vec::new();
    for batch in &overlap.data {
        expected.extend(
            seen_records(batch)?
                .into_iter()
                .filter(|r| (first..=last).contains(&r.offset)),
        );
    }
    let copied = seen_records(dest)?;
    let mut compacted = Vec::new();
    for record in &copied {
        let offset = record.offset;
        if overlap
            .unservable
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&offset))
        {
            return Ok(Verdict::Differs(format!(
                "the destination holds a record at offset {offset}, where the source has a \
                 transaction marker or aborted data"
            )));
        }
        match expected.binary_search_by_key(&offset, |r| r.offset) {
            Ok(i) => {
                if let Some(what) = difference(&expected[i], record) {
                    return Ok(Verdict::Differs(format!(
                        "the record at offset {offset} differs from the source's ({what}), in \
                         the destination batch at offsets {first}..={last}"
                    )));
                }
            }
            // Not fetched yet, or removed by the source's compaction since it was copied.
            Err(_) => compacted.push(offset),
        }
    }
    if let Some(missing) = expected.iter().find(|r| {
        copied
            .binary_search_by_key(&r.offset, |c| c.offset)
            .is_err()
    }) {
        return Ok(Verdict::Differs(format!(
            "the source's record at offset {} is missing from the destination batch at \
             offsets {first}..={last}",
            missing.offset
        )));
    }
    let source_max = expected.iter().map(|r| r.timestamp).max();
    if compacted.is_empty() && source_max.is_some_and(|max| max != dest.max_timestamp()) {
        return Ok(Verdict::Differs(format!(
            "the destination batch at offsets {first}..={last} has max timestamp {}, the \
             source's records {}",
            dest.max_timestamp(),
            source_max.unwrap_or_default()
        )));
    }
    Ok(match compacted.as_slice() {
        [] => Verdict::Same,
        [first_absent, ..] => Verdict::Unverifiable(format!(
            "{} record(s) from offset {first_absent} on are no longer on the source \
             (compacted, or past what it answered)",
            compacted.len()
        )),
    })
}

/// What differs between a source record and its copy, if anything.
fn difference(source: &Seen, copy: &Seen) -> Option<&'static str> {
    if source.timestamp != copy.timestamp {
        Some("timestamp")
    } else if source.key != copy.key {
        Some("key")
    } else if source.value != copy.value {
        Some("value")
    } else if source.headers != copy.headers {
        Some("headers")
    } else {
        None
    }
}

/// Compares the destination's last batch, a filler batch, with the source's batches
/// from `from` (its base offset, or the source's log start above it) on.
pub fn compare_filler(
    dest: &BatchView,
    span: &SourceSpan,
    from: i64,
) -> Result<Verdict, BatchError> {
    let (first, last) = (from.max(dest.base_offset()), dest.last_offset());
    if last >= span.high_watermark {
        return Ok(Verdict::Differs(format!(
            "the destination holds fillers up to offset {last}, but the source partition \
             ends at {}",
            span.high_watermark
        )));
    }
    let overlap = overlap(span, first, last);
    for batch in &overlap.data {
        let span_of_batch = i64::from(batch.last_offset_delta()) + 1;
        let data_at = if i64::from(batch.records_count()) == span_of_batch {
            // Gap-free: a record at every offset, the first one in range included.
            Some(batch.base_offset().max(first))
        } else {
            seen_records(batch)?
                .into_iter()
                .map(|r| r.offset)
                .find(|o| (first..=last).contains(o))
        };
        if let Some(offset) = data_at {
            return Ok(Verdict::Differs(format!(
                "the destination has a filler at offset {offset}, where the source has a \
                 record (filler batch at offsets {}..={last})",
                dest.base_offset()
            )));
        }
    }
    Ok(if overlap.covered >= last {
        Verdict::Same
    } else {
        Verdict::Unverifiable(format!(
            "fillers compared up to offset {} of {last}",
            overlap.covered
        ))
    })
}

struct Fetched {
    error_code: i16,
    records: Bytes,
    high_watermark: i64,
    aborted: Vec<AbortedTransaction>,
}

async fn fetch(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation: i8,
) -> Result<Fetched, CopyError> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(isolation)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
    let response = conn.call(&request, FETCH_VERSION).await?;
    if response.error_code != 0 {
        return Err(CopyError::Fetch(response.error_code));
    }
    let partition = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or(CopyError::Fetch(-1))?;
    Ok(Fetched {
        error_code: partition.error_code,
        records: partition.records.unwrap_or_default(),
        high_watermark: partition.high_watermark,
        aborted: partition.aborted_transactions.unwrap_or_default(),
    })
}

/// The batch holding offset `end - 1` on the destination (its last one).
pub async fn last_batch(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    end: i64,
) -> Result<Option<BatchView>, CopyError> {
    let fetched = fetch(conn, topic, partition, end - 1, READ_UNCOMMITTED).await?;
    if fetched.error_code != 0 {
        return Err(CopyError::Fetch(fetched.error_code));
    }
    for batch in RecordBatches::new(fetched.records) {
        let batch = batch?;
        if batch.base_offset() < end && end <= batch.next_offset() {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

/// Compares `dest`, the destination's last batch, with the source partition.
pub async fn verify(
    source: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    dest: &BatchView,
    is_filler: bool,
) -> Result<Verdict, CopyError> {
    let last = dest.last_offset();
    let log_start = log_start_offset(source, topic, partition).await?;
    if log_start > last {
        // Retention took the source's side; fillers there are what the copier writes.
        return Ok(if is_filler {
            Verdict::Same
        } else {
            Verdict::Unverifiable(format!("the source's log now starts at {log_start}"))
        });
    }
    let from = dest.base_offset().max(log_start);
    let mut span = SourceSpan::default();
    let mut next = from;
    for _ in 0..MAX_FETCHES {
        let fetched = fetch(source, topic, partition, next, READ_COMMITTED).await?;
        if fetched.error_code == OFFSET_OUT_OF_RANGE {
            return Ok(Verdict::Unverifiable(
                "the source's log start moved past the batch".into(),
            ));
        }
        if fetched.error_code != 0 {
            return Err(CopyError::Fetch(fetched.error_code));
        }
        span.high_watermark = fetched.high_watermark;
        span.aborted.extend(fetched.aborted);
        let before = span.batches.len();
        for batch in RecordBatches::new(fetched.records) {
            span.batches.push(batch?);
        }
        let covered = span.batches.last().map_or(next - 1, BatchView::last_offset);
        if covered >= last || span.batches.len() == before || covered + 1 >= span.high_watermark {
            break;
        }
        next = covered + 1;
    }
    Ok(if is_filler {
        compare_filler(dest, &span, from)?
    } else {
        compare_data(dest, &span)?
    })
}

#[cfg(test)]
#[path = "resume_check_tests.rs"]
mod tests;
