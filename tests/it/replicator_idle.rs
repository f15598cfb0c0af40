//! An idle replicating instance keeps its connections: the jobs that run every few
//! seconds (the fleet heartbeat, the checks of each mirror's source topic, topic config
//! sync, consumer offset sync, the metadata topic's lookups) reuse theirs from one
//! round to the next, so the brokers see no connection churn from an instance with
//! nothing to copy; and the heartbeats it reads back rebuild nothing.

use crate::common;

use std::time::Duration;

use common::replication::{
    create_mirror, group_filter_file, group_offsets, new_link, one_partition_topic, replicating,
    text, wait_identical,
};
use common::{destination, eventually, kafka_tool_direct, test_port_base, unique, Cluster, Proxy};

const OPENED: &str = "mirrorgate_own_connections_opened_total";
const RECONCILES: &str = "mirrorgate_replicator_reconciles_total";
const READ_ONLY_UPDATES: &str = "mirrorgate_catalog_read_only_updates_total";

#[test]
fn an_idle_link_with_mirrors_and_offset_sync_opens_almost_no_connections() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-idle")),
    );
    let group = unique("idle-group");
    let filters = group_filter_file(&group);
    let config = format!(
        "bootstrap.servers={},consumer.offset.sync.enable=true,consumer.offset.sync.ms=1000",
        source.bootstrap
    );
    let link = new_link(
        &proxy,
        "idle-link",
        &[
            "--config",
            &config,
            "--consumer-group-filters-json-file",
            &filters.to_string_lossy(),
        ],
    );
    let _ = std::fs::remove_file(filters);
    let topics: Vec<String> = (0..3)
        .map(|_| one_partition_topic(&source, "idle", "a\nb\n"))
        .collect();
    for topic in &topics {
        let out = create_mirror(&proxy, topic, &link, &[]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for topic in &topics {
        wait_identical(&proxy, &source, topic);
    }
    // A group with committed offsets on the source, so each offset sync round reads
    // them and the mirrors' ends.
    let out = kafka_tool_direct(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        &source.bootstrap,
        "--group",
        &group,
        "--topic",
        &topics[0],
        "--reset-offsets",
        "--to-offset",
        "1",
        "--execute",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    eventually(
        "the group's offset is on the mirror",
        Duration::from_secs(60),
        || {
            let offsets = group_offsets(&proxy.bootstrap, &group);
            match offsets.get(&(topics[0].clone(), 0)) {
                Some(1) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );

    let before = proxy.metric_sum(OPENED);
    let rebuilds_before = (
        proxy.metric_sum(RECONCILES),
        proxy.metric_sum(READ_ONLY_UPDATES),
    );
    std::thread::sleep(Duration::from_secs(20));
    let opened = proxy.metric_sum(OPENED) - before;
    let rebuilds = (
        proxy.metric_sum(RECONCILES) - rebuilds_before.0,
        proxy.metric_sum(READ_ONLY_UPDATES) - rebuilds_before.1,
    );
    // Ten heartbeats came back in that time; none is a change of links or mirrors.
    assert!(
        rebuilds_before.0 > 0.0 && rebuilds_before.1 > 0.0,
        "the counters count: {rebuilds_before:?}"
    );
    assert_eq!(
        rebuilds,
        (0.0, 0.0),
        "an idle instance reconciled (or rebuilt the read-only set) on heartbeats alone"
    );
    eprintln!("connections opened in 20 s: {opened}");
    // With a connection per round, these 3 mirrors' source checks (every 2 s), the
    // heartbeat (every 2 s, two connections), config sync (every 5 s, two) and offset
    // sync (every second, one to each source broker and one to each mirror's leader)
    // opened well over 100 in this time. What is left: the link's availability probe.
    assert!(
        opened <= 8.0,
        "an idle instance opened {opened} connections in 20 s"
    );
}
