//! Real clients nobody here wrote, through the proxy: confluent-kafka (Python,
//! librdkafka 2.16 from PyPI), franz-go (with kadm), IBM/sarama and segmentio/kafka-go
//! (Go), KafkaJS (npm), and a Kafka Streams 4.1 application with exactly_once_v2
//! (Maven Central; its transactions are Streams' own, committing input offsets). Each runs what its users do, as far as the client can: admin
//! calls (create a topic, alter and describe configs, delete records), an idempotent
//! producer, a transactional producer that commits one transaction and aborts another
//! (kafka-go has neither: a plain writer), a read-committed consumer group that commits
//! its offsets; then it writes to a mirror topic and reports the refusal. Each dials
//! only proxy ports.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::replication::{
    dump, link_and_mirror, one_partition_topic, replicating, source, wait_identical,
};
use common::{destination, repo_root, traced, unique, Proxy};

/// Runs `client` (program and leading args) against a proxy with a mirror topic, and
/// returns what it printed as JSON and the mirror's name.
fn run_client(program: &Path, leading: &[&str], name: &str) -> (serde_json::Value, String) {
    let src = source();
    let mirror = one_partition_topic(&src, &format!("{name}-mirror"), "from the source\n");
    let proxy = Proxy::start(
        destination(),
        replicating(&unique(&format!("_mirrorgate-metadata-{name}"))),
    );
    link_and_mirror(&proxy, &src, &mirror);
    let topic = unique(&format!("{name}-client"));
    let group = unique(&format!("{name}-group"));
    let mut args = leading.to_vec();
    args.extend([proxy.bootstrap.as_str(), &topic, &mirror, &group]);
    let out = traced(program, &args, None, Duration::from_secs(180));
    assert!(out.output.status.success(), "{}", out.text());
    out.assert_only_proxy(&proxy, destination());
    let seen: serde_json::Value =
        serde_json::from_str(out.stdout().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {}", out.text()));

    assert_eq!(seen["retention.ms"], "7200000", "{seen}");
    // Each producer the client has (a client without transactions reports none).
    for producer in [
        "idempotent_errors",
        "transactional_errors",
        "producer_errors",
    ] {
        if let Some(errors) = seen.get(producer) {
            assert_eq!(errors, &serde_json::json!([]), "{producer}: {seen}");
        }
    }
    assert_eq!(seen["consumed"], 150, "every committed record: {seen}");
    assert_eq!(seen["consumed_aborted"], 0, "{seen}");
    // Committed offsets count aborted records and transaction markers too.
    assert!(seen["committed"].as_i64().unwrap_or(0) >= 150, "{seen}");
    if let Some(low) = seen.get("low_watermark_after_delete") {
        assert_eq!(low, 10, "{seen}");
    }
    // The refused write left the mirror as the source has it.
    wait_identical(&proxy, &src, &mirror);
    assert_eq!(dump(&proxy.bootstrap, &mirror), ["0 0 from the source"]);
    (seen, mirror)
}

#[test]
fn confluent_kafka_python_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let python = repo_root().join("testbed/.cache/client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: testbed/install-deps makes it",
        python.display()
    );
    let script = repo_root().join("tests/clients/confluent_kafka_client.py");
    let (seen, _) = run_client(&python, &[script.to_str().unwrap()], "py");
    // librdkafka's delivery report carries the error code, not the broker's message:
    // what the README says this client's users see.
    assert_eq!(seen["mirror_write"]["code"], "INVALID_REQUEST", "{seen}");
    let message = seen["mirror_write"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Broker: Invalid request"), "{seen}");
}

/// A Go client, built from `tests/clients/go/<name>` (modules from the Go proxy).
fn go_client(name: &str) -> PathBuf {
    let out = repo_root().join("target/test-clients").join(name);
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(format!("./{name}"))
        .current_dir(repo_root().join("tests/clients/go"))
        .output()
        .expect("run go build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

#[test]
fn franz_go_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let (seen, _) = run_client(&go_client("franz"), &[], "franz");
    // franz-go reports the code with its own description of it.
    let message = seen["mirror_write"].as_str().unwrap_or_default();
    assert!(message.starts_with("INVALID_REQUEST: "), "{seen}");
}

#[test]
fn sarama_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let (seen, _) = run_client(&go_client("sarama"), &[], "sarama");
    // sarama, too, reports its own text for the code.
    let message = seen["mirror_write"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "kafka server: This most likely occurs because of a request being malformed"
        ),
        "{seen}"
    );
}

#[test]
fn kafkajs_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let dir = repo_root().join("tests/clients/node");
    assert!(
        dir.join("node_modules/kafkajs").exists(),
        "KafkaJS is missing: testbed/install-deps installs it"
    );
    let script = dir.join("kafkajs_client.js");
    let node = Path::new("/usr/bin/env");
    let (seen, _) = run_client(node, &["node", script.to_str().unwrap()], "kafkajs");
    // KafkaJS, too, reports its own text for the code.
    assert_eq!(seen["mirror_write"]["type"], "INVALID_REQUEST", "{seen}");
}

#[test]
fn kafka_go_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let (seen, mirror) = run_client(&go_client("kafkago"), &[], "kafkago");
    // kafka-go passes the broker's message on.
    let message = seen["mirror_write"].as_str().unwrap_or_default();
    assert!(message.contains("[42] Invalid Request"), "{seen}");
    assert!(
        message.contains(&format!(
            "Cannot append records to read-only mirror topic '{mirror}'"
        )),
        "{seen}"
    );
}

#[test]
fn a_kafka_streams_exactly_once_app_works_through_the_proxy_and_is_told_a_mirror_is_read_only() {
    let classpath = common::java_clients_classpath();
    let (seen, mirror) = run_client(
        Path::new("/usr/bin/env"),
        &[
            "java",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            &classpath,
            "StreamsEosClient",
        ],
        "streams",
    );
    // The Java producer inside Streams passes the broker's message on.
    let message = seen["mirror_write"].as_str().unwrap_or_default();
    assert!(message.starts_with("InvalidRequestException: "), "{seen}");
    assert!(
        message.contains(&format!(
            "Cannot append records to read-only mirror topic '{mirror}'"
        )),
        "{seen}"
    );
}
