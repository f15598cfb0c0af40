//! The partition copier against real clusters: every record of the source lands on
//! the destination at the same offset with the same key, value, headers and timestamp,
//! for each codec and for an idempotent producer; a restart resumes without duplicate
//! or gap; a destination that diverges fails the partition with OFFSET_MISMATCH.

use crate::common;

use common::replication::{copier, copy_to_end, source};

use std::time::Duration;

use bytes::Bytes;
use common::kafka::{connect, fetch_raw};
use common::{destination, kafka_tool, kcat, unique, Cluster};
use kafka_protocol::records::RecordBatchDecoder;
use mirrorgate::replicator::failure::FailureReason;
use mirrorgate::replicator::partition::{log_end_offset, CopyError};

/// (offset, key, value, headers, timestamp) of every record, for comparison.
type Row = (
    i64,
    Option<Bytes>,
    Option<Bytes>,
    Vec<(String, Option<Bytes>)>,
    i64,
);

fn rows(mut records: Bytes) -> Vec<Row> {
    let sets = RecordBatchDecoder::decode_all(&mut records).expect("decode");
    sets.into_iter()
        .flat_map(|set| set.records)
        .filter(|r| !r.control)
        .map(|r| {
            let headers = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            (r.offset, r.key, r.value, headers, r.timestamp)
        })
        .collect()
}

async fn source_end(src: &Cluster, topic: &str) -> i64 {
    let mut conn = connect(&src.bootstrap).await;
    log_end_offset(&mut conn, topic, 0)
        .await
        .expect("source end")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_codec_and_an_idempotent_producer_copy_to_identical_offsets() {
    let src = source();
    let topic = unique("copy-src");
    let mirror = unique("copy-mirror");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);

    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: String = (0..25)
            .map(|i| format!("{codec}-key-{i}:{codec}-value-{i}\n"))
            .collect();
        let out = kcat(
            &[
                "-b",
                &src.bootstrap,
                "-P",
                "-t",
                &topic,
                "-z",
                codec,
                "-K",
                ":",
                "-H",
                "origin=kcat",
            ],
            Some(&lines),
        );
        assert!(out.output.status.success(), "{}", out.text());
    }
    // The Java producer is idempotent by default: batches carry its producer id.
    let java = kafka_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &src.bootstrap,
            "--topic",
            &topic,
        ],
        Some("j1\nj2\nj3\n"),
    );
    assert!(java.output.status.success(), "{}", java.text());

    let end = source_end(&src, &topic).await;
    assert_eq!(end, 5 * 25 + 3);
    let mut copier = copier(&src, &topic, &mirror).await;
    copy_to_end(&mut copier, end).await;

    let source_rows = rows(fetch_raw(&src.bootstrap, &topic).await);
    let mirror_rows = rows(fetch_raw(&destination().bootstrap, &mirror).await);
    assert_eq!(source_rows.len(), end as usize);
    assert_eq!(
        mirror_rows, source_rows,
        "identical offsets, keys, values, headers, timestamps"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_copier_resumes_without_duplicate_or_gap_and_divergence_fails() {
    let src = source();
    let topic = unique("resume-src");
    let mirror = unique("resume-mirror");
    common::create_topic(
        &src,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);
    let produce = |n: usize, tag: &str| {
        let lines: String = (0..n).map(|i| format!("{tag}-{i}\n")).collect();
        let out = kcat(
            &["-b", &src.bootstrap, "-P", "-t", &topic, "-z", "lz4"],
            Some(&lines),
        );
        assert!(out.output.status.success(), "{}", out.text());
    };

    produce(10, "first");
    let mut first = copier(&src, &topic, &mirror).await;
    copy_to_end(&mut first, 10).await;
    drop(first); // a restart: new connections, a new producer id

    produce(7, "second");
    let mut second = copier(&src, &topic, &mirror).await;
    assert_eq!(
        second.next_offset(),
        10,
        "resumes at the destination's log end"
    );
    copy_to_end(&mut second, 17).await;
    let source_rows = rows(fetch_raw(&src.bootstrap, &topic).await);
    assert_eq!(
        rows(fetch_raw(&destination().bootstrap, &mirror).await),
        source_rows
    );

    // Someone writes to the mirror behind the copier's back: the next batch cannot
    // land at its source offset, and the partition fails for good.
    let intruder = kcat(
        &["-b", &destination().bootstrap, "-P", "-t", &mirror],
        Some("intruder\n"),
    );
    assert!(intruder.output.status.success());
    produce(3, "third");
    let error = second.copy_once(1000).await.expect_err("must fail");
    assert!(
        matches!(
            error,
            CopyError::OffsetMismatch {
                expected: 17,
                got: 18
            }
        ),
        "{error}"
    );
    let failure = error.failure().expect("a mismatch fails the mirror");
    assert_eq!(failure.reason, FailureReason::OffsetMismatch);
    assert!(
        failure.to_string().starts_with("OFFSET_MISMATCH: "),
        "{failure}"
    );
    let again = second.copy_once(100).await.expect_err("stays failed");
    assert!(matches!(again, CopyError::AlreadyFailed(_)), "{again}");
    // The first failure is kept, under the reason of a copier used after it failed.
    let again = again.failure().expect("still fatal").to_string();
    assert!(
        again.starts_with("ILLEGAL_STATE: the partition already failed: OFFSET_MISMATCH: "),
        "{again}"
    );
}

/// Timestamps as consumers see them, per offset, read with kcat (`%T`).
fn consumer_timestamps(bootstrap: &str, topic: &str) -> Vec<String> {
    let out = kcat(
        &[
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o %T %s\\n",
        ],
        None,
    );
    out.stdout().lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_append_time_source_keeps_the_timestamps_consumers_saw() {
    let src = source();
    let topic = unique("lat-src");
    let mirror = unique("lat-mirror");
    common::create_topic(
        &src,
        &topic,
        &[
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "message.timestamp.type=LogAppendTime",
        ],
    );
    common::create_topic(destination(), &mirror, &["--replica-assignment", "0"]);
    for round in 0..3 {
        let lines: String = (0..10).map(|i| format!("lat-{round}-{i}\n")).collect();
        let out = kcat(
            &["-b", &src.bootstrap, "-P", "-t", &topic, "-z", "lz4"],
            Some(&lines),
        );
        assert!(out.output.status.success(), "{}", out.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = source_end(&src, &topic).await;
    let mut copier = copier(&src, &topic, &mirror).await;
    copy_to_end(&mut copier, end).await;

    let expected = consumer_timestamps(&src.bootstrap, &topic);
    assert_eq!(expected.len(), 30);
    assert_eq!(
        consumer_timestamps(&destination().bootstrap, &mirror),
        expected
    );
}
