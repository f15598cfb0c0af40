//! An idle replicating instance keeps its connections: the jobs that run every few
//! seconds (the fleet heartbeat, the checks of each mirror's source topic, topic config
//! sync, the metadata topic's lookups) reuse theirs from one round to the next, so the
//! brokers see no connection churn from an instance with nothing to copy.

use crate::common;

use std::time::Duration;

use common::replication::{
    create_mirror, new_link, one_partition_topic, replicating, text, wait_identical,
};
use common::{destination, test_port_base, unique, Cluster, Proxy};

const OPENED: &str = "mirrorgate_own_connections_opened_total";

#[test]
fn an_idle_link_with_mirrors_opens_almost_no_connections() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-idle")),
    );
    let config = format!("bootstrap.servers={}", source.bootstrap);
    let link = new_link(&proxy, "idle-link", &["--config", &config]);
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

    let before = proxy.metric_sum(OPENED);
    std::thread::sleep(Duration::from_secs(20));
    let opened = proxy.metric_sum(OPENED) - before;
    // With a connection per round, these 3 mirrors' source checks (every 2 s), the
    // heartbeat (every 2 s, two connections) and config sync (every 5 s, two) opened
    // about 60 in this time. What is left: the link's availability probe and the
    // proxy's metadata refresh.
    assert!(
        opened <= 8.0,
        "an idle instance opened {opened} connections in 20 s"
    );
}
