//! Seed inputs for every target, written into `fuzz/seeds/<target>/` by any target
//! binary started with `MIRRORGATE_FUZZ_WRITE_SEEDS=<dir>` (see [`write_if_asked`]): valid messages of every version naming mirror and plain
//! topics, real record batches of every codec, SCRAM exchanges, metadata records,
//! link configs. The fuzzer starts from them instead of from nothing.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AlterConfigsRequest, ApiKey, ApiVersionsResponse, BrokerId,
    CreatePartitionsRequest, DeleteRecordsRequest, DescribeClusterResponse, FetchRequest,
    FetchResponse, FindCoordinatorResponse, IncrementalAlterConfigsRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, NO_TIMESTAMP};
use mirrorgate::kafka::codec::encode_response;
use mirrorgate::kafka::filler::filler_batch;
use mirrorgate::kafka::record_batch::HEADER_LEN;
use mirrorgate::proxy::interceptors::api_versions;
use mirrorgate::proxy::interceptors::produce_guard::Produce;
use mirrorgate::proxy::interceptors::write_guard::{self, GuardedApi};

use crate::{requests, responses, MIRRORS, PLAIN_TOPIC};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn topics() -> impl Iterator<Item = &'static str> {
    MIRRORS.iter().copied().chain([PLAIN_TOPIC])
}

/// A request of a guarded API naming every mirror and one plain topic.
pub trait NamingMirrors: GuardedApi {
    fn request() -> Self::Request;
}

impl NamingMirrors for Produce {
    fn request() -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(
                topics()
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(name(t))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(data_batch(Compression::None, 0)))])
                    })
                    .collect(),
            )
    }
}

impl NamingMirrors for write_guard::DeleteRecords {
    fn request() -> DeleteRecordsRequest {
        DeleteRecordsRequest::default().with_topics(
            topics()
                .map(|t| {
                    DeleteRecordsTopic::default()
                        .with_name(name(t))
                        .with_partitions(vec![DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(5)])
                })
                .collect(),
        )
    }
}

impl NamingMirrors for write_guard::CreatePartitions {
    fn request() -> CreatePartitionsRequest {
        CreatePartitionsRequest::default().with_topics(
            topics()
                .map(|t| {
                    CreatePartitionsTopic::default()
                        .with_name(name(t))
                        .with_count(3)
                })
                .collect(),
        )
    }
}

impl NamingMirrors for write_guard::AlterConfigs {
    fn request() -> AlterConfigsRequest {
        AlterConfigsRequest::default().with_resources(
            topics()
                .map(|t| {
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_string(t.to_string()))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_value(Some(StrBytes::from_static_str("delete")))])
                })
                .collect(),
        )
    }
}

impl NamingMirrors for write_guard::IncrementalAlterConfigs {
    fn request() -> IncrementalAlterConfigsRequest {
        IncrementalAlterConfigsRequest::default().with_resources(
            topics()
                .map(|t| {
                    incremental::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_string(t.to_string()))
                        .with_configs(vec![incremental::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("max.message.bytes"))
                            .with_value(Some(StrBytes::from_static_str("1000")))])
                })
                .collect(),
        )
    }
}

impl NamingMirrors for write_guard::AddPartitionsToTxn {
    fn request() -> AddPartitionsToTxnRequest {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_v3_and_below_topics(
                topics()
                    .map(|t| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(name(t))
                            .with_partitions(vec![0, 1])
                    })
                    .collect(),
            )
    }
}

/// `request_naming_mirrors::<A>()`: the request of [`NamingMirrors`].
pub fn request_naming_mirrors<A: NamingMirrors>() -> A::Request {
    A::request()
}

/// A batch of three data records at base offset `base`.
pub fn data_batch(codec: Compression, base: i64) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|i| {
            let key = Some(Bytes::from(format!("k{i}")));
            crate::record(base + i, key, Some(Bytes::from_static(b"value")))
        })
        .collect();
    crate::encode_batch(&records, codec).unwrap()
}

/// A filler batch of `count` at base offset `base`, as the destination stores it.
pub fn filler_at(codec: Compression, base: i64, count: i64) -> Bytes {
    let mut bytes = filler_batch(count, codec, NO_TIMESTAMP).unwrap().to_vec();
    bytes[..8].copy_from_slice(&base.to_be_bytes());
    Bytes::from(bytes)
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// data, filler, data, and a cut-off batch: what a mirror partition's fetch returns.
fn record_set(codec: Compression) -> Bytes {
    let tail = data_batch(codec, 9);
    [
        &data_batch(codec, 0)[..],
        &filler_at(codec, 3, 5)[..],
        &data_batch(codec, 8)[..],
        &tail[..tail.len() / 2],
    ]
    .concat()
    .into()
}

fn encode<T: Encodable>(value: &T, version: i16) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    value.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// Every seed as (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    request_seeds(&mut out);
    response_seeds(&mut out);
    batch_seeds(&mut out);
    text_seeds(&mut out);
    out
}

type Seeds = Vec<(&'static str, String, Vec<u8>)>;

fn request_seeds(out: &mut Seeds) {
    for (index, api) in requests::APIS.iter().enumerate() {
        let (min, max) = requests::versions(*api);
        for version in min..=max {
            let body = match api {
                ApiKey::Produce => encode(&Produce::request(), version),
                ApiKey::DeleteRecords => encode(&write_guard::DeleteRecords::request(), version),
                ApiKey::CreatePartitions => {
                    encode(&write_guard::CreatePartitions::request(), version)
                }
                ApiKey::AlterConfigs => encode(&write_guard::AlterConfigs::request(), version),
                ApiKey::IncrementalAlterConfigs => {
                    encode(&write_guard::IncrementalAlterConfigs::request(), version)
                }
                ApiKey::AddPartitionsToTxn => {
                    encode(&write_guard::AddPartitionsToTxn::request(), version)
                }
                ApiKey::Fetch => encode(&fetch_request(), version),
                _ => unreachable!(),
            };
            let Some(body) = body else { continue };
            let selector = u8::try_from(version - min).unwrap();
            let seed = [&[index as u8, selector][..], &body].concat();
            out.push(("requests", format!("{api:?}-v{version}"), seed));
            if *api == ApiKey::Produce && version == max {
                out.push((
                    "frames",
                    format!("{api:?}-v{version}"),
                    frames_seed(*api, version, &body),
                ));
            }
        }
    }
}

fn fetch_request() -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_session_id(1)
        .with_session_epoch(2)
        .with_topics(
            topics()
                .map(|t| {
                    FetchTopic::default()
                        .with_topic(name(t))
                        .with_partitions(vec![FetchPartition::default().with_fetch_offset(3)])
                })
                .collect(),
        )
}

/// Two pipelined frames behind the `frames` target's control bytes.
fn frames_seed(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let frame = crate::request_frame(api, version, body);
    [
        &[0xff, 0xff, 8, 0x5a][..],
        &frame,
        &frame[..frame.len() / 2],
    ]
    .concat()
}

fn response_seeds(out: &mut Seeds) {
    for (index, api) in responses::APIS.iter().enumerate() {
        let (min, max) = requests::versions(*api);
        for version in min..=max {
            let Some(frame) = response(*api, version) else {
                continue;
            };
            let selector = u8::try_from(version - min).unwrap();
            let seed = [&[index as u8, selector][..], &frame[4..]].concat();
            out.push(("responses", format!("{api:?}-v{version}"), seed));
        }
    }
}

fn response(api: ApiKey, version: i16) -> Option<Bytes> {
    let host = || StrBytes::from_static_str("broker-1.internal");
    let result = match api {
        ApiKey::Metadata => {
            let response = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(host())
                    .with_port(9092)])
                .with_topics(
                    topics()
                        .map(|t| {
                            MetadataResponseTopic::default()
                                .with_name(Some(name(t)))
                                .with_topic_id(uuid_of(t))
                        })
                        .collect(),
                );
            encode_response(7, api, version, &response)
        }
        ApiKey::FindCoordinator => {
            let response = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(1))
                .with_host(host())
                .with_port(9092)
                .with_coordinators(vec![Coordinator::default()
                    .with_key(StrBytes::from_static_str("group"))
                    .with_node_id(BrokerId(2))
                    .with_host(host())
                    .with_port(9093)]);
            if version >= 4 {
                encode_response(
                    7,
                    api,
                    version,
                    &response
                        .with_host(StrBytes::default())
                        .with_port(0)
                        .with_node_id(BrokerId(0)),
                )
            } else {
                encode_response(7, api, version, &response.with_coordinators(vec![]))
            }
        }
        ApiKey::DescribeCluster => {
            let response = DescribeClusterResponse::default()
                .with_endpoint_type(1)
                .with_brokers(vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(1))
                    .with_host(host())
                    .with_port(9092)]);
            encode_response(7, api, version, &response)
        }
        ApiKey::Fetch => {
            let partitions = |codec| {
                vec![PartitionData::default()
                    .with_high_watermark(20)
                    .with_records(Some(record_set(codec)))]
            };
            let response = FetchResponse::default()
                .with_responses(
                    CODECS
                        .iter()
                        .map(|c| {
                            FetchableTopicResponse::default()
                                .with_topic(name("users"))
                                .with_topic_id(uuid_of("users"))
                                .with_partitions(partitions(*c))
                        })
                        .collect(),
                )
                .with_node_endpoints(if version >= 16 {
                    vec![NodeEndpoint::default()
                        .with_node_id(BrokerId(1))
                        .with_host(host())
                        .with_port(9092)]
                } else {
                    vec![]
                });
            encode_response(7, api, version, &response)
        }
        ApiKey::Produce => encode_response(7, api, version, &ProduceResponse::default()),
        ApiKey::ApiVersions => {
            let keys = (0..100i16)
                .filter_map(|k| ApiKey::try_from(k).ok())
                .map(|k| {
                    let v = k.valid_versions();
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(v.min)
                        .with_max_version(v.max)
                })
                .collect();
            let response = ApiVersionsResponse::default().with_api_keys(keys);
            encode_response(7, api, version, &response)
        }
        ApiKey::DeleteRecords => encode_response(
            7,
            api,
            version,
            &kafka_protocol::messages::DeleteRecordsResponse::default(),
        ),
        ApiKey::CreatePartitions => encode_response(
            7,
            api,
            version,
            &kafka_protocol::messages::CreatePartitionsResponse::default(),
        ),
        ApiKey::AlterConfigs => encode_response(
            7,
            api,
            version,
            &kafka_protocol::messages::AlterConfigsResponse::default(),
        ),
        ApiKey::IncrementalAlterConfigs => encode_response(
            7,
            api,
            version,
            &kafka_protocol::messages::IncrementalAlterConfigsResponse::default(),
        ),
        ApiKey::AddPartitionsToTxn => encode_response(
            7,
            api,
            version,
            &kafka_protocol::messages::AddPartitionsToTxnResponse::default(),
        ),
        _ => unreachable!(),
    };
    let _ = api_versions::proxy_range(api)?;
    result.ok()
}

fn uuid_of(topic: &str) -> uuid::Uuid {
    let mut raw = [0u8; 16];
    for (i, b) in topic.bytes().enumerate() {
        raw[i % 16] ^= b;
    }
    raw[15] |= 1; // never the nil id
    uuid::Uuid::from_bytes(raw)
}

fn batch_seeds(out: &mut Seeds) {
    for codec in CODECS {
        let set = record_set(codec);
        out.push(("fillers", format!("{codec:?}"), [&[0u8][..], &set].concat()));
        // The `codecs` target's input: attributes, count, flags, records block.
        for (what, batch) in [
            ("data", data_batch(codec, 0)),
            ("filler", filler_at(codec, 0, 5)),
        ] {
            let count = i16::from_be_bytes([batch[59], batch[60]]);
            for flags in [0u8, 1] {
                let seed = [
                    &[codec as u8][..],
                    &count.to_be_bytes(),
                    &[flags],
                    &batch[HEADER_LEN..],
                ]
                .concat();
                out.push(("codecs", format!("{codec:?}-{what}-{flags}"), seed));
            }
        }
    }
}

fn text_seeds(out: &mut Seeds) {
    let scram = [
        (1u8, "r={nonce}3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=128\0v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        (2, "r={nonce}x,s=QSXCR+Q6sek8bf92,i=1\0e=invalid-proof"),
        (0, "\0"),
        (9, "r={nonce},s=,i=0\0v="),
    ];
    for (i, (flags, text)) in scram.iter().enumerate() {
        out.push((
            "scram",
            format!("exchange-{i}"),
            [&[*flags][..], text.as_bytes()].concat(),
        ));
    }
    let link = r#"{"name":"l1","link_id":"id","config":{"bootstrap.servers":"h:1","sasl.jaas.config":"sealed:v1:AAAA"},"source_cluster_id":"c","created_ms":1}"#;
    let mirror = r#"{"topic":"users","source_topic":"users","link":"l1","partitions":3,"state":"ACTIVE","reason":null,"state_time_ms":5,"start_offsets":[1,2,3]}"#;
    out.push((
        "store",
        "link".into(),
        [&[1u8, 0][..], link.as_bytes()].concat(),
    ));
    out.push((
        "store",
        "mirror".into(),
        [&[1u8, 1][..], mirror.as_bytes()].concat(),
    ));
    let batch = crate::store::batch(b"mirror/users", Some(mirror.as_bytes()));
    out.push(("store", "raw".into(), [&[0u8][..], &batch].concat()));
    let filters = r#"{"groupFilters":[{"name":"*","patternType":"LITERAL","filterType":"INCLUDE"},{"name":"tmp-","patternType":"PREFIXED","filterType":"EXCLUDE"}]}"#;
    let link_config = format!(
        "# link\nbootstrap.servers=h:1\nmirror.start.offset.spec = 2023-04-20T16:03:05.5+09:00\nd=x\\\n  y\n\0bootstrap.servers=h:1,cluster.link.paused=true\02023-04-20T16:03:05Z\0{filters}\0tmp-1\0AbCdEfGhIjKl"
    );
    out.push((
        "link_config",
        "walkthrough".into(),
        link_config.into_bytes(),
    ));
    // Overflowed the timestamp arithmetic before years and zones were bounded.
    let overflow = "\0\09999999999999999-01-01T00:00:00+9999999999:00";
    out.push((
        "link_config",
        "iso-overflow".into(),
        overflow.as_bytes().to_vec(),
    ));
    let sni = [
        &3i32.to_be_bytes()[..],
        b"broker-\0.kafka.example.test\0bootstrap.kafka.example.test\0BROKER-3.kafka.example.test",
    ]
    .concat();
    out.push(("sni", "brokers".into(), sni));
}

/// With `MIRRORGATE_FUZZ_WRITE_SEEDS=<dir>` set, writes every seed under
/// `<dir>/<target>/` and exits; otherwise does nothing. Called by every target at start,
/// so the seeds are made by the instrumented build without a second build.
pub fn write_if_asked() {
    let Some(dir) = std::env::var_os("MIRRORGATE_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let written = write(Path::new(&dir)).unwrap();
    eprintln!(
        "{written} seeds written under {}",
        Path::new(&dir).display()
    );
    std::process::exit(0);
}

/// Writes [`all`] under `dir/<target>/`.
pub fn write(dir: &Path) -> std::io::Result<usize> {
    let seeds = all();
    for (target, name, bytes) in &seeds {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(name), bytes)?;
    }
    Ok(seeds.len())
}
