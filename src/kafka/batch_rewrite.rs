//! The replicator's rewrite of a source batch into one it may produce: header fields
//! only on the fast path, the records re-encoded for LogAppendTime batches (with
//! `record_codec`). Above `record_batch` and `record_codec`, which know nothing of it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, TimestampType, NO_PARTITION_LEADER_EPOCH};

use super::record_batch::{
    crc_mismatch, put, BatchError, BatchView, Header, ATTRIBUTES, BASE_OFFSET, BASE_SEQUENCE, CRC,
    CRC_START, HEADER_LEN, PARTITION_LEADER_EPOCH, PRODUCER_EPOCH, PRODUCER_ID,
};
use super::record_codec::{decode_records, BatchBuilder};

/// The replicator's fast path: the batch as a client may produce it, stamped with our
/// idempotent producer id, epoch and base sequence.
///
/// The source batch is copied once; baseOffset becomes 0 (brokers reject anything else),
/// partitionLeaderEpoch -1, and the attributes keep only the codec: transactional (4)
/// because we produce outside any transaction, LogAppendTime (3) because brokers reject
/// it from clients, and delete horizon (6) because the horizon is the source cleaner's
/// schedule, not ours (record timestamps do not change: they are base + delta either
/// way). The records block is untouched and the CRC recomputed.
///
/// LogAppendTime batches take a slow path. Consumers of the source saw `max_timestamp`
/// as every record's timestamp (the broker stamps only the header), while the records
/// still carry the producer's create-time deltas. Clearing the bit alone would make
/// consumers of the destination see those create times instead, so such a batch is
/// decoded and re-encoded as CreateTime with every record's timestamp set to the source
/// `max_timestamp` (same codec, same keys, values and headers).
///
/// Errors: control batches and batches with holes (use `filler::re_encode_with_fillers`),
/// a CRC mismatch (the source bytes are not laundered into a fresh CRC), a negative
/// sequence with a producer id.
pub fn rewrite_for_produce(
    batch: &BatchView,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, BatchError> {
    if batch.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if !batch.is_gap_free() {
        return Err(BatchError::NotGapFree {
            records: batch.records_count(),
            span: i64::from(batch.last_offset_delta()) + 1,
        });
    }
    if producer_id >= 0 && base_sequence < 0 {
        return Err(BatchError::NegativeSequence(base_sequence));
    }
    let codec = batch.compression()?;
    if batch.timestamp_type() == TimestampType::LogAppend {
        return rewrite_log_append_time(batch, codec, producer_id, producer_epoch, base_sequence);
    }

    let src = batch.bytes();
    let (header, payload) = src.split_at(HEADER_LEN.min(src.len()));
    let mut out = BytesMut::with_capacity(src.len());
    out.extend_from_slice(header);
    put(&mut out, BASE_OFFSET, 0i64.to_be_bytes());
    put(
        &mut out,
        PARTITION_LEADER_EPOCH,
        NO_PARTITION_LEADER_EPOCH.to_be_bytes(),
    );
    put(&mut out, ATTRIBUTES, (codec as i16).to_be_bytes());
    put(&mut out, PRODUCER_ID, producer_id.to_be_bytes());
    put(&mut out, PRODUCER_EPOCH, producer_epoch.to_be_bytes());
    put(&mut out, BASE_SEQUENCE, base_sequence.to_be_bytes());
    // One pass over the payload in cache-sized chunks: copy it, verify the source CRC
    // and compute the new one (CRC-32C in hardware is far cheaper than the memory
    // traffic; crc32c_combine would avoid the second CRC but costs more per call).
    let header_crc = |h: &[u8]| crc32c::crc32c(h.get(CRC_START..HEADER_LEN).unwrap_or_default());
    let (mut old_crc, mut new_crc) = (header_crc(header), header_crc(&out));
    for chunk in payload.chunks(16 * 1024) {
        old_crc = crc32c::crc32c_append(old_crc, chunk);
        new_crc = crc32c::crc32c_append(new_crc, chunk);
        out.extend_from_slice(chunk);
    }
    if old_crc != batch.crc() {
        return Err(BatchError::CrcMismatch {
            stored: batch.crc(),
            computed: old_crc,
        });
    }
    put(&mut out, CRC, new_crc.to_be_bytes());
    Ok(out.freeze())
}

fn rewrite_log_append_time(
    batch: &BatchView,
    codec: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, BatchError> {
    if !batch.verify_crc() {
        return Err(crc_mismatch(batch));
    }
    let seen = batch.max_timestamp();
    let mut header = Header::unstamped(codec, 0);
    header.producer_id = producer_id;
    header.producer_epoch = producer_epoch;
    header.base_sequence = base_sequence;
    let mut builder = BatchBuilder::new(codec, header, seen)?;
    // Gap-free: the i-th record is at delta i; numbering by position keeps the output
    // gap-free even if a corrupt record says otherwise.
    for (delta, record) in (0..).zip(decode_records(batch)?) {
        builder.push(delta, seen, &record)?;
    }
    builder.finish()
}
