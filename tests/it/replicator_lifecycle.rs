//! The replicator through restarts and state changes: SIGKILL in the middle of a copy
//! resumes with no duplicate and no gap; pause stops copying and resume catches up;
//! failover works with the source cluster gone.

use crate::common;

use std::time::Duration;

use common::replication::{
    cli, destination_records, dump, link_and_mirror, link_and_mirror_with, load_one_per_batch,
    one_partition_topic, replicating, text, wait_identical, wait_identical_within,
};
use common::{
    destination, eventually, eventually_every, kcat, test_port_base, unique, Cluster, Proxy,
};
use mirrorgate::kafka::record_batch::BatchSlices;

/// Records of the killed copy, one per batch: a produce round trip each on the
/// destination, so the kill (at the first copied record) lands mid-copy.
const RECORDS: usize = 3_000;

#[test]
fn sigkill_in_the_middle_of_a_copy_resumes_without_duplicate_or_gap() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let options = replicating(&unique("_mirrorgate-metadata-kill"));
    let mut proxy = Proxy::start(destination(), options.clone());
    let topic = unique("big");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    // One record per batch, so the copy takes a while (a produce round trip each).
    let records: String = (0..RECORDS).map(|i| format!("record-{i:06}\n")).collect();
    load_one_per_batch(&source, &topic, &records, &[]);
    link_and_mirror(&proxy, &source, &topic);

    // Kill once some, but not all, has been copied (checked often, to catch it under way).
    let often = Duration::from_millis(20);
    let copied = eventually_every("the copy started", Duration::from_secs(60), often, || {
        Some(destination_records(&topic, 3)).filter(|copied| *copied > 0)
    });
    assert!(
        copied < RECORDS as i64,
        "copy finished before the kill; make it bigger"
    );
    proxy.kill_and_restart(&options);
    // A produce round trip per record: on a loaded machine this takes minutes.
    wait_identical_within(&proxy, &source, &topic, Duration::from_secs(400));
    assert_eq!(dump(&proxy.bootstrap, &topic).len(), RECORDS);
}

#[test]
fn pause_stops_copying_and_resume_catches_up() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-pause")),
    );
    let topic = one_partition_topic(
        &source, "pausable", "a
b
",
    );
    link_and_mirror(&proxy, &source, &topic);
    wait_identical(&proxy, &source, &topic);

    let out = cli(&proxy, &["mirrors", "--pause", "--topics", &topic]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some("c\nd\ne\n")
    )
    .output
    .status
    .success());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        dump(&proxy.bootstrap, &topic).len(),
        2,
        "nothing copied while paused"
    );
    assert!(
        text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]))
            .contains("State: PAUSED")
    );

    let out = cli(&proxy, &["mirrors", "--resume", "--topics", &topic]);
    assert!(out.status.success(), "{}", text(&out));
    wait_identical(&proxy, &source, &topic);
}

#[test]
fn an_unreachable_source_shows_source_unavailable_and_failover_still_works() {
    let source = Cluster::up("mg-src-gone", 1, test_port_base() + 540);
    let metadata_topic = unique("_mirrorgate-metadata-gone");
    let mut options = replicating(&metadata_topic);
    options
        .extra_tables
        .push_str("metadata_topic_replication_factor = 2\n");
    let proxy = Proxy::start(destination(), options);
    let topic = one_partition_topic(
        &source, "orphan", "x
y
",
    );
    let link = link_and_mirror_with(
        &proxy,
        &source,
        &topic,
        ",availability.check.ms=300,availability.check.consecutive.failure.threshold=2",
    );
    wait_identical(&proxy, &source, &topic);
    // The metadata topic was created with the configured replication factor.
    let described = common::kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &destination().bootstrap,
        "--describe",
        "--topic",
        &metadata_topic,
    ]);
    assert!(
        String::from_utf8_lossy(&described.stdout).contains("ReplicationFactor: 2"),
        "{}",
        String::from_utf8_lossy(&described.stdout)
    );

    common::testbed(&["down", "mg-src-gone"]);
    // After two failed probes the link and its mirror report SOURCE_UNAVAILABLE.
    eventually(
        "the link and its mirror are SOURCE_UNAVAILABLE",
        Duration::from_secs(60),
        || {
            let mirror = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
            let links = text(&cli(
                &proxy,
                &["cluster-links", "--describe", "--link", &link],
            ));
            if mirror.contains("State: SOURCE_UNAVAILABLE")
                && links
                    .contains("remote cluster available: 'false', link state: 'SOURCE_UNAVAILABLE'")
            {
                return Ok(());
            }
            Err(format!("{mirror}\n{links}"))
        },
    );
    let out = cli(&proxy, &["mirrors", "--promote", "--topics", &topic]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("source cluster") && text(&out).contains("unavailable"),
        "{}",
        text(&out)
    );
    let out = cli(&proxy, &["mirrors", "--failover", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]))
            .contains("State: STOPPED")
    );
    let write = kcat(&["-b", &proxy.bootstrap, "-P", "-t", &topic], Some("z\n"));
    assert!(write.output.status.success(), "{}", write.text());
    assert_eq!(dump(&proxy.bootstrap, &topic).len(), 3);
}

#[test]
fn a_partition_failing_past_the_retry_timeout_fails_the_mirror() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-retry")),
    );
    let topic = one_partition_topic(&source, "too-large", "");
    // Config sync would put max.message.bytes back at once; keep it away for this test.
    link_and_mirror_with(
        &proxy,
        &source,
        &topic,
        ",cluster.link.retry.timeout.ms=3000,topic.config.sync.ms=3600000",
    );
    // Straight on the destination (the proxy refuses it): the mirror now takes no
    // batch the source can hold, so every produce fails.
    let out = common::kafka_tool_direct(&[
        "kafka-configs",
        "--bootstrap-server",
        &destination().bootstrap,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
        "--add-config",
        "max.message.bytes=200",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let big = format!("{}\n", "x".repeat(2000));
    assert!(
        kcat(&["-b", &source.bootstrap, "-P", "-t", &topic], Some(&big))
            .output
            .status
            .success()
    );

    let described = eventually("the mirror FAILED", Duration::from_secs(90), || {
        let described = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
        if described.contains("State: FAILED") {
            return Ok(described);
        }
        Err(described)
    });
    assert!(described.contains("RETRY_TIMEOUT"), "{described}");
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("mirrorgate_mirror_failures_total{reason=\"RETRY_TIMEOUT\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirrorgate_produce_retries_total"),
        "{metrics}"
    );
}

/// A batch corrupted in the source's log (a byte of its records flipped on disk; a
/// broker serves its log as stored): the copy's CRC follows from the corrupt one, the
/// destination refuses it, and the mirror FAILS naming the batch. Nothing of it lands.
#[test]
fn a_corrupt_source_batch_fails_the_mirror_and_nothing_of_it_lands() {
    let source = common::replication::source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-corrupt")),
    );
    let topic = one_partition_topic(&source, "corrupt", "");
    load_one_per_batch(&source, &topic, "first\nsecond\nthird\n", &[]);
    flip_last_byte_of_batch(&source, &topic, 1);

    link_and_mirror(&proxy, &source, &topic);
    common::replication::wait_state(&proxy, &topic, "FAILED");
    let described = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
    assert!(
        described.contains("CORRUPT_SOURCE: partition 0, the source batch at offsets 1..=1"),
        "{described}"
    );
    assert!(described.contains("CRC mismatch"), "{described}");
    let dest = common::replication::dump_as(&destination().bootstrap, &topic, "%o %s\\n");
    assert_eq!(dest, vec!["0 first".to_string()]);
    assert!(
        proxy
            .metrics()
            .contains("mirrorgate_mirror_failures_total{reason=\"CORRUPT_SOURCE\"}"),
        "the failure is counted by its reason"
    );
}

/// Flips the last byte of batch `index` (its last record) in partition 0's first log
/// segment of `topic`, on node 0 of `cluster`, in place.
fn flip_last_byte_of_batch(cluster: &Cluster, topic: &str, index: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let segment = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testbed/.run")
        .join(cluster.name)
        .join(format!("node-0/data/{topic}-0/00000000000000000000.log"));
    let log = std::fs::read(&segment).expect("read the segment");
    let sizes: Vec<usize> = BatchSlices::new(&log)
        .take(index + 1)
        .map(|batch| batch.expect("a whole batch").bytes().len())
        .collect();
    assert_eq!(sizes.len(), index + 1, "the segment holds batch {index}");
    let last = sizes.iter().sum::<usize>() - 1;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open the segment");
    file.seek(SeekFrom::Start(last as u64)).expect("seek");
    file.write_all(&[log[last] ^ 0xFF]).expect("write");
}
