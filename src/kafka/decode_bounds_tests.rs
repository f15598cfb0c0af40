//! Tests of the bounds on decoding records: record counts, decompressed size and the
//! memory `decode_records` may hold, against compression bombs and forged counts.

use std::io::{Read, Write};

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::compression::{is_over_limit, PayloadReader, PayloadWriter};
use super::record_batch::{BatchError, Header};
use super::record_batch_tests::{patch, view, CODECS};
use super::record_codec::{
    decode_bound, decode_records, max_records, BatchBuilder, RawRecord, MAX_RECORDS_PER_BATCH,
};

const COMPRESSED: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn record(value: Option<Bytes>, headers: usize) -> RawRecord {
    RawRecord {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: None,
        value,
        headers: vec![(Bytes::new(), None); headers],
    }
}

fn batch_of(codec: Compression, records: &[RawRecord]) -> Bytes {
    let mut builder = BatchBuilder::new(codec, Header::unstamped(codec, 0), 0).unwrap();
    for (delta, r) in (0..).zip(records) {
        builder.push(delta, 0, r).unwrap();
    }
    builder.finish().unwrap()
}

/// `len` zero bytes compressed with `codec` as a records block.
fn compressed_zeros(codec: Compression, len: usize) -> Bytes {
    let mut writer = PayloadWriter::new(codec, Vec::new()).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        writer.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    Bytes::from(writer.finish().unwrap())
}

#[test]
fn every_codec_stops_decompressing_at_its_limit() {
    for codec in COMPRESSED {
        let bomb = compressed_zeros(codec, 8 << 20);
        let mut reader = PayloadReader::new(codec, bomb, 64 * 1024).unwrap();
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).unwrap_err();
        assert!(is_over_limit(&error), "{codec:?}: {error}");
        // It stopped at the limit instead of inflating the 8 MiB.
        assert!(out.len() <= 64 * 1024 + 1, "{codec:?}: {}", out.len());

        // Exactly at the limit is fine.
        let exact = compressed_zeros(codec, 64 * 1024);
        let mut reader = PayloadReader::new(codec, exact, 64 * 1024).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 64 * 1024, "{codec:?}");
    }
}

#[test]
fn a_bomb_batch_is_refused_with_a_typed_error() {
    // 32 records of 1 MiB of zeros: 32 MiB decoded from a few kilobytes.
    let big = Bytes::from(vec![0u8; 1 << 20]);
    let records: Vec<RawRecord> = (0..32).map(|_| record(Some(big.clone()), 0)).collect();
    // LZ4 cannot compress past ~255:1, so it stays within `decode_bound`; its stream
    // limit is tested above.
    for codec in [Compression::Gzip, Compression::Zstd] {
        let batch = batch_of(codec, &records);
        let v = view(&batch);
        let limit = decode_bound(&v);
        assert!(limit < 32 << 20, "{codec:?}: bound {limit}");
        match decode_records(&v) {
            Err(BatchError::DecodeMemory { limit: named }) => assert_eq!(named, limit),
            other => panic!("{codec:?}: {other:?}"),
        }
    }
    // Snappy cannot compress past ~21:1, so the same records decode within the bound;
    // a snappy block claiming more than that is refused before it is allocated.
    let batch = batch_of(Compression::Snappy, &records[..2]);
    assert_eq!(decode_records(&view(&batch)).unwrap().len(), 2);
    let mut forged = vec![0xff, 0xff, 0xff, 0x7f]; // a raw block claiming 256 MiB
    forged.extend_from_slice(&[0; 16]);
    let mut reader = PayloadReader::new(Compression::Snappy, Bytes::from(forged), 1 << 30).unwrap();
    assert!(reader.read_to_end(&mut Vec::new()).is_err());
}

#[test]
fn header_bombs_are_refused_before_the_headers_are_allocated() {
    // Empty headers are 2 bytes on the wire and 64 bytes decoded.
    let records: Vec<RawRecord> = (0..64).map(|_| record(None, 20_000)).collect();
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let batch = batch_of(codec, &records);
        assert!(
            matches!(
                decode_records(&view(&batch)),
                Err(BatchError::DecodeMemory { .. })
            ),
            "{codec:?}"
        );
    }
}

#[test]
fn declared_counts_are_bounded_before_decoding() {
    let records: Vec<RawRecord> = (0..10).map(|_| record(None, 0)).collect();
    for codec in CODECS {
        let batch = batch_of(codec, &records);
        let v = view(&batch);
        let max = max_records(&v);
        assert!(max <= MAX_RECORDS_PER_BATCH);
        // A million tiny records declared: refused before anything is decompressed.
        let forged = patch(&batch, 57, &1_000_000i32.to_be_bytes());
        match decode_records(&view(&forged)) {
            Err(BatchError::TooManyRecords { declared, limit }) => {
                assert_eq!((declared, limit), (1_000_000, max_records(&view(&forged))));
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        let negative = patch(&batch, 57, &(-1i32).to_be_bytes());
        assert!(matches!(
            decode_records(&view(&negative)),
            Err(BatchError::NegativeRecordCount(-1))
        ));
        // More declared than the batch holds: a malformed record, or, uncompressed,
        // more than its bytes can hold.
        let more = patch(&batch, 57, &11i32.to_be_bytes());
        let error = decode_records(&view(&more)).unwrap_err();
        if codec == Compression::None {
            assert!(matches!(
                error,
                BatchError::TooManyRecords {
                    declared: 11,
                    limit: 10
                }
            ));
        } else {
            assert!(
                matches!(error, BatchError::MalformedRecord { index: 10, .. }),
                "{codec:?}: {error}"
            );
        }
        assert_eq!(decode_records(&v).unwrap(), records_at_deltas(&records));
    }
    // Uncompressed, the payload's bytes bound the count: 10 records of 7 bytes.
    let plain = batch_of(Compression::None, &records);
    assert_eq!(max_records(&view(&plain)), 10);
}

fn records_at_deltas(records: &[RawRecord]) -> Vec<RawRecord> {
    (0..)
        .zip(records)
        .map(|(delta, r)| RawRecord {
            offset_delta: delta,
            ..r.clone()
        })
        .collect()
}

#[test]
fn ordinary_batches_decode_as_before() {
    let records: Vec<RawRecord> = (0..500)
        .map(|i| RawRecord {
            key: Some(Bytes::from(format!("key-{i}"))),
            ..record(Some(Bytes::from(vec![b'v'; 200])), 2)
        })
        .collect();
    for codec in CODECS {
        let batch = batch_of(codec, &records);
        assert_eq!(
            decode_records(&view(&batch)).unwrap(),
            records_at_deltas(&records),
            "{codec:?}"
        );
    }
}
