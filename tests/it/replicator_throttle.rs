//! `mirror.replication.throttled.rate`: a link limited to 256 KiB/s copies a preloaded
//! topic at that rate (within 10% over 30 s, measured from the destination's end
//! offsets and the source's bytes per record), and removing the limit with
//! `cluster-links --alter` lets it catch up at once, without a restart.
//!
//! The limit is low so that "at once" holds with a wide margin on a loaded machine:
//! the catch-up must beat twice the limit, and an unlimited copy on 2 busy cores has
//! run at only 2 MB/s. The copy is batch for batch, and each batch costs the
//! destination an acks=all round trip (tens of milliseconds when the machine is busy),
//! so the topic is written in 64 KiB batches: with the producer's default 16 KiB, a
//! busy destination once held the unlimited copy of one partition under 2x the limit.

use crate::common;

use std::time::{Duration, Instant};

use common::replication::{
    cli, create_mirror, destination_records, link_and_mirror_with, new_link, replicating, source,
    text,
};
use common::{eventually, kafka_tool_direct, unique, Cluster, Proxy};

const PARTITIONS: i32 = 2;
const RECORDS: i64 = 20_000;
const RATE: f64 = 262_144.0;

/// Bytes the source's log of `topic` holds, summed over its partitions (the batches
/// the mirror gets are the same, batch for batch).
fn source_log_bytes(src: &Cluster, topic: &str) -> u64 {
    let out = kafka_tool_direct(&[
        "kafka-log-dirs",
        "--bootstrap-server",
        &src.bootstrap,
        "--describe",
        "--topic-list",
        topic,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in kafka-log-dirs output: {stdout}"));
    let parsed: serde_json::Value = serde_json::from_str(json).expect("kafka-log-dirs JSON");
    let mut total = 0;
    for broker in parsed["brokers"].as_array().into_iter().flatten() {
        for dir in broker["logDirs"].as_array().into_iter().flatten() {
            for partition in dir["partitions"].as_array().into_iter().flatten() {
                total += partition["size"].as_u64().unwrap_or(0);
            }
        }
    }
    total
}

/// A topic of `records` records of 1,000 bytes on the source, and its bytes per record.
fn preloaded(src: &Cluster, prefix: &str, partitions: i32, records: i64) -> (String, f64) {
    let topic = unique(prefix);
    common::create_topic(
        src,
        &topic,
        &[
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ],
    );
    let load = kafka_tool_direct(&[
        "kafka-producer-perf-test",
        "--topic",
        &topic,
        "--num-records",
        &records.to_string(),
        "--record-size",
        "1000",
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={}", src.bootstrap),
        "acks=1",
        "linger.ms=50",
        "batch.size=65536",
    ]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let bytes_per_record = source_log_bytes(src, &topic) as f64 / records as f64;
    assert!(bytes_per_record > 1000.0, "{bytes_per_record}");
    (topic, bytes_per_record)
}

/// Bytes per second the mirror of `topic` grows by over `window`, once past the
/// start (a bucket starts empty and holds at most a second).
fn copy_rate(
    topic: &str,
    partitions: i32,
    records: i64,
    bytes_per_record: f64,
    window: Duration,
) -> f64 {
    std::thread::sleep(Duration::from_secs(3));
    let (first, started) = (destination_records(topic, partitions), Instant::now());
    std::thread::sleep(window);
    let (last, elapsed) = (destination_records(topic, partitions), started.elapsed());
    assert!(last < records, "the whole topic was copied: no limit held");
    let rate = (last - first) as f64 * bytes_per_record / elapsed.as_secs_f64();
    eprintln!("{topic}: copied at {rate:.0} B/s over {elapsed:?}");
    rate
}

/// Once a limit of `rate` is lifted, the rest of the topic is copied in well under half
/// the time that rate needed.
fn catches_up(topic: &str, partitions: i32, records: i64, bytes_per_record: f64, rate: f64) {
    let rest = (records - destination_records(topic, partitions)) as f64 * bytes_per_record;
    let within = Duration::from_secs_f64(rest / rate / 2.0);
    let lifted = Instant::now();
    eventually("the rest of the topic is copied", within, || {
        let copied = destination_records(topic, partitions);
        if copied >= records {
            return Ok(());
        }
        Err(format!(
            "still throttled after the limit was removed: {copied} of {records}"
        ))
    });
    eprintln!(
        "{topic}: {rest:.0} B copied in {:?} once the limit was lifted",
        lifted.elapsed()
    );
}

#[test]
fn a_throttled_link_copies_at_its_rate_and_an_alter_lifts_it_live() {
    let src = source();
    let (topic, bytes_per_record) = preloaded(&src, "throttled", PARTITIONS, RECORDS);
    let proxy = Proxy::start(
        common::destination(),
        replicating(&unique("_mirrorgate-metadata-throttle")),
    );
    let link = link_and_mirror_with(
        &proxy,
        &src,
        &topic,
        &format!(",mirror.replication.throttled.rate={}", RATE as u64),
    );
    let rate = copy_rate(
        &topic,
        PARTITIONS,
        RECORDS,
        bytes_per_record,
        Duration::from_secs(30),
    );
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "copied at {rate:.0} B/s, limit {RATE} B/s"
    );

    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--alter",
            "--link",
            &link,
            "--delete-config",
            "mirror.replication.throttled.rate",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    catches_up(&topic, PARTITIONS, RECORDS, bytes_per_record, RATE);
}

/// A mirror's own rate, set at creation, holds on an unlimited link; `mirrors --alter`
/// removes it live.
#[test]
fn a_mirror_with_its_own_rate_copies_at_it_and_an_alter_lifts_it_live() {
    let src = source();
    let records = RECORDS / 2;
    let (topic, bytes_per_record) = preloaded(&src, "throttled-mirror", 1, records);
    let proxy = Proxy::start(
        common::destination(),
        replicating(&unique("_mirrorgate-metadata-throttle-mirror")),
    );
    let config = format!("bootstrap.servers={}", src.bootstrap);
    let link = new_link(&proxy, "throttle-link", &["--config", &config]);
    let rate = format!("mirror.replication.throttled.rate={}", RATE as u64);
    let out = create_mirror(&proxy, &topic, &link, &["--config", &rate]);
    assert!(out.status.success(), "{}", text(&out));
    let described = text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]));
    assert!(
        described.contains(&format!("ThrottledRate: {}", RATE as u64)),
        "{described}"
    );
    let rate = copy_rate(
        &topic,
        1,
        records,
        bytes_per_record,
        Duration::from_secs(15),
    );
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "copied at {rate:.0} B/s, limit {RATE} B/s"
    );

    let out = cli(
        &proxy,
        &[
            "mirrors",
            "--alter",
            "--topics",
            &topic,
            "--delete-config",
            "mirror.replication.throttled.rate",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    catches_up(&topic, 1, records, bytes_per_record, RATE);
}
