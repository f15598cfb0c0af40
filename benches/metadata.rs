//! The proxy's Metadata response rewrite for a cluster of 3 brokers and 1,000 partitions
//! (20 topics x 50 partitions, replication factor 3), in responses (requests) per second.
//!
//! The Metadata chain (`addresses::MetadataBrokers`, `internal_guard::MetadataTopics`)
//! takes an `Arc<Shared>`, which only a running `Proxy` builds and does not hand out, so
//! the rewrite is reproduced here from the public pieces it is made of, in its order:
//! decode the response frame, point every broker at the proxy (routing lookup and
//! recording the real address), learn the topic ids, encode the frame again. Left out:
//! the registry snapshot load and the broker-listener check of `Shared::advertise` (an
//! atomic load and a map lookup per broker). `decode_encode` is the same without the
//! rewrite: the floor of any rewrite that goes through the message types.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use mirrorgate::config::routing::Routing;
use mirrorgate::kafka::codec::{decode_response, encode_response};
use mirrorgate::proxy::destination::Destination;

const BROKERS: i32 = 3;
const TOPICS: i32 = 20;
const PARTITIONS_PER_TOPIC: i32 = 50;
/// What Kafka 4.x clients send, and what the proxy's own refresh uses.
const VERSION: i16 = 12;
const CORRELATION_ID: i32 = 7;

fn response() -> MetadataResponse {
    let brokers = (0..BROKERS)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(format!(
                    "kafka-{id}.internal.example.com"
                )))
                .with_port(9092)
                .with_rack(Some(StrBytes::from_string(format!("rack-{id}"))))
        })
        .collect();
    let topics = (0..TOPICS)
        .map(|t| {
            let partitions = (0..PARTITIONS_PER_TOPIC)
                .map(|p| {
                    let replicas: Vec<BrokerId> =
                        (0..3).map(|r| BrokerId((p + t + r) % BROKERS)).collect();
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(replicas[0])
                        .with_leader_epoch(5)
                        .with_replica_nodes(replicas.clone())
                        .with_isr_nodes(replicas)
                })
                .collect();
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!(
                    "orders.events.region-{t:02}"
                )))))
                .with_topic_id(uuid::Uuid::from_u128(0x1000 + t as u128))
                .with_partitions(partitions)
        })
        .collect();
    MetadataResponse::default()
        .with_cluster_id(Some(StrBytes::from_static_str("q1Sh-9_ISia_zwGINzRvyQ")))
        .with_controller_id(BrokerId(1))
        .with_brokers(brokers)
        .with_topics(topics)
}

fn frame() -> Bytes {
    encode_response(CORRELATION_ID, ApiKey::Metadata, VERSION, &response()).expect("encode")
}

/// The rewrite of the Metadata chain, step for step.
fn rewrite(routing: &Routing, destination: &Destination, frame: &Bytes) -> Bytes {
    let mut response: MetadataResponse =
        decode_response(frame, ApiKey::Metadata, VERSION).expect("decode");
    for broker in &mut response.brokers {
        let (host, port, _listen) = routing
            .address_of(broker.node_id.0)
            .expect("node id under routing");
        destination.record_broker(broker.node_id.0, broker.host.as_str(), broker.port);
        broker.host = StrBytes::from_string(host);
        broker.port = port;
    }
    destination.learn_topics(&response, &|_| false);
    encode_response(CORRELATION_ID, ApiKey::Metadata, VERSION, &response).expect("encode")
}

fn metadata_rewrite(c: &mut Criterion) {
    let frame = frame();
    let routing = Routing::PortPerBroker {
        advertised_host: "127.0.0.1".into(),
        port_base: 9400,
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let destination = Destination::default();
    // The rewritten frame is well-formed and points at the proxy.
    let out = rewrite(&routing, &destination, &frame);
    let back: MetadataResponse = decode_response(&out, ApiKey::Metadata, VERSION).expect("decode");
    assert!(back.brokers.iter().all(|b| b.host.as_str() == "127.0.0.1"));
    assert_eq!(
        back.topics
            .iter()
            .map(|t| t.partitions.len())
            .sum::<usize>(),
        (TOPICS * PARTITIONS_PER_TOPIC) as usize
    );

    let mut group = c.benchmark_group("metadata_1000_partitions_3_brokers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_encode", |b| {
        b.iter(|| {
            let response: MetadataResponse =
                decode_response(black_box(&frame), ApiKey::Metadata, VERSION).expect("decode");
            encode_response(CORRELATION_ID, ApiKey::Metadata, VERSION, &response).expect("encode")
        })
    });
    group.bench_function("rewrite", |b| {
        b.iter(|| rewrite(&routing, &destination, black_box(&frame)))
    });
    group.finish();
}

criterion_group!(benches, metadata_rewrite);
criterion_main!(benches);
