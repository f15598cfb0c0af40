//! confluent-kafka (Python, librdkafka 2.x from PyPI) through the proxy: AdminClient
//! create, alter and describe configs, delete records; an idempotent producer; a
//! transactional producer that commits one transaction and aborts another; a
//! read-committed consumer group; and a write to a mirror topic, which the client
//! reports as INVALID_REQUEST. It dials only proxy ports.

mod common;

use std::time::Duration;

use common::replication::{link_and_mirror, one_partition_topic, replicating, source};
use common::{destination, repo_root, traced, unique, Proxy};

#[test]
fn confluent_kafka_python_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let python = repo_root().join("testbed/.cache/client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: testbed/install-deps makes it",
        python.display()
    );
    let src = source();
    let mirror = one_partition_topic(&src, "py-mirror", "from the source\n");
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-py")),
    );
    link_and_mirror(&proxy, &src, &mirror);
    let topic = unique("py-client");
    let group = unique("py-group");
    let script = repo_root().join("tests/clients/confluent_kafka_client.py");
    let out = traced(
        &python,
        &[
            script.to_str().unwrap(),
            &proxy.bootstrap,
            &topic,
            &mirror,
            &group,
        ],
        None,
        Duration::from_secs(180),
    );
    assert!(out.output.status.success(), "{}", out.text());
    out.assert_only_proxy(&proxy, destination());
    let seen: serde_json::Value =
        serde_json::from_str(out.stdout().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {}", out.text()));

    assert_eq!(seen["retention.ms"], "7200000", "{seen}");
    assert_eq!(seen["idempotent_errors"], serde_json::json!([]), "{seen}");
    assert_eq!(
        seen["transactional_errors"],
        serde_json::json!([]),
        "{seen}"
    );
    assert_eq!(
        seen["consumed"], 150,
        "100 idempotent + 50 committed: {seen}"
    );
    assert_eq!(seen["consumed_aborted"], 0, "{seen}");
    // Committed offsets count the aborted batch and the transaction markers too.
    assert!(seen["committed"].as_i64().unwrap_or(0) >= 150, "{seen}");
    assert_eq!(seen["low_watermark_after_delete"], 10, "{seen}");
    // librdkafka reports the error code, not the broker's message, in its delivery
    // report: what the README says this client's users see.
    assert_eq!(seen["mirror_write"]["code"], "INVALID_REQUEST", "{seen}");
    let message = seen["mirror_write"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Broker: Invalid request"), "{seen}");
    common::replication::wait_identical(&proxy, &src, &mirror);
    assert_eq!(
        common::replication::dump(&proxy.bootstrap, &mirror),
        ["0 0 from the source"],
        "the mirror holds the source's record only"
    );
}
