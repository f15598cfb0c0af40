//! `mirror.produce.mode=forward`: producers pointed at mirrorgate write to an ACTIVE
//! mirror through it; each write lands on the source, the client is told the source
//! offset, and the record appears on the mirror at that same offset. Java producers
//! (idempotent and not) and librdkafka (kcat, idempotent) never see an error; a retry
//! of an idempotent batch is deduplicated by the source; transactions and the default
//! mode are still refused.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::kafka::{connect, metadata, topic_id};
use common::replication::{
    by_offset, cli, dump, link_and_mirror_with, replicating, source, text, verifiable_acks,
    wait_identical,
};
use common::{destination, eventually_async, kafka_tool, kcat, unique, Proxy};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const FORWARD: &str = ",mirror.produce.mode=forward";

/// (partition, offset) -> value of every record the verifiable producer was told was
/// written; panics on any send error it reports.
fn verifiable_producer(
    proxy: &Proxy,
    topic: &str,
    prefix: u32,
    config: &str,
) -> BTreeMap<(i32, i64), String> {
    let dir = tempdir(&format!("producer-{prefix}"));
    let config_file = dir.join("producer.properties");
    std::fs::write(&config_file, config).unwrap();
    let out = kafka_tool(
        &[
            "kafka-verifiable-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            topic,
            "--max-messages",
            "600",
            "--throughput",
            "300",
            "--value-prefix",
            &prefix.to_string(),
            "--producer.config",
            config_file.to_str().unwrap(),
        ],
        None,
    );
    out.assert_only_proxy(proxy, destination());
    verifiable_acks(&out, 600)
}

/// Metadata for `topic` through `proxy` once partition 0 has a leader, and that
/// leader's proxy address: a mirror topic just created may still be electing one.
async fn leader_through(
    proxy: &Proxy,
    topic: &str,
) -> (kafka_protocol::messages::MetadataResponse, String) {
    let what = format!("{topic} has a leader");
    eventually_async(&what, std::time::Duration::from_secs(30), async || {
        let mut conn = connect(&proxy.bootstrap).await;
        let meta = metadata(&mut conn, &[topic], 12).await;
        mirrorgate::kafka::admin::leader_of(&meta, topic, 0).map(|leader| (meta, leader))
    })
    .await
}

/// An idempotent producer id, as a client gets one: a cluster that has just started
/// answers COORDINATOR_LOAD_IN_PROGRESS (or NOT_COORDINATOR) until it can allocate ids,
/// and clients ask again.
async fn init_idempotent(
    conn: &mut mirrorgate::kafka::client::KafkaConnection,
) -> kafka_protocol::messages::InitProducerIdResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let init = conn
            .call(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(-1)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await
            .unwrap();
        if ![14, 15, 16].contains(&init.error_code) || std::time::Instant::now() > deadline {
            return init;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("mg-forward-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn producers_write_a_forwarded_mirror_at_the_offsets_they_are_told() {
    let source = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-fwd")),
    );
    let topic = unique("forwarded");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    let link = link_and_mirror_with(&proxy, &source, &topic, FORWARD);

    let idempotent = verifiable_producer(
        &proxy,
        &topic,
        1,
        "enable.idempotence=true\nacks=all\nretries=2147483647\n",
    );
    let plain = verifiable_producer(
        &proxy,
        &topic,
        2,
        "enable.idempotence=false\nacks=1\nretries=2147483647\nmax.in.flight.requests.per.connection=1\n",
    );
    // librdkafka, idempotent: every delivery reported, none failed.
    let values: String = (0..400).map(|i| format!("3.{i}\n")).collect();
    let out = kcat(
        &[
            "-b",
            &proxy.bootstrap,
            "-P",
            "-t",
            &topic,
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
        ],
        Some(&values),
    );
    assert!(out.output.status.success(), "{}", out.text());
    assert!(
        !out.text().contains("ERROR") && !out.text().contains("failed"),
        "{}",
        out.text()
    );
    out.assert_only_proxy(&proxy, destination());

    // The writes are on the source at the offsets the clients were told ...
    let on_source = by_offset(&dump(&source.bootstrap, &topic));
    for (at, value) in idempotent.iter().chain(&plain) {
        assert_eq!(on_source.get(at), Some(value), "source at {at:?}");
    }
    let librdkafka: BTreeSet<&str> = on_source
        .values()
        .filter(|v| v.starts_with("3."))
        .map(String::as_str)
        .collect();
    assert_eq!(librdkafka.len(), 400, "every kcat record once");
    assert_eq!(on_source.len(), 1_600, "nothing written twice");
    // ... and the mirror holds the same records at the same offsets.
    wait_identical(&proxy, &source, &topic);

    let metrics = proxy.metrics();
    let forwarded = metrics
        .lines()
        .find(|l| l.starts_with("mirrorgate_produce_forwarded_requests_total") && l.contains(&link))
        .unwrap_or_else(|| panic!("no forwarded count for {link}:\n{metrics}"));
    let count: f64 = forwarded.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > 0.0, "{forwarded}");
    assert!(
        metrics.contains("mirrorgate_produce_forwarded_bytes_total"),
        "{metrics}"
    );
}

fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> bytes::Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: sequence + i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce_to(
    topic: &str,
    id: uuid::Uuid,
    batch: &bytes::Bytes,
    transactional: Option<&str>,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_transactional_id(
            transactional.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
        )
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::kafka::topic_name(topic))
            .with_topic_id(id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.clone()))])])
}

fn answer(response: &ProduceResponse) -> (i16, i64, Option<String>) {
    let p = &response.responses[0].partition_responses[0];
    (
        p.error_code,
        p.base_offset,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_batch_is_written_once_and_goes_on_at_the_destination_after_promote() {
    let source = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-fwd-retry")),
    );
    let topic = unique("forward-retry");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    // Source producer ids are taken first, so a client's destination id is likely
    // one the source also handed out: forwarded batches must not carry it there.
    let out = kcat(
        &[
            "-b",
            &source.bootstrap,
            "-P",
            "-t",
            &topic,
            "-X",
            "enable.idempotence=true",
        ],
        Some("direct-0\n"),
    );
    assert!(out.output.status.success(), "{}", out.text());
    link_and_mirror_with(&proxy, &source, &topic, FORWARD);

    let (meta, leader) = leader_through(&proxy, &topic).await;
    let id = topic_id(&meta, &topic);
    let mut conn = connect(&proxy.bootstrap).await;
    let init = init_idempotent(&mut conn).await;
    assert_eq!(init.error_code, 0);
    let mut conn = connect(&leader).await;

    let first = idempotent_batch(init.producer_id.0, init.producer_epoch, 0, &["a", "b"]);
    let sent = conn
        .call(&produce_to(&topic, id, &first, None), 9)
        .await
        .unwrap();
    assert_eq!(
        answer(&sent),
        (0, 1, None),
        "written after the source's record"
    );
    // The same batch again, as a producer retries it after a lost answer.
    let retried = conn
        .call(&produce_to(&topic, id, &first, None), 9)
        .await
        .unwrap();
    assert_eq!(answer(&retried).0, 0, "{:?}", answer(&retried));
    assert_eq!(
        answer(&retried).1,
        1,
        "the retry is answered with the original offset"
    );
    let next = idempotent_batch(init.producer_id.0, init.producer_epoch, 2, &["c"]);
    let sent = conn
        .call(&produce_to(&topic, id, &next, None), 9)
        .await
        .unwrap();
    assert_eq!(answer(&sent), (0, 3, None));
    assert_eq!(
        dump(&source.bootstrap, &topic),
        ["0 0 direct-0", "0 1 a", "0 2 b", "0 3 c"],
        "each record once on the source"
    );

    let txn = idempotent_batch(init.producer_id.0, init.producer_epoch, 3, &["t"]);
    let refused = conn
        .call(&produce_to(&topic, id, &txn, Some("tx-1")), 9)
        .await
        .unwrap();
    let (code, _, message) = answer(&refused);
    assert_eq!(code, 42, "INVALID_REQUEST");
    assert_eq!(
        message.as_deref(),
        Some(format!("Cannot append records to read-only mirror topic '{topic}'").as_str())
    );

    // After the promote the same producer goes on writing, now to the destination: the
    // destination never saw its id (the copier writes with its own), so it takes the
    // next sequence as it comes, at the next offset.
    wait_identical(&proxy, &source, &topic);
    let out =
        tokio::task::block_in_place(|| cli(&proxy, &["mirrors", "--promote", "--topics", &topic]));
    assert!(out.status.success(), "{}", text(&out));
    let after = idempotent_batch(init.producer_id.0, init.producer_epoch, 3, &["d"]);
    let sent = conn
        .call(&produce_to(&topic, id, &after, None), 9)
        .await
        .unwrap();
    assert_eq!(answer(&sent), (0, 4, None), "continued on the destination");
    let retried = conn
        .call(&produce_to(&topic, id, &after, None), 9)
        .await
        .unwrap();
    assert_eq!(answer(&retried).1, 4, "and deduplicated there");
    assert_eq!(
        dump(&proxy.bootstrap, &topic),
        ["0 0 direct-0", "0 1 a", "0 2 b", "0 3 c", "0 4 d"]
    );
    assert_eq!(
        dump(&source.bootstrap, &topic).len(),
        4,
        "the source no longer written"
    );

    // A link in the default mode refuses, as before.
    let rejecting = unique("rejecting");
    common::create_topic(
        &source,
        &rejecting,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    link_and_mirror_with(&proxy, &source, &rejecting, "");
    let (meta, leader) = leader_through(&proxy, &rejecting).await;
    let mut conn = connect(&leader).await;
    let plain = idempotent_batch(-1, -1, -1, &["x"]);
    let refused = conn
        .call(
            &produce_to(&rejecting, topic_id(&meta, &rejecting), &plain, None),
            9,
        )
        .await
        .unwrap();
    assert_eq!(answer(&refused).0, 42, "INVALID_REQUEST");
    assert_eq!(dump(&source.bootstrap, &rejecting), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_resent_through_another_instance_is_written_once() {
    let source = source();
    let metadata_topic = unique("_mirrorgate-metadata-fwd-fleet");
    let first = Proxy::start(destination(), replicating(&metadata_topic));
    let second = Proxy::start(destination(), replicating(&metadata_topic));
    let topic = unique("forward-fleet");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    let link = link_and_mirror_with(&first, &source, &topic, FORWARD);

    let mut conn = connect(&first.bootstrap).await;
    let init = init_idempotent(&mut conn).await;
    let batch = idempotent_batch(init.producer_id.0, init.producer_epoch, 0, &["once"]);
    let mut sent = Vec::new();
    // The producer's first instance "dies" after writing; it re-sends through the other.
    for proxy in [&first, &second] {
        let timeout = std::time::Duration::from_secs(30);
        let response = eventually_async("the batch is accepted", timeout, async || {
            let (meta, leader) = leader_through(proxy, &topic).await;
            let mut conn = connect(&leader).await;
            let request = produce_to(&topic, topic_id(&meta, &topic), &batch, None);
            let response = conn.call(&request, 9).await.unwrap();
            // The second instance may not have read the mirror yet (retriable refusal).
            if answer(&response).0 == 0 {
                return Ok(response);
            }
            Err(format!("answered {:?}", answer(&response)))
        })
        .await;
        sent.push(answer(&response));
    }
    assert_eq!(
        sent,
        [(0, 0, None), (0, 0, None)],
        "the re-send is answered with the original offset"
    );
    assert_eq!(
        dump(&source.bootstrap, &topic),
        ["0 0 once"],
        "written once"
    );

    // Deleting the link deletes the producer's mapping from the metadata topic too
    // (read straight from the destination: clients of the proxy cannot read it).
    let out = cli(
        &first,
        &["cluster-links", "--delete", "--link", &link, "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let prefix = format!("producer/{link}/");
    let mut args = common::kcat_read_all(&destination().bootstrap, &metadata_topic);
    args.extend(["-f".to_string(), "%k\t%S\n".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let read = kcat(&args, None).stdout();
    // The last record of each of the link's producer keys, by value size (-1: none).
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for line in read.lines() {
        if let Some((key, size)) = line.split_once('\t') {
            if key.starts_with(&prefix) {
                last.insert(key, size);
            }
        }
    }
    assert!(!last.is_empty(), "no producer record was written: {read}");
    for (key, size) in &last {
        assert_eq!(
            *size, "-1",
            "{key} is still mapped after its link was deleted"
        );
    }
}
