//! Filler records against real clusters: offsets the source has but cannot be
//! produced as data (transaction markers, aborted transactions, the log start moved by
//! DeleteRecords, compaction holes) are filled on the mirror, so its offsets match the
//! source's, and consumers through the proxy see exactly the source's records.

use crate::common;

use common::replication::{copier, copy_to_end, copy_to_end_counting, source};

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::kafka::{connect, fetch_raw, topic_name};
use common::{destination, eventually_async, kcat, kcat_read_all, unique, Cluster, Proxy};
use common::{ProxyOptions, Traced};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, BrokerId, DeleteRecordsRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::filler::is_filler_batch;
use mirrorgate::kafka::record_batch::RecordBatches;
use mirrorgate::replicator::partition::{log_end_offset, log_start_offset};

fn first(bootstrap: &str) -> String {
    bootstrap.split(',').next().unwrap().to_string()
}

async fn offsets(cluster: &Cluster, topic: &str) -> (i64, i64) {
    let mut conn = connect(&first(&cluster.bootstrap)).await;
    // Single-partition topics pinned to (or alone on) the first broker.
    let start = log_start_offset(&mut conn, topic, 0).await.expect("start");
    let end = log_end_offset(&mut conn, topic, 0).await.expect("end");
    (start, end)
}

async fn wait_for_end(cluster: &Cluster, topic: &str, end: i64) {
    let what = format!("{topic} reaches offset {end}");
    eventually_async(&what, Duration::from_secs(30), async || {
        (offsets(cluster, topic).await.1 >= end).then_some(())
    })
    .await;
}

/// "offset key value" lines of a whole topic, read committed.
fn read(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut args = kcat_read_all(bootstrap, topic);
    args.extend(["-X", "isolation.level=read_committed", "-f", "%o %k %s\\n"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: Traced = kcat(&args, None);
    assert!(out.output.status.success(), "{}", out.text());
    out.stdout().lines().map(str::to_string).collect()
}

/// Reads the mirror through a proxy that knows it as a mirror topic, with kcat (Fetch
/// by topic name) and with the Java consumer (topic ids, fetch sessions); both must
/// see the same "offset key value" lines.
fn read_through_proxy(mirror: &str) -> Vec<String> {
    let proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![mirror.to_string()],
            ..ProxyOptions::default()
        },
    );
    let lines = read(&proxy.bootstrap, mirror);
    let count = lines.len().to_string();
    let group = unique("fillers-group");
    let java = common::kafka_tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            mirror,
            "--group",
            &group,
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            "--property",
            "print.offset=true",
            "--property",
            "print.key=true",
            "--max-messages",
            &count,
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    assert!(java.output.status.success(), "{}", java.text());
    java.assert_only_proxy(&proxy, destination());
    let java_lines: Vec<String> = java
        .stdout()
        .lines()
        .map(|l| l.trim_start_matches("Offset:").replace('\t', " "))
        .collect();
    assert_eq!(java_lines, lines, "the Java consumer through the proxy");
    lines
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One batch of `values`, transactional when `producer` is given.
fn batch(values: &[String], producer: Option<(i64, i16, i32)>) -> Bytes {
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Equal offset - sequence keeps the records in one batch.
            sequence: sequence + i as i32,
            timestamp: now_ms(),
            key: Some(Bytes::from(format!("k-{v}"))),
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

async fn produce(
    conn: &mut KafkaConnection,
    topic: &str,
    transactional_id: Option<&str>,
    records: Bytes,
) {
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = conn.call(&request, 9).await.expect("produce");
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
}

/// A minimal transactional producer over raw requests (single-broker source, which is
/// also the transaction coordinator).
struct TxnProducer {
    conn: KafkaConnection,
    id: String,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    topic: String,
}

impl TxnProducer {
    async fn new(bootstrap: &str, topic: &str) -> Self {
        let mut conn = connect(bootstrap).await;
        let id = unique("txn");
        let find = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(id.clone())]);
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.clone()))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        // The coordinator may still be loading the transaction log: retry.
        let response = eventually_async(
            "InitProducerId succeeds",
            Duration::from_secs(60),
            async || {
                // Creates the transaction log on first use; the one broker is the coordinator.
                conn.call(&find, 4).await.expect("find coordinator");
                let response = conn.call(&request, 4).await.expect("init producer id");
                if response.error_code == 0 {
                    return Ok(response);
                }
                Err(format!("InitProducerId: error {}", response.error_code))
            },
        )
        .await;
        Self {
            conn,
            id,
            producer_id: response.producer_id.0,
            epoch: response.producer_epoch,
            sequence: 0,
            topic: topic.to_string(),
        }
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.id.clone()))
    }

    async fn begin(&mut self) {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.txn_id())
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&self.topic))
                .with_partitions(vec![0])]);
        // CONCURRENT_TRANSACTIONS (51) while the previous transaction completes: retry.
        eventually_async(
            "AddPartitionsToTxn succeeds",
            Duration::from_secs(30),
            async || {
                let response = self.conn.call(&request, 3).await.expect("add partitions");
                let code = response
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| &t.results_by_partition)
                    .map(|p| p.partition_error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(response.error_code);
                match code {
                    0 => Ok(()),
                    51 => Err(format!("AddPartitionsToTxn: error {code}")),
                    _ => panic!("AddPartitionsToTxn: error {code}"),
                }
            },
        )
        .await;
    }

    async fn send(&mut self, values: &[String]) {
        let records = batch(values, Some((self.producer_id, self.epoch, self.sequence)));
        let (topic, id) = (self.topic.clone(), self.id.clone());
        produce(&mut self.conn, &topic, Some(&id), records).await;
        self.sequence += values.len() as i32;
    }

    async fn end(&mut self, commit: bool) {
        let request = EndTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let response = self.conn.call(&request, 3).await.expect("end txn");
        assert_eq!(response.error_code, 0, "EndTxn");
    }
}

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

fn assert_no_filler(lines: &[String]) {
    assert!(
        lines.iter().all(|l| !l.contains("__mirrorgate_filler")),
        "a filler record is visible: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_and_aborted_transactions_copy_to_identical_offsets() {
    let src = source();
    let topic = unique("txn-src");
    let mirror = unique("txn-mirror");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);

    let mut txn = TxnProducer::new(&src.bootstrap, &topic).await;
    txn.begin().await;
    txn.send(&values("committed", 3)).await; // 0..2, commit marker at 3
    txn.end(true).await;
    txn.begin().await;
    txn.send(&values("aborted-a", 2)).await; // 4..5
    txn.send(&values("aborted-b", 2)).await; // 6..7, abort marker at 8
    txn.end(false).await;
    // Markers are written after EndTxn answers: wait for the abort marker at 8.
    wait_for_end(&src, &topic, 9).await;
    let mut plain = connect(&src.bootstrap).await;
    produce(&mut plain, &topic, None, batch(&values("plain", 2), None)).await; // 9..10

    let (_, end) = offsets(&src, &topic).await;
    assert_eq!(end, 11);
    let mut copier = copier(&src, &topic, &mirror).await;
    let fillers = copy_to_end(&mut copier, end).await;
    assert_eq!(fillers, 6, "two markers and four aborted records");
    assert_eq!(offsets(destination(), &mirror).await, (0, end));

    let expected: Vec<String> = [
        "0 k-committed-0 committed-0",
        "1 k-committed-1 committed-1",
        "2 k-committed-2 committed-2",
        "9 k-plain-0 plain-0",
        "10 k-plain-1 plain-1",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(read(&src.bootstrap, &topic), expected, "the source itself");
    let through_proxy = read_through_proxy(&mirror);
    assert_no_filler(&through_proxy);
    assert_eq!(through_proxy, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_log_start_moved_by_delete_records_is_mirrored() {
    let src = source();
    let topic = unique("logstart-src");
    let mirror = unique("logstart-mirror");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);
    let mut conn = connect(&src.bootstrap).await;
    // One batch 0..9 (the new log start falls inside it), then 10..14.
    produce(&mut conn, &topic, None, batch(&values("a", 10), None)).await;
    produce(&mut conn, &topic, None, batch(&values("b", 5), None)).await;
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(5)])]);
    let response = conn.call(&request, 1).await.expect("delete records");
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(offsets(&src, &topic).await, (5, 15));

    let mut copier = copier(&src, &topic, &mirror).await;
    let (fillers, lost) = copy_to_end_counting(&mut copier, 15).await;
    assert_eq!(fillers, 5);
    assert_eq!(
        lost, 0,
        "the first catch-up of an empty mirror loses nothing"
    );
    assert_eq!(offsets(destination(), &mirror).await, (5, 15));

    let source_lines = read(&src.bootstrap, &topic);
    assert_eq!(source_lines.len(), 10, "{source_lines:?}");
    assert!(source_lines[0].starts_with("5 k-a-5 "), "{source_lines:?}");
    let through_proxy = read_through_proxy(&mirror);
    assert_no_filler(&through_proxy);
    assert_eq!(through_proxy, source_lines);

    // The source log start passes the copier while it runs (retention outran it):
    // the next fetch is out of range, and the copier catches up the same way.
    produce(&mut conn, &topic, None, batch(&values("c", 10), None)).await; // 15..24
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(20)])]);
    let response = conn.call(&request, 1).await.expect("delete records");
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let (fillers, lost) = copy_to_end_counting(&mut copier, 25).await;
    assert_eq!(fillers, 5);
    assert_eq!(lost, 5, "offsets 15..19 were never copied");
    assert_eq!(offsets(destination(), &mirror).await, (20, 25));
    let source_lines = read(&src.bootstrap, &topic);
    assert_eq!(source_lines.len(), 5, "{source_lines:?}");
    assert_eq!(read_through_proxy(&mirror), source_lines);

    // The same while the copier is down: a restarted copier finds the source log
    // start above the mirror's end, and counts what it skips.
    drop(copier);
    produce(&mut conn, &topic, None, batch(&values("d", 10), None)).await; // 25..34
    let response = conn
        .call(&delete_before(&topic, 30), 1)
        .await
        .expect("delete records");
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let mut restarted = common::replication::copier(&src, &topic, &mirror).await;
    let (fillers, lost) = copy_to_end_counting(&mut restarted, 35).await;
    assert_eq!((fillers, lost), (5, 5), "offsets 25..29 were never copied");
    assert_eq!(offsets(destination(), &mirror).await, (30, 35));
    assert_eq!(read_through_proxy(&mirror), read(&src.bootstrap, &topic));
}

fn delete_before(topic: &str, offset: i64) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])])
}

/// True when the cleaner has left holes: a batch with fewer records than offsets, or a
/// jump between batches.
fn has_holes(records: Bytes) -> bool {
    let mut next = None;
    for batch in RecordBatches::new(records).flatten() {
        if !batch.is_gap_free() || next.is_some_and(|n| batch.base_offset() > n) {
            return true;
        }
        next = Some(batch.next_offset());
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_source_with_holes_reads_the_same_through_the_proxy() {
    let src = source();
    let topic = unique("compact-src");
    let mirror = unique("compact-mirror");
    common::create_topic(
        &src,
        &topic,
        &[
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.ms=100",
            "--config",
            "min.cleanable.dirty.ratio=0.01",
            "--config",
            "min.compaction.lag.ms=0",
        ],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);

    // Many updates of few keys, in batches spread over rolled segments; keep writing
    // (each write may roll a segment) until the cleaner has made holes.
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let lines: String = (0..20)
            .map(|i| format!("key-{}:round-{round}-{i}\n", i % 4))
            .collect();
        let out = kcat(
            &["-b", &src.bootstrap, "-P", "-t", &topic, "-K", ":"],
            Some(&lines),
        );
        assert!(out.output.status.success(), "{}", out.text());
        round += 1;
        if round > 5 && has_holes(fetch_raw(&src.bootstrap, &topic).await) {
            break;
        }
        assert!(Instant::now() < deadline, "the cleaner left no holes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Stop the cleaner from changing the source while it is compared with the mirror.
    let out = common::kafka_tool_direct(&[
        "kafka-configs",
        "--bootstrap-server",
        &src.bootstrap,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
        "--add-config",
        "cleanup.policy=delete",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (_, end) = offsets(&src, &topic).await;
    let mut copier = copier(&src, &topic, &mirror).await;
    let fillers = copy_to_end(&mut copier, end).await;
    assert!(fillers > 0, "compaction holes need fillers");
    assert_eq!(offsets(destination(), &mirror).await.1, end);

    let source_lines = read(&src.bootstrap, &topic);
    assert!((source_lines.len() as i64) < end, "{source_lines:?}");
    let through_proxy = read_through_proxy(&mirror);
    assert_no_filler(&through_proxy);
    assert_eq!(through_proxy, source_lines);
}

/// Partition 0's records of each topic, fetched in one request at `version` (topic
/// names below v13, ids from v13).
async fn fetch_together(addr: &str, version: i16, topics: &[(&str, uuid::Uuid)]) -> Vec<Bytes> {
    let mut conn = connect(addr).await;
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_isolation_level(1)
        .with_topics(
            topics
                .iter()
                .map(|(name, id)| {
                    FetchTopic::default()
                        .with_topic(topic_name(name))
                        .with_topic_id(*id)
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        );
    let response = conn.call(&request, version).await.expect("fetch");
    topics
        .iter()
        .map(|(name, id)| {
            let topic = response
                .responses
                .iter()
                .find(|t| t.topic.as_str() == *name || (version >= 13 && t.topic_id == *id))
                .expect("topic in the response");
            topic.partitions[0].records.clone().unwrap_or_default()
        })
        .collect()
}

/// (base offset, next offset, records count) of every batch.
fn shape(records: &Bytes) -> Vec<(i64, i64, i32)> {
    RecordBatches::new(records.clone())
        .flatten()
        .map(|b| (b.base_offset(), b.next_offset(), b.records_count()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_hides_fillers_of_mirror_topics_only_and_keeps_other_bytes() {
    let src = source();
    let topic = unique("hide-src");
    let mirror = unique("hide-mirror");
    let copy = unique("hide-not-mirror");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);
    common::create_topic(destination(), &copy, &["--replica-assignment", "0"]);
    // A committed transaction: its marker at 3 becomes a filler on the copies.
    let mut txn = TxnProducer::new(&src.bootstrap, &topic).await;
    txn.begin().await;
    txn.send(&values("t", 3)).await;
    txn.end(true).await;
    wait_for_end(&src, &topic, 4).await;
    let mut conn = connect(&src.bootstrap).await;
    produce(&mut conn, &topic, None, batch(&values("p", 2), None)).await; // 4..5
    for target in [&mirror, &copy] {
        let mut copier = copier(&src, &topic, target).await;
        copy_to_end(&mut copier, 6).await;
    }
    let proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..ProxyOptions::default()
        },
    );
    let mut meta_conn = connect(&first(&destination().bootstrap)).await;
    let meta = common::kafka::metadata(&mut meta_conn, &[&mirror, &copy], 12).await;
    let ids = [
        (mirror.as_str(), common::kafka::topic_id(&meta, &mirror)),
        (copy.as_str(), common::kafka::topic_id(&meta, &copy)),
    ];
    let broker = first(&destination().bootstrap);
    for version in [12, 17] {
        let direct = fetch_together(&broker, version, &ids).await;
        let proxied = fetch_together(&proxy.broker_addr(0), version, &ids).await;
        assert_eq!(
            proxied[1], direct[1],
            "v{version}: not a mirror: same bytes"
        );
        assert_eq!(
            shape(&proxied[0])
                .iter()
                .map(|s| (s.0, s.1))
                .collect::<Vec<_>>(),
            shape(&direct[0])
                .iter()
                .map(|s| (s.0, s.1))
                .collect::<Vec<_>>(),
            "v{version}: same offsets"
        );
        let hidden: Vec<_> = RecordBatches::new(proxied[0].clone())
            .flatten()
            .filter(|b| is_filler_batch(b).unwrap())
            .collect();
        assert!(
            hidden.is_empty(),
            "v{version}: a filler batch reached the client"
        );
        let fillers_direct = RecordBatches::new(direct[0].clone())
            .flatten()
            .filter(|b| is_filler_batch(b).unwrap())
            .count();
        assert!(fillers_direct > 0, "v{version}: the mirror holds fillers");
    }
}
