//! Consumer offset sync through the real binary, as in the walkthrough: groups the
//! link's filters include get their source offsets on the destination (seen through
//! the proxy with Kafka's own tools); others do not; a group busy on the destination is
//! left alone and reported; after failover a group resumes exactly where it stopped on
//! the source; on a prefixed link, group and topic names carry the prefix.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::replication::{cli, consume, group_offsets, replicating, source, text};
use common::{destination, eventually, kcat, unique, Cluster, Proxy};

const RECORDS: usize = 20;

/// A 1-partition source topic holding r0..r19.
fn topic_with_records(source: &Cluster, prefix: &str) -> String {
    let topic = unique(prefix);
    common::create_topic(
        source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    let values: String = (0..RECORDS).map(|i| format!("r{i}\n")).collect();
    let out = kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some(&values),
    );
    assert!(out.output.status.success(), "{}", out.text());
    topic
}

fn wait_offset(bootstrap: &str, group: &str, topic: &str, expected: i64) {
    let what = format!("{group} is at {expected} on {topic}");
    eventually(&what, Duration::from_secs(60), || {
        let offsets = group_offsets(bootstrap, group);
        if offsets.get(&(topic.to_string(), 0)) == Some(&expected) {
            return Ok(());
        }
        Err(format!(
            "{group} on {topic}: {offsets:?}, expected {expected}"
        ))
    });
}

fn link(proxy: &Proxy, source: &Cluster, configs: &str, filters: &str) -> String {
    let link = unique("offsets-link");
    let file = std::env::temp_dir().join(format!("{link}-groups.json"));
    std::fs::write(&file, filters).expect("write filters");
    let out = cli(
        proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!(
                "bootstrap.servers={},consumer.offset.sync.enable=true,consumer.offset.sync.ms=500{configs}",
                source.bootstrap
            ),
            "--consumer-group-filters-json-file",
            &file.to_string_lossy(),
        ],
    );
    let _ = std::fs::remove_file(file);
    assert!(out.status.success(), "{}", text(&out));
    link
}

fn mirror(proxy: &Proxy, link: &str, mirror: &str) {
    let out = cli(
        proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            mirror,
            "--link",
            link,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

fn filter(name: &str, pattern: &str, kind: &str) -> String {
    format!(r#"{{"name":"{name}","patternType":"{pattern}","filterType":"{kind}"}}"#)
}

/// A console consumer left running on the destination as a member of `group`.
fn busy_member(proxy: &Proxy, topic: &str, group: &str) -> Child {
    Command::new(common::repo_root().join("testbed/kafka"))
        .args(["tool", "kafka-console-consumer", "--bootstrap-server"])
        .args([&proxy.bootstrap, "--topic", topic, "--group", group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("console consumer")
}

#[test]
fn filtered_groups_follow_the_mirror_and_resume_exactly_after_failover() {
    let source = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-offsets")),
    );
    let topic = topic_with_records(&source, "offsets");
    let included = unique("app");
    let excluded = format!("{included}-audit");
    let family = unique("family");
    let prefixed = format!("{family}-reader");
    let unmatched = unique("stranger");
    let busy = unique("busy");
    let filters = format!(
        r#"{{"groupFilters":[{},{},{},{}]}}"#,
        filter(&included, "LITERAL", "INCLUDE"),
        filter(&excluded, "LITERAL", "EXCLUDE"),
        filter(&format!("{family}-"), "PREFIXED", "INCLUDE"),
        filter(&busy, "LITERAL", "INCLUDE"),
    );
    let link = link(&proxy, &source, "", &filters);
    mirror(&proxy, &link, &topic);

    // Half the topic read on the source by the included group; others read too.
    assert_eq!(
        consume(&source.bootstrap, &topic, &included, 10),
        (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    consume(&source.bootstrap, &topic, &excluded, 4);
    consume(&source.bootstrap, &topic, &prefixed, 7);
    consume(&source.bootstrap, &topic, &unmatched, 5);
    wait_offset(&proxy.bootstrap, &included, &topic, 10);
    wait_offset(&proxy.bootstrap, &prefixed, &topic, 7);
    assert!(group_offsets(&proxy.bootstrap, &excluded).is_empty());
    assert!(group_offsets(&proxy.bootstrap, &unmatched).is_empty());

    // A group with a member on the destination is not overwritten, and reported.
    let mut member = busy_member(&proxy, &topic, &busy);
    eventually("the busy member committed", Duration::from_secs(60), || {
        (!group_offsets(&proxy.bootstrap, &busy).is_empty()).then_some(())
    });
    consume(&source.bootstrap, &topic, &busy, 3);
    eventually(
        "the link reports the busy group in use",
        Duration::from_secs(60),
        || {
            let described = text(&cli(
                &proxy,
                &["cluster-links", "--describe", "--link", &link],
            ));
            if described.contains(
                "Task: ConsumerOffsetSync  State: IN_ERROR  Errors: CONSUMER_GROUP_IN_USE",
            ) && described.contains(&busy)
            {
                return Ok(());
            }
            Err(described)
        },
    );
    assert_ne!(
        group_offsets(&proxy.bootstrap, &busy).get(&(topic.clone(), 0)),
        Some(&3),
        "the busy group was overwritten"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &member.id().to_string()])
        .status();
    let _ = member.wait();

    // An altered filter list applies from the next round.
    let all = format!(
        r#"{{"groupFilters":[{},{}]}}"#,
        filter("*", "LITERAL", "INCLUDE"),
        filter(&excluded, "LITERAL", "EXCLUDE"),
    );
    let file = std::env::temp_dir().join(format!("{link}-all.json"));
    std::fs::write(&file, all).expect("write filters");
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--alter",
            "--link",
            &link,
            "--consumer-group-filters-json-file",
            &file.to_string_lossy(),
        ],
    );
    let _ = std::fs::remove_file(file);
    assert!(out.status.success(), "{}", text(&out));
    wait_offset(&proxy.bootstrap, &unmatched, &topic, 5);
    assert!(group_offsets(&proxy.bootstrap, &excluded).is_empty());

    // Failover, then the group goes on through the proxy: the first record it gets is
    // the one after its last committed source record, and nothing is read twice.
    let out = cli(&proxy, &["mirrors", "--failover", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
    let rest = consume(&proxy.bootstrap, &topic, &included, 10);
    assert_eq!(
        rest,
        (10..RECORDS).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_prefixed_link_prefixes_group_and_topic_names() {
    let source = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-prefixed-offsets")),
    );
    let topic = topic_with_records(&source, "prefixed-offsets");
    let group = unique("prefixed-app");
    let filters = format!(
        r#"{{"groupFilters":[{}]}}"#,
        filter(&group, "LITERAL", "INCLUDE")
    );
    let link = link(
        &proxy,
        &source,
        ",cluster.link.prefix=dr.,consumer.group.prefix.enable=true",
        &filters,
    );
    let mirror_topic = format!("dr.{topic}");
    mirror(&proxy, &link, &mirror_topic);
    consume(&source.bootstrap, &topic, &group, 6);
    wait_offset(&proxy.bootstrap, &format!("dr.{group}"), &mirror_topic, 6);
    assert!(group_offsets(&proxy.bootstrap, &group).is_empty());
}
