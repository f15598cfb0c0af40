//! Consumer-group offset sync against real clusters: committed offsets of the groups
//! the filters include reach the destination as they are (prefixed, clamped to the
//! mirrored data, metadata kept), excluded and unmatched groups do not, an unchanged
//! group is not committed again, a group with members on the destination is left
//! alone, and groups of the new consumer protocol are synced like classic ones.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::replication::source;
use common::{
    destination, eventually_async, eventually_every_async, kafka_tool_direct, unique, Cluster,
};
use mirrorgate::config::Config;
use mirrorgate::kafka::admin;
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::error_code;
use mirrorgate::kafka::groups::{self, CommittedOffset};
use mirrorgate::registry::{Registry, Snapshot};
use mirrorgate::replicator::link_config::{Filter, FilterType, LinkConfig, PatternType};
use mirrorgate::replicator::offset_sync::{MirrorOffsets, OffsetSync, SyncReport};
use mirrorgate::replicator::source::Source;
use mirrorgate::replicator::Destination;

const LINK: &str = "offset-sync-test";

struct Clusters {
    src: Cluster,
    source: Source,
    dest: Destination,
}

fn clusters() -> Clusters {
    let src = source();
    let link = LinkConfig::from_properties(
        [("bootstrap.servers".to_string(), src.bootstrap.clone())].into(),
    )
    .expect("link config");
    let source = Source::from_config(&link).expect("source");
    let text = format!(
        "[proxy]\nbind = \"127.0.0.1:0\"\nadvertised_host = \"127.0.0.1\"\n\
         broker_port_base = 1\n\n[destination]\nbootstrap_servers = \"{}\"\n",
        destination().bootstrap
    );
    let config = Config::parse(&text, Path::new("mirrorgate.toml")).expect("config");
    let registry = Registry::new(Snapshot::build(config).expect("snapshot"));
    Clusters {
        src,
        source,
        dest: Destination::new(Arc::new(registry)),
    }
}

fn filter(name: &str, pattern_type: PatternType, filter_type: FilterType) -> Filter {
    Filter {
        name: name.to_string(),
        pattern_type,
        filter_type,
    }
}

fn first(bootstrap: &str) -> String {
    bootstrap.split(',').next().unwrap_or_default().to_string()
}

async fn connect(addr: &str) -> KafkaConnection {
    common::kafka::connect(addr).await
}

/// A topic with `partitions` partitions and `records` records in each.
async fn topic_with_records(cluster: &Cluster, topic: &str, partitions: i32, records: usize) {
    let mut conn = connect(&first(&cluster.bootstrap)).await;
    admin::create_topic(&mut conn, topic, partitions, -1, &[])
        .await
        .expect("create topic");
    for partition in 0..partitions {
        produce(cluster, topic, partition, records);
    }
}

fn produce(cluster: &Cluster, topic: &str, partition: i32, records: usize) {
    let input: String = (0..records).map(|i| format!("record-{i}\n")).collect();
    let partition = partition.to_string();
    let mut child = Command::new("kcat")
        .args([
            "-b",
            &cluster.bootstrap,
            "-P",
            "-t",
            topic,
            "-p",
            &partition,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("kcat stdin");
    }
    assert!(child.wait().expect("kcat").success(), "kcat produce failed");
}

/// Commits `offset` for `group` on every partition of `topic` (or `topic:P`) with
/// Kafka's own tool, as an operator would.
fn reset_offsets(cluster: &Cluster, groups: &[&str], topic: &str, offset: i64) {
    let offset = offset.to_string();
    let mut args = vec![
        "kafka-consumer-groups",
        "--bootstrap-server",
        &cluster.bootstrap,
    ];
    for group in groups {
        args.extend(["--group", group]);
    }
    args.extend([
        "--topic",
        topic,
        "--reset-offsets",
        "--to-offset",
        &offset,
        "--execute",
    ]);
    let out = kafka_tool_direct(&args);
    assert!(
        out.status.success(),
        "reset offsets: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kafka-console-consumer` in the background on `cluster` as a member of `group`.
fn console_consumer(cluster: &Cluster, topic: &str, group: &str, extra: &[&str]) -> Child {
    Command::new(common::repo_root().join("testbed/kafka"))
        .args(["tool", "kafka-console-consumer", "--bootstrap-server"])
        .args([&cluster.bootstrap, "--topic", topic, "--group", group])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("console consumer")
}

/// host:port of `group`'s coordinator (waiting while the offsets topic loads).
async fn coordinator_of(bootstrap: &str, group: &str) -> String {
    let mut any = connect(&first(bootstrap)).await;
    let what = format!("{group} has a coordinator");
    eventually_async(&what, Duration::from_secs(60), async || {
        let answer = groups::find_coordinators(&mut any, &[group.to_string()])
            .await
            .expect("find coordinator")
            .remove(group);
        match answer {
            Some(Ok(addr)) => Ok(addr),
            other => Err(format!("no coordinator: {other:?}")),
        }
    })
    .await
}

/// Committed offsets of `group` on `topic` partitions 0..partitions, read with our
/// own admin calls: offset and metadata per partition (None: nothing committed).
async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<(i64, Option<String>)>> {
    let mut conn = connect(&coordinator_of(bootstrap, group).await).await;
    let offsets = groups::fetch_offsets(
        &mut conn,
        &[group.to_string()],
        &[(topic.to_string(), partitions)],
    )
    .await
    .expect("offset fetch")
    .remove(group)
    .expect("group in answer")
    .expect("group offsets");
    (0..partitions)
        .map(|p| {
            offsets
                .iter()
                .find(|o| o.partition == p)
                .map(|o| (o.offset, o.metadata.clone()))
        })
        .collect()
}

fn offsets_only(committed: &[Option<(i64, Option<String>)>]) -> Vec<Option<i64>> {
    committed
        .iter()
        .map(|c| c.as_ref().map(|(o, _)| *o))
        .collect()
}

fn mirror(source_topic: &str, mirror_topic: &str, mirrored_end: Vec<i64>) -> MirrorOffsets {
    MirrorOffsets {
        source_topic: source_topic.to_string(),
        mirror_topic: mirror_topic.to_string(),
        mirrored_end,
    }
}

/// Rounds until `done` holds for a report (the source's commits of a Java tool and
/// the coordinators of a fresh group may take a moment); returns that report. Rounds
/// are half a second apart: each one is the code under test, and may commit.
async fn round_until(
    sync: &mut OffsetSync,
    c: &Clusters,
    filters: &[Filter],
    prefix: Option<&str>,
    mirrors: &[MirrorOffsets],
    done: impl Fn(&SyncReport) -> bool,
) -> SyncReport {
    let pace = Duration::from_millis(500);
    eventually_every_async(
        "a round's report holds",
        Duration::from_secs(90),
        pace,
        async || {
            let report = sync
                .round(LINK, &c.source, &c.dest, filters, prefix, mirrors)
                .await
                .expect("round");
            if done(&report) {
                return Ok(report);
            }
            Err(format!("{report:?}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn literal_include_is_synced_excluded_and_unmatched_are_not_and_no_change_commits_nothing() {
    let c = clusters();
    let topic = unique("os-lit");
    topic_with_records(&c.src, &topic, 2, 10).await;
    topic_with_records(destination(), &topic, 2, 10).await;
    let base = unique("os-lit-group");
    let (included, excluded, unmatched) = (
        format!("{base}-in"),
        format!("{base}-ex"),
        format!("{base}-other"),
    );
    reset_offsets(&c.src, &[&included, &excluded, &unmatched], &topic, 4);
    let filters = [
        filter(&included, PatternType::Literal, FilterType::Include),
        filter(&excluded, PatternType::Literal, FilterType::Include),
        filter(&excluded, PatternType::Literal, FilterType::Exclude),
    ];
    let mirrors = [mirror(&topic, &topic, vec![10, 10])];
    let mut sync = OffsetSync::new();

    // No filter: nothing is synced.
    let report = sync
        .round(LINK, &c.source, &c.dest, &[], None, &mirrors)
        .await
        .expect("round");
    assert_eq!(report, SyncReport::default());

    let report = round_until(&mut sync, &c, &filters, None, &mirrors, |r| r.committed > 0).await;
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(report.groups_synced, vec![included.clone()]);
    assert!(report.errors.is_empty(), "{report:?}");
    let dest = &destination().bootstrap;
    assert_eq!(
        offsets_only(&committed(dest, &included, &topic, 2).await),
        [Some(4), Some(4)]
    );
    assert_eq!(
        offsets_only(&committed(dest, &excluded, &topic, 2).await),
        [None, None]
    );
    assert_eq!(
        offsets_only(&committed(dest, &unmatched, &topic, 2).await),
        [None, None]
    );

    // Nothing changed: nothing is written again.
    let report = sync
        .round(LINK, &c.source, &c.dest, &filters, None, &mirrors)
        .await
        .expect("round");
    assert_eq!(report.committed, 0, "{report:?}");
    assert!(report.groups_synced.is_empty() && report.errors.is_empty());

    // One partition moves: only that one is written.
    reset_offsets(&c.src, &[&included], &format!("{topic}:1"), 9);
    let report = round_until(&mut sync, &c, &filters, None, &mirrors, |r| r.committed > 0).await;
    assert_eq!(report.committed, 1, "{report:?}");
    assert_eq!(
        offsets_only(&committed(dest, &included, &topic, 2).await),
        [Some(4), Some(9)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefixed_include_reaches_prefixed_groups_on_a_renamed_mirror() {
    let c = clusters();
    let source_topic = unique("os-pre-src");
    let mirror_topic = unique("os-pre-mirror");
    topic_with_records(&c.src, &source_topic, 1, 5).await;
    topic_with_records(destination(), &mirror_topic, 1, 5).await;
    let base = unique("os-pre");
    let (one, two) = (format!("{base}.one"), format!("{base}.two"));
    reset_offsets(&c.src, &[&one, &two], &source_topic, 3);
    let filters = [filter(
        &format!("{base}."),
        PatternType::Prefixed,
        FilterType::Include,
    )];
    let mirrors = [mirror(&source_topic, &mirror_topic, vec![5])];
    let mut sync = OffsetSync::new();
    let report = round_until(&mut sync, &c, &filters, Some("dr."), &mirrors, |r| {
        r.groups_synced.len() == 2
    })
    .await;
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(
        report.groups_synced,
        vec![format!("dr.{one}"), format!("dr.{two}")]
    );
    let dest = &destination().bootstrap;
    for group in [&one, &two] {
        assert_eq!(
            offsets_only(&committed(dest, &format!("dr.{group}"), &mirror_topic, 1).await),
            [Some(3)]
        );
        // Only the prefixed name exists on the destination.
        assert_eq!(
            offsets_only(&committed(dest, group, &mirror_topic, 1).await),
            [None]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_are_clamped_to_the_mirrored_end_and_follow_it() {
    let c = clusters();
    let topic = unique("os-clamp");
    topic_with_records(&c.src, &topic, 1, 10).await;
    // The mirror holds only 6 records so far.
    topic_with_records(destination(), &topic, 1, 6).await;
    let group = unique("os-clamp-group");
    reset_offsets(&c.src, &[&group], &topic, 9);
    let filters = [filter(&group, PatternType::Literal, FilterType::Include)];
    let mut sync = OffsetSync::new();
    // The caller knows no progress (-1): the round reads the mirror's end from the
    // destination, as the partitions may be copied by other instances.
    let behind = [mirror(&topic, &topic, vec![-1])];
    round_until(&mut sync, &c, &filters, None, &behind, |r| r.committed == 1).await;
    let dest = &destination().bootstrap;
    assert_eq!(
        offsets_only(&committed(dest, &group, &topic, 1).await),
        [Some(6)]
    );

    // The mirror catches up: the real offset follows.
    produce(destination(), &topic, 0, 4);
    let report = sync
        .round(LINK, &c.source, &c.dest, &filters, None, &behind)
        .await
        .expect("round");
    assert_eq!(report.committed, 1, "{report:?}");
    assert_eq!(
        offsets_only(&committed(dest, &group, &topic, 1).await),
        [Some(9)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_metadata_is_copied() {
    let c = clusters();
    let topic = unique("os-meta");
    topic_with_records(&c.src, &topic, 1, 10).await;
    topic_with_records(destination(), &topic, 1, 10).await;
    let group = unique("os-meta-group");
    // The Java tools cannot set a metadata string: commit with our own call.
    let mut conn = connect(&coordinator_of(&c.src.bootstrap, &group).await).await;
    let refused = groups::commit_offsets(
        &mut conn,
        &group,
        &[CommittedOffset {
            topic: topic.clone(),
            partition: 0,
            offset: 7,
            metadata: Some("checkpoint-7".into()),
        }],
    )
    .await
    .expect("commit on the source");
    assert!(refused.is_empty(), "{refused:?}");

    let filters = [filter(&group, PatternType::Literal, FilterType::Include)];
    let mirrors = [mirror(&topic, &topic, vec![10])];
    let mut sync = OffsetSync::new();
    round_until(&mut sync, &c, &filters, None, &mirrors, |r| {
        r.committed == 1
    })
    .await;
    assert_eq!(
        committed(&destination().bootstrap, &group, &topic, 1).await,
        [Some((7, Some("checkpoint-7".to_string())))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_the_new_consumer_protocol_is_synced() {
    let c = clusters();
    let topic = unique("os-kip848");
    topic_with_records(&c.src, &topic, 1, 10).await;
    topic_with_records(destination(), &topic, 1, 10).await;
    let group = unique("os-kip848-group");
    let mut consumer = console_consumer(
        &c.src,
        &topic,
        &group,
        &[
            "--from-beginning",
            "--max-messages",
            "3",
            "--consumer-property",
            "group.protocol=consumer",
        ],
    );
    assert!(consumer.wait().expect("console consumer").success());
    let mut any = connect(&first(&c.src.bootstrap)).await;
    let listed = groups::list_groups(&mut any, &[])
        .await
        .expect("list groups");
    let found = listed.iter().find(|g| g.group_id == group).expect("listed");
    assert_eq!(found.group_type, "consumer", "{found:?}");
    let on_source = committed(&c.src.bootstrap, &group, &topic, 1).await;
    let expected = offsets_only(&on_source);
    assert!(matches!(expected[..], [Some(o)] if o >= 3), "{on_source:?}");

    let filters = [filter(&group, PatternType::Literal, FilterType::Include)];
    let mirrors = [mirror(&topic, &topic, vec![10])];
    let mut sync = OffsetSync::new();
    let report = round_until(&mut sync, &c, &filters, None, &mirrors, |r| {
        r.committed == 1
    })
    .await;
    assert_eq!(report.groups_synced, vec![group.clone()]);
    assert_eq!(
        offsets_only(&committed(&destination().bootstrap, &group, &topic, 1).await),
        expected
    );
}

/// Waits until `group` is listed on `bootstrap`'s brokers in one of `states`.
async fn wait_group_state(bootstrap: &str, group: &str, states: &[&str]) {
    let mut any = connect(&first(bootstrap)).await;
    let what = format!("{group} is one of {states:?}");
    eventually_async(&what, Duration::from_secs(90), async || {
        let metadata = admin::metadata(&mut any, Some(&[]))
            .await
            .expect("metadata");
        let mut state = None;
        for broker in &metadata.brokers {
            let mut conn = connect(&format!("{}:{}", broker.host.as_str(), broker.port)).await;
            // A fresh cluster's coordinators may still be loading: ask again.
            let listed = groups::list_groups(&mut conn, &[])
                .await
                .unwrap_or_default();
            if let Some(g) = listed.into_iter().find(|g| g.group_id == group) {
                state = Some(g.state);
            }
        }
        if state.as_deref().is_some_and(|s| states.contains(&s)) {
            return Ok(());
        }
        Err(format!("{group} is {state:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_in_use_on_the_destination_is_left_alone_until_it_is_free() {
    let c = clusters();
    let topic = unique("os-busy");
    topic_with_records(&c.src, &topic, 1, 10).await;
    topic_with_records(destination(), &topic, 1, 10).await;
    let group = unique("os-busy-group");
    let dest = destination();
    let mut consumer = console_consumer(dest, &topic, &group, &["--from-beginning"]);
    wait_group_state(&dest.bootstrap, &group, &["Stable"]).await;
    reset_offsets(&c.src, &[&group], &topic, 3);

    // The broker itself refuses an admin commit to a group with members.
    let mut conn = connect(&coordinator_of(&dest.bootstrap, &group).await).await;
    let probe = CommittedOffset {
        topic: topic.clone(),
        partition: 0,
        offset: 1,
        metadata: None,
    };
    let refused = groups::commit_offsets(&mut conn, &group, &[probe])
        .await
        .expect("commit");
    assert_eq!(refused, [(topic.clone(), 0, error_code::UNKNOWN_MEMBER_ID)]);

    let filters = [filter(&group, PatternType::Literal, FilterType::Include)];
    let mirrors = [mirror(&topic, &topic, vec![10])];
    let mut sync = OffsetSync::new();
    let before = committed(&dest.bootstrap, &group, &topic, 1).await;
    let report = round_until(&mut sync, &c, &filters, None, &mirrors, |r| {
        !r.groups_in_use.is_empty()
    })
    .await;
    assert_eq!(report.groups_in_use, vec![group.clone()]);
    assert_eq!(report.committed, 0, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    let after = committed(&dest.bootstrap, &group, &topic, 1).await;
    assert_eq!(before, after);
    assert_ne!(offsets_only(&after), [Some(3)]);

    // SIGTERM: the consumer leaves the group, which is then synced.
    let status = Command::new("kill")
        .args(["-TERM", &consumer.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = consumer.wait();
    wait_group_state(&dest.bootstrap, &group, &["Empty"]).await;
    let report = round_until(&mut sync, &c, &filters, None, &mirrors, |r| {
        r.committed == 1
    })
    .await;
    assert!(report.groups_in_use.is_empty(), "{report:?}");
    assert_eq!(
        offsets_only(&committed(&dest.bootstrap, &group, &topic, 1).await),
        [Some(3)]
    );
}
