//! Filler records (ARCHITECTURE.md, "Identical offsets"): offsets the source has but
//! that cannot be produced as data (log start above 0, compaction holes, transaction
//! markers, aborted data) are produced as records with one reserved key and a null
//! value, so the destination assigns the same offsets as the source.
//!
//! Filler batches never mix with real records: the proxy hides a batch from consumers by
//! swapping it for an empty batch, which works only when every record in it is a filler.

use bytes::Bytes;
use kafka_protocol::records::{Compression, TimestampType, NO_TIMESTAMP};

use super::record_batch::{BatchError, BatchView, Header, HEADER_LEN};
use super::record_codec::{
    decode_records, record_tail, BatchBuilder, Body, RawRecord, RecordReader, MAX_RECORDS_PER_BATCH,
};

/// The one key every filler record carries. Keyed, so that compacted topics accept it;
/// one key with null values (tombstones), so that compaction removes them by itself.
pub const FILLER_KEY: &[u8] = b"__mirrorgate_filler";

/// Encoded size of a filler record as [`filler_batch`] writes it, at the largest offset
/// delta: length 1 + attributes 1 + timestamp delta 1 + offset delta 5 + key 1+19 +
/// null value 1 + header count 1.
pub const FILLER_RECORD_MAX_LEN: usize = 30;

/// Longest filler record body accepted by [`is_filler_batch`]: as above without the length
/// prefix, plus room for a 10-byte timestamp delta, in case a broker re-encoded it.
const FILLER_BODY_MAX_LEN: usize = 1 + 10 + 5 + 1 + FILLER_KEY.len() + 1 + 1;

/// Kafka's default `max.message.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

fn filler_record() -> RawRecord {
    RawRecord {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: Some(Bytes::from_static(FILLER_KEY)),
        value: None,
        headers: Vec::new(),
    }
}

/// Whether a record body (after its length) is a filler: any attributes and deltas,
/// then key [`FILLER_KEY`], null value, no headers. Checked in place, no allocation.
fn is_filler_body(body: &[u8]) -> bool {
    let Some(tail) = record_tail(body) else {
        return false;
    };
    // Key length 19 is zigzag varint 38; null value is varint -1 (1); no headers is 0.
    let key_len = (FILLER_KEY.len() as u8) << 1;
    matches!(tail.split_first(), Some((&len, rest))
        if len == key_len && rest.len() == FILLER_KEY.len() + 2
            && rest.starts_with(FILLER_KEY) && rest.ends_with(&[1, 0]))
}

/// How many fillers fit a batch of at most `max_message_bytes` even uncompressed.
///
/// The broker checks `max.message.bytes` on the batch as sent and again after it
/// recompresses to the topic's `compression.type`; sizing by the uncompressed length is
/// safe whatever that type is. With compression `producer` (or the same codec) a
/// replicator that knows so may use far larger filler batches.
pub fn max_fillers_per_batch(max_message_bytes: usize) -> u32 {
    let n = max_message_bytes.saturating_sub(HEADER_LEN) / FILLER_RECORD_MAX_LEN;
    n.clamp(1, i32::MAX as usize) as u32
}

/// A v2 batch of `count` filler records at offsets 0..count-1 (baseOffset 0), all with
/// `timestamp` (CreateTime), producer fields unset (-1) for `rewrite_for_produce` to
/// stamp. Streamed through the compressor with no large temporary buffer. Every record
/// differs in its offset delta, so zstd needs ~0.8 byte per filler (a million fit
/// under the default `max.message.bytes`), LZ4 ~5 bytes.
///
/// Pass [`NO_TIMESTAMP`] or a [`filler_timestamp`]: [`may_be_filler_batch`] recognises
/// only those.
///
/// `count` must be in 1..=i32::MAX (recordsCount is an i32).
pub fn filler_batch(
    count: i64,
    compression: Compression,
    timestamp: i64,
) -> Result<Bytes, BatchError> {
    filler_batch_at(0, count, compression, timestamp)
}

fn filler_batch_at(
    base_offset: i64,
    count: i64,
    compression: Compression,
    timestamp: i64,
) -> Result<Bytes, BatchError> {
    let count = i32::try_from(count)
        .ok()
        .filter(|c| *c > 0)
        .ok_or(BatchError::BadFillerCount(count))?;
    let header = Header::unstamped(compression, base_offset);
    let mut builder = BatchBuilder::new(compression, header, timestamp)?;
    let filler = filler_record();
    for delta in 0..count {
        builder.push(delta, timestamp, &filler)?;
    }
    builder.finish()
}

/// Filler timestamps end in these milliseconds ([`filler_timestamp`]), so a header
/// tells most data batches from fillers.
const FILLER_TIMESTAMP_MODULUS: i64 = 1000;
const FILLER_TIMESTAMP_MARK: i64 = 999;

/// The timestamp for fillers written after data stamped `after` (the max timestamp of
/// the last data copied before them): rounded down to a marked millisecond, or
/// [`NO_TIMESTAMP`] when there is none.
///
/// Why a real timestamp: the broker forgets an idempotent producer once its last batch's
/// max timestamp is `producer.id.expiration.ms` old, and -1 is always that old; a mirror
/// whose last batch is a filler (a transaction marker often ends a source partition)
/// would lose the sequence check that makes its appends conditional. Why not later than
/// `after`: an offset-for-timestamp lookup that matches the filler is matched by that
/// earlier data already, so lookups land where they land on the source.
pub fn filler_timestamp(after: i64) -> i64 {
    if after < FILLER_TIMESTAMP_MARK {
        return NO_TIMESTAMP;
    }
    after - (after - FILLER_TIMESTAMP_MARK).rem_euclid(FILLER_TIMESTAMP_MODULUS)
}

/// Header-only prefilter for the proxy's Fetch path: false for every batch that cannot be
/// a filler batch: control or empty batches, and any batch whose max timestamp is
/// neither [`NO_TIMESTAMP`] nor, equal to its first timestamp, a marked millisecond of
/// [`filler_timestamp`]. Fillers have null values, so on a compacted mirror the log
/// cleaner treats them as tombstones and writes its delete horizon into the first
/// timestamp (KIP-534): with that flag only the max timestamp is checked. About one data batch in a thousand passes. Sound only if all
/// fillers are written with such timestamps (every record the same) and the destination
/// topic is CreateTime (the broker then keeps the timestamps, even when it recompresses);
/// when it returns true, confirm with [`is_filler_batch`].
pub fn may_be_filler_batch<B: AsRef<[u8]>>(batch: &BatchView<B>) -> bool {
    let max = batch.max_timestamp();
    !batch.is_control()
        && batch.records_count() > 0
        && (max == NO_TIMESTAMP
            || ((max == batch.base_timestamp() || batch.has_delete_horizon())
                && max.rem_euclid(FILLER_TIMESTAMP_MODULUS) == FILLER_TIMESTAMP_MARK))
}

/// True when the batch holds records and all of them are fillers.
///
/// Reads records one at a time (decompressing as it goes) and stops at the first record
/// that is not a filler, which for a data batch is the first one: memory stays at the
/// decompressor's window plus one record. Control and empty batches are never fillers.
pub fn is_filler_batch(batch: &BatchView) -> Result<bool, BatchError> {
    if batch.is_control() || batch.records_count() <= 0 {
        return Ok(false);
    }
    let mut reader = RecordReader::new(batch, usize::MAX)?;
    loop {
        match reader.next_matches(FILLER_BODY_MAX_LEN, is_filler_body)? {
            Body::End => return Ok(true),
            Body::Oversized | Body::Record(false) => return Ok(false),
            Body::Record(true) => {}
        }
    }
}

/// [`re_encode_with_fillers_max`] with batches sized for Kafka's default
/// `max.message.bytes`.
pub fn re_encode_with_fillers(batch: &BatchView) -> Result<Vec<Bytes>, BatchError> {
    re_encode_with_fillers_max(batch, max_fillers_per_batch(DEFAULT_MAX_MESSAGE_BYTES))
}

/// Batches that cover exactly the offsets of `batch`, `[base_offset, last_offset]`, with
/// a filler at every offset that holds no record (compaction holes; every offset of a
/// control batch). Real records keep their key, value, headers and the timestamp
/// consumers saw (for LogAppendTime, the batch's max timestamp, written as CreateTime).
///
/// Output, in offset order: each maximal run of consecutive real records is one batch,
/// each run of missing offsets one or more filler batches of at most
/// `max_fillers_per_batch` records. All use the source codec. Each batch's baseOffset is
/// the source offset of its first record (informational: `rewrite_for_produce` sets it
/// to 0 and stamps the producer fields); every batch is gap-free and CreateTime.
///
/// Fillers get the [`filler_timestamp`] after the records before them in the batch
/// (-1 before the first): never later than data before them, so offset-for-timestamp
/// lookups never land on a filler before the real record the source would answer with.
pub fn re_encode_with_fillers_max(
    batch: &BatchView,
    max_fillers_per_batch: u32,
) -> Result<Vec<Bytes>, BatchError> {
    re_encode_from(batch, batch.base_offset(), max_fillers_per_batch)
}

/// [`re_encode_with_fillers_max`] for the offsets `[from, last_offset]` only: records
/// below `from` are left out. For a batch that starts below where a copy resumes (the
/// source log start moved into the middle of it); `from` at or below the base offset
/// covers the whole batch.
pub fn re_encode_from(
    batch: &BatchView,
    from: i64,
    max_fillers_per_batch: u32,
) -> Result<Vec<Bytes>, BatchError> {
    re_encode_from_after(batch, from, max_fillers_per_batch, NO_TIMESTAMP)
}

/// [`re_encode_from`] with fillers stamped by [`filler_timestamp`]: those before the
/// first record copied after data stamped `after`, the others after the records before
/// them.
pub fn re_encode_from_after(
    batch: &BatchView,
    from: i64,
    max_fillers_per_batch: u32,
    after: i64,
) -> Result<Vec<Bytes>, BatchError> {
    batch.check_crc()?;
    let codec = batch.compression()?;
    let last = batch.last_offset_delta();
    if last < 0 {
        return Err(BatchError::MalformedRecord {
            index: -1,
            reason: "negative last offset delta",
        });
    }
    // Each offset of the span becomes a record or a filler: bound it like a record count
    // (a compacted batch spans no more offsets than it once held records).
    if usize::try_from(last).is_ok_and(|last| last >= MAX_RECORDS_PER_BATCH) {
        return Err(BatchError::TooManyRecords {
            declared: last.saturating_add(1),
            limit: MAX_RECORDS_PER_BATCH,
        });
    }
    let records = if batch.is_control() {
        Vec::new()
    } else {
        decode_records(batch)?
    };
    let base = batch.base_offset();
    let chunk = i64::from(max_fillers_per_batch.clamp(1, i32::MAX as u32));
    let timestamp_of = |r: &RawRecord| match batch.timestamp_type() {
        TimestampType::LogAppend => batch.max_timestamp(),
        TimestampType::Creation => batch.base_timestamp().wrapping_add(r.timestamp_delta),
    };
    // Fills offset deltas from..=to (i64: no overflow at i32::MAX).
    let fill = |out: &mut Vec<Bytes>, from: i64, to: i64, after: i64| -> Result<(), BatchError> {
        let mut start = from;
        let stamp = filler_timestamp(after);
        while start <= to {
            let count = chunk.min(to - start + 1);
            out.push(filler_batch_at(
                base.wrapping_add(start),
                count,
                codec,
                stamp,
            )?);
            start += count;
        }
        Ok(())
    };

    let mut out = Vec::new();
    // First offset delta not yet covered.
    let mut next = from.saturating_sub(base).clamp(0, i64::from(last) + 1);
    let skip_below = next;
    // The latest data timestamp before the offset being filled.
    let mut latest = after;
    let mut run: Option<(i32, BatchBuilder)> = None;
    for (index, record) in records.iter().enumerate() {
        let delta = record.offset_delta;
        if i64::from(delta) < skip_below {
            continue;
        }
        if i64::from(delta) < next || delta > last {
            return Err(BatchError::MalformedRecord {
                index: index as i64,
                reason: "offset delta out of order or past the batch's last offset",
            });
        }
        if i64::from(delta) > next {
            if let Some((_, builder)) = run.take() {
                out.push(builder.finish()?);
            }
            fill(&mut out, next, i64::from(delta) - 1, latest)?;
        }
        let timestamp = timestamp_of(record);
        latest = latest.max(timestamp);
        let (start, builder) = match &mut run {
            Some(open) => open,
            None => {
                let header = Header::unstamped(codec, base.wrapping_add(i64::from(delta)));
                run.insert((delta, BatchBuilder::new(codec, header, timestamp)?))
            }
        };
        builder.push(delta - *start, timestamp, record)?;
        next = i64::from(delta) + 1;
    }
    if let Some((_, builder)) = run.take() {
        out.push(builder.finish()?);
    }
    fill(&mut out, next, i64::from(last), latest)?;
    Ok(out)
}
