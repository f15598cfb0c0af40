//! Tests of `record_batch` and shared helpers (`filler_tests` has the rest). Batches are built with
//! kafka-protocol's encoder and our output is checked with its decoder (which also
//! verifies the CRC), so neither side only agrees with itself.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch_rewrite::{rewrite_for_forward, rewrite_for_produce};
use super::filler::*;
use super::record_batch::*;
use super::record_codec::decode_records;

pub(super) const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

pub(super) struct Rec {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'static [u8]>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Option<&'static [u8]>)>,
}

pub(super) fn rec(offset: i64, timestamp: i64, key: &'static [u8], value: &str) -> Rec {
    Rec {
        offset,
        timestamp,
        key: Some(key),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![("h", Some(b"hv")), ("n", None)],
    }
}

/// One batch from kafka-protocol's encoder; producer fields as given, sequence = offset.
pub(super) fn encode(
    recs: &[Rec],
    codec: Compression,
    producer_id: i64,
    transactional: bool,
) -> Bytes {
    let records: Vec<Record> = recs
        .iter()
        .map(|r| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 5 },
            timestamp_type: TimestampType::Creation,
            offset: r.offset,
            sequence: r.offset as i32,
            timestamp: r.timestamp,
            key: r.key.map(Bytes::from_static),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| ((*k).into(), v.map(Bytes::from_static)))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

pub(super) fn sample(codec: Compression) -> Bytes {
    let recs: Vec<Rec> = (0..5)
        .map(|i| rec(100 + i, 1_000 + i * 10, b"key", &format!("value-{i}")))
        .collect();
    encode(&recs, codec, 1000, false)
}

/// Overwrites bytes at `at` and recomputes length and CRC, as a broker editing a header.
pub(super) fn patch(batch: &Bytes, at: usize, value: &[u8]) -> Bytes {
    let mut b = batch.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    seal(&mut b).unwrap();
    Bytes::from(b)
}

pub(super) fn with_attributes(batch: &Bytes, set: i16) -> Bytes {
    let attrs = BatchView::parse(batch.clone()).unwrap().attributes() | set;
    patch(batch, 21, &attrs.to_be_bytes())
}

/// What a broker does to a batch on a LogAppendTime topic: flag + max timestamp.
pub(super) fn as_log_append_time(batch: &Bytes, now: i64) -> Bytes {
    patch(
        &with_attributes(batch, TIMESTAMP_TYPE_FLAG),
        35,
        &now.to_be_bytes(),
    )
}

pub(super) fn view(bytes: &Bytes) -> BatchView {
    BatchView::parse(bytes.clone()).unwrap()
}

pub(super) fn kp_decode(bytes: &Bytes) -> Vec<Record> {
    let mut buf = bytes.clone();
    let set = RecordBatchDecoder::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    set.records
}

#[test]
fn header_fields_match_the_encoder() {
    let bytes = encode(
        &[
            rec(100, 5_000, b"a", "x"),
            rec(101, 4_000, b"b", "y"),
            rec(102, 6_000, b"c", "z"),
        ],
        Compression::Lz4,
        1000,
        true,
    );
    let v = view(&bytes);
    assert_eq!(v.base_offset(), 100);
    assert_eq!(v.batch_length() as usize, bytes.len() - 12);
    assert_eq!(v.partition_leader_epoch(), 7);
    assert_eq!(v.magic(), 2);
    assert!(v.verify_crc());
    assert_eq!(v.compression().unwrap(), Compression::Lz4);
    assert_eq!(v.timestamp_type(), TimestampType::Creation);
    assert!(v.is_transactional() && !v.is_control() && !v.has_delete_horizon());
    assert_eq!(v.last_offset_delta(), 2);
    assert_eq!((v.base_timestamp(), v.max_timestamp()), (4_000, 6_000));
    assert_eq!(
        (v.producer_id(), v.producer_epoch(), v.base_sequence()),
        (1000, 5, 100)
    );
    assert_eq!(v.records_count(), 3);
    assert_eq!((v.last_offset(), v.next_offset()), (102, 103));
    assert!(v.is_gap_free());
    assert_eq!(v.bytes(), &bytes);
}

#[test]
fn iterates_batches_and_reports_the_partial_tail() {
    let (a, b, c) = (
        sample(Compression::None),
        sample(Compression::Zstd),
        sample(Compression::Lz4),
    );
    for cut in [0, 5, 12, 17, 40, c.len() - 1] {
        let mut all = BytesMut::new();
        for part in [&a, &b] {
            all.extend_from_slice(part);
        }
        all.extend_from_slice(&c[..cut]);
        let mut it = RecordBatches::new(all.freeze());
        let views: Vec<_> = it.by_ref().map(Result::unwrap).collect();
        assert_eq!(views.len(), 2, "cut {cut}");
        assert_eq!(views[0].bytes(), &a);
        assert_eq!(views[1].bytes(), &b);
        assert_eq!(it.leftover(), cut);
    }
}

#[test]
fn rejects_bad_magic_and_short_length() {
    let good = sample(Compression::None);
    let old_magic = patch(&good, 16, &[1]);
    let mut it = RecordBatches::new(old_magic);
    assert!(matches!(
        it.next(),
        Some(Err(BatchError::UnsupportedMagic(1)))
    ));
    assert!(it.next().is_none());

    let mut short = good.to_vec();
    short[8..12].copy_from_slice(&48i32.to_be_bytes());
    let mut it = RecordBatches::new(Bytes::from(short));
    assert!(matches!(it.next(), Some(Err(BatchError::BadLength(48)))));
    let mut negative = good.to_vec();
    negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        RecordBatches::new(Bytes::from(negative)).next(),
        Some(Err(BatchError::BadLength(-1)))
    ));
    // A partial batch whose magic is already visible still fails loudly.
    let old = patch(&good, 16, &[0]);
    assert!(matches!(
        RecordBatches::new(old.slice(..20)).next(),
        Some(Err(BatchError::UnsupportedMagic(0)))
    ));
}

#[test]
fn parse_requires_exactly_one_batch() {
    let good = sample(Compression::Gzip);
    assert!(BatchView::parse(good.clone()).is_ok());
    assert!(BatchView::parse(good.slice(..good.len() - 1)).is_err());
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    assert!(BatchView::parse(Bytes::from(two)).is_err());
    assert!(BatchView::parse(Bytes::new()).is_err());
}

/// xorshift64*: deterministic, no dev-dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Everything that takes a batch from the network, on one input: must not panic.
fn exercise(input: Bytes) {
    // The borrowed walk splits exactly as the counted one does, and stops the same way.
    let borrowed: Vec<_> = BatchSlices::new(&input)
        .map(|b| b.map(|v| v.bytes().to_vec()).map_err(|e| e.to_string()))
        .collect();
    let counted: Vec<_> = RecordBatches::new(input.clone())
        .map(|b| b.map(|v| v.bytes().to_vec()).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(borrowed, counted);
    let mut it = RecordBatches::new(input);
    for item in it.by_ref() {
        let Ok(v) = item else { continue };
        let _ = (
            v.base_offset(),
            v.last_offset(),
            v.next_offset(),
            v.compression(),
        );
        let _ = (
            v.timestamp_type(),
            v.is_gap_free(),
            v.verify_crc(),
            v.records_count(),
        );
        let _ = rewrite_for_produce(&v, 1, 0, 0);
        let _ = empty_batch_like(&v);
        let _ = is_filler_batch(&v);
        let _ = decode_records(&v);
        // A corrupt header can legitimately ask for ~2^31 fillers: too slow for a test.
        if v.last_offset_delta() < 10_000 {
            let _ = re_encode_with_fillers_max(&v, 1000);
        }
    }
    let _ = it.leftover();
}

#[test]
fn random_truncated_and_corrupted_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(Bytes::from(bytes));
    }
    let mut valid = Vec::new();
    for codec in CODECS {
        valid.push(sample(codec));
        valid.push(filler_batch(50, codec, 1).unwrap());
    }
    for batch in &valid {
        for cut in 0..batch.len() {
            exercise(batch.slice(..cut));
        }
        for _ in 0..150 {
            let mut b = batch.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            // Fix the length and CRC half the time so corruption reaches the records.
            if rng.below(2) == 0 && b.len() >= HEADER_LEN {
                let len = (b.len() - 12) as i32;
                b[8..12].copy_from_slice(&len.to_be_bytes());
                b[16] = 2;
                seal(&mut b).unwrap();
            }
            exercise(Bytes::from(b));
        }
    }
}

#[test]
fn rewrite_stamps_the_header_and_keeps_the_payload() {
    for codec in CODECS {
        let src = sample(codec);
        let out = rewrite_for_produce(&view(&src), 77, 3, 1234).unwrap();
        let v = view(&out);
        assert!(v.verify_crc());
        assert_eq!(v.base_offset(), 0);
        assert_eq!(v.partition_leader_epoch(), -1);
        assert_eq!(v.attributes(), codec as i16);
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (77, 3, 1234)
        );
        assert_eq!(out[HEADER_LEN..], src[HEADER_LEN..], "payload untouched");
        let (before, after) = (kp_decode(&src), kp_decode(&out));
        assert_eq!(after.len(), 5);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a.offset, b.offset - 100);
            assert_eq!(
                (&a.key, &a.value, &a.headers),
                (&b.key, &b.value, &b.headers)
            );
            assert_eq!(
                (a.timestamp, a.timestamp_type),
                (b.timestamp, TimestampType::Creation)
            );
            assert_eq!((a.producer_id, a.transactional), (77, false));
        }
    }
}

#[test]
fn rewrite_clears_transactional_and_delete_horizon() {
    let src = with_attributes(
        &sample(Compression::Zstd),
        TRANSACTIONAL_FLAG | DELETE_HORIZON_FLAG,
    );
    assert!(view(&src).is_transactional() && view(&src).has_delete_horizon());
    let out = rewrite_for_produce(&view(&src), 1, 0, 0).unwrap();
    assert_eq!(view(&out).attributes(), Compression::Zstd as i16);
    assert_eq!(kp_decode(&out).len(), 5);
}

/// A client's transactional batch forwarded to a source stays in its transaction (a
/// read_committed consumer must not see it before the commit, nor ever after an
/// abort); the delete horizon goes, as for the replicator's copies.
#[test]
fn a_forwarded_batch_keeps_transactional_and_only_that() {
    for codec in CODECS {
        let src = with_attributes(&sample(codec), TRANSACTIONAL_FLAG | DELETE_HORIZON_FLAG);
        let out = rewrite_for_forward(&view(&src), 12, 4, 300).unwrap();
        let v = view(&out);
        assert!(v.verify_crc());
        assert_eq!(v.attributes(), codec as i16 | TRANSACTIONAL_FLAG);
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (12, 4, 300)
        );
        assert!(kp_decode(&out).iter().all(|r| r.transactional));

        let idempotent = rewrite_for_forward(&view(&sample(codec)), 12, 4, 300).unwrap();
        assert_eq!(view(&idempotent).attributes(), codec as i16);

        let appended = with_attributes(
            &as_log_append_time(&sample(codec), 7_000),
            TRANSACTIONAL_FLAG,
        );
        let out = rewrite_for_forward(&view(&appended), 12, 4, 300).unwrap();
        let v = view(&out);
        assert!(v.verify_crc());
        assert_eq!(
            v.attributes(),
            codec as i16 | TRANSACTIONAL_FLAG,
            "CreateTime, in the transaction"
        );
        assert!(kp_decode(&out)
            .iter()
            .all(|r| r.transactional && r.timestamp == 7_000));
    }
}

/// Stamped without reading the records: a corrupt batch's CRC stays wrong (the broker
/// it is produced to refuses it), never laundered into a fresh one.
#[test]
fn a_corrupt_batch_keeps_a_wrong_crc_when_stamped() {
    for codec in [Compression::None, Compression::Lz4] {
        let good = sample(codec);
        let stamped = rewrite_for_produce(&view(&good), 1, 0, 0).expect("stamped");
        assert!(view(&stamped).verify_crc());
        let mut corrupt = good.to_vec();
        *corrupt.last_mut().unwrap() ^= 1;
        let stamped = rewrite_for_produce(&view(&Bytes::from(corrupt)), 1, 0, 0).expect("stamped");
        assert!(!view(&stamped).verify_crc(), "{codec:?}");
    }
}

#[test]
fn rewrite_refuses_what_a_broker_would_reject() {
    let good = sample(Compression::Lz4);
    let control = with_attributes(&good, CONTROL_FLAG);
    assert!(matches!(
        rewrite_for_produce(&view(&control), 1, 0, 0),
        Err(BatchError::ControlBatch)
    ));
    let holes = patch(&good, 23, &9i32.to_be_bytes());
    assert!(matches!(
        rewrite_for_produce(&view(&holes), 1, 0, 0),
        Err(BatchError::NotGapFree {
            records: 5,
            span: 10
        })
    ));
    assert!(matches!(
        rewrite_for_produce(&view(&good), 1, 0, -1),
        Err(BatchError::NegativeSequence(-1))
    ));
    // No producer id: a negative sequence is what a plain producer sends.
    assert!(rewrite_for_produce(&view(&good), -1, -1, -1).is_ok());
}

#[test]
fn rewrite_of_log_append_time_reproduces_what_consumers_saw() {
    for codec in CODECS {
        let src = as_log_append_time(&sample(codec), 9_999_000);
        assert_eq!(view(&src).timestamp_type(), TimestampType::LogAppend);
        let out = rewrite_for_produce(&view(&src), 5, 1, 40).unwrap();
        let v = view(&out);
        assert!(v.verify_crc());
        assert_eq!(v.attributes(), codec as i16, "CreateTime, same codec");
        assert_eq!(
            (v.base_timestamp(), v.max_timestamp()),
            (9_999_000, 9_999_000)
        );
        assert_eq!(
            (
                v.base_offset(),
                v.producer_id(),
                v.producer_epoch(),
                v.base_sequence()
            ),
            (0, 5, 1, 40)
        );
        assert!(v.is_gap_free());
        let (before, after) = (kp_decode(&sample(codec)), kp_decode(&out));
        assert_eq!(after.len(), before.len());
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            assert_eq!(a.offset, i as i64);
            assert_eq!(a.timestamp, 9_999_000);
            assert_eq!(
                (&a.key, &a.value, &a.headers),
                (&b.key, &b.value, &b.headers)
            );
        }
    }
}

#[test]
fn empty_batch_like_hides_the_offsets() {
    let src = filler_batch(1000, Compression::Zstd, 42).unwrap();
    let src = patch(
        &rewrite_for_produce(&view(&src), 9, 2, 7).unwrap(),
        0,
        &5_000i64.to_be_bytes(),
    );
    let (s, empty) = (view(&src), empty_batch_like(&view(&src)));
    let e = view(&empty);
    assert_eq!(empty.len(), HEADER_LEN);
    assert!(e.verify_crc());
    assert_eq!(
        (e.records_count(), e.compression().unwrap()),
        (0, Compression::None)
    );
    assert_eq!(
        (e.base_offset(), e.last_offset(), e.next_offset()),
        (5_000, 5_999, 6_000)
    );
    assert_eq!(
        (e.last_offset(), e.base_timestamp(), e.max_timestamp()),
        (s.last_offset(), 42, 42)
    );
    assert_eq!(
        (e.producer_id(), e.producer_epoch(), e.base_sequence()),
        (9, 2, 7)
    );
    assert!(kp_decode(&empty).is_empty());
    let info = RecordBatchDecoder::decode_batch_info(&mut empty.clone()).unwrap();
    assert_eq!(
        (info.len(), info[0].record_count, info[0].min_offset),
        (1, 0, 5_000)
    );
    assert!(!is_filler_batch(&e).unwrap());
}

#[test]
fn sequences_wrap_like_brokers_expect() {
    assert_eq!(next_sequence(0, 5), 5);
    assert_eq!(next_sequence(i32::MAX, 1), 0);
    assert_eq!(next_sequence(i32::MAX - 1, 5), 3);
}
