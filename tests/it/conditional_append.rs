//! The broker behaviour conditional copying relies on, against real brokers with raw
//! Produce requests: one producer id shared by two connections, sequences chosen by the
//! caller. A batch is appended only when it starts at the producer's end; a re-send of
//! a recent batch is answered with its first offset and writes nothing; anything else
//! is refused with OUT_OF_ORDER_SEQUENCE_NUMBER (45).

use crate::common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::kafka::{connect, topic_name};
use common::{create_topic, destination, eventually_async, unique, Cluster};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use mirrorgate::kafka::admin;
use mirrorgate::kafka::batch_rewrite::rewrite_for_produce;
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::producer::{init_producer_id, ProducerIdentity};
use mirrorgate::kafka::record_batch::BatchView;
use mirrorgate::replicator::partition::log_end_offset;

const OUT_OF_ORDER: i16 = 45;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn new_topic(prefix: &str) -> String {
    new_topic_on(destination(), prefix)
}

fn new_topic_on(cluster: &Cluster, prefix: &str) -> String {
    let topic = unique(prefix);
    create_topic(
        cluster,
        &topic,
        &["--partitions", "1", "--replication-factor", "3"],
    );
    topic
}

async fn leader(topic: &str) -> String {
    leader_on(destination(), topic).await
}

async fn leader_on(cluster: &Cluster, topic: &str) -> String {
    let what = format!("{topic} has a leader");
    eventually_async(&what, Duration::from_secs(60), async || {
        let mut any = KafkaConnection::connect_first(
            &cluster
                .bootstrap
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>(),
            "conditional-test",
            Duration::from_secs(5),
            None,
            None,
        )
        .await
        .expect("destination");
        let metadata = admin::metadata(&mut any, Some(&[topic]))
            .await
            .expect("metadata");
        admin::leader_of(&metadata, topic, 0)
    })
    .await
}

async fn producer() -> ProducerIdentity {
    producer_on(destination()).await
}

async fn producer_on(cluster: &Cluster) -> ProducerIdentity {
    let mut conn = connect(&format!("127.0.0.1:{}", cluster.ports[0])).await;
    init_producer_id(&mut conn).await.expect("producer id")
}

/// `count` records stamped with `producer` and base sequence `sequence`.
fn stamped(producer: ProducerIdentity, sequence: i32, count: usize, tag: &str) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 0,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Consecutive, so the encoder keeps the records in one batch.
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    let view = BatchView::parse(buf.freeze()).expect("batch");
    assert_eq!(view.records_count(), count as i32, "one batch");
    rewrite_for_produce(&view, producer.id, producer.epoch, sequence).expect("stamp")
}

/// Produces one batch; (error code, base offset).
async fn send(conn: &mut KafkaConnection, topic: &str, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = conn.call(&request, 9).await.expect("produce");
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

async fn end(conn: &mut KafkaConnection, topic: &str) -> i64 {
    log_end_offset(conn, topic, 0).await.expect("log end")
}

#[test]
fn appends_are_conditional_on_the_producers_end_across_connections() {
    let topic = new_topic("cond");
    runtime().block_on(async {
        let leader = leader(&topic).await;
        let (mut a, mut b) = (connect(&leader).await, connect(&leader).await);
        let p = producer().await;

        assert_eq!(send(&mut a, &topic, stamped(p, 0, 3, "a0")).await, (0, 0));
        assert_eq!(send(&mut a, &topic, stamped(p, 3, 2, "a3")).await, (0, 3));
        assert_eq!(end(&mut a, &topic).await, 5);

        // The other connection re-sends the last batch: its original offset, no write.
        assert_eq!(send(&mut b, &topic, stamped(p, 3, 2, "a3")).await, (0, 3));
        // So does one of the last five (the first batch).
        assert_eq!(send(&mut b, &topic, stamped(p, 0, 3, "a0")).await, (0, 0));
        assert_eq!(end(&mut b, &topic).await, 5);

        // Behind the end, ahead of it, or a known base sequence with another length.
        for (sequence, count) in [(4, 1), (2, 3), (6, 1), (3, 3), (0, 2)] {
            let (code, _) = send(&mut b, &topic, stamped(p, sequence, count, "b")).await;
            assert_eq!(code, OUT_OF_ORDER, "sequence {sequence}, {count} records");
        }
        assert_eq!(end(&mut b, &topic).await, 5, "nothing refused was written");

        // The right next sequence from the other connection lands exactly there.
        assert_eq!(send(&mut b, &topic, stamped(p, 5, 1, "b5")).await, (0, 5));
        // The first connection, one batch behind now: the same range is answered as a
        // duplicate (the same offsets hold the same source records), another is refused.
        assert_eq!(send(&mut a, &topic, stamped(p, 5, 1, "b5")).await, (0, 5));
        let (code, _) = send(&mut a, &topic, stamped(p, 5, 2, "a5")).await;
        assert_eq!(code, OUT_OF_ORDER);
        assert_eq!(end(&mut a, &topic).await, 6);
    });
}

#[test]
fn a_new_producer_may_start_at_any_sequence_and_wraps_at_i32_max() {
    let topic = new_topic("cond-wrap");
    runtime().block_on(async {
        let leader = leader(&topic).await;
        let mut conn = connect(&leader).await;
        let p = producer().await;
        // No state for a new producer id: any first sequence is accepted. These three
        // records take sequences i32::MAX - 1, i32::MAX and 0.
        let wrapping = stamped(p, i32::MAX - 1, 3, "w");
        assert_eq!(send(&mut conn, &topic, wrapping.clone()).await, (0, 0));
        // Its re-send is a duplicate; the next batch starts at sequence 1.
        assert_eq!(send(&mut conn, &topic, wrapping).await, (0, 0));
        let (code, _) = send(&mut conn, &topic, stamped(p, 0, 1, "x")).await;
        assert_eq!(code, OUT_OF_ORDER);
        assert_eq!(send(&mut conn, &topic, stamped(p, 1, 2, "n")).await, (0, 3));
        assert_eq!(end(&mut conn, &topic).await, 5);
    });
}

#[test]
fn a_new_leader_keeps_the_producer_state() {
    let restarts = common::broker_restarts();
    let cluster = restarts.cluster;
    let topic = new_topic_on(cluster, "cond-leader");
    let rt = runtime();
    let (p, old) = rt.block_on(async {
        let leader = leader_on(cluster, &topic).await;
        let mut conn = connect(&leader).await;
        let p = producer_on(cluster).await;
        for (sequence, count) in [(0, 2), (2, 3), (5, 1)] {
            let (code, offset) = send(&mut conn, &topic, stamped(p, sequence, count, "l")).await;
            assert_eq!((code, offset), (0, i64::from(sequence)));
        }
        (p, leader)
    });
    // The lease starts the broker again, whatever happens here.
    restarts.stop_node(restarts.node_of(&old));
    runtime().block_on(async {
        let leader = eventually_async("the leader moves", Duration::from_secs(60), async || {
            Some(leader_on(cluster, &topic).await).filter(|leader| *leader != old)
        })
        .await;
        let mut conn = connect(&leader).await;
        // The new leader rebuilt the state from its log: duplicates and refusals as
        // before, and the next sequence appends at the end.
        assert_eq!(send(&mut conn, &topic, stamped(p, 5, 1, "l")).await, (0, 5));
        assert_eq!(send(&mut conn, &topic, stamped(p, 2, 3, "l")).await, (0, 2));
        let (code, _) = send(&mut conn, &topic, stamped(p, 4, 2, "x")).await;
        assert_eq!(code, OUT_OF_ORDER);
        assert_eq!(send(&mut conn, &topic, stamped(p, 6, 1, "n")).await, (0, 6));
        assert_eq!(end(&mut conn, &topic).await, 7);
    });
}
