//! Many instances, one catalog: every instance (replicating or not) enforces the
//! read-only set it reads from the metadata topic, refuses writes while it has not read
//! it to the end, survives bad records in it, and shows what every other instance shows.

use crate::common;

use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;

use common::kafka;
use common::replication::{cli, link_and_mirror, replicating, text, wait_identical};
use common::{
    destination, end_offsets, http_get, kafka_tool_direct, kcat, test_port_base, unique, Cluster,
    Proxy, ProxyOptions,
};

fn source() -> Cluster {
    Cluster::up("mg-src", 1, test_port_base() + 530)
}

/// An instance on `metadata_topic` that only proxies (no copying, no link jobs).
fn proxy_only(metadata_topic: &str) -> ProxyOptions {
    ProxyOptions {
        extra_tables: format!(
            "\n[replicator]\nenabled = false\nmetadata_topic = \"{metadata_topic}\"\n"
        ),
        ..Default::default()
    }
}

/// A padding value: under the metadata topic's default `max.message.bytes` (1 MiB).
const PAD_BYTES: usize = 900_000;

/// How kcat (librdkafka) reports a produce refused with INVALID_REQUEST: it does not
/// print the broker's message.
const KCAT_REFUSAL: &str = "Broker: Invalid request";

/// Produces one record to `topic` through `bootstrap` with kcat; its output.
fn produce_through(bootstrap: &str, topic: &str, timeout_ms: u32) -> common::Traced {
    kcat(
        &[
            "-b",
            bootstrap,
            "-P",
            "-t",
            topic,
            "-X",
            &format!("message.timeout.ms={timeout_ms}"),
        ],
        Some("forbidden\n"),
    )
}

fn one_partition_topic(source: &Cluster, prefix: &str, records: &str) -> String {
    let topic = unique(prefix);
    common::create_topic(
        source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    let load = kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some(records),
    );
    assert!(load.output.status.success(), "{}", load.text());
    topic
}

/// Writes `lines` ("key|value") straight to the destination's metadata topic, past
/// the proxy, as someone with direct access (or a bug) could.
fn write_metadata_directly(topic: &str, lines: &str) {
    let out = kcat(
        &[
            "-b",
            &destination().bootstrap,
            "-P",
            "-t",
            topic,
            "-K",
            "|",
            "-X",
            "batch.num.messages=1",
        ],
        Some(lines),
    );
    assert!(out.output.status.success(), "{}", out.text());
}

#[test]
fn a_proxy_only_instance_refuses_writes_to_a_mirror_created_through_another() {
    let source = source();
    let metadata = unique("_mirrorgate-metadata-fleet");
    let replicator = Proxy::start(destination(), replicating(&metadata));
    let watcher = Proxy::start(destination(), proxy_only(&metadata));
    let topic = one_partition_topic(&source, "fleet-ro", "a\nb\n");
    link_and_mirror(&replicator, &source, &topic);
    // The mirror's record is in the metadata topic once the command returns; the other
    // instance long-polls it.
    std::thread::sleep(Duration::from_secs(1));
    let refused = produce_through(&watcher.bootstrap, &topic, 10_000);
    assert!(refused.text().contains(KCAT_REFUSAL), "{}", refused.text());
    let partitions = kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &watcher.bootstrap,
        "--alter",
        "--topic",
        &topic,
        "--partitions",
        "4",
    ]);
    let partitions_text = String::from_utf8_lossy(&partitions.stderr).to_string()
        + &String::from_utf8_lossy(&partitions.stdout);
    assert!(
        partitions_text.contains("read-only mirror topic"),
        "{partitions_text}"
    );
    wait_identical(&replicator, &source, &topic);
    assert!(end_offsets(destination(), &topic).ends_with(":2"));
}

#[test]
fn a_restarted_instance_refuses_writes_until_its_catalog_is_loaded() {
    let source = source();
    let metadata = unique("_mirrorgate-metadata-restart");
    let options = replicating(&metadata);
    let mut proxy = Proxy::start(destination(), options.clone());
    let topic = one_partition_topic(&source, "fleet-restart", "a\nb\nc\n");
    link_and_mirror(&proxy, &source, &topic);
    wait_identical(&proxy, &source, &topic);
    // Pad the metadata topic (keys of no kind the catalog knows) so that loading it
    // takes a while: 40 MB, more than two fetches.
    let pad = "x".repeat(PAD_BYTES);
    let lines: String = (0..44).map(|i| format!("pad/{i}|{pad}\n")).collect();
    write_metadata_directly(&metadata, &lines);

    proxy.respawn(&options);
    // /readyz polled on its own, often, from the start: it must say the catalog is
    // loading before it says ready.
    let admin = proxy.admin.clone();
    let watcher = std::thread::spawn(move || {
        let mut saw_not_ready = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match http_get(&admin, "/readyz") {
                Some((200, _)) => return saw_not_ready,
                Some((503, body)) if body.contains("catalog not loaded") => saw_not_ready = true,
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    // From the first accepted connection on, writes to the mirror are refused: while
    // loading (retriable, the producer retries) and after (read-only).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    while !watcher.is_finished() {
        if std::net::TcpStream::connect(&proxy.bootstrap).is_ok() {
            // Refused with a retriable error while loading: the delivery times out.
            let out = produce_through(&proxy.bootstrap, &topic, 1_500);
            assert!(!out.text().contains("Delivered"), "{}", out.text());
            attempts += 1;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", proxy.log());
    }
    let saw_not_ready = watcher.join().expect("readiness watcher");
    assert!(saw_not_ready, "/readyz never said the catalog was loading");
    assert!(attempts > 0, "no write was tried before the catalog loaded");
    let refused = produce_through(&proxy.bootstrap, &topic, 10_000);
    assert!(refused.text().contains(KCAT_REFUSAL), "{}", refused.text());
    assert!(
        end_offsets(destination(), &topic).ends_with(":3"),
        "a write landed: {}",
        end_offsets(destination(), &topic)
    );
}

#[test]
fn loading_survives_bad_records_a_moved_log_start_and_a_topic_larger_than_a_fetch() {
    let source = source();
    let metadata = unique("_mirrorgate-metadata-hostile");
    let options = replicating(&metadata);
    let mut proxy = Proxy::start(destination(), options.clone());
    // Records below the log start, then deleted: the catalog starts at the log start.
    write_metadata_directly(&metadata, "pad/0|old\npad/1|old\npad/2|old\n");
    let deleted = kafka_tool_direct(&[
        "kafka-delete-records",
        "--bootstrap-server",
        &destination().bootstrap,
        "--offset-json-file",
        &write_offsets_file(&proxy, &metadata, 3),
    ]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let topic = one_partition_topic(&source, "fleet-hostile", "a\nb\n");
    link_and_mirror(&proxy, &source, &topic);
    wait_identical(&proxy, &source, &topic);
    let unreadable = unique("fleet-unreadable");
    let pad = "y".repeat(PAD_BYTES);
    let mut lines = String::new();
    // A mirror record that does not parse: the name stays read-only.
    lines.push_str(&format!("mirror/{unreadable}|{{\"topic\": 12\n"));
    // A link sealed with a key this instance does not have.
    lines.push_str(
        "link/forged|{\"name\":\"forged\",\"link_id\":\"x\",\"config\":{\"bootstrap.servers\":\"h:1\",\"sasl.jaas.config\":\"sealed:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"},\"source_cluster_id\":\"c\",\"created_ms\":1,\"version\":1}\n",
    );
    // More than one fetch (16 MiB) of records after them.
    for i in 0..22 {
        lines.push_str(&format!("pad/{i}|{pad}\n"));
    }
    write_metadata_directly(&metadata, &lines);

    proxy.kill_and_restart(&options);
    let links = cli(&proxy, &["cluster-links", "--list"]);
    let links_text = text(&links);
    assert!(links.status.success(), "{links_text}");
    assert!(links_text.contains("forged"), "{links_text}");
    assert!(links_text.contains("FAILED"), "{links_text}");
    let mirrors = cli(&proxy, &["mirrors", "--describe", "--topics", &topic]);
    assert!(
        text(&mirrors).contains("State: ACTIVE"),
        "{}",
        text(&mirrors)
    );
    let refused = produce_through(&proxy.bootstrap, &topic, 10_000);
    assert!(refused.text().contains(KCAT_REFUSAL), "{}", refused.text());
    // No topic of that name exists, so no client library would send the write; a raw
    // Produce does, and is refused before it reaches the destination.
    let (code, message) = raw_produce(&proxy.bootstrap, &unreadable);
    assert_eq!(code, 42, "{message}");
    assert!(message.contains("read-only mirror topic"), "{message}");
    let metrics = proxy.metrics();
    for reason in ["json", "sealed_config"] {
        assert!(
            metrics.lines().any(
                |l| l.starts_with("mirrorgate_metadata_records_invalid_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            ),
            "{reason} not counted:\n{metrics}"
        );
    }
    // Copying goes on after the restart.
    let more = kcat(&["-b", &source.bootstrap, "-P", "-t", &topic], Some("c\n"));
    assert!(more.output.status.success());
    wait_identical(&proxy, &source, &topic);
}

/// One record produced to partition 0 of `topic` through `bootstrap` (Produce v9):
/// the partition's error code and message.
fn raw_produce(bootstrap: &str, topic: &str) -> (i16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = kafka::connect(bootstrap).await;
        let request = kafka::produce(
            &[(topic, uuid::Uuid::nil())],
            &kafka::batch(&["x"], Compression::None),
            -1,
        );
        let response = conn.call(&request, 9).await.expect("produce answered");
        let partition = &response.responses[0].partition_responses[0];
        (
            partition.error_code,
            partition
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    })
}

/// A kafka-delete-records offsets file for partition 0 of `topic`.
fn write_offsets_file(proxy: &Proxy, topic: &str, offset: i64) -> String {
    let path = proxy.dir().join("delete-records.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"partitions":[{{"topic":"{topic}","partition":0,"offset":{offset}}}],"version":1}}"#
        ),
    )
    .expect("write offsets file");
    path.to_string_lossy().into_owned()
}

#[test]
fn every_instance_shows_the_same_catalog_and_a_command_on_one_reaches_the_others() {
    let source = source();
    let metadata = unique("_mirrorgate-metadata-same");
    let first = Proxy::start(destination(), replicating(&metadata));
    let second = Proxy::start(destination(), proxy_only(&metadata));
    let third = Proxy::start(destination(), proxy_only(&metadata));
    let topic = one_partition_topic(&source, "fleet-same", "a\nb\n");
    let link = link_and_mirror(&first, &source, &topic);
    wait_identical(&first, &source, &topic);
    std::thread::sleep(Duration::from_secs(1));
    let describe = |proxy: &Proxy| {
        let out = cli(proxy, &["mirrors", "--describe", "--topics", &topic]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    for proxy in [&first, &second, &third] {
        let links = text(&cli(proxy, &["cluster-links", "--list"]));
        assert!(links.contains(&link), "{links}");
        assert!(describe(proxy).contains("State: ACTIVE"));
    }
    // A command through an instance that does not copy: applied by the one that does.
    let pause = cli(&second, &["mirrors", "--pause", "--topics", &topic]);
    assert!(pause.status.success(), "{}", text(&pause));
    std::thread::sleep(Duration::from_secs(1));
    for proxy in [&first, &second, &third] {
        assert!(
            describe(proxy).contains("State: PAUSED"),
            "{}",
            describe(proxy)
        );
    }
    let more = kcat(&["-b", &source.bootstrap, "-P", "-t", &topic], Some("c\n"));
    assert!(more.output.status.success());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        end_offsets(destination(), &topic).ends_with(":2"),
        "copied while paused"
    );
    let resume = cli(&third, &["mirrors", "--resume", "--topics", &topic]);
    assert!(resume.status.success(), "{}", text(&resume));
    wait_identical(&first, &source, &topic);
    // Back to back through different instances: each command reads the metadata topic
    // up to its end first, so the second never answers from a view without the first.
    for round in 0..5 {
        let pause = cli(&second, &["mirrors", "--pause", "--topics", &topic]);
        assert!(pause.status.success(), "round {round}: {}", text(&pause));
        let resume = cli(&third, &["mirrors", "--resume", "--topics", &topic]);
        assert!(resume.status.success(), "round {round}: {}", text(&resume));
    }
    wait_identical(&first, &source, &topic);
    // Promote needs the link's final syncs: only a replicating instance runs them.
    let refused = cli(&second, &["mirrors", "--promote", "--topics", &topic]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("enabled = true"),
        "{}",
        text(&refused)
    );
}

/// A membership request for `group` through `bootstrap`: the error code answered.
fn join_and_leave(bootstrap: &str, group: &str) -> (i16, i16) {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, LeaveGroupRequest};
    use kafka_protocol::protocol::StrBytes;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = kafka::connect(bootstrap).await;
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]))]);
        let joined = conn.call(&join, 5).await.expect("JoinGroup answered");
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_members(vec![
                MemberIdentity::default().with_member_id(StrBytes::from_static_str("someone"))
            ]);
        let left = conn.call(&leave, 3).await.expect("LeaveGroup answered");
        (joined.error_code, left.error_code)
    })
}

#[test]
fn clients_cannot_join_or_leave_the_fleets_group_through_the_proxy() {
    let metadata = unique("_mirrorgate-metadata-group");
    let proxy = Proxy::start(destination(), replicating(&metadata));
    let group = format!("mirrorgate.{metadata}");
    assert_eq!(join_and_leave(&proxy.bootstrap, &group), (30, 30));
    // Other groups are the clients' own business.
    let (joined, _) = join_and_leave(&proxy.bootstrap, &unique("clients-group"));
    assert_ne!(joined, 30);
    // Describing the fleet's group through the proxy still works.
    let out = kafka_tool_direct(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        &proxy.bootstrap,
        "--describe",
        "--group",
        &group,
        "--members",
    ]);
    let described = String::from_utf8_lossy(&out.stdout);
    assert!(described.contains("mirrorgate-replicator"), "{described}");
}

/// Whether the destination has `topic` (its end offsets can be read).
fn end_offsets_known(topic: &str) -> bool {
    let out = kafka_tool_direct(&[
        "kafka-get-offsets",
        "--bootstrap-server",
        &destination().bootstrap,
        "--topic",
        topic,
    ]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(topic)
}

/// The records of `key` in the metadata topic `topic`, oldest first, read past the proxy.
fn metadata_values(topic: &str, key: &str) -> Vec<serde_json::Value> {
    let out = kcat(
        &[
            "-b",
            &destination().bootstrap,
            "-C",
            "-t",
            topic,
            "-e",
            "-q",
            "-f",
            "%k|%s\\n",
        ],
        None,
    );
    assert!(out.output.status.success(), "{}", out.text());
    String::from_utf8_lossy(&out.output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}|")))
        .filter_map(|value| serde_json::from_str(value).ok())
        .collect()
}

/// A mirror record as `mirrors --create` leaves it when the topic was never created
/// (its instance died between the two writes, or the destination did not answer):
/// `like`'s record for another source topic, marked pending, `age_ms` old.
fn pending_record(like: &serde_json::Value, topic: &str, age_ms: u64) -> String {
    let mut record = like.clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    record["topic"] = topic.into();
    record["source_topic"] = topic.into();
    record["source_topic_id"] = serde_json::Value::Null;
    record["version"] = 1.into();
    record["state_time_ms"] = (now_ms - age_ms).into();
    record["topic_pending"] = true.into();
    format!("mirror/{topic}|{record}\n")
}

#[test]
fn a_mirror_left_without_its_topic_gets_it_from_a_retry_or_the_links_owner() {
    let source = source();
    let metadata = unique("_mirrorgate-metadata-pending");
    let replicator = Proxy::start(destination(), replicating(&metadata));
    let first = one_partition_topic(&source, "fleet-first", "a\nb\n");
    let link = link_and_mirror(&replicator, &source, &first);
    wait_identical(&replicator, &source, &first);
    // A mirror created in one go ends with its pending mark cleared.
    let written = metadata_values(&metadata, &format!("mirror/{first}"));
    assert_eq!(
        written.first().map(|r| r["topic_pending"] == true),
        Some(true)
    );
    let created = written.last().cloned().unwrap_or_default();
    assert!(created.get("topic_pending").is_none(), "{created}");

    // Left pending a moment ago: read-only, no topic yet, and a retry of the command
    // creates the topic (it used to answer that the mirror exists).
    let retried = one_partition_topic(&source, "fleet-retried", "x\ny\n");
    write_metadata_directly(&metadata, &pending_record(&created, &retried, 0));
    common::eventually(
        "the pending mirror is known",
        Duration::from_secs(30),
        || {
            let out = cli(
                &replicator,
                &["mirrors", "--describe", "--topics", &retried],
            );
            out.status.success().then_some(())
        },
    );
    // Nothing is written meanwhile: there is no topic (the test brokers auto-create none).
    let refused = produce_through(&replicator.bootstrap, &retried, 5_000);
    assert!(
        refused.text().contains("Delivery failed"),
        "{}",
        refused.text()
    );
    assert!(!end_offsets_known(&retried));
    let retry = cli(
        &replicator,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &retried,
            "--link",
            &link,
        ],
    );
    assert!(retry.status.success(), "{}", text(&retry));
    wait_identical(&replicator, &source, &retried);

    // Left pending long ago (past the grace): the link's owner creates the topic.
    let orphan = one_partition_topic(&source, "fleet-orphan", "p\nq\nr\n");
    write_metadata_directly(&metadata, &pending_record(&created, &orphan, 600_000));
    wait_identical(&replicator, &source, &orphan);
    for topic in [&retried, &orphan] {
        common::eventually(
            "the pending mark is cleared",
            Duration::from_secs(30),
            || {
                let last = metadata_values(&metadata, &format!("mirror/{topic}")).pop()?;
                last.get("topic_pending").is_none().then_some(())
            },
        );
    }
    let refused = produce_through(&replicator.bootstrap, &orphan, 10_000);
    assert!(refused.text().contains(KCAT_REFUSAL), "{}", refused.text());
}
