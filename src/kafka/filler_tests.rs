//! Tests of `filler` and of record decoding, checked with kafka-protocol's decoder.

use bytes::Bytes;
use kafka_protocol::records::{Compression, TimestampType, NO_TIMESTAMP};

use super::batch_rewrite::rewrite_for_produce;
use super::filler::*;
use super::record_batch::*;
use super::record_batch_tests::{
    as_log_append_time, encode, kp_decode, patch, rec, sample, view, with_attributes, Rec, CODECS,
};
use super::record_codec::{decode_records, encode_record, RawRecord};

#[test]
fn filler_batches_are_valid_and_small() {
    for codec in CODECS {
        let bytes = filler_batch(10_000, codec, 1_700_000_000_000).unwrap();
        let v = view(&bytes);
        assert!(v.verify_crc() && v.is_gap_free());
        assert_eq!(
            (v.base_offset(), v.last_offset_delta(), v.records_count()),
            (0, 9_999, 10_000)
        );
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (-1, -1, -1)
        );
        assert_eq!(v.compression().unwrap(), codec);
        let records = kp_decode(&bytes);
        assert_eq!(records.len(), 10_000);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key.as_deref(), Some(FILLER_KEY));
            assert!(r.value.is_none() && r.headers.is_empty());
            assert_eq!(r.timestamp, 1_700_000_000_000);
        }
        assert!(is_filler_batch(&v).unwrap());
    }
    // Every record differs in its offset delta, so ~0.8 byte per filler with zstd: a
    // million fit one batch under the default max.message.bytes. LZ4 needs ~5 bytes.
    for (codec, limit) in [
        (Compression::Zstd, 1_000_000),
        (Compression::Lz4, 6_000_000),
    ] {
        let million = filler_batch(1_000_000, codec, 0).unwrap();
        assert!(million.len() < limit, "{codec:?}: {} bytes", million.len());
        assert!(is_filler_batch(&view(&million)).unwrap());
    }
    assert!(matches!(
        filler_batch(0, Compression::None, 0),
        Err(BatchError::BadFillerCount(0))
    ));
    assert!(filler_batch(i64::from(u32::MAX), Compression::None, 0).is_err());
}

#[test]
fn filler_size_bound_holds() {
    let filler = RawRecord {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: Some(Bytes::from_static(FILLER_KEY)),
        value: None,
        headers: vec![],
    };
    let (mut out, mut body) = (Vec::new(), Vec::new());
    encode_record(&mut out, &mut body, &filler, 0, i32::MAX).unwrap();
    assert_eq!(out.len(), FILLER_RECORD_MAX_LEN);
    let n = max_fillers_per_batch(DEFAULT_MAX_MESSAGE_BYTES);
    let batch = filler_batch(i64::from(n), Compression::None, 0).unwrap();
    assert!(batch.len() <= DEFAULT_MAX_MESSAGE_BYTES);
}

#[test]
fn filler_detection_true_and_false() {
    let mut mixed: Vec<Rec> = (0..20)
        .map(|i| Rec {
            offset: i,
            timestamp: 1,
            key: Some(FILLER_KEY),
            value: None,
            headers: vec![],
        })
        .collect();
    for codec in CODECS {
        assert!(
            !is_filler_batch(&view(&sample(codec))).unwrap(),
            "{codec:?}"
        );
        assert!(!may_be_filler_batch(&view(&sample(codec))));
        assert!(may_be_filler_batch(&view(
            &filler_batch(2, codec, NO_TIMESTAMP).unwrap()
        )));
        assert!(is_filler_batch(&view(&encode(&mixed, codec, -1, false))).unwrap());
        let stamped =
            rewrite_for_produce(&view(&filler_batch(3, codec, 1).unwrap()), 8, 0, 0).unwrap();
        assert!(is_filler_batch(&view(&stamped)).unwrap());
    }
    mixed.push(rec(20, 1, b"real", "data"));
    assert!(!is_filler_batch(&view(&encode(&mixed, Compression::Zstd, -1, false))).unwrap());
    mixed.pop();
    mixed[7].value = Some(b"not null".to_vec());
    assert!(!is_filler_batch(&view(&encode(&mixed, Compression::Lz4, -1, false))).unwrap());
    mixed[7].value = None;
    mixed[7].headers = vec![("h", None)];
    assert!(!is_filler_batch(&view(&encode(&mixed, Compression::None, -1, false))).unwrap());
    let control = with_attributes(
        &filler_batch(1, Compression::None, 1).unwrap(),
        CONTROL_FLAG,
    );
    assert!(!is_filler_batch(&view(&control)).unwrap());
}

/// The log cleaner of a compacted mirror takes fillers (null values) for tombstones and
/// writes its delete horizon into the batch's first timestamp: still a filler batch.
#[test]
fn fillers_with_a_delete_horizon_are_still_fillers() {
    let stamp = filler_timestamp(1_700_000_000_500);
    for codec in CODECS {
        let filler = filler_batch(4, codec, stamp).unwrap();
        let cleaned = patch(
            &with_attributes(&filler, DELETE_HORIZON_FLAG),
            27,
            &(stamp + 86_400_001).to_be_bytes(),
        );
        let v = view(&cleaned);
        assert!(v.has_delete_horizon() && v.base_timestamp() != v.max_timestamp());
        assert!(may_be_filler_batch(&v), "{codec:?}");
        assert!(is_filler_batch(&v).unwrap(), "{codec:?}");
    }
    // Data the cleaner flagged keeps failing the header check at unmarked milliseconds.
    let data = encode(
        &[rec(0, 1_700_000_000_123, b"k", "v")],
        Compression::None,
        -1,
        false,
    );
    let flagged = with_attributes(&data, DELETE_HORIZON_FLAG);
    assert!(!may_be_filler_batch(&view(&flagged)));
}

/// A compacted batch: records left at offset deltas 0, 3, 4, 9 of a range that ends at
/// delta 11 (the cleaner keeps the batch's last offset when it drops its last records).
fn compacted(codec: Compression) -> Bytes {
    let recs: Vec<Rec> = [0, 3, 4, 9]
        .iter()
        .map(|d| rec(500 + d, 2_000 + d * 100, b"k", &format!("v{d}")))
        .collect();
    patch(&encode(&recs, codec, -1, false), 23, &11i32.to_be_bytes())
}

#[test]
fn re_encode_fills_compaction_holes() {
    for codec in CODECS {
        let src = compacted(codec);
        assert!(!view(&src).is_gap_free());
        let out = re_encode_with_fillers(&view(&src)).unwrap();
        // [0] real, [1,2] fillers, [3,4] real, [5..8] fillers, [9] real, [10,11] fillers
        let shape: Vec<_> = out
            .iter()
            .map(|b| {
                let v = view(b);
                (
                    v.base_offset(),
                    v.records_count(),
                    is_filler_batch(&v).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (500, 1, false),
                (501, 2, true),
                (503, 2, false),
                (505, 4, true),
                (509, 1, false),
                (510, 2, true),
            ],
            "{codec:?}"
        );
        let originals = kp_decode(&src);
        let mut next = 500;
        let mut real = originals.iter();
        for batch in &out {
            let v = view(batch);
            assert!(v.verify_crc() && v.is_gap_free());
            assert_eq!(v.compression().unwrap(), codec);
            assert_eq!(v.base_offset(), next);
            next = v.next_offset();
            let filler = is_filler_batch(&v).unwrap();
            // Fillers carry the marked timestamp after the records before them (2000,
            // 2300..2400, 2900: 1999 each), real records theirs: the prefilter is exact.
            assert_eq!(may_be_filler_batch(&v), filler);
            for r in kp_decode(batch) {
                if filler {
                    assert_eq!(
                        (r.key.as_deref(), r.value.as_ref(), r.timestamp),
                        (Some(FILLER_KEY), None, 1999)
                    );
                } else {
                    let o = real.next().unwrap();
                    assert_eq!(r.offset, o.offset);
                    assert_eq!(
                        (&r.key, &r.value, &r.headers, r.timestamp),
                        (&o.key, &o.value, &o.headers, o.timestamp)
                    );
                }
            }
            let stamped = rewrite_for_produce(&v, 3, 0, 0).unwrap();
            assert_eq!(view(&stamped).records_count(), v.records_count());
        }
        assert_eq!(next, 512);
        assert!(real.next().is_none());
    }
}

#[test]
fn re_encode_of_log_append_time_batch_with_holes() {
    let src = as_log_append_time(&compacted(Compression::Snappy), 77_000);
    let out = re_encode_with_fillers(&view(&src)).unwrap();
    for batch in out.iter().filter(|b| !is_filler_batch(&view(b)).unwrap()) {
        assert_eq!(view(batch).timestamp_type(), TimestampType::Creation);
        assert!(kp_decode(batch).iter().all(|r| r.timestamp == 77_000));
    }
}

#[test]
fn re_encode_of_control_and_empty_batches_is_all_fillers() {
    let marker = with_attributes(
        &patch(&sample(Compression::None), 0, &40i64.to_be_bytes()),
        CONTROL_FLAG | TRANSACTIONAL_FLAG,
    );
    let out = re_encode_with_fillers(&view(&marker)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (view(&out[0]).base_offset(), view(&out[0]).records_count()),
        (40, 5)
    );
    assert!(is_filler_batch(&view(&out[0])).unwrap());

    let empty = empty_batch_like(&view(&sample(Compression::Lz4)));
    let out = re_encode_with_fillers_max(&view(&empty), 2).unwrap();
    let shape: Vec<_> = out
        .iter()
        .map(|b| (view(b).base_offset(), view(b).records_count()))
        .collect();
    assert_eq!(shape, vec![(100, 2), (102, 2), (104, 1)]);
}

#[test]
fn decoding_enforces_the_declared_count() {
    let src = sample(Compression::None);
    let more = patch(&src, 57, &6i32.to_be_bytes());
    assert!(matches!(
        decode_records(&view(&more)),
        Err(BatchError::MalformedRecord { index: 5, .. })
    ));
    let fewer = patch(&src, 57, &4i32.to_be_bytes());
    assert!(decode_records(&view(&fewer)).is_err());
    let huge = patch(&src, 57, &i32::MAX.to_be_bytes());
    assert!(decode_records(&view(&huge)).is_err());
    assert_eq!(decode_records(&view(&src)).unwrap().len(), 5);
}

#[test]
fn re_encode_from_leaves_out_what_is_below() {
    let src = compacted(Compression::Lz4);
    let shape = |from: i64| -> Vec<(i64, i32, bool)> {
        re_encode_from(&view(&src), from, 3)
            .unwrap()
            .iter()
            .map(|b| {
                let v = view(b);
                assert!(v.verify_crc() && v.is_gap_free());
                (
                    v.base_offset(),
                    v.records_count(),
                    is_filler_batch(&v).unwrap(),
                )
            })
            .collect()
    };
    // Inside a run of real records (503, 504): only 504 is kept.
    assert_eq!(
        shape(504),
        vec![
            (504, 1, false),
            (505, 3, true),
            (508, 1, true),
            (509, 1, false),
            (510, 2, true)
        ]
    );
    // Inside a hole: fillers from there.
    assert_eq!(
        shape(507),
        vec![(507, 2, true), (509, 1, false), (510, 2, true)]
    );
    // At or below the base offset: the whole batch, as re_encode_with_fillers_max.
    assert_eq!(shape(0), shape(500));
    assert_eq!(shape(500).len(), 7);
    // Past the last offset: nothing.
    assert!(shape(512).is_empty());
    let kept = re_encode_from(&view(&src), 504, 3).unwrap();
    assert_eq!(kp_decode(&kept[0])[0].value.as_deref(), Some(&b"v4"[..]));
}

#[test]
fn filler_timestamps_are_marked_and_never_later_than_the_data_before() {
    assert_eq!(filler_timestamp(NO_TIMESTAMP), NO_TIMESTAMP);
    assert_eq!(filler_timestamp(998), NO_TIMESTAMP);
    assert_eq!(filler_timestamp(999), 999);
    assert_eq!(filler_timestamp(1_700_000_000_999), 1_700_000_000_999);
    assert_eq!(filler_timestamp(1_700_000_001_000), 1_700_000_000_999);
    assert_eq!(
        filler_timestamp(1_700_000_001_998),
        1_700_000_001_999 - 1000
    );
    for after in [999, 5_000, 1_700_000_123_456, i64::MAX] {
        let stamp = filler_timestamp(after);
        assert!(stamp <= after && after - stamp < 1000, "{after} -> {stamp}");
        let filler = filler_batch(3, Compression::Zstd, stamp).unwrap();
        let v = view(&filler);
        assert!(may_be_filler_batch(&v) && is_filler_batch(&v).unwrap());
    }
    // Data at an unmarked millisecond never passes the header check.
    let data = encode(
        &[rec(0, 1_700_000_000_123, b"k", "v")],
        Compression::None,
        -1,
        false,
    );
    assert!(!may_be_filler_batch(&view(&data)));
    // Past data stamps the fillers after it; -1 before any.
    let src = compacted(Compression::None);
    let out = re_encode_from_after(&view(&src), 500, 100, 1_700_000_000_500).unwrap();
    assert!(out.iter().all(|b| {
        let v = view(b);
        !is_filler_batch(&v).unwrap() || v.max_timestamp() == 1_699_999_999_999
    }));
    let leading = re_encode_from_after(&view(&src), 501, 100, 1_700_000_000_500).unwrap();
    assert_eq!(view(&leading[0]).max_timestamp(), 1_699_999_999_999);
}
