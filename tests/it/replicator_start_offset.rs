//! Where a mirror's log starts, through the real binary: a mirror created with
//! `mirror.start.offset.spec` `latest` or a timestamp leaves out what the source had
//! before that point, and copies the rest to the same offsets; the mirror's log starts
//! at that point and ends where the source's does. When the source's log start moves
//! later (DeleteRecords), the mirror's follows.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::replication::{dump, dump_as, link_and_mirror_with, replicating, source};
use common::{destination, eventually, kafka_tool_direct, kcat, unique, Cluster, Proxy};
use mirrorgate::kafka::admin;
use mirrorgate::replicator::partition::{log_end_offset, log_start_offset};

const PARTITIONS: i32 = 2;

fn produce(src: &Cluster, topic: &str, tag: &str, n: usize) {
    let lines: String = (0..n).map(|i| format!("{tag}-{i}\n")).collect();
    let out = kcat(&["-b", &src.bootstrap, "-P", "-t", topic], Some(&lines));
    assert!(out.output.status.success(), "{}", out.text());
}

/// (log start, log end) of each partition, from each partition's leader.
fn offsets(bootstrap: &str, topic: &str) -> Vec<(i64, i64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let first = bootstrap.split(',').next().unwrap_or_default().to_string();
        let mut any = common::kafka::connect(&first).await;
        let metadata = admin::metadata(&mut any, Some(&[topic]))
            .await
            .expect("metadata");
        let mut offsets = Vec::new();
        for partition in 0..PARTITIONS {
            let leader = admin::leader_of(&metadata, topic, partition).expect("leader");
            let mut conn = common::kafka::connect(&leader).await;
            let start = log_start_offset(&mut conn, topic, partition)
                .await
                .expect("log start");
            let end = log_end_offset(&mut conn, topic, partition)
                .await
                .expect("log end");
            offsets.push((start, end));
        }
        offsets
    })
}

/// (partition, offset, timestamp ms, value) of every source record.
fn records(bootstrap: &str, topic: &str) -> Vec<(i32, i64, i64, String)> {
    dump_as(bootstrap, topic, "%p %o %T %s\\n")
        .iter()
        .filter_map(|line| {
            let mut fields = line.splitn(4, ' ');
            Some((
                fields.next()?.parse().ok()?,
                fields.next()?.parse().ok()?,
                fields.next()?.parse().ok()?,
                fields.next()?.to_string(),
            ))
        })
        .collect()
}

/// Creates a link with `spec` and a mirror of `topic` on it.
fn mirror_from(proxy: &Proxy, src: &Cluster, topic: &str, spec: &str) {
    link_and_mirror_with(
        proxy,
        src,
        topic,
        &format!(",mirror.start.offset.spec={spec}"),
    );
}

/// Waits until the mirror holds exactly `expected` ("partition offset value" lines). A
/// failed wait prints the proxy's log (`Proxy`'s drop).
fn wait_for(proxy: &Proxy, topic: &str, expected: &[String]) {
    eventually(
        "the mirror holds the records expected",
        Duration::from_secs(120),
        || {
            let got = dump(&proxy.bootstrap, topic);
            if got == expected {
                return Ok(());
            }
            Err(format!("mirror differs:\n got {got:?}\nwant {expected:?}"))
        },
    );
}

/// Source lines whose value does not start with `absent`.
fn source_lines_without(src: &Cluster, topic: &str, absent: &str) -> Vec<String> {
    let expected: Vec<String> = dump(&src.bootstrap, topic)
        .into_iter()
        .filter(|line| !line.split(' ').nth(2).unwrap_or("").starts_with(absent))
        .collect();
    assert!(!expected.is_empty());
    expected
}

fn create_source_topic(src: &Cluster, topic: &str) {
    common::create_topic(
        src,
        topic,
        &[
            "--partitions",
            &PARTITIONS.to_string(),
            "--replication-factor",
            "1",
        ],
    );
}

#[test]
fn a_latest_mirror_starts_at_the_source_end_with_identical_offsets() {
    let src = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-meta-latest")),
    );
    let topic = unique("latest");
    create_source_topic(&src, &topic);
    produce(&src, &topic, "before", 30);
    let at_creation = offsets(&src.bootstrap, &topic);

    mirror_from(&proxy, &src, &topic, "latest");
    produce(&src, &topic, "after", 30);

    let expected = source_lines_without(&src, &topic, "before");
    wait_for(&proxy, &topic, &expected);
    // The mirror starts where the source ended when the mirror was created, and ends
    // where the source ends.
    let source_now = offsets(&src.bootstrap, &topic);
    let mirror = offsets(&destination().bootstrap, &topic);
    for partition in 0..PARTITIONS as usize {
        assert_eq!(
            mirror[partition],
            (at_creation[partition].1, source_now[partition].1),
            "partition {partition}: mirror {mirror:?}, source {source_now:?}"
        );
    }
}

/// `millis` since the epoch as ISO-8601 UTC with milliseconds.
fn iso8601(millis: i64) -> String {
    let (days, ms_of_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    // Civil date from days since the epoch (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

#[test]
fn the_iso8601_helper_matches_known_dates() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(iso8601(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
}

#[test]
fn a_timestamp_mirror_starts_at_the_first_record_at_that_time() {
    let src = source();
    let proxy = Proxy::start(destination(), replicating(&unique("_mirrorgate-meta-time")));
    let topic = unique("since");
    create_source_topic(&src, &topic);
    produce(&src, &topic, "old", 30);
    // Distinct timestamps for the two groups, so a time between them exists.
    std::thread::sleep(Duration::from_millis(50));
    produce(&src, &topic, "new", 30);
    let before = records(&src.bootstrap, &topic);
    let newest_old = before
        .iter()
        .filter(|r| r.3.starts_with("old"))
        .map(|r| r.2)
        .max()
        .expect("old records");
    let oldest_new = before
        .iter()
        .filter(|r| r.3.starts_with("new"))
        .map(|r| r.2)
        .min()
        .expect("new records");
    assert!(newest_old < oldest_new, "{newest_old} vs {oldest_new}");
    let at_creation = offsets(&src.bootstrap, &topic);

    mirror_from(&proxy, &src, &topic, &iso8601(newest_old + 1));
    produce(&src, &topic, "later", 30);

    let expected = source_lines_without(&src, &topic, "old");
    wait_for(&proxy, &topic, &expected);
    // Each mirror partition starts at its first "new" record (or, with none, where
    // the source ended) and ends where the source ends.
    let mut first_new: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset, _, value) in &before {
        if value.starts_with("new") {
            let first = first_new.entry(*partition).or_insert(*offset);
            *first = (*first).min(*offset);
        }
    }
    let source_now = offsets(&src.bootstrap, &topic);
    let mirror = offsets(&destination().bootstrap, &topic);
    for partition in 0..PARTITIONS {
        let p = partition as usize;
        let start = first_new
            .get(&partition)
            .copied()
            .unwrap_or(at_creation[p].1);
        assert_eq!(
            mirror[p],
            (start, source_now[p].1),
            "partition {partition}: mirror {mirror:?}, source {source_now:?}"
        );
    }
}

#[test]
fn delete_records_on_the_source_moves_the_mirror_log_start() {
    let src = source();
    let proxy = Proxy::start(destination(), replicating(&unique("_mirrorgate-meta-del")));
    let topic = unique("deleted");
    create_source_topic(&src, &topic);
    produce(&src, &topic, "first", 40);
    mirror_from(&proxy, &src, &topic, "earliest");
    let copied = dump(&src.bootstrap, &topic);
    wait_for(&proxy, &topic, &copied);

    // Everything below the middle of each partition is deleted on the source, after
    // the mirror has it.
    let ends = offsets(&src.bootstrap, &topic);
    let cut: Vec<i64> = ends.iter().map(|(_, end)| end / 2).collect();
    let partitions: Vec<String> = cut
        .iter()
        .enumerate()
        .map(|(p, offset)| format!(r#"{{"topic":"{topic}","partition":{p},"offset":{offset}}}"#))
        .collect();
    let file = proxy.dir().join("delete-records.json");
    std::fs::write(
        &file,
        format!(r#"{{"partitions":[{}],"version":1}}"#, partitions.join(",")),
    )
    .expect("offsets file");
    let deleted = kafka_tool_direct(&[
        "kafka-delete-records",
        "--bootstrap-server",
        &src.bootstrap,
        "--offset-json-file",
        &file.to_string_lossy(),
    ]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );

    // The mirror's log start follows without a new record, and what is left (and what
    // comes after) stays identical.
    eventually(
        "the mirror's log start follows",
        Duration::from_secs(60),
        || {
            let starts: Vec<i64> = offsets(&destination().bootstrap, &topic)
                .iter()
                .map(|(start, _)| *start)
                .collect();
            if starts == cut {
                return Ok(());
            }
            Err(format!(
                "mirror starts at {starts:?}, the source at {cut:?}"
            ))
        },
    );
    produce(&src, &topic, "after", 20);
    let expected = dump(&src.bootstrap, &topic);
    wait_for(&proxy, &topic, &expected);
}
