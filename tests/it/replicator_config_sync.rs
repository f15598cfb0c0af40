//! Topic config sync against real clusters, through the library entry point: source
//! changes reach the mirror, overrides and operators' changes stay, always-mirrored
//! keys are put back, a missing topic is reported without stopping the others; the
//! sync's memory is stored in the metadata topic, so the next instance to run the link
//! tells a source change from an operator's, and a mirror with no memory keeps every
//! difference.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::kafka::{topic_configs, wait_topic_config};
use common::replication::source;
use common::{destination, kafka_tool_direct, unique, Cluster};
use mirrorgate::config::Config;
use mirrorgate::registry::{Registry, Snapshot};
use mirrorgate::replicator::catalog::Catalog;
use mirrorgate::replicator::config_sync::{ConfigSync, ConfigSyncReport, MirrorConfigs};
use mirrorgate::replicator::link_config::LinkConfig;
use mirrorgate::replicator::source::Source;
use mirrorgate::replicator::store;
use mirrorgate::replicator::Destination;

fn destination_of(cluster: &Cluster, metadata_topic: &str) -> Destination {
    let text = format!(
        "[proxy]\nbind = \"127.0.0.1:1\"\nadvertised_host = \"127.0.0.1\"\n\
         broker_port_base = 2\n[destination]\nbootstrap_servers = \"{}\"\n\
         [replicator]\nmetadata_topic = \"{metadata_topic}\"\n",
        cluster.bootstrap
    );
    let config = Config::parse(&text, Path::new("mirrorgate.toml")).expect("config");
    let snapshot = Snapshot::build(config).expect("snapshot");
    Destination::new(Arc::new(Registry::new(snapshot)))
}

fn source_of(cluster: &Cluster) -> Source {
    let properties = BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap.clone())]);
    let config = LinkConfig::from_properties(properties).expect("link config");
    Source::from_config(&config).expect("source")
}

/// `kafka-configs --alter` straight against a cluster, e.g. `--add-config k=v,...`.
fn alter(cluster: &Cluster, topic: &str, change: &[&str]) {
    let mut args = vec![
        "kafka-configs",
        "--bootstrap-server",
        &cluster.bootstrap,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        topic,
    ];
    args.extend_from_slice(change);
    let out = kafka_tool_direct(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The test's keys of the mirror, as the sync sees them (first destination broker).
async fn mirror_keys(topic: &str) -> BTreeMap<String, String> {
    let mut configs = topic_configs(&destination().bootstrap, topic).await;
    configs.retain(|k, _| {
        [
            "retention.ms",
            "segment.ms",
            "delete.retention.ms",
            "cleanup.policy",
            "max.message.bytes",
        ]
        .contains(&k.as_str())
    });
    configs
}

fn assert_report(report: &ConfigSyncReport, changed: u64, missing: &str) {
    assert_eq!(report.changed, changed, "{report:?}");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains(missing), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn source_changes_reach_the_mirror_while_overrides_and_operator_changes_stay() {
    let src = source();
    let dest = destination();
    let topic = unique("cfg-src");
    let mirror = unique("cfg-mirror");
    common::create_topic(
        &src,
        &topic,
        &[
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
            "--config",
            "segment.ms=600000",
            "--config",
            "delete.retention.ms=86400000",
        ],
    );
    // As a mirror is created: the source's configs, then the creation override.
    common::create_topic(
        dest,
        &mirror,
        &[
            "--partitions",
            "1",
            "--config",
            "retention.ms=3600000",
            "--config",
            "segment.ms=900000",
            "--config",
            "delete.retention.ms=86400000",
        ],
    );
    wait_topic_config(&dest.bootstrap, &mirror, "segment.ms", Some("900000")).await;
    let missing = unique("cfg-missing");
    let mirrors = [
        MirrorConfigs {
            source_topic: topic.clone(),
            mirror_topic: mirror.clone(),
            overrides: map(&[("segment.ms", "900000")]),
            synced: None,
        },
        MirrorConfigs {
            source_topic: missing.clone(),
            mirror_topic: missing.clone(),
            overrides: BTreeMap::new(),
            synced: None,
        },
    ];
    let metadata = unique("_mirrorgate-metadata-cfg");
    let (source, destination) = (source_of(&src), destination_of(dest, &metadata));
    store::ensure_topic(&destination)
        .await
        .expect("metadata topic");
    // A topic just created has no leader for a moment: the round's first write to it
    // would fail with "no leader" and count as an error of its own.
    common::eventually_async(
        "the new metadata topic has a leader",
        std::time::Duration::from_secs(60),
        async || {
            let mut any = common::kafka::connect(&format!("127.0.0.1:{}", dest.ports[0])).await;
            let response = mirrorgate::kafka::admin::metadata(&mut any, Some(&[metadata.as_str()]))
                .await
                .ok()?;
            mirrorgate::kafka::admin::leader_of(&response, &metadata, 0)
        },
    )
    .await;
    let mut sync = ConfigSync::new();
    let mirrored = |_: &str| true;

    let report = sync
        .round(&source, &destination, "cfg-link", &mirrors, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 0, &missing);

    // An operator's change on the mirror, then changes on the source, overridden and
    // operator-owned keys included.
    alter(
        dest,
        &mirror,
        &["--add-config", "delete.retention.ms=43200000"],
    );
    alter(
        &src,
        &topic,
        &[
            "--add-config",
            "retention.ms=7200000,cleanup.policy=compact,segment.ms=1200000,delete.retention.ms=1000",
        ],
    );
    wait_topic_config(
        &dest.bootstrap,
        &mirror,
        "delete.retention.ms",
        Some("43200000"),
    )
    .await;
    wait_topic_config(&src.bootstrap, &topic, "delete.retention.ms", Some("1000")).await;

    // A round that finds the mirror promoted by the time it would write leaves it alone.
    let promoted = |_: &str| false;
    let report = sync
        .round(&source, &destination, "cfg-link", &mirrors, &promoted)
        .await
        .expect("round");
    assert_report(&report, 0, &missing);
    assert_eq!(
        topic_configs(&dest.bootstrap, &mirror)
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("3600000"),
        "a promoted mirror is not written"
    );

    let report = sync
        .round(&source, &destination, "cfg-link", &mirrors, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 2, &missing);
    wait_topic_config(&dest.bootstrap, &mirror, "cleanup.policy", Some("compact")).await;
    assert_eq!(
        mirror_keys(&mirror).await,
        map(&[
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", "43200000"),
            ("retention.ms", "7200000"),
            ("segment.ms", "900000"),
        ])
    );

    let report = sync
        .round(&source, &destination, "cfg-link", &mirrors, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 0, &missing);

    // The source drops a key; an always-mirrored key set on the mirror behind the
    // proxy's back is taken back to the source's (unset) value.
    alter(&src, &topic, &["--delete-config", "retention.ms"]);
    alter(dest, &mirror, &["--add-config", "max.message.bytes=65536"]);
    wait_topic_config(&src.bootstrap, &topic, "retention.ms", None).await;
    wait_topic_config(&dest.bootstrap, &mirror, "max.message.bytes", Some("65536")).await;
    let report = sync
        .round(&source, &destination, "cfg-link", &mirrors, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 2, &missing);
    wait_topic_config(&dest.bootstrap, &mirror, "max.message.bytes", None).await;
    let expected = map(&[
        ("cleanup.policy", "compact"),
        ("delete.retention.ms", "43200000"),
        ("segment.ms", "900000"),
    ]);
    assert_eq!(mirror_keys(&mirror).await, expected);

    // Another instance takes the link over with the memory stored in the metadata
    // topic: a source change still reaches the mirror, the operator's value stays.
    alter(&src, &topic, &["--add-config", "retention.ms=3600000"]);
    wait_topic_config(&src.bootstrap, &topic, "retention.ms", Some("3600000")).await;
    let stored = stored_memory(&metadata, &mirror);
    assert!(stored.is_some(), "the sync stored its memory");
    let handed_over = [
        MirrorConfigs {
            synced: stored,
            ..mirrors[0].clone()
        },
        mirrors[1].clone(),
    ];
    let report = ConfigSync::new()
        .round(&source, &destination, "cfg-link", &handed_over, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 1, &missing);
    let mut expected = expected;
    expected.insert("retention.ms".into(), "3600000".into());
    wait_topic_config(&dest.bootstrap, &mirror, "retention.ms", Some("3600000")).await;
    assert_eq!(mirror_keys(&mirror).await, expected);

    // With no stored memory every difference is kept, the source's change included.
    alter(&src, &topic, &["--add-config", "retention.ms=1800000"]);
    wait_topic_config(&src.bootstrap, &topic, "retention.ms", Some("1800000")).await;
    let report = ConfigSync::new()
        .round(&source, &destination, "cfg-link", &mirrors, &mirrored)
        .await
        .expect("round");
    assert_report(&report, 0, &missing);
    assert_eq!(mirror_keys(&mirror).await, expected);
}

/// The config sync's memory of `mirror` as the catalog reads it from the metadata topic.
fn stored_memory(metadata: &str, mirror: &str) -> Option<BTreeMap<String, String>> {
    let out = common::kcat(
        &[
            "-b",
            &destination().bootstrap,
            "-C",
            "-t",
            metadata,
            "-e",
            "-q",
            "-f",
            "%k\\t%s\\n",
        ],
        None,
    );
    assert!(out.output.status.success(), "{}", out.text());
    let mut catalog = Catalog::default();
    for line in out.stdout().lines() {
        if let Some((key, value)) = line.split_once('\t') {
            catalog.apply(Some(key.as_bytes()), Some(value.as_bytes()), None);
        }
    }
    catalog.synced_configs(mirror).cloned()
}

/// Through the real binary: a link syncs configs on its own interval, an override
/// given at mirror creation survives, the proxy refuses an always-mirrored key on the
/// mirror, and after promote every config is the operator's.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_link_syncs_configs_and_promote_frees_them() {
    use common::replication::{cli, replicating, text};
    let source = source();
    let proxy = tokio::task::block_in_place(|| {
        common::Proxy::start(
            destination(),
            replicating(&unique("_mirrorgate-metadata-configs")),
        )
    });
    let topic = unique("synced-configs");
    common::create_topic(
        &source,
        &topic,
        &[
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=100000",
        ],
    );
    let link = unique("config-link");
    let run = |args: &[&str]| tokio::task::block_in_place(|| cli(&proxy, args));
    let out = run(&[
        "cluster-links",
        "--create",
        "--link",
        &link,
        "--config",
        &format!(
            "bootstrap.servers={},topic.config.sync.ms=300",
            source.bootstrap
        ),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&[
        "mirrors",
        "--create",
        "--mirror-topic",
        &topic,
        "--link",
        &link,
        "--config",
        "retention.ms=7777777",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let dest = destination().bootstrap.clone();
    wait_topic_config(&dest, &topic, "retention.ms", Some("7777777")).await;

    alter(
        &source,
        &topic,
        &[
            "--add-config",
            "cleanup.policy=[compact,delete],delete.retention.ms=5555,retention.ms=200000",
        ],
    );
    wait_topic_config(&dest, &topic, "cleanup.policy", Some("compact,delete")).await;
    wait_topic_config(&dest, &topic, "delete.retention.ms", Some("5555")).await;
    assert_eq!(
        topic_configs(&dest, &topic)
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("7777777"),
        "the override set at creation stays"
    );

    let through_proxy = |config: &str| {
        kafka_tool_direct(&[
            "kafka-configs",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--add-config",
            config,
        ])
    };
    let refused = tokio::task::block_in_place(|| through_proxy("cleanup.policy=delete"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is mirrored from the source"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let described = run(&["cluster-links", "--describe", "--link", &link]);
    assert!(
        text(&described).contains("Task: TopicConfigsSync  State: ACTIVE"),
        "{}",
        text(&described)
    );

    let out = run(&["mirrors", "--promote", "--topics", &topic]);
    assert!(out.status.success(), "{}", text(&out));
    let allowed = tokio::task::block_in_place(|| through_proxy("cleanup.policy=delete"));
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    wait_topic_config(&dest, &topic, "cleanup.policy", Some("delete")).await;
}
