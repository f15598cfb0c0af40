//! Copying shared by a fleet: three replicating instances split a mirror's partitions
//! through the fleet's consumer group; SIGKILL one mid-copy, then another, and the
//! survivor takes their partitions over and finishes: every record identical at its
//! offset, nothing FAILED, and `kafka-consumer-groups` shows the new assignment.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::replication::{
    cli, describe_group, destination_records, dump_as, link_and_mirror, load_one_per_batch,
    replicating, text, wait_identical_within,
};
use common::{destination, eventually, eventually_every, http_get, unique, Proxy, ProxyOptions};

/// Every field `kcat` shows that copying must keep.
const FULL: &str = "%p %o %k %s %T %h\\n";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 16_000;

/// A replicating instance whose crash is noticed after 6 s (the broker's minimum).
fn member(metadata_topic: &str) -> ProxyOptions {
    let mut options = replicating(metadata_topic);
    options.extra_tables.push_str("session_timeout_ms = 6000\n");
    options
}

/// The mirror partitions an instance copies, from `/admin/fleet`.
fn partitions_here(proxy: &Proxy) -> BTreeSet<String> {
    let (code, body) = http_get(&proxy.admin, "/admin/fleet").expect("admin answers");
    assert_eq!(code, 200, "{body}");
    let fleet: serde_json::Value = serde_json::from_str(&body).expect("fleet JSON");
    fleet["mirror_partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(String::from))
        .collect()
}

/// Waits until the live instances hold every partition of `topic` exactly once.
fn wait_split(live: &[&Proxy], topic: &str) -> Vec<BTreeSet<String>> {
    let all: BTreeSet<String> = (0..PARTITIONS).map(|p| format!("{topic}-{p}")).collect();
    let what = format!("the live instances split {topic}");
    eventually(&what, Duration::from_secs(60), || {
        let held: Vec<BTreeSet<String>> = live.iter().map(|p| partitions_here(p)).collect();
        let total: usize = held.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<String> = held.iter().flatten().cloned().collect();
        if union == all && total == all.len() {
            return Ok(held);
        }
        Err(format!("held {held:?}"))
    })
}

fn group_members(group: &str) -> usize {
    describe_group(group)
        .lines()
        .filter(|l| l.starts_with(group))
        .count()
}

#[test]
fn three_instances_share_a_mirror_and_the_survivor_finishes_after_two_are_killed() {
    let source = common::replication::source();
    let metadata = unique("_mirrorgate-metadata-fleet-copy");
    let options = member(&metadata);
    let a = Proxy::start(destination(), options.clone());
    let mut b = Proxy::start(destination(), options.clone());
    let mut c = Proxy::start(destination(), options.clone());
    let topic = unique("fleet-copy");
    common::create_topic(
        &source,
        &topic,
        &[
            "--partitions",
            &PARTITIONS.to_string(),
            "--replication-factor",
            "1",
        ],
    );
    // One record per batch, so the copy takes a while.
    let records: String = (0..RECORDS).map(|i| format!("k{i}:v{i:06}\n")).collect();
    load_one_per_batch(&source, &topic, &records, &["-K", ":"]);
    link_and_mirror(&a, &source, &topic);

    let held = wait_split(&[&a, &b, &c], &topic);
    assert!(
        held.iter().filter(|h| !h.is_empty()).count() >= 2,
        "the work is shared: {held:?}"
    );
    let group = format!("mirrorgate.{metadata}");
    assert_eq!(group_members(&group), 3, "{}", describe_group(&group));

    // Kill one mid-copy, then another once the copy has moved on (checked often, to
    // catch it under way).
    let often = Duration::from_millis(50);
    eventually_every("the copy started", Duration::from_secs(120), often, || {
        (destination_records(&topic, PARTITIONS) > 0).then_some(())
    });
    let at_first_kill = destination_records(&topic, PARTITIONS);
    assert!(
        at_first_kill < RECORDS as i64,
        "copy finished before the kill; make it bigger"
    );
    b.kill();
    wait_split(&[&a, &c], &topic);
    eventually_every(
        "the copy moves on after the first kill",
        Duration::from_secs(120),
        often,
        || (destination_records(&topic, PARTITIONS) > at_first_kill).then_some(()),
    );
    c.kill();
    let survivor = wait_split(&[&a], &topic);
    assert_eq!(survivor[0].len(), PARTITIONS as usize);

    wait_identical_within(&a, &source, &topic, Duration::from_secs(400));
    assert_eq!(
        dump_as(&a.bootstrap, &topic, FULL),
        dump_as(&source.bootstrap, &topic, FULL),
        "every field of every record at its offset"
    );
    let described = text(&cli(&a, &["mirrors", "--describe", "--topics", &topic]));
    assert!(described.contains("State: ACTIVE"), "{described}");
    assert_eq!(group_members(&group), 1, "{}", describe_group(&group));
    let fleet = text(&cli(&a, &["cluster-links", "--describe"]));
    assert!(fleet.contains("Fleet group: 'mirrorgate."), "{fleet}");
}
