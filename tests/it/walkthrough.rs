//! The seed walkthrough with mirrorgate's CLI, command for command: a link from a
//! config file with a group filter file, a mirror topic, records copied with their
//! source offsets, the Java producer through the proxy refused with Confluent's
//! message, failover, and the same producer then succeeding. State survives a restart.

use crate::common;

use std::time::Duration;

use common::replication::{cli, dump, one_partition_topic, text};
use common::{
    destination, eventually, kafka_tool, kcat, test_port_base, unique, Cluster, Proxy, ProxyOptions,
};

#[test]
fn seed_walkthrough_link_mirror_refusal_failover() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let dest = destination();
    let metadata_topic = unique("_mirrorgate-metadata-walkthrough");
    let options = ProxyOptions {
        extra_tables: format!(
            "\n[replicator]\nenabled = true\nmetadata_topic = \"{metadata_topic}\"\n"
        ),
        ..Default::default()
    };
    let mut proxy = Proxy::start(dest, options.clone());
    let topic = unique("users");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "2", "--replication-factor", "1"],
    );
    let records: String = (0..40).map(|i| format!("user-{i}\n")).collect();
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic, "-z", "lz4"],
        Some(&records)
    )
    .output
    .status
    .success());

    // config.txt and config.json, as in the walkthrough.
    let dir = tempfile::tempdir().unwrap();
    let config_txt = dir.path().join("config.txt");
    std::fs::write(
        &config_txt,
        format!(
            "consumer.offset.sync.enable=true\nbootstrap.servers={}\n",
            source.bootstrap
        ),
    )
    .unwrap();
    let config_json = dir.path().join("config.json");
    std::fs::write(
        &config_json,
        r#"{"groupFilters": [{"name": "connect-FileStreamSinkConnectorConnector_1", "patternType": "LITERAL", "filterType": "INCLUDE"}]}"#,
    )
    .unwrap();

    let link = unique("test-link");
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--create",
            "--link",
            &link,
            "--config-file",
            config_txt.to_str().unwrap(),
            "--consumer-group-filters-json-file",
            config_json.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).trim(),
        format!("Cluster link '{link}' creation successfully completed.")
    );

    let out = cli(&proxy, &["cluster-links", "--list"]);
    assert!(
        text(&out).contains(&format!("Link name: '{link}', link ID: '")),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("remote cluster available: 'true'"),
        "{}",
        text(&out)
    );

    let out = cli(
        &proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &topic,
            "--link",
            &link,
        ],
    );
    assert_eq!(
        text(&out).trim(),
        format!("Created topic {topic}."),
        "{}",
        text(&out)
    );
    let again = cli(
        &proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &topic,
            "--link",
            &link,
        ],
    );
    assert!(
        !again.status.success()
            && text(&again).contains(&format!("Topic '{topic}' already exists.")),
        "{}",
        text(&again)
    );

    // Records copied with the same partition and offset, read through the proxy.
    let expected = dump(&source.bootstrap, &topic);
    assert_eq!(expected.len(), 40);
    eventually("the mirror caught up", Duration::from_secs(60), || {
        let read = dump(&proxy.bootstrap, &topic);
        if read == expected {
            return Ok(());
        }
        Err(format!(
            "read {read:?} through the proxy, {} on the destination itself, expected {expected:?}",
            dump(&dest.bootstrap, &topic).len()
        ))
    });
    let out = cli(&proxy, &["mirrors", "--describe", "--topics", &topic]);
    let described = text(&out);
    assert!(
        described.contains(&format!("Topic: {topic}\tLinkName: {link}")),
        "{described}"
    );
    assert!(described.contains("State: ACTIVE"), "{described}");
    assert!(
        described.contains("Partition: 1\tState: ACTIVE\tDestLogEndOffset:"),
        "{described}"
    );
    // The same, for scripts: the API's objects as JSON and as YAML.
    let out = cli(
        &proxy,
        &[
            "mirrors",
            "--describe",
            "--topics",
            &topic,
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(parsed[0]["mirror_topic_name"], topic.as_str(), "{parsed}");
    assert_eq!(parsed[0]["link_name"], link.as_str(), "{parsed}");
    assert_eq!(parsed[0]["mirror_status"], "ACTIVE", "{parsed}");
    let lags = parsed[0]["mirror_lags"].as_array().expect("mirror_lags");
    assert_eq!(lags.len(), 2, "{parsed}");
    assert!(lags.iter().all(|p| p["lag"] == 0), "{parsed}");
    let out = cli(&proxy, &["cluster-links", "--list", "--output", "yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("link_name: {link}")),
        "{}",
        text(&out)
    );

    // Replication metrics: per-partition lag (0 now), records copied, mirrors by state.
    let metrics = proxy.metrics();
    let lag_line = format!(
        "mirrorgate_mirror_partition_lag{{link=\"{link}\",mirror=\"{topic}\",partition=\"1\"}} 0"
    );
    assert!(metrics.contains(&lag_line), "{metrics}");
    let copied: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "mirrorgate_replicated_records_total{{link=\"{link}\"}}"
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(copied, 40.0, "{metrics}");
    assert!(
        metrics.contains("mirrorgate_mirror_topics{state=\"ACTIVE\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("mirrorgate_link_available{{link=\"{link}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirrorgate_links_by_state{state=\"ACTIVE\"} 1"),
        "{metrics}"
    );
    // The link's max lag gauge is refreshed every topic.config.sync.ms.
    let max_lag = format!("mirrorgate_link_max_lag{{link=\"{link}\"}} 0");
    eventually("the link's max lag is 0", Duration::from_secs(30), || {
        let metrics = proxy.metrics();
        if metrics.contains(&max_lag) {
            return Ok(());
        }
        Err(metrics)
    });

    // The mirror is read-only through the proxy.
    let refused = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &topic,
        ],
        Some("mallory\n"),
    );
    let message = format!(
        "InvalidRequestException: Cannot append records to read-only mirror topic '{topic}'"
    );
    assert!(refused.text().contains(&message), "{}", refused.text());

    // Promote waits for zero lag (there is none now); failover of a stopped mirror is refused.
    let out = cli(&proxy, &["mirrors", "--failover", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "Request for stopping topic {topic}'s mirror was successfully scheduled."
        )),
        "{}",
        text(&out)
    );
    let out = cli(&proxy, &["mirrors", "--failover", "--topics", &topic]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "Topic '{topic}' has already stopped its mirror from '{link}'"
        )),
        "{}",
        text(&out)
    );

    // The same producer now writes to the topic.
    let accepted = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &topic,
        ],
        Some("after-failover\n"),
    );
    assert!(accepted.output.status.success(), "{}", accepted.text());
    assert!(
        !accepted.text().contains("InvalidRequestException"),
        "{}",
        accepted.text()
    );
    assert_eq!(dump(&proxy.bootstrap, &topic).len(), 41);

    // A restarted mirrorgate knows the link and the stopped mirror.
    drop(proxy);
    proxy = Proxy::start(dest, options);
    let out = cli(&proxy, &["mirrors", "--describe", "--topics", &topic]);
    assert!(text(&out).contains("State: STOPPED"), "{}", text(&out));
    let out = cli(&proxy, &["cluster-links", "--delete", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn promote_is_refused_while_there_is_lag_and_link_configs_are_validated() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let dest = destination();
    let options = ProxyOptions {
        extra_tables: format!(
            "\n[replicator]\nenabled = true\nmetadata_topic = \"{}\"\n",
            unique("_mirrorgate-metadata-promote")
        ),
        ..Default::default()
    };
    let proxy = Proxy::start(dest, options);
    let ready = cli(&proxy, &["cluster-links", "--list"]);
    assert!(ready.status.success(), "{}", text(&ready));

    let bad = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            "broken",
            "--config",
            "bootstrap.servers=nohost,cluster.link.paused=maybe,no.such.key=1",
        ],
    );
    assert!(!bad.status.success());
    for key in ["bootstrap.servers", "cluster.link.paused", "no.such.key"] {
        assert!(text(&bad).contains(key), "{key}: {}", text(&bad));
    }
    let unreachable = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            "gone",
            "--config",
            &format!("bootstrap.servers=127.0.0.1:{}", common::free_port()),
        ],
    );
    assert!(
        !unreachable.status.success() && text(&unreachable).contains("unreachable"),
        "{}",
        text(&unreachable)
    );
    let out = cli(&proxy, &["cluster-links", "--list"]);
    assert!(
        !text(&out).contains("broken") && !text(&out).contains("gone"),
        "nothing created: {}",
        text(&out)
    );

    // A mirror of a paused link (LINK_PAUSED) with records on the source has lag:
    // promote is refused.
    let link = unique("paused-link");
    let topic = one_partition_topic(
        &source, "lagging", "a
b
c
",
    );
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!(
                "bootstrap.servers={},cluster.link.paused=true",
                source.bootstrap
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(cli(
        &proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &topic,
            "--link",
            &link
        ]
    )
    .status
    .success());
    let out = cli(&proxy, &["mirrors", "--describe", "--topics", &topic]);
    assert!(text(&out).contains("State: LINK_PAUSED"), "{}", text(&out));
    let out = cli(&proxy, &["cluster-links", "--describe", "--link", &link]);
    assert!(
        text(&out).contains("link state: 'PAUSED'"),
        "{}",
        text(&out)
    );
    let out = cli(&proxy, &["mirrors", "--promote", "--topics", &topic]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot be promoted while it has mirroring lag"),
        "{}",
        text(&out)
    );
    // Keys fixed at creation cannot be altered; nothing changes.
    let out = alter(&proxy, &link, "cluster.link.prefix=x.");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("fixed at link creation"),
        "{}",
        text(&out)
    );
    // Resume the link with --alter; the mirror catches up, then promote succeeds.
    let out = alter(&proxy, &link, "cluster.link.paused=false");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "Cluster link '{link}' alter successfully completed."
        )),
        "{}",
        text(&out)
    );
    let (code, body) = common::http_get(
        &proxy.admin,
        &format!("/kafka/v3/clusters/-/links/{link}/configs"),
    )
    .expect("GET link configs");
    assert_eq!(code, 200, "{body}");
    let configs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let paused = configs["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "cluster.link.paused");
    assert_eq!(
        paused.map(|c| c["value"].clone()),
        Some("false".into()),
        "{body}"
    );
    let promoted = eventually("the promote succeeds", Duration::from_secs(60), || {
        let out = cli(&proxy, &["mirrors", "--promote", "--topics", &topic]);
        if out.status.success() {
            return Ok(text(&out));
        }
        Err(text(&out))
    });
    assert!(
        promoted.contains("Calculating max offset and ms lag for mirror topics"),
        "{promoted}"
    );
    let out = cli(&proxy, &["mirrors", "--describe", "--topics", &topic]);
    assert!(text(&out).contains("State: STOPPED"), "{}", text(&out));
    assert!(cli(&proxy, &["cluster-links", "--delete", "--link", &link])
        .status
        .success());
}

#[test]
fn source_partitions_added_are_mirrored_and_a_recreated_source_fails_the_mirror() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let dest = destination();
    let options = ProxyOptions {
        extra_tables: format!(
            "\n[replicator]\nenabled = true\nmetadata_topic = \"{}\"\n",
            unique("_mirrorgate-metadata-shape")
        ),
        ..Default::default()
    };
    let proxy = Proxy::start(dest, options);
    let link = unique("shape-link");
    let topic = unique("growing");
    common::create_topic(
        &source,
        &topic,
        &[
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=123456789",
        ],
    );
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic, "-p", "0"],
        Some("p0-a\np0-b\n")
    )
    .output
    .status
    .success());
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!("bootstrap.servers={}", source.bootstrap),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created = cli(
        &proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &topic,
            "--link",
            &link,
            "--config",
            "segment.bytes=1048576",
        ],
    );
    assert!(created.status.success(), "{}", text(&created));
    // The mirror has the source's own configs plus the override.
    let configs = common::kafka_tool_direct(&[
        "kafka-configs",
        "--bootstrap-server",
        &dest.bootstrap,
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
    ]);
    let configs = String::from_utf8_lossy(&configs.stdout).to_string();
    assert!(
        configs.contains("retention.ms=123456789") && configs.contains("segment.bytes=1048576"),
        "{configs}"
    );

    // A partition added on the source is added on the mirror and copied.
    let alter = common::kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &source.bootstrap,
        "--alter",
        "--topic",
        &topic,
        "--partitions",
        "2",
    ]);
    assert!(
        alter.status.success(),
        "{}",
        String::from_utf8_lossy(&alter.stderr)
    );
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic, "-p", "1"],
        Some("p1-a\np1-b\np1-c\n")
    )
    .output
    .status
    .success());
    let expected = dump(&source.bootstrap, &topic);
    assert_eq!(expected.len(), 5);
    eventually(
        "the new partition is mirrored",
        Duration::from_secs(60),
        || {
            let mirrored = dump(&proxy.bootstrap, &topic);
            if mirrored == expected {
                return Ok(());
            }
            Err(format!("{mirrored:?}"))
        },
    );
    let described = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
    assert!(
        described.contains("Partition: 1\tState: ACTIVE"),
        "{described}"
    );

    // Deleted and recreated on the source: a different topic; the mirror fails.
    let delete = common::kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &source.bootstrap,
        "--delete",
        "--topic",
        &topic,
    ]);
    assert!(delete.status.success());
    let described = eventually("the mirror FAILED", Duration::from_secs(60), || {
        let described = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
        if described.contains("State: FAILED") {
            return Ok(described);
        }
        Err(described)
    });
    assert!(
        described.contains("SOURCE_TOPIC_MAY_BE_DELETED")
            || described.contains("SOURCE_TOPIC_ID_CHANGED"),
        "{described}"
    );
    assert!(
        proxy
            .metrics()
            .contains("mirrorgate_mirror_failures_total{reason=\"SOURCE_TOPIC_"),
        "{}",
        proxy.metrics()
    );
    // Still read-only: a FAILED mirror is not a writable topic.
    let refused = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &topic,
        ],
        Some("x\n"),
    );
    assert!(
        refused.text().contains("read-only mirror topic"),
        "{}",
        refused.text()
    );
}

/// `cluster-links --alter --link LINK --config CONFIG`.
fn alter(proxy: &Proxy, link: &str, config: &str) -> std::process::Output {
    cli(
        proxy,
        &[
            "cluster-links",
            "--alter",
            "--link",
            link,
            "--config",
            config,
        ],
    )
}

/// `mirrors --create --wait` returns once the mirror has caught up with its source,
/// printing plain progress lines (not a terminal here); `--promote --wait` once the
/// mirror stopped.
#[test]
fn create_and_promote_wait_for_the_mirror() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let values: String = (0..3000).map(|i| format!("waited-{i}\n")).collect();
    let topic = one_partition_topic(&source, "waited", &values);
    let proxy = Proxy::start(
        destination(),
        common::replication::replicating(&unique("_mirrorgate-metadata-wait")),
    );
    let config = format!("bootstrap.servers={}", source.bootstrap);
    let link = common::replication::new_link(&proxy, "wait-link", &["--config", &config]);
    let out = common::replication::create_mirror(&proxy, &topic, &link, &["--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains(&format!("{topic}: ")), "{shown}");
    assert!(shown.contains("records/s, ETA"), "{shown}");
    assert!(shown.contains("caught up with the source"), "{shown}");
    // Returned only once every record is there.
    assert_eq!(
        dump(&proxy.bootstrap, &topic),
        dump(&source.bootstrap, &topic)
    );

    let out = cli(
        &proxy,
        &["mirrors", "--promote", "--topics", &topic, "--wait"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("Mirror topics {topic} stopped.")),
        "{}",
        text(&out)
    );
}
