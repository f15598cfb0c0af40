//! The rewrite of a batch into one we may produce (the replicator's copies, clients'
//! batches forwarded to a source): header fields only on the fast path, the records
//! re-encoded for LogAppendTime batches (with `record_codec`). Above `record_batch`
//! and `record_codec`, which know nothing of it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, TimestampType, NO_PARTITION_LEADER_EPOCH};

use super::record_batch::{
    put, BatchError, BatchView, Header, ATTRIBUTES, BASE_OFFSET, BASE_SEQUENCE, CRC, CRC_START,
    HEADER_LEN, PARTITION_LEADER_EPOCH, PRODUCER_EPOCH, PRODUCER_ID, TRANSACTIONAL_FLAG,
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
/// way). The records block is untouched; the CRC follows from the stored one.
///
/// LogAppendTime batches take a slow path. Consumers of the source saw `max_timestamp`
/// as every record's timestamp (the broker stamps only the header), while the records
/// still carry the producer's create-time deltas. Clearing the bit alone would make
/// consumers of the destination see those create times instead, so such a batch is
/// decoded and re-encoded as CreateTime with every record's timestamp set to the source
/// `max_timestamp` (same codec, same keys, values and headers).
///
/// The source CRC is not checked on this path (it would be a pass over every byte): the
/// new CRC is derived from the stored one, so a corrupt batch keeps a wrong CRC and the
/// broker it is produced to refuses it (CORRUPT_MESSAGE; brokers check every appended
/// batch). Whoever produces it checks the source batch then, to say where the
/// corruption is (`replicator::producer_window`). Never a fresh CRC over bad bytes.
///
/// Errors: control batches and batches with holes (use `filler::re_encode_with_fillers`),
/// a negative sequence with a producer id.
pub fn rewrite_for_produce(
    batch: &BatchView,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, BatchError> {
    stamp(batch, producer_id, producer_epoch, base_sequence, 0)
}

/// A client's batch forwarded to a link's source under a producer id of ours: as
/// `rewrite_for_produce`, but a transactional batch stays transactional. It belongs to
/// the client's transaction, run on the source under that producer id, and must stay
/// invisible to read_committed consumers until that transaction commits (and for
/// ever if it aborts).
pub fn rewrite_for_forward(
    batch: &BatchView,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, BatchError> {
    let kept = batch.attributes() & TRANSACTIONAL_FLAG;
    stamp(batch, producer_id, producer_epoch, base_sequence, kept)
}

/// The header rewrite of both: attributes become the codec and `kept_flags`.
fn stamp(
    batch: &BatchView,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    kept_flags: i16,
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
        return rewrite_log_append_time(
            batch,
            codec,
            kept_flags,
            producer_id,
            producer_epoch,
            base_sequence,
        );
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
    put(
        &mut out,
        ATTRIBUTES,
        (codec as i16 | kept_flags).to_be_bytes(),
    );
    put(&mut out, PRODUCER_ID, producer_id.to_be_bytes());
    put(&mut out, PRODUCER_EPOCH, producer_epoch.to_be_bytes());
    put(&mut out, BASE_SEQUENCE, base_sequence.to_be_bytes());
    out.extend_from_slice(payload);
    // The new CRC follows from the stored one and the header fields that changed, so
    // the payload is not read for it; a corrupt batch stays corrupt.
    let new_crc = updated_crc(batch.crc(), header, &out[..header.len()], payload.len());
    put(&mut out, CRC, new_crc.to_be_bytes());
    Ok(out.freeze())
}

/// The CRC-32C of a batch whose header changed, from the CRC of the old batch, without
/// reading the payload again. CRC is linear over equal-length inputs: the two CRCs
/// differ by the CRC of the header difference carried past the payload's bytes.
/// Brokers check the result.
fn updated_crc(old_crc: u32, old_header: &[u8], new_header: &[u8], payload_len: usize) -> u32 {
    let covered = |h: &[u8]| crc32c::crc32c(h.get(CRC_START..HEADER_LEN).unwrap_or_default());
    old_crc ^ crc32c_shift(covered(old_header) ^ covered(new_header), payload_len)
}

/// Reflected CRC-32C (Castagnoli) polynomial.
const CASTAGNOLI: u32 = 0x82F6_3B78;

/// `crc` carried past `len` zero bytes: multiplication by x^(8 len) modulo the
/// polynomial, with x^(2^k) from a table. About 50 times cheaper for a 16 KiB batch than
/// `crc32c::crc32c_combine`, which squares 32x32 bit matrices per bit of the length.
fn crc32c_shift(crc: u32, len: usize) -> u32 {
    // x^(8 len) = product of x^(2^k) over the set bits k of 8 len.
    // Lengths are of one batch: far below 2^61 bytes, so 8 len fits in 64 bits.
    let (mut power, mut bits, mut k) = (1u32 << 31, (len as u64).wrapping_shl(3), 0);
    while bits != 0 {
        if bits & 1 == 1 {
            power = multiply(X_POW_2K[k], power);
        }
        bits >>= 1;
        k += 1;
    }
    multiply(power, crc)
}

/// Product of two polynomials modulo the CRC-32C polynomial (bit-reflected).
const fn multiply(a: u32, mut b: u32) -> u32 {
    let (mut product, mut bit) = (0u32, 1u32 << 31);
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 == 1 {
            (b >> 1) ^ CASTAGNOLI
        } else {
            b >> 1
        };
    }
    product
}

/// x^(2^k) modulo the polynomial, for every bit k of a 64-bit length in bits.
const X_POW_2K: [u32; 64] = {
    let mut table = [0u32; 64];
    table[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < 64 {
        table[k] = multiply(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

fn rewrite_log_append_time(
    batch: &BatchView,
    codec: Compression,
    kept_flags: i16,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, BatchError> {
    batch.check_crc()?;
    let seen = batch.max_timestamp();
    let mut header = Header::unstamped(codec, 0);
    header.attributes |= kept_flags;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the crate's (slow, reference) combine, over lengths around every power
    /// of two a batch can have.
    #[test]
    fn the_shift_is_the_crates_combine_with_nothing_after() {
        let mut crc = 0x1234_5678u32;
        for exponent in 0..25 {
            for len in [(1usize << exponent) - 1, 1 << exponent, (1 << exponent) + 7] {
                crc = crc.rotate_left(5) ^ (len as u32).wrapping_mul(0x9E37_79B9);
                assert_eq!(
                    crc32c_shift(crc, len),
                    crc32c::crc32c_combine(crc, 0, len),
                    "len {len}"
                );
            }
        }
    }

    /// The CRC of a batch with a changed header, from the old CRC, is the CRC computed
    /// over the new bytes.
    #[test]
    fn an_updated_crc_equals_the_crc_of_the_new_bytes() {
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for payload_len in [0usize, 1, 100, 16 * 1024, 1 << 20] {
            let old: Vec<u8> = (0..HEADER_LEN + payload_len)
                .map(|_| next() as u8)
                .collect();
            let mut new = old.clone();
            for byte in &mut new[CRC_START..HEADER_LEN] {
                if next() % 3 == 0 {
                    *byte = next() as u8;
                }
            }
            let old_crc = crc32c::crc32c(&old[CRC_START..]);
            assert_eq!(
                updated_crc(old_crc, &old[..HEADER_LEN], &new[..HEADER_LEN], payload_len),
                crc32c::crc32c(&new[CRC_START..]),
                "payload of {payload_len} bytes"
            );
        }
    }
}
