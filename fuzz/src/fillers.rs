//! Target `fillers`: record batch views, filler hiding, and the replicator's batch
//! rewrites, over record sets that are either the raw input (first byte even) or built
//! from an `arbitrary` description (data batches with holes, filler batches, control
//! batches, garbage, corrupted bytes, a cut-off tail).
//!
//! Properties: nothing panics;
//! - `hide_fillers`: the output splits into batches covering exactly the offsets of
//!   the input's, batch for batch; a batch that changed was a filler batch and is now
//!   an empty batch with a valid CRC-32C, the others keep their bytes, so is what
//!   follows the last whole batch; with no filler the answer is `None`; hiding again
//!   finds nothing;
//! - `rewrite_for_produce`: an accepted batch is a v2 batch at base offset 0 with our
//!   producer fields, a CRC that is valid exactly when the source's was (corruption is
//!   carried, never laundered), the same offset span and record count, and
//!   (CreateTime) the very same records block; `rewrite_for_forward` gives the same
//!   batch but for the transactional flag, which it keeps;
//! - `re_encode_from`: the batches cover `[max(from, base), last]` without a gap or an
//!   overlap, each gap-free with a valid CRC.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_TIMESTAMP,
};
use mirrorgate::kafka::batch_rewrite::{rewrite_for_forward, rewrite_for_produce};
use mirrorgate::kafka::filler::{
    filler_batch, is_filler_batch, may_be_filler_batch, re_encode_from,
};
use mirrorgate::kafka::record_batch::{BatchSlices, BatchView, RecordBatches};
use mirrorgate::proxy::interceptors::fetch_fillers::hide_fillers;

/// Batches with more offsets than this are not re-encoded: filling 2^31 offsets is
/// slow by design (the replicator bounds it by the source's real offsets).
const MAX_REENCODE_SPAN: i64 = 4096;

#[derive(Arbitrary, Debug)]
enum Piece {
    /// Up to 16 records; bit i of `holes` removes offset i (compaction).
    Data {
        records: u8,
        holes: u16,
        codec: u8,
        log_append_time: bool,
        control: bool,
        value: Vec<u8>,
    },
    /// A filler batch as the replicator writes it; a timestamp makes it not hideable.
    Filler {
        count: u16,
        codec: u8,
        timestamp: Option<i64>,
    },
    Garbage(Vec<u8>),
    /// XOR one byte of what was built so far.
    Corrupt {
        at: u16,
        xor: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct RecordSetSpec {
    base_offset: u32,
    pieces: Vec<Piece>,
    /// Bytes cut off the end (a fetch stops in the middle of a batch).
    cut: u8,
}

fn codec(byte: u8) -> Compression {
    match byte % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

fn build(spec: RecordSetSpec) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = i64::from(spec.base_offset);
    for piece in spec.pieces {
        match piece {
            Piece::Data {
                records,
                holes,
                codec: c,
                log_append_time,
                control,
                value,
            } => {
                let count = i64::from(records % 16 + 1);
                let records: Vec<Record> = (0..count)
                    // The last offset stays: the encoder's last delta is the last record's.
                    .filter(|i| *i == count - 1 || holes & (1 << i) == 0)
                    .map(|i| data_record(offset + i, log_append_time, control, &value))
                    .collect();
                let options = RecordEncodeOptions {
                    version: 2,
                    compression: codec(c),
                };
                if RecordBatchEncoder::encode(&mut out, records.iter(), &options).is_ok() {
                    offset += count;
                }
            }
            Piece::Filler {
                count,
                codec: c,
                timestamp,
            } => {
                let count = i64::from(count.max(1));
                let batch = filler_batch(count, codec(c), timestamp.unwrap_or(NO_TIMESTAMP))
                    .expect("a filler batch of 1..=65535");
                let start = out.len();
                out.extend_from_slice(&batch);
                // As the destination stores it: the base offset is not under the CRC.
                out[start..start + 8].copy_from_slice(&offset.to_be_bytes());
                offset += count;
            }
            Piece::Garbage(bytes) => out.extend_from_slice(&bytes),
            Piece::Corrupt { at, xor } => {
                if !out.is_empty() {
                    let at = usize::from(at) % out.len();
                    out[at] ^= xor;
                }
            }
        }
    }
    out.truncate(out.len().saturating_sub(usize::from(spec.cut % 64)));
    out.freeze()
}

fn data_record(offset: i64, log_append_time: bool, control: bool, value: &[u8]) -> Record {
    let key = Some(Bytes::from(format!("key-{offset}")));
    let mut record = crate::record(offset, key, Some(Bytes::copy_from_slice(value)));
    if log_append_time {
        record.timestamp_type = TimestampType::LogAppend;
    }
    if control {
        (record.transactional, record.control) = (true, true);
        (record.producer_id, record.producer_epoch) = (9, 0);
    }
    record
}

pub fn check(data: &[u8]) {
    let records = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let Ok(spec) = RecordSetSpec::arbitrary_take_rest(Unstructured::new(rest)) else {
                return;
            };
            build(spec)
        }
        Some((_, rest)) => Bytes::copy_from_slice(rest),
        None => return,
    };
    check_records(&records);
}

/// The whole batches of a record set and the bytes after them.
fn split(records: &Bytes) -> (Vec<BatchView>, Bytes) {
    let mut iter = RecordBatches::new(records.clone());
    let batches: Vec<BatchView> = iter.by_ref().map_while(Result::ok).collect();
    let used: usize = batches.iter().map(|b| b.bytes().len()).sum();
    (batches, records.slice(used..))
}

fn is_hidden_filler(batch: &BatchView) -> bool {
    may_be_filler_batch(batch) && is_filler_batch(batch).unwrap_or(false)
}

pub fn check_records(records: &Bytes) {
    // The borrowed walk the proxy's header check uses splits the same batches.
    let borrowed: Vec<&[u8]> = BatchSlices::new(records)
        .map_while(Result::ok)
        .map(|b| b.bytes())
        .collect();
    let (before, tail_before) = split(records);
    assert!(
        borrowed
            .iter()
            .copied()
            .eq(before.iter().map(|b| &b.bytes()[..])),
        "the borrowed and counted walks split alike"
    );
    let hidden = hide_fillers(records);
    let any_filler = before.iter().any(is_hidden_filler);
    assert_eq!(
        hidden.is_some(),
        any_filler,
        "a copy exactly when there is a filler"
    );
    let output = hidden.clone().unwrap_or_else(|| records.clone());
    let (after, tail_after) = split(&output);
    assert_eq!(before.len(), after.len(), "batch count");
    assert_eq!(tail_before, tail_after, "bytes after the last whole batch");
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.base_offset(), a.last_offset()),
            (b.base_offset(), b.last_offset()),
            "offsets covered"
        );
        if is_hidden_filler(a) {
            assert!(b.verify_crc(), "a replaced batch has a valid CRC-32C");
            assert_eq!(b.records_count(), 0);
            assert!(!b.is_control());
        } else {
            assert_eq!(
                a.bytes(),
                b.bytes(),
                "a batch that is not a filler keeps its bytes"
            );
        }
    }
    if let Some(hidden) = &hidden {
        assert!(hide_fillers(hidden).is_none(), "hiding twice finds nothing");
    }
    for batch in &before {
        check_rewrite(batch);
        check_re_encode(batch);
    }
}

fn check_rewrite(batch: &BatchView) {
    let produced = rewrite_for_produce(batch, 77, 3, 1000);
    let forwarded = rewrite_for_forward(batch, 77, 3, 1000);
    assert_eq!(
        produced.is_ok(),
        forwarded.is_ok(),
        "both accept the same batches"
    );
    let (Ok(out), Ok(kept)) = (produced, forwarded) else {
        return;
    };
    let kept = BatchView::parse(kept).expect("a forwarded batch is one whole batch");
    let valid = batch.verify_crc();
    assert_eq!(kept.verify_crc(), valid);
    assert_eq!(kept.is_transactional(), batch.is_transactional());
    let view = BatchView::parse(out.clone()).expect("a rewritten batch is one whole batch");
    assert_eq!(kept.records_payload(), view.records_payload());
    assert_eq!(
        kept.attributes() & !0x10,
        view.attributes(),
        "the transactional flag is the one difference"
    );
    assert_eq!(view.verify_crc(), valid, "a corrupt batch stays corrupt");
    assert_eq!(
        (
            view.base_offset(),
            view.producer_id(),
            view.producer_epoch()
        ),
        (0, 77, 3)
    );
    assert_eq!(view.base_sequence(), 1000);
    assert_eq!(view.last_offset_delta(), batch.last_offset_delta());
    assert_eq!(view.records_count(), batch.records_count());
    assert_eq!(view.timestamp_type(), TimestampType::Creation);
    assert!(!view.is_transactional() && !view.is_control() && view.is_gap_free());
    if batch.timestamp_type() == TimestampType::Creation {
        assert_eq!(view.records_payload(), batch.records_payload());
    }
}

fn check_re_encode(batch: &BatchView) {
    let span = i64::from(batch.last_offset_delta()) + 1;
    if span > MAX_REENCODE_SPAN
        || batch
            .base_offset()
            .checked_add(MAX_REENCODE_SPAN * 2)
            .is_none()
    {
        return;
    }
    let from = batch.base_offset() + span / 3;
    let Ok(out) = re_encode_from(batch, from, 100) else {
        return;
    };
    let mut next = from.max(batch.base_offset());
    for bytes in out {
        let view = BatchView::parse(bytes).expect("a re-encoded batch is one whole batch");
        assert!(view.verify_crc());
        assert!(view.is_gap_free());
        assert_eq!(
            view.base_offset(),
            next,
            "no gap or overlap between batches"
        );
        next = view.next_offset();
    }
    assert_eq!(
        next,
        batch.next_offset(),
        "the batches end where the source did"
    );
}
