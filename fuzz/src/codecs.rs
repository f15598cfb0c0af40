//! Target `codecs`: the records block of one v2 batch, per codec (none, gzip, snappy
//! raw or xerial-framed, lz4, zstd, and the unassigned 5-7), through `decode_records`
//! and `is_filler_batch`. Input: attributes byte, records count (i16), flags, then the
//! records block; the harness writes a header with a valid CRC around it.
//!
//! Properties: nothing panics, memory stays within the decoder's bound; a decoded
//! batch has exactly `recordsCount` records; a batch whose decoded records are all
//! filler-shaped is recognised by `is_filler_batch`; a LogAppendTime batch rewritten
//! for produce (decode, re-encode with the same codec) decodes back to the same keys,
//! values and headers.

use bytes::{BufMut, Bytes, BytesMut};
use mirrorgate::kafka::batch_rewrite::rewrite_for_produce;
use mirrorgate::kafka::filler::{is_filler_batch, FILLER_KEY};
use mirrorgate::kafka::record_batch::{BatchView, CRC_START, HEADER_LEN};
use mirrorgate::kafka::record_codec::{decode_records, RawRecord};

const TIMESTAMP_TYPE_FLAG: i16 = 0x08;

/// A v2 batch around `payload` (header fields as a producer without id writes them).
pub fn batch(attributes: i16, count: i32, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_i64(0); // base offset
    out.put_i32(i32::try_from(HEADER_LEN - 12 + payload.len()).unwrap());
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // CRC, below
    out.put_i16(attributes);
    out.put_i32(count.saturating_sub(1).max(0)); // last offset delta
    out.put_i64(-1); // base timestamp
    out.put_i64(-1); // max timestamp
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(count);
    out.put_slice(payload);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

fn is_filler_shaped(record: &RawRecord) -> bool {
    record.key.as_deref() == Some(FILLER_KEY) && record.value.is_none() && record.headers.is_empty()
}

fn content(
    records: &[RawRecord],
) -> Vec<(Option<Bytes>, Option<Bytes>, Vec<(Bytes, Option<Bytes>)>)> {
    records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.headers.clone()))
        .collect()
}

pub fn check(data: &[u8]) {
    let [attributes, count_hi, count_lo, flags, payload @ ..] = data else {
        return;
    };
    let mut attributes = i16::from(*attributes & 0x07);
    let log_append_time = flags & 1 == 1;
    if log_append_time {
        attributes |= TIMESTAMP_TYPE_FLAG;
    }
    let count = i32::from(i16::from_be_bytes([*count_hi, *count_lo]));
    let view = BatchView::parse(batch(attributes, count, payload)).unwrap();
    let decoded = decode_records(&view);
    let filler = is_filler_batch(&view);
    let Ok(records) = decoded else {
        return;
    };
    assert_eq!(records.len(), usize::try_from(count.max(0)).unwrap());
    if count > 0 && records.iter().all(is_filler_shaped) {
        assert!(
            matches!(filler, Ok(true)),
            "filler records not recognised: {filler:?}"
        );
    }
    if log_append_time {
        if let Ok(out) = rewrite_for_produce(&view, 5, 0, 0) {
            let out = BatchView::parse(out).unwrap();
            assert_eq!(out.compression().unwrap(), view.compression().unwrap());
            let again = decode_records(&out).expect("a re-encoded batch decodes");
            assert_eq!(content(&again), content(&records));
        }
    }
}
