//! The replication data path through the real binary: several partitions of one link
//! fetched in one fetch session, pipelined produce, and a per-link in-flight budget
//! far smaller than the data (even smaller than one batch) still copy everything to
//! identical offsets, with every record counted once.

use crate::common;

use std::time::Duration;

use common::replication::{cli, dump, source, text};
use common::{destination, eventually, kcat, unique, Cluster, Proxy, ProxyOptions};

/// The value of a metric line `name{...link="link"...} value`.
fn metric(metrics: &str, name: &str, link: &str) -> Option<f64> {
    let label = format!("link=\"{link}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

fn wait_identical(proxy: &Proxy, src: &Cluster, topic: &str) -> usize {
    let expected = dump(&src.bootstrap, topic);
    // A failed wait prints the proxy's log (`Proxy`'s drop).
    eventually(
        "the mirror equals the source",
        Duration::from_secs(180),
        || {
            let got = dump(&proxy.bootstrap, topic);
            if got == expected {
                return Ok(expected.len());
            }
            Err(format!(
                "mirror differs: {} of {} records",
                got.len(),
                expected.len()
            ))
        },
    )
}

#[test]
fn a_tiny_in_flight_budget_still_copies_every_partition_to_identical_offsets() {
    let src = source();
    let metadata_topic = unique("_mirrorgate-meta-budget");
    // 4 KiB: below one fetched batch, so every fetch overshoots the budget and the
    // fetcher waits for acknowledgements before the next one.
    let proxy = Proxy::start(
        destination(),
        ProxyOptions {
            extra_tables: format!(
                "\n[replicator]\nenabled = true\nmetadata_topic = \"{metadata_topic}\"\n\
                 max_bytes_in_flight_per_link = 4096\n"
            ),
            ..Default::default()
        },
    );
    let topic = unique("budget");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    let padding = "x".repeat(200);
    let lines: String = (0..3000)
        .map(|i| format!("key-{i}:value-{i}-{padding}\n"))
        .collect();
    let load = kcat(
        &[
            "-b",
            &src.bootstrap,
            "-P",
            "-t",
            &topic,
            "-K",
            ":",
            "-z",
            "lz4",
            "-X",
            "batch.num.messages=100",
        ],
        Some(&lines),
    );
    assert!(load.output.status.success(), "{}", load.text());

    let link = unique("budget-link");
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!("bootstrap.servers={}", src.bootstrap),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
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
    assert!(out.status.success(), "{}", text(&out));

    // Records produced while the mirror copies join the same fetch session.
    let more: String = (3000..4000)
        .map(|i| format!("key-{i}:value-{i}\n"))
        .collect();
    let load = kcat(
        &["-b", &src.bootstrap, "-P", "-t", &topic, "-K", ":"],
        Some(&more),
    );
    assert!(load.output.status.success(), "{}", load.text());

    let copied = wait_identical(&proxy, &src, &topic);
    assert_eq!(copied, 4000);
    // Counted on acknowledgement, so exactly once each; nothing was lost.
    let metrics = eventually(
        &format!("{copied} replicated records are counted"),
        Duration::from_secs(30),
        || {
            let metrics = proxy.metrics();
            let records = metric(&metrics, "mirrorgate_replicated_records_total", &link);
            if records == Some(copied as f64) {
                return Ok(metrics);
            }
            Err(format!("{records:?}\n{metrics}"))
        },
    );
    assert_eq!(
        metric(&metrics, "mirrorgate_mirror_records_lost_total", &link),
        Some(0.0),
        "{metrics}"
    );
}
