//! The stand-in broker: answers ApiVersions, Metadata, Produce and Fetch from
//! responses encoded once per version, only the correlation id filled in per request,
//! so it costs far less per byte than the middle of the path it is measured through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, MetadataResponse, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{arg, FetchShape, FETCH_TOPIC, FETCH_TOPIC_ID, PRODUCE_TOPIC, SMALL_PARTITIONS};

/// The versions the load generator speaks, and the stand-in's ranges.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
];
/// Larger requests than this are a harness bug, not load.
const MAX_REQUEST: usize = 64 << 20;

pub fn main(args: &[String]) -> Result<()> {
    let port: u16 = arg(args, "--port").context("--port")?.parse()?;
    let fetch_bytes: usize = arg(args, "--fetch-bytes")
        .context("--fetch-bytes")?
        .parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let canned = Arc::new(Canned::new(port, fetch_bytes)?);
        loop {
            let (stream, _) = listener.accept().await?;
            let canned = canned.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(stream, &canned).await {
                    eprintln!("upstream: connection ended: {e:#}");
                }
            });
        }
    })
}

/// Response bodies by (API key, version, fetch shape), encoded on first use.
struct Canned {
    port: u16,
    fetch_records: Bytes,
    small_records: Bytes,
    bodies: Mutex<HashMap<(i16, i16, FetchShape), Bytes>>,
}

impl Canned {
    fn new(port: u16, fetch_bytes: usize) -> Result<Self> {
        Ok(Self {
            port,
            fetch_records: record_batches(fetch_bytes)?,
            small_records: record_batches(1 << 10)?,
            bodies: Mutex::new(HashMap::new()),
        })
    }

    fn body(&self, key: ApiKey, version: i16, shape: FetchShape) -> Result<Bytes> {
        let mut bodies = self
            .bodies
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(body) = bodies.get(&(key as i16, version, shape)) {
            return Ok(body.clone());
        }
        let mut buf = BytesMut::new();
        match key {
            ApiKey::ApiVersions => api_versions().encode(&mut buf, version)?,
            ApiKey::Metadata => metadata(self.port).encode(&mut buf, version)?,
            ApiKey::Produce => produce().encode(&mut buf, version)?,
            ApiKey::Fetch => fetch(self, shape).encode(&mut buf, version)?,
            other => bail!("no canned answer for {other:?}"),
        }
        let body = buf.freeze();
        bodies.insert((key as i16, version, shape), body.clone());
        Ok(body)
    }
}

async fn serve(mut stream: TcpStream, canned: &Canned) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut request = Vec::new();
    let mut out = BytesMut::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return Ok(()); // the client closed
        }
        let len = i32::from_be_bytes(len);
        if len < 8 || len as usize > MAX_REQUEST {
            bail!("request of {len} bytes");
        }
        request.resize(len as usize, 0);
        stream.read_exact(&mut request).await?;
        let key = i16::from_be_bytes([request[0], request[1]]);
        let version = i16::from_be_bytes([request[2], request[3]]);
        let correlation = i32::from_be_bytes([request[4], request[5], request[6], request[7]]);
        let api = ApiKey::try_from(key).map_err(|_| anyhow::anyhow!("api key {key}"))?;
        let Some(&(_, _, max)) = SUPPORTED.iter().find(|(k, _, _)| *k == api) else {
            bail!("unexpected request {api:?}");
        };
        let body = canned.body(api, version.min(max), shape_of(&request))?;
        out.clear();
        let header_version = api.response_header_version(version);
        let mut header = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation)
            .encode(&mut header, header_version)?;
        out.put_i32((header.len() + body.len()) as i32);
        out.put_slice(&header);
        stream.write_all(&out).await?;
        stream.write_all(&body).await?;
    }
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        SUPPORTED
            .iter()
            .map(|(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

fn metadata(port: u16) -> MetadataResponse {
    let topic = |topic: &str, id: u128| {
        MetadataResponseTopic::default()
            .with_name(Some(name(topic)))
            .with_topic_id(uuid::Uuid::from_u128(id))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(0))
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)])])
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(port))])
        .with_cluster_id(Some(StrBytes::from_static_str("proxy-bound-bench")))
        .with_controller_id(BrokerId(0))
        .with_topics(vec![
            topic(PRODUCE_TOPIC, 1),
            topic(FETCH_TOPIC, FETCH_TOPIC_ID.as_u128()),
        ])
}

fn produce() -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(name(PRODUCE_TOPIC))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_base_offset(0)
            .with_log_append_time_ms(-1)])])
}

/// The client id after the request header's fixed fields picks the fetch shape.
fn shape_of(request: &[u8]) -> FetchShape {
    let len = request
        .get(8..10)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize);
    FetchShape::of_client_id(request.get(10..10 + len).unwrap_or_default())
}

fn fetch(canned: &Canned, shape: FetchShape) -> FetchResponse {
    let partition = |index: i32, records: &Bytes| {
        let end = 1 << 20;
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(end)
            .with_last_stable_offset(end)
            .with_log_start_offset(0)
            .with_records(Some(records.clone()))
    };
    let partitions = match shape {
        FetchShape::Whole | FetchShape::Moved => vec![partition(0, &canned.fetch_records)],
        FetchShape::Partitions => (0..SMALL_PARTITIONS)
            .map(|p| partition(p, &canned.small_records))
            .collect(),
    };
    let mut response = FetchResponse::default();
    if shape == FetchShape::Moved {
        response.node_endpoints = vec![NodeEndpoint::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(canned.port))];
    }
    response.with_responses(vec![FetchableTopicResponse::default()
        .with_topic(name(FETCH_TOPIC))
        .with_topic_id(FETCH_TOPIC_ID)
        .with_partitions(partitions)])
}

/// Real record batches (up to 64 records of 1 KiB each) adding up to about `bytes`, as a
/// broker's log holds them: the proxy's filler pre-check reads their headers.
pub fn record_batches(bytes: usize) -> Result<Bytes> {
    const RECORD: usize = 1024;
    const PER_BATCH: usize = 64;
    let value = Bytes::from(vec![b'x'; RECORD]);
    let mut out = BytesMut::new();
    let mut offset = 0i64;
    while out.len() < bytes {
        let count = (bytes.saturating_sub(out.len()) / RECORD).clamp(1, PER_BATCH) as i64;
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: offset + i,
                // The encoder puts records in one batch only while offset minus
                // sequence stays the same; -1 throughout made a batch per record.
                sequence: (offset + i) as i32,
                timestamp: 1_700_000_000_000 + offset + i,
                key: Some(Bytes::from(format!("key-{}", offset + i))),
                value: Some(value.clone()),
                headers: Default::default(),
            })
            .collect();
        RecordBatchEncoder::encode(
            &mut out,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )?;
        offset += count;
    }
    Ok(out.freeze())
}
