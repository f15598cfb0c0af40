//! Raw Kafka requests for tests, built with `kafka-protocol` and sent with mirrorgate's
//! own client connection.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::record_codec::plain_record;
use uuid::Uuid;

use super::eventually_async;

pub async fn connect(addr: &str) -> KafkaConnection {
    KafkaConnection::connect(addr, "mirrorgate-test", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub async fn metadata(
    conn: &mut KafkaConnection,
    topics: &[&str],
    version: i16,
) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
            .collect(),
    ));
    conn.call(&request, version).await.expect("metadata")
}

pub fn topic_id(metadata: &MetadataResponse, topic: &str) -> Uuid {
    metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .map(|t| t.topic_id)
        .expect("topic in metadata")
}

/// One v2 record batch with these values.
pub fn batch(values: &[&str], compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            plain_record(
                i as i64,
                1_700_000_000_000,
                None,
                Some(Bytes::from(v.to_string())),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A Produce request writing `batch` to partition 0 of each (name, id) topic.
pub fn produce(topics: &[(&str, Uuid)], batch: &Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(
            topics
                .iter()
                .map(|(name, id)| {
                    TopicProduceData::default()
                        .with_name(topic_name(name))
                        .with_topic_id(*id)
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone()))])
                })
                .collect(),
        )
}

/// Raw record bytes of partition 0 from offset 0, fetched straight from its leader.
/// A consumer's Fetch of partition 0 of `topic` (named, and by `id` from v13) from
/// offset 0.
pub fn fetch_request(
    topic: &str,
    id: Uuid,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(max_bytes)])])
}

pub async fn fetch_raw(cluster_bootstrap: &str, topic: &str) -> Bytes {
    let first = cluster_bootstrap.split(',').next().expect("bootstrap");
    let mut conn = connect(first).await;
    let meta = metadata(&mut conn, &[topic], 12).await;
    let leader = meta.topics[0].partitions[0].leader_id;
    let broker = meta
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .expect("leader broker");
    let mut leader_conn = connect(&format!("{}:{}", broker.host.as_str(), broker.port)).await;
    let request = fetch_request(topic, Uuid::nil(), 100, 1, 10 << 20);
    let response = leader_conn.call(&request, 12).await.expect("fetch");
    response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default()
}

/// Compression codec (attributes bits 0-2) of every batch in a raw record set.
pub fn batch_codecs(mut records: &[u8]) -> Vec<u8> {
    let mut codecs = Vec::new();
    while records.len() >= 61 {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]) as usize;
        codecs.push(records[22] & 0x07);
        let total = 12 + len;
        if records.len() < total {
            break;
        }
        records = &records[total..];
    }
    codecs
}

/// A topic's own (dynamic) configs, described through the first server of `bootstrap`.
pub async fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let first = bootstrap.split(',').next().unwrap_or_default();
    let mut conn = connect(first).await;
    mirrorgate::kafka::admin::topic_configs(&mut conn, topic)
        .await
        .unwrap_or_else(|e| panic!("describe configs of {topic}: {e}"))
        .into_iter()
        .collect()
}

/// Waits until `key` of `topic` is `expected` (`None`: not set on the topic), as seen
/// through the first server of `bootstrap` (config changes reach brokers shortly after
/// the controller accepts them, and a new topic reaches them shortly after it is created).
pub async fn wait_topic_config(bootstrap: &str, topic: &str, key: &str, expected: Option<&str>) {
    let first = bootstrap.split(',').next().unwrap_or_default();
    let what = format!("{key} of {topic} is {expected:?}");
    eventually_async(&what, Duration::from_secs(30), async || {
        // A topic just created may not be known to this broker yet.
        match mirrorgate::kafka::admin::topic_configs(&mut connect(first).await, topic).await {
            Ok(configs) => {
                let value = configs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v);
                if value.as_deref() == expected {
                    return Ok(());
                }
                Err(format!("{key} is {value:?}"))
            }
            Err(e) => Err(format!("describe failed: {e}")),
        }
    })
    .await;
}
