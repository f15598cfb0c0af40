//! The replicator through broker restarts: the source broker, then a destination
//! broker leading mirror partitions, are stopped in the middle of a copy and started
//! again; the mirror ends identical to the source (offset, key, headers, timestamp,
//! value) with the same end offsets. The two tests take turns: each stops a broker
//! others would use. A bootstrap server whose broker is gone behind an open port is
//! skipped.

use crate::common;

use std::time::Duration;

use common::replication::{dump_as, link_and_mirror, records_on, replicating};
use common::{
    destination, end_offsets, eventually_every, kcat, test_port_base, unique, Cluster, Proxy,
};

const RECORDS: usize = 5_000;

fn source() -> Cluster {
    Cluster::up("mg-src-rs", 1, test_port_base() + 550)
}

/// Every record as "partition offset timestamp key headers value", sorted.
fn full_dump(bootstrap: &str, topic: &str) -> Vec<String> {
    dump_as(bootstrap, topic, "%p %o %T %k %h %s\\n")
}

/// Keyed records with a header, one per batch so copying takes many round trips.
fn load(source: &Cluster, topic: &str, from: usize, count: usize) {
    let records: String = (from..from + count)
        .map(|i| format!("key-{i}:value-{i:06}\n"))
        .collect();
    let out = kcat(
        &[
            "-b",
            &source.bootstrap,
            "-P",
            "-t",
            topic,
            "-K",
            ":",
            "-H",
            "origin=restart-test",
            "-X",
            "linger.ms=0",
            "-X",
            "batch.num.messages=1",
        ],
        Some(&records),
    );
    assert!(out.output.status.success(), "{}", out.text());
}

/// Waits until the mirror read through the proxy equals the source record for record,
/// then checks the end offsets match partition for partition.
fn assert_identical(proxy: &Proxy, source: &Cluster, destination: &Cluster, topic: &str) {
    let expected = full_dump(&source.bootstrap, topic);
    assert_eq!(expected.len(), RECORDS + 1000);
    // A second apart: each look reads the whole topic.
    let every = Duration::from_secs(1);
    eventually_every(
        "the mirror equals the source",
        Duration::from_secs(400),
        every,
        || {
            let got = full_dump(&proxy.bootstrap, topic);
            if got == expected {
                return Ok(());
            }
            Err(format!(
                "mirror differs: {} of {} records",
                got.len(),
                expected.len()
            ))
        },
    );
    assert_eq!(
        end_offsets(destination, topic),
        end_offsets(source, topic),
        "end offsets"
    );
}

/// Returns once some, but not all, of the first load is on the destination (looking
/// often, to catch the copy under way).
fn wait_copy_started(destination: &Cluster, topic: &str) {
    let often = Duration::from_millis(20);
    let copied = eventually_every("the copy started", Duration::from_secs(60), often, || {
        Some(records_on(destination, topic, 3)).filter(|copied| *copied > 0)
    });
    assert!(
        copied < RECORDS as i64,
        "copy finished before the restart; make it bigger"
    );
}

/// A mirror of a fresh 3-partition topic, its first load being copied to `destination`.
fn copy_under_way(destination: &Cluster, name: &str) -> (Cluster, Proxy, String) {
    let source = source();
    let proxy = Proxy::start(
        destination,
        replicating(&unique(&format!("_mirrorgate-metadata-{name}"))),
    );
    let topic = unique(name);
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    load(&source, &topic, 0, RECORDS);
    link_and_mirror(&proxy, &source, &topic);
    wait_copy_started(destination, &topic);
    (source, proxy, topic)
}

#[test]
fn a_source_broker_restart_mid_copy_leaves_an_identical_mirror() {
    // Both tests stop a broker of this source: one at a time, with the restart lease.
    let _restarts = common::broker_restarts();
    let (source, proxy, topic) = copy_under_way(destination(), "src-restart");

    common::testbed(&["stop-node", "mg-src-rs", "0"]);
    std::thread::sleep(Duration::from_secs(3));
    common::testbed(&["start-node", "mg-src-rs", "0"]);
    load(&source, &topic, RECORDS, 1000);
    assert_identical(&proxy, &source, destination(), &topic);
}

#[test]
fn a_destination_broker_restart_mid_copy_leaves_an_identical_mirror() {
    let restarts = common::broker_restarts();
    let (source, proxy, topic) = copy_under_way(restarts.cluster, "dest-restart");

    // Stop the broker leading partition 0 of the mirror: its writes move to a new
    // leader while the copier is mid-way.
    let node = restarts.node_of(&leader_of(restarts.cluster, &topic));
    restarts.stop_node(node);
    load(&source, &topic, RECORDS, 1000);
    std::thread::sleep(Duration::from_secs(3));
    restarts.start_node(node);
    assert_identical(&proxy, &source, restarts.cluster, &topic);
}

/// The address of the broker of `cluster` leading partition 0 of `topic`.
fn leader_of(cluster: &Cluster, topic: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let first = cluster.ports[0];
        let mut conn = common::kafka::connect(&format!("127.0.0.1:{first}")).await;
        let metadata = mirrorgate::kafka::admin::metadata(&mut conn, Some(&[topic]))
            .await
            .expect("metadata");
        mirrorgate::kafka::admin::leader_of(&metadata, topic, 0).expect("a leader")
    })
}

/// A bootstrap server that accepts connections but whose broker is gone (a load
/// balancer or relay in front of a stopped broker) is skipped: the next server is
/// taken, because only a Kafka answer counts as "answers".
#[tokio::test]
async fn a_bootstrap_server_that_accepts_but_never_answers_is_skipped() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr").to_string();
    // Accept and close at once, as a relay does when its broker is down.
    std::thread::spawn(move || {
        for stream in dead.incoming().take(4) {
            drop(stream);
        }
    });
    // All of the destination's brokers after it: the other tests stop one at times.
    let mut servers = vec![dead_addr.clone()];
    servers.extend(destination().bootstrap.split(',').map(String::from));
    let conn = mirrorgate::kafka::client::KafkaConnection::connect_first(
        &servers,
        "mirrorgate-test",
        Duration::from_secs(5),
        None,
        None,
    )
    .await
    .expect("a real broker answers");
    assert_ne!(conn.addr(), dead_addr);
    assert!(servers[1..].iter().any(|s| s == conn.addr()));
}
