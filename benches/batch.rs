//! Hot paths of the record-batch layer, in bytes per second:
//! - the replicator's fast path: header rewrite + CRC-32C of 16 KiB LZ4 batches, against
//!   a plain memcpy of the same bytes (the copy it cannot avoid) and against splitting
//!   the record set into views;
//! - the proxy's filler check on a 1 MiB Fetch response: mixed data and filler batches
//!   (fillers swapped for empty batches), and data batches only (the common case), each
//!   with and without the header-only prefilter.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_TIMESTAMP,
};
use mirrorgate::kafka::batch_rewrite::rewrite_for_produce;
use mirrorgate::kafka::filler::{filler_batch, is_filler_batch, may_be_filler_batch};
use mirrorgate::kafka::record_batch::{empty_batch_like, BatchView, RecordBatches};

const BATCH_BYTES: usize = 16 * 1024;
const RESPONSE_BYTES: usize = 1024 * 1024;

/// Log-line-like values: compressible about as well as typical JSON payloads.
fn value(rng: &mut u64, i: i64) -> Bytes {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    Bytes::from(format!(
        "{{\"id\":{i},\"user\":\"u{:08x}\",\"amount\":{},\"note\":\"{:016x}{:016x}\"}}",
        *rng as u32,
        *rng % 100_000,
        rng.rotate_left(17),
        rng.rotate_left(41)
    ))
}

fn encode(n: i64, rng_seed: u64, base_offset: i64) -> Bytes {
    let mut rng = rng_seed;
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 3,
            producer_id: 4242,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i,
            sequence: (base_offset + i) as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{}", i % 97))),
            value: Some(value(&mut rng, i)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// An LZ4 batch of about 16 KiB starting at `base_offset`.
fn lz4_batch(base_offset: i64) -> Bytes {
    let mut n = 16;
    loop {
        let batch = encode(n, 0x1234_5678 + base_offset as u64, base_offset);
        if batch.len() >= BATCH_BYTES {
            return batch;
        }
        n += 16;
    }
}

fn views(records: &Bytes) -> Vec<BatchView> {
    RecordBatches::new(records.clone())
        .map(Result::unwrap)
        .collect()
}

fn bench_rewrite(c: &mut Criterion) {
    let mut set = BytesMut::new();
    let mut offset = 0;
    while set.len() < RESPONSE_BYTES {
        let batch = lz4_batch(offset);
        offset = BatchView::parse(batch.clone()).unwrap().next_offset();
        set.extend_from_slice(&batch);
    }
    let set = set.freeze();
    let batches = views(&set);

    let mut group = c.benchmark_group("batch_rewrite_16k_lz4");
    group.throughput(Throughput::Bytes(set.len() as u64));
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            for v in &batches {
                black_box(BytesMut::from(&v.bytes()[..]));
            }
        })
    });
    group.bench_function("split_into_views", |b| {
        b.iter(|| RecordBatches::new(black_box(set.clone())).count())
    });
    group.bench_function("header_rewrite_and_crc32c", |b| {
        b.iter(|| {
            let mut sequence = 0;
            for v in &batches {
                black_box(rewrite_for_produce(v, 9001, 0, sequence).unwrap());
                sequence += v.records_count();
            }
        })
    });
    group.finish();
}

fn bench_filler_detection(c: &mut Criterion) {
    // Mixed: data batches with filler batches between them, small (compaction holes,
    // transaction markers) and large (zstd).
    let mut mixed = BytesMut::new();
    let mut data_only = BytesMut::new();
    let mut offset = 0;
    let mut i = 0;
    while mixed.len() < RESPONSE_BYTES {
        let (part, next) = if i % 2 == 0 {
            let b = lz4_batch(offset);
            data_only.extend_from_slice(&b);
            let next = BatchView::parse(b.clone()).unwrap().next_offset();
            (b, next)
        } else {
            let (count, codec) = if i % 4 == 1 {
                (3, Compression::Lz4)
            } else {
                (10_000, Compression::Zstd)
            };
            let b = filler_batch(count, codec, NO_TIMESTAMP).unwrap();
            let mut b = BytesMut::from(&b[..]);
            b[..8].copy_from_slice(&offset.to_be_bytes());
            (b.freeze(), offset + count)
        };
        mixed.extend_from_slice(&part);
        offset = next;
        i += 1;
    }
    while data_only.len() < RESPONSE_BYTES {
        data_only.extend_from_slice(&lz4_batch(offset));
        offset += 1_000_000;
    }

    let mut group = c.benchmark_group("filler_detection_1mib_fetch");
    let (mixed, data_only) = (mixed.freeze(), data_only.freeze());
    for (name, set, prefilter) in [
        ("mixed", &mixed, false),
        ("data_only", &data_only, false),
        ("mixed_header_prefilter", &mixed, true),
        ("data_only_header_prefilter", &data_only, true),
    ] {
        group.throughput(Throughput::Bytes(set.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut fillers = 0;
                for v in RecordBatches::new(set.clone()) {
                    let v = v.unwrap();
                    if prefilter && !may_be_filler_batch(&v) {
                        continue;
                    }
                    if is_filler_batch(&v).unwrap() {
                        black_box(empty_batch_like(&v));
                        fillers += 1;
                    }
                }
                fillers
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rewrite, bench_filler_detection);
criterion_main!(benches);
