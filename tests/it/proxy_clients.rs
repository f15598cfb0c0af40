//! Real clients through the proxy bootstrap only: Kafka's Java tools and kcat work
//! as against the cluster, and never connect to a broker port themselves.

use crate::common;

use common::{destination, kafka_tool, kcat, unique, Proxy, ProxyOptions};

#[test]
fn java_tools_topics_produce_consume_and_groups_go_only_through_the_proxy() {
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let topic = unique("java");
    let group = unique("java-group");
    let bs = proxy.bootstrap.as_str();

    let create = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            bs,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
    );
    assert!(create.output.status.success(), "{}", create.text());
    create.assert_only_proxy(&proxy, cluster);

    let describe = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            bs,
            "--describe",
            "--topic",
            &topic,
        ],
        None,
    );
    assert!(
        describe.stdout().contains("PartitionCount: 3"),
        "{}",
        describe.text()
    );
    assert!(
        describe.stdout().contains("ReplicationFactor: 3"),
        "{}",
        describe.text()
    );
    describe.assert_only_proxy(&proxy, cluster);

    let produce = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            bs,
            "--topic",
            &topic,
        ],
        Some("alpha\nbeta\ngamma\n"),
    );
    assert!(produce.output.status.success(), "{}", produce.text());
    produce.assert_only_proxy(&proxy, cluster);

    let consume = kafka_tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            bs,
            "--topic",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    let mut got: Vec<String> = consume.stdout().lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["alpha", "beta", "gamma"], "{}", consume.text());
    consume.assert_only_proxy(&proxy, cluster);

    let groups = kafka_tool(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            bs,
            "--describe",
            "--group",
            &group,
        ],
        None,
    );
    groups.assert_only_proxy(&proxy, cluster);
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    let rows: Vec<Vec<String>> = groups
        .stdout()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 6 && cols[1] == topic)
        .collect();
    // Unkeyed records may all land in one partition: only consumed partitions are listed.
    assert!(!rows.is_empty(), "{}", groups.text());
    let committed: i64 = rows.iter().map(|r| r[3].parse::<i64>().unwrap_or(-1)).sum();
    assert_eq!(committed, 3, "{}", groups.text());
    assert!(
        rows.iter().all(|r| r[5] == "0"),
        "lag must be 0: {}",
        groups.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_round_trips_lz4_and_zstd_batches_through_the_proxy_only() {
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    for (codec, id) in [("lz4", 3u8), ("zstd", 4u8)] {
        let topic = unique(&format!("kcat-{codec}"));
        common::create_topic(
            cluster,
            &topic,
            &["--partitions", "1", "--replication-factor", "3"],
        );
        let lines: Vec<String> = (0..50).map(|i| format!("{codec}-message-{i}")).collect();
        let input = lines.join("\n") + "\n";

        let produce = kcat(
            &["-b", &proxy.bootstrap, "-P", "-t", &topic, "-z", codec],
            Some(&input),
        );
        assert!(produce.output.status.success(), "{}", produce.text());
        produce.assert_only_proxy(&proxy, cluster);

        let consume = kcat(
            &[
                "-b",
                &proxy.bootstrap,
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            None,
        );
        assert!(consume.output.status.success(), "{}", consume.text());
        let got: Vec<String> = consume.stdout().lines().map(String::from).collect();
        assert_eq!(got, lines, "{}", consume.text());
        consume.assert_only_proxy(&proxy, cluster);

        // The batches on the broker carry the codec: the proxy forwarded them untouched.
        let records = common::kafka::fetch_raw(&cluster.bootstrap, &topic).await;
        let codecs = common::kafka::batch_codecs(&records);
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|c| *c == id),
            "{codec}: batch codecs {codecs:?}"
        );
    }
}
