//! Hot path of the proxy: splitting pipelined frames off the read buffer, peeking
//! request headers, and the produce guard (decode + split) with and without a
//! read-only topic in the request. Baseline in the same run: a plain memcpy of the
//! same bytes, so the numbers read as ratios. Also what decoding a Produce answer
//! costs (v10+ answers are decoded to look for KIP-951 NodeEndpoints).

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use mirrorgate::config::Config;
use mirrorgate::kafka::codec::decode_request;
use mirrorgate::kafka::frame::{FrameReader, RequestFrame};
use mirrorgate::proxy::interceptors::produce_guard::Produce;
use mirrorgate::proxy::interceptors::write_guard::apply;
use mirrorgate::registry::Snapshot;

const BATCH_BYTES: usize = 16 * 1024;
const FRAMES: usize = 256;

fn produce_frame(topics: &[&str], version: i16) -> Bytes {
    let records = Bytes::from(vec![7u8; BATCH_BYTES]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(
            topics
                .iter()
                .map(|t| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records.clone()))])
                })
                .collect(),
        );
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let header_version = ApiKey::Produce.request_header_version(version);
    let size =
        header.compute_size(header_version).unwrap() + request.compute_size(version).unwrap();
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).unwrap();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn snapshot(mirrors: &[&str]) -> Snapshot {
    let mut text = String::from(
        "[proxy]\nbind = \"127.0.0.1:1\"\nadvertised_host = \"h\"\nbroker_port_base = 2\n\
         [destination]\nbootstrap_servers = \"127.0.0.1:3\"\n",
    );
    for m in mirrors {
        text.push_str(&format!("[[mirror_topics]]\nname = \"{m}\"\n"));
    }
    Snapshot::build(Config::parse(&text, Path::new("bench.toml")).unwrap()).unwrap()
}

fn bench_frames(c: &mut Criterion) {
    let frame = produce_frame(&["orders"], 12);
    let stream: Vec<u8> = (0..FRAMES).flat_map(|_| frame.iter().copied()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("frame_path");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(stream.len());
            out.put_slice(&stream);
            out
        })
    });
    group.bench_function("split_and_peek_headers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut reader = FrameReader::new(&stream[..], 100 << 20, 0);
                let mut n = 0;
                while let Some(frame) = reader.next().await.unwrap() {
                    let request = RequestFrame::parse(frame).unwrap();
                    n += request.correlation_id as usize;
                }
                n
            })
        })
    });
    group.finish();

    let mut guard = c.benchmark_group("produce_guard");
    guard.throughput(Throughput::Bytes(frame.len() as u64));
    let none_read_only = snapshot(&[]);
    let other_read_only = snapshot(&["users"]);
    let mixed = produce_frame(&["orders", "users"], 12);
    for (name, frame, snap) in [
        (
            "no_mirror_topics_configured",
            frame.clone(),
            &none_read_only,
        ),
        (
            "request_without_mirror_topic",
            frame.clone(),
            &other_read_only,
        ),
        ("request_with_mirror_topic", mixed, &other_read_only),
    ] {
        guard.bench_function(name, |b| {
            b.iter_batched(
                || RequestFrame::parse(frame.clone()).unwrap(),
                |request| {
                    if !snap.has_read_only_topics() {
                        return None;
                    }
                    let decoded: ProduceRequest = decode_request(&request).unwrap();
                    apply::<Produce>(&request, decoded, &|t| snap.guard_of(t), true).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    guard.finish();

    let mut answer = c.benchmark_group("produce_answer_v11");
    for partitions in [1, 10] {
        let body = produce_answer(partitions, 11);
        answer.throughput(Throughput::Bytes(body.len() as u64));
        answer.bench_function(format!("decode_{partitions}_partitions"), |b| {
            b.iter(|| ProduceResponse::decode(&mut body.clone(), 11).unwrap())
        });
    }
    answer.finish();
}

/// A Produce answer's body (after the header): one topic, `partitions` partitions,
/// no errors and no NodeEndpoints, as most answers are.
fn produce_answer(partitions: i32, version: i16) -> Bytes {
    let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partition_responses(
            (0..partitions)
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p)
                        .with_base_offset(1_000_000 + i64::from(p))
                        .with_log_start_offset(0)
                })
                .collect(),
        )]);
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).unwrap();
    buf.freeze()
}

criterion_group!(benches, bench_frames);
criterion_main!(benches);
