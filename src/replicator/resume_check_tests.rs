//! The resume check's comparison: what the copier may have changed is accepted, what
//! someone else wrote is not.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::records::{Compression, NO_TIMESTAMP};

use super::*;
use crate::kafka::batch_rewrite::rewrite_for_produce;
use crate::kafka::filler::{filler_batch, re_encode_from};
use crate::kafka::record_batch::{seal, Header};
use crate::kafka::record_codec::{BatchBuilder, RawRecord};

const T0: i64 = 1_700_000_000_000;

fn record(value: &str) -> RawRecord {
    RawRecord {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![(Bytes::from_static(b"h"), None)],
    }
}

/// A CreateTime batch at `base` with `values` at the given offset deltas, record i
/// stamped T0 + i.
fn batch_at(codec: Compression, base: i64, values: &[(i32, &str)]) -> BatchView {
    let mut builder = BatchBuilder::new(codec, Header::unstamped(codec, base), T0).unwrap();
    for (i, (delta, value)) in (0..).zip(values) {
        builder.push(*delta, T0 + i, &record(value)).unwrap();
    }
    BatchView::parse(builder.finish().unwrap()).unwrap()
}

fn batch(base: i64, values: &[&str]) -> BatchView {
    let with_deltas: Vec<(i32, &str)> = (0..).zip(values.iter().copied()).collect();
    batch_at(Compression::None, base, &with_deltas)
}

/// `bytes` with header fields changed and the CRC made right again.
fn patched(view: &BatchView, patch: impl FnOnce(&mut [u8])) -> BatchView {
    let mut bytes = view.bytes().to_vec();
    patch(&mut bytes);
    seal(&mut bytes).unwrap();
    BatchView::parse(Bytes::from(bytes)).unwrap()
}

fn attributes(view: &BatchView, attributes: i16) -> BatchView {
    patched(view, |b| {
        b[21..23].copy_from_slice(&attributes.to_be_bytes())
    })
}

/// What the destination stores after the copier produced `batch` at `base`.
fn copied(batch: &BatchView, base: i64) -> BatchView {
    let stamped = rewrite_for_produce(batch, 7, 0, base as i32).unwrap();
    let mut bytes = stamped.to_vec();
    bytes[..8].copy_from_slice(&base.to_be_bytes());
    BatchView::parse(Bytes::from(bytes)).unwrap()
}

fn span(batches: Vec<BatchView>, high_watermark: i64) -> SourceSpan {
    SourceSpan {
        batches,
        aborted: Vec::new(),
        high_watermark,
    }
}

fn differs(verdict: Verdict, words: &str) {
    match verdict {
        Verdict::Differs(why) => assert!(why.contains(words), "{why}"),
        other => panic!("expected a difference naming {words:?}, got {other:?}"),
    }
}

#[test]
fn a_copied_batch_is_the_source_batch() {
    let source = batch(10, &["a", "b", "c"]);
    let dest = copied(&source, 10);
    assert_ne!(dest.crc(), source.crc(), "producer fields differ");
    let verdict = compare_data(&dest, &span(vec![batch(5, &["x"; 5]), source], 13)).unwrap();
    assert_eq!(verdict, Verdict::Same);
}

#[test]
fn a_record_someone_else_wrote_differs() {
    let source = batch(10, &["a", "b", "c"]);
    let dest = copied(&batch(10, &["a", "B", "c"]), 10);
    differs(
        compare_data(&dest, &span(vec![source], 20)).unwrap(),
        "offset 11 differs from the source's (value)",
    );
}

#[test]
fn records_past_the_source_end_differ() {
    // A foreign write at the mirror's end, where the source has nothing yet.
    let dest = copied(&batch(10, &["foreign"]), 10);
    differs(
        compare_data(&dest, &span(vec![], 10)).unwrap(),
        "offsets 10..=10, but the source partition ends at 10",
    );
}

#[test]
fn other_offsets_differ() {
    // The same records one offset later: the copy is not where the source has them.
    let source = batch(10, &["a", "b"]);
    let dest = copied(&batch(11, &["a", "b"]), 11);
    let verdict = compare_data(&dest, &span(vec![source, batch(12, &["c"])], 13)).unwrap();
    assert!(matches!(verdict, Verdict::Differs(_)), "{verdict:?}");
}

#[test]
fn a_recompressed_copy_is_compared_record_by_record() {
    let source = batch_at(Compression::None, 0, &[(0, "a"), (1, "b")]);
    let dest = copied(&batch_at(Compression::Lz4, 0, &[(0, "a"), (1, "b")]), 0);
    assert_ne!(dest.records_payload(), source.records_payload());
    assert_eq!(
        compare_data(&dest, &span(vec![source], 2)).unwrap(),
        Verdict::Same
    );
}

#[test]
fn log_append_time_batches_compare_at_the_time_consumers_saw() {
    const LOG_APPEND: i16 = 0x08;
    let appended = T0 + 5_000;
    let source = patched(&attributes(&batch(0, &["a", "b"]), LOG_APPEND), |b| {
        b[35..43].copy_from_slice(&appended.to_be_bytes())
    });
    // The copier re-encodes it: every record at the append time, as CreateTime.
    let dest = copied(&source, 0);
    assert_eq!(dest.base_timestamp(), appended);
    assert_eq!(
        compare_data(&dest, &span(vec![source.clone()], 2)).unwrap(),
        Verdict::Same
    );
    // A copy with the producer's create times is not what consumers of the source saw.
    let create_times = copied(&batch(0, &["a", "b"]), 0);
    differs(
        compare_data(&create_times, &span(vec![source], 2)).unwrap(),
        "timestamp",
    );
}

#[test]
fn a_part_of_a_compacted_batch_matches_its_records() {
    // Offsets 10 and 12 hold records, 11 was compacted away: the copier sends three
    // batches, the last of them holding offset 12 alone.
    let source = batch_at(Compression::None, 10, &[(0, "a"), (2, "c")]);
    let parts = re_encode_from(&source, 10, 100).unwrap();
    let last = BatchView::parse(parts.last().unwrap().clone()).unwrap();
    let dest = copied(&last, 12);
    assert_eq!(
        compare_data(&dest, &span(vec![source], 13)).unwrap(),
        Verdict::Same
    );
}

#[test]
fn a_record_the_source_compacted_since_cannot_be_compared() {
    let dest = copied(&batch(10, &["a", "b"]), 10);
    // The source now holds only offset 10 of that batch.
    let source = batch_at(Compression::None, 10, &[(0, "a")]);
    let source = patched(&source, |b| b[23..27].copy_from_slice(&1i32.to_be_bytes()));
    let verdict = compare_data(&dest, &span(vec![source], 20)).unwrap();
    assert!(matches!(verdict, Verdict::Unverifiable(_)), "{verdict:?}");
}

#[test]
fn a_source_record_missing_from_the_copy_differs() {
    let source = batch(10, &["a", "b"]);
    let dest = copied(&batch_at(Compression::None, 10, &[(0, "a")]), 10);
    let dest = patched(&dest, |b| b[23..27].copy_from_slice(&1i32.to_be_bytes()));
    differs(
        compare_data(&dest, &span(vec![source], 12)).unwrap(),
        "offset 11 is missing",
    );
}

const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

fn marker(base: i64) -> BatchView {
    attributes(&batch(base, &["marker"]), TRANSACTIONAL | CONTROL)
}

fn filler_at(base: i64, count: i64) -> BatchView {
    let filler =
        BatchView::parse(filler_batch(count, Compression::Zstd, NO_TIMESTAMP).unwrap()).unwrap();
    copied(&filler, base)
}

#[test]
fn a_record_where_the_source_has_a_marker_differs() {
    let dest = copied(&batch(10, &["a"]), 10);
    differs(
        compare_data(&dest, &span(vec![marker(10)], 11)).unwrap(),
        "transaction marker",
    );
}

#[test]
fn fillers_stand_for_markers_aborted_data_and_holes() {
    let producer: i64 = 42;
    let aborted = patched(&attributes(&batch(10, &["x", "y"]), TRANSACTIONAL), |b| {
        b[43..51].copy_from_slice(&producer.to_be_bytes())
    });
    let holes = batch_at(Compression::None, 13, &[(0, "a"), (2, "c")]);
    let span = SourceSpan {
        batches: vec![aborted, marker(12), holes],
        aborted: vec![AbortedTransaction::default()
            .with_producer_id(ProducerId(producer))
            .with_first_offset(10)],
        high_watermark: 16,
    };
    // Offsets 10..=12 (aborted data, its marker) and 14 (a hole) hold no data.
    assert_eq!(
        compare_filler(&filler_at(10, 3), &span, 10).unwrap(),
        Verdict::Same
    );
    assert_eq!(
        compare_filler(&filler_at(14, 1), &span, 14).unwrap(),
        Verdict::Same
    );
    differs(
        compare_filler(&filler_at(12, 2), &span, 12).unwrap(),
        "filler at offset 13, where the source has a record",
    );
}

#[test]
fn fillers_over_committed_data_or_past_the_end_differ() {
    let source = span(vec![batch(0, &["a", "b", "c"])], 3);
    differs(
        compare_filler(&filler_at(1, 1), &source, 1).unwrap(),
        "filler at offset 1",
    );
    differs(
        compare_filler(&filler_at(3, 2), &source, 3).unwrap(),
        "ends at 3",
    );
}

#[test]
fn fillers_below_the_source_log_start_are_left_out() {
    // The source starts at 5 now: only offsets from there are compared.
    let source = span(vec![marker(5), batch(6, &["a"])], 7);
    assert_eq!(
        compare_filler(&filler_at(0, 6), &source, 5).unwrap(),
        Verdict::Same
    );
}
