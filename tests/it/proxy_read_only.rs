//! Mirror topics are read-only through the proxy: Produce is refused per partition
//! with INVALID_REQUEST and Confluent's message, other writes with their API's own
//! error, and nothing is written to the mirror. Configs mirrored from the source cannot
//! be altered; the mirror's other configs can. Reads, groups and DeleteTopics pass.

use crate::common;

use common::kafka::{
    batch, connect, metadata, produce, topic_configs, topic_id, topic_name, wait_topic_config,
};
use common::{
    destination, end_offsets, kafka_tool, kafka_tool_direct, kcat, unique, Proxy, ProxyOptions,
};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AlterConfigsRequest, AlterConfigsResponse, DeleteRecordsRequest,
    ProduceResponse, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use uuid::Uuid;

fn locked(key: &str, topic: &str) -> String {
    format!("Config '{key}' of mirror topic '{topic}' is mirrored from the source and cannot be altered.")
}

/// `kafka-configs --alter --add-config` (IncrementalAlterConfigs) through `bootstrap`.
fn alter_configs_tool(bootstrap: &str, topic: &str, config: &str) -> common::Traced {
    kafka_tool(
        &[
            "kafka-configs",
            "--bootstrap-server",
            bootstrap,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            topic,
            "--add-config",
            config,
        ],
        None,
    )
}

fn refusal(topic: &str) -> String {
    format!("Cannot append records to read-only mirror topic '{topic}'")
}

/// A mirror topic with two records written straight to the cluster.
fn mirror_with_records(prefix: &str) -> String {
    let cluster = destination();
    let topic = unique(prefix);
    common::create_topic(
        cluster,
        &topic,
        &["--partitions", "1", "--replication-factor", "3"],
    );
    let seed = kcat(
        &["-b", &cluster.bootstrap, "-P", "-t", &topic],
        Some("one\ntwo\n"),
    );
    assert!(seed.output.status.success(), "{}", seed.text());
    topic
}

#[test]
fn java_producer_and_kcat_are_refused_and_the_mirror_is_unchanged() {
    let cluster = destination();
    let mirror = mirror_with_records("ro-java");
    let before = end_offsets(cluster, &mirror);
    assert!(before.ends_with(":2"), "{before}");
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..Default::default()
        },
    );

    let java = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &mirror,
        ],
        Some("refused\n"),
    );
    let expected = format!("InvalidRequestException: {}", refusal(&mirror));
    assert!(
        java.text().contains(&expected),
        "expected '{expected}' in:\n{}",
        java.text()
    );
    java.assert_only_proxy(&proxy, cluster);

    let librdkafka = kcat(
        &["-b", &proxy.bootstrap, "-P", "-t", &mirror],
        Some("refused\n"),
    );
    assert!(
        !librdkafka.output.status.success(),
        "kcat must fail: {}",
        librdkafka.text()
    );
    assert!(
        librdkafka.text().contains("Invalid request"),
        "{}",
        librdkafka.text()
    );
    librdkafka.assert_only_proxy(&proxy, cluster);

    assert_eq!(
        end_offsets(cluster, &mirror),
        before,
        "the mirror topic must be unchanged"
    );

    // Reads and consumer groups on the mirror go through.
    let group = unique("ro-group");
    let read = kafka_tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &mirror,
            "--group",
            &group,
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    assert_eq!(
        read.stdout().lines().collect::<Vec<_>>(),
        ["one", "two"],
        "{}",
        read.text()
    );
    read.assert_only_proxy(&proxy, cluster);
}

fn partition_result<'a>(
    response: &'a ProduceResponse,
    name: &str,
    id: Uuid,
    version: i16,
) -> &'a kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let topic = response
        .responses
        .iter()
        .find(|t| {
            if version >= 13 {
                t.topic_id == id
            } else {
                t.name.as_str() == name
            }
        })
        .unwrap_or_else(|| panic!("no response for {name} in {response:?}"));
    &topic.partition_responses[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_produce_writes_the_normal_topic_and_refuses_the_mirror() {
    let cluster = destination();
    // Both topics on broker 0 so one Produce request can carry both.
    let normal = unique("mixed-normal");
    let mirror = unique("mixed-mirror");
    for topic in [&normal, &mirror] {
        common::create_topic(cluster, topic, &["--replica-assignment", "0"]);
    }
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..Default::default()
        },
    );
    let mut bootstrap = connect(&proxy.bootstrap).await;
    let meta = metadata(&mut bootstrap, &[&normal, &mirror], 12).await;
    let leader = meta
        .brokers
        .iter()
        .find(|b| b.node_id.0 == 0)
        .expect("broker 0");
    assert_eq!(
        format!("{}:{}", leader.host.as_str(), leader.port),
        proxy.broker_addr(0)
    );
    let (normal_id, mirror_id) = (topic_id(&meta, &normal), topic_id(&meta, &mirror));
    let mut conn = connect(&proxy.broker_addr(0)).await;

    // v12 names topics, v13 (Kafka 4.1 clients) only by id.
    for (round, version) in [12i16, 13].into_iter().enumerate() {
        let request = produce(
            &[(&normal, normal_id), (&mirror, mirror_id)],
            &batch(&["x"], Compression::None),
            -1,
        );
        let response = conn.call(&request, version).await.expect("produce");
        let written = partition_result(&response, &normal, normal_id, version);
        assert_eq!(written.error_code, 0, "v{version}: {written:?}");
        assert_eq!(written.base_offset, round as i64, "v{version}");
        let refused = partition_result(&response, &mirror, mirror_id, version);
        assert_eq!(refused.error_code, 42, "v{version}");
        assert_eq!(
            refused
                .error_message
                .as_ref()
                .map(|m| m.as_str().to_string()),
            Some(refusal(&mirror))
        );
    }

    // Only the mirror: answered by the proxy with the same refusal.
    let request = produce(
        &[(&mirror, mirror_id)],
        &batch(&["y"], Compression::Lz4),
        -1,
    );
    let response = conn.call(&request, 13).await.expect("produce");
    assert_eq!(
        partition_result(&response, &mirror, mirror_id, 13).error_code,
        42
    );

    assert!(end_offsets(cluster, &normal).ends_with(":2"));
    assert!(
        end_offsets(cluster, &mirror).ends_with(":0"),
        "nothing written to the mirror"
    );

    // acks=0 cannot carry a refusal: the connection is closed, as a broker does.
    let mut fire_and_forget = connect(&proxy.broker_addr(0)).await;
    fire_and_forget
        .send_only(
            &produce(
                &[(&mirror, mirror_id)],
                &batch(&["z"], Compression::None),
                0,
            ),
            12,
        )
        .await
        .expect("send acks=0");
    let after = fire_and_forget
        .call(&kafka_protocol::messages::ApiVersionsRequest::default(), 3)
        .await;
    assert!(
        after.is_err(),
        "connection must be closed after acks=0 to a mirror"
    );
    assert!(end_offsets(cluster, &mirror).ends_with(":0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn other_writes_to_a_mirror_are_refused_and_delete_topic_passes() {
    let cluster = destination();
    let mirror = mirror_with_records("ro-writes");
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..Default::default()
        },
    );
    let bs = proxy.bootstrap.as_str();

    let partitions = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            bs,
            "--alter",
            "--topic",
            &mirror,
            "--partitions",
            "3",
        ],
        None,
    );
    assert!(
        partitions.text().contains(&format!(
            "Cannot add partitions to read-only mirror topic '{mirror}'"
        )),
        "{}",
        partitions.text()
    );
    partitions.assert_only_proxy(&proxy, cluster);

    // Configs: keys of the mirror's own go through, keys mirrored from the source do not.
    let retention = alter_configs_tool(bs, &mirror, "retention.ms=3600000");
    assert!(retention.output.status.success(), "{}", retention.text());
    retention.assert_only_proxy(&proxy, cluster);
    wait_topic_config(&cluster.bootstrap, &mirror, "retention.ms", Some("3600000")).await;
    let policy = alter_configs_tool(bs, &mirror, "cleanup.policy=compact");
    let expected = format!(
        "InvalidConfigurationException: {}",
        locked("cleanup.policy", &mirror)
    );
    assert!(
        policy.text().contains(&expected),
        "expected '{expected}' in:\n{}",
        policy.text()
    );
    policy.assert_only_proxy(&proxy, cluster);
    let configs = topic_configs(&cluster.bootstrap, &mirror).await;
    assert_eq!(configs.get("cleanup.policy"), None, "{configs:?}");

    let mut conn = connect(bs).await;
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&mirror))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(1)])]);
    let response = conn.call(&delete, 2).await.expect("DeleteRecords");
    assert_eq!(response.topics[0].partitions[0].error_code, 42);

    let other = unique("ro-txn-other");
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&mirror))
                .with_partitions(vec![0]),
            AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&other))
                .with_partitions(vec![0]),
        ]);
    let response = conn.call(&add, 3).await.expect("AddPartitionsToTxn");
    let code = |name: &str| {
        response
            .results_by_topic_v3_and_below
            .iter()
            .find(|t| t.name.as_str() == name)
            .map(|t| t.results_by_partition[0].partition_error_code)
    };
    assert_eq!(code(&mirror), Some(42));
    assert_eq!(
        code(&other),
        Some(55),
        "OPERATION_NOT_ATTEMPTED for the rest"
    );

    assert!(
        end_offsets(cluster, &mirror).ends_with(":2"),
        "mirror unchanged"
    );

    let delete_topic = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            bs,
            "--delete",
            "--topic",
            &mirror,
        ],
        None,
    );
    assert!(
        delete_topic.output.status.success(),
        "{}",
        delete_topic.text()
    );
    let list = kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &cluster.bootstrap,
        "--list",
    ]);
    let listed = String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l == mirror);
    assert!(
        !listed,
        "DeleteTopics through the proxy must delete the mirror topic"
    );
}

/// Legacy AlterConfigs (the whole set of a topic at once), sent raw: refused per
/// resource when it carries a mirrored key, forwarded otherwise; a refused mirror
/// resource does not stop a normal topic's resource in the same request.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_alter_configs_refuses_only_mirrored_keys_of_a_mirror() {
    let cluster = destination();
    let mirror = mirror_with_records("ro-legacy");
    let normal = unique("ro-legacy-normal");
    common::create_topic(cluster, &normal, &["--partitions", "1"]);
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..Default::default()
        },
    );
    let mut conn = connect(&proxy.bootstrap).await;
    let resource = |topic: &str, configs: &[(&str, &str)]| {
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )
    };
    let answer = |response: &AlterConfigsResponse, topic: &str| {
        response
            .responses
            .iter()
            .find(|r| r.resource_name.as_str() == topic)
            .map(|r| {
                let message = r.error_message.as_ref().map(|m| m.as_str().to_string());
                (r.error_code, message)
            })
            .unwrap_or_else(|| panic!("no answer for {topic} in {response:?}"))
    };

    let allowed = AlterConfigsRequest::default()
        .with_resources(vec![resource(&mirror, &[("retention.ms", "7200000")])]);
    let response = conn.call(&allowed, 2).await.expect("AlterConfigs");
    assert_eq!(answer(&response, &mirror).0, 0, "{response:?}");
    wait_topic_config(&cluster.bootstrap, &mirror, "retention.ms", Some("7200000")).await;

    let mixed = AlterConfigsRequest::default().with_resources(vec![
        resource(
            &mirror,
            &[("retention.ms", "60000"), ("max.message.bytes", "2048")],
        ),
        resource(&normal, &[("cleanup.policy", "compact")]),
    ]);
    let response = conn.call(&mixed, 2).await.expect("AlterConfigs");
    assert_eq!(
        answer(&response, &mirror),
        (40, Some(locked("max.message.bytes", &mirror))),
        "INVALID_CONFIG naming the key"
    );
    assert_eq!(answer(&response, &normal).0, 0, "{response:?}");
    wait_topic_config(
        &cluster.bootstrap,
        &normal,
        "cleanup.policy",
        Some("compact"),
    )
    .await;
    let configs = topic_configs(&cluster.bootstrap, &mirror).await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("7200000"),
        "the refused resource is not applied in part: {configs:?}"
    );
    assert_eq!(configs.get("max.message.bytes"), None, "{configs:?}");

    // Only a refused resource: answered by the proxy itself.
    let only = AlterConfigsRequest::default().with_resources(vec![resource(
        &mirror,
        &[("message.timestamp.type", "LogAppendTime")],
    )]);
    let response = conn.call(&only, 2).await.expect("AlterConfigs");
    assert_eq!(
        answer(&response, &mirror),
        (40, Some(locked("message.timestamp.type", &mirror)))
    );
}
