//! Failback after a failover, through two fleets: A's topic mirrored to B, the link cut
//! (paused) while A takes 1,000 more records, B failed over and written; then
//! `mirrors --truncate-and-restore` on A's mirrorgate, with a link to B, sets those
//! 1,000 records aside and makes A's topic a mirror of B's again, record for record at
//! the same offsets, the consumer group's offsets following. On a healthy pair,
//! `--reverse-and-start-mirror` and `--reverse-and-pause-mirror` flip the direction
//! under a producer that sees no error.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::replication::{
    cli, consume, dump, dump_as, group_filter_file, group_offsets, new_link, replicating, source,
    text,
};
use common::{
    destination, end_offsets, eventually, kcat, repo_root, spawn_traced, unique, Cluster, Proxy,
    Running,
};

const MIRRORED: usize = 100;
/// How long the fleets get to converge.
const CONVERGED: Duration = Duration::from_secs(120);

/// `count` records `{prefix}{i}` to one partition of `topic`, one batch.
fn produce(bootstrap: &str, topic: &str, partition: i32, prefix: &str, count: usize) {
    let values: String = (0..count).map(|i| format!("{prefix}{i}\n")).collect();
    let partition = partition.to_string();
    let out = kcat(
        &["-b", bootstrap, "-P", "-t", topic, "-p", &partition],
        Some(&values),
    );
    assert!(out.output.status.success(), "{}", out.text());
}

fn mirrors(proxy: &Proxy, args: &[&str]) -> String {
    let mut all = vec!["mirrors"];
    all.extend_from_slice(args);
    let out = cli(proxy, &all);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// A topic of two partitions on `a`, with `count` records `{prefix}{i}` in each.
fn topic_on_a(a: &Cluster, name: &str, prefixes: [(&str, usize); 2]) -> String {
    let topic = unique(name);
    common::create_topic(
        a,
        &topic,
        &["--partitions", "2", "--replication-factor", "1"],
    );
    for (partition, (prefix, count)) in (0..).zip(prefixes) {
        produce(&a.bootstrap, &topic, partition, prefix, count);
    }
    topic
}

/// Creates link `name` on `proxy` (the exact name: both sides of a pair share it).
fn link_named(proxy: &Proxy, name: &str, args: &[&str]) {
    let mut all = vec!["cluster-links", "--create", "--link", name];
    all.extend_from_slice(args);
    let created = cli(proxy, &all);
    assert!(created.status.success(), "{}", text(&created));
}

/// Clusters A (the source cluster) and B (the destination), with a fleet of one
/// replicating instance in front of each, on metadata topics of their own.
struct Pair {
    a: Cluster,
    a_metadata: String,
    b_metadata: String,
    proxy_a: Proxy,
    proxy_b: Proxy,
}

fn pair(name: &str) -> Pair {
    let a = source();
    let a_metadata = unique(&format!("_mirrorgate-metadata-{name}-a"));
    let b_metadata = unique(&format!("_mirrorgate-metadata-{name}-b"));
    let proxy_a = Proxy::start(&a, replicating(&a_metadata));
    let proxy_b = Proxy::start(destination(), replicating(&b_metadata));
    Pair {
        a,
        a_metadata,
        b_metadata,
        proxy_a,
        proxy_b,
    }
}

#[test]
fn truncate_and_restore_sets_aside_what_only_the_old_primary_had_and_mirrors_the_new_one() {
    let Pair {
        a,
        a_metadata,
        b_metadata,
        proxy_a,
        proxy_b,
    } = pair("failback");
    let b = destination();
    let topic = topic_on_a(&a, "failback", [("p0-a", MIRRORED), ("p1-a", MIRRORED)]);

    // A -> B, copied whole, on one side of a bidirectional pair of links.
    let to_b = new_link(
        &proxy_b,
        "failback",
        &[
            "--config",
            &format!(
                "bootstrap.servers={},link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic={a_metadata}",
                a.bootstrap
            ),
        ],
    );
    mirrors(
        &proxy_b,
        &["--create", "--mirror-topic", &topic, "--link", &to_b],
    );
    eventually("B's mirror equals A's topic", CONVERGED, || {
        (dump(&b.bootstrap, &topic) == dump(&a.bootstrap, &topic)).then_some(())
    });

    // Cut off: A takes 1,000 records B never gets; B fails over and is written.
    mirrors(&proxy_b, &["--pause", "--topics", &topic]);
    produce(&a.bootstrap, &topic, 0, "p0-only-a", 600);
    produce(&a.bootstrap, &topic, 1, "p1-only-a", 400);
    mirrors(&proxy_b, &["--failover", "--topics", &topic]);
    let described = mirrors(&proxy_b, &["--describe", "--topics", &topic]);
    for partition in 0..2 {
        let line = described
            .lines()
            .find(|l| l.starts_with(&format!("\tPartition: {partition}\t")))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("\tLastMirroredOffset: {}", MIRRORED - 1)),
            "{described}"
        );
    }
    produce(&proxy_b.bootstrap, &topic, 0, "p0-b", 20);
    let group = unique("failback-app");
    consume(&proxy_b.bootstrap, &topic, &group, 70);
    let b_offsets = group_offsets(&b.bootstrap, &group);
    assert!(!b_offsets.is_empty());

    // A comes back: the link of the same name to B on A's fleet, with the group's
    // offsets synced.
    let filters = group_filter_file(&group);
    let to_a = to_b.clone();
    link_named(
        &proxy_a,
        &to_a,
        &[
            "--config",
            &format!(
                "bootstrap.servers={},link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic={b_metadata},consumer.offset.sync.enable=true,consumer.offset.sync.ms=500",
                // One is enough; the inline config splits on commas.
                b.bootstrap.split(',').next().unwrap_or_default()
            ),
            "--consumer-group-filters-json-file",
            &filters.to_string_lossy(),
        ],
    );
    let _ = std::fs::remove_file(filters);
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "--truncate-and-restore",
            "--topics",
            &topic,
            "--link",
            &to_a,
            "--source-metadata-topic",
            &b_metadata,
        ];
        args.extend_from_slice(extra);
        mirrors(&proxy_a, &args)
    };

    // A dry run counts, and changes nothing.
    let before = dump(&a.bootstrap, &topic);
    let dry = restore(&["--dry-run"]);
    assert!(dry.contains("1000 records would be set aside"), "{dry}");
    assert!(
        dry.contains(
            "Partition: 0\tLastMirroredOffset: 99\tLogEndOffset: 700\tSetAsideRecords: 600"
        ),
        "{dry}"
    );
    assert!(
        dry.contains(
            "Partition: 1\tLastMirroredOffset: 99\tLogEndOffset: 500\tSetAsideRecords: 400"
        ),
        "{dry}"
    );
    assert_eq!(dump(&a.bootstrap, &topic), before);

    let done = restore(&[]);
    assert!(done.contains("1000 records set aside"), "{done}");

    // A's topic is B's, record for record at the same offsets.
    eventually("A's topic equals B's", CONVERGED, || {
        (dump(&a.bootstrap, &topic) == dump(&b.bootstrap, &topic)).then_some(())
    });
    // Exactly the 1,000 records only A had, each with the offset it had.
    let set_aside = dump_as(
        &a.bootstrap,
        &format!("{topic}.mirrorgate-truncated"),
        "%p %h %s\\n",
    );
    let expected: BTreeSet<String> = (0..600)
        .map(|i| format!("0 mirrorgate.original.offset={} p0-only-a{i}", MIRRORED + i))
        .chain(
            (0..400).map(|i| format!("1 mirrorgate.original.offset={} p1-only-a{i}", MIRRORED + i)),
        )
        .collect();
    assert_eq!(set_aside.len(), 1000);
    assert_eq!(set_aside.into_iter().collect::<BTreeSet<_>>(), expected);
    // The group's offsets on A are B's.
    eventually("A has the group's offsets", CONVERGED, || {
        (group_offsets(&a.bootstrap, &group) == b_offsets).then_some(())
    });
    // And A's topic is a read-only mirror again.
    let refused = kcat(
        &["-b", &proxy_a.bootstrap, "-P", "-t", &topic, "-p", "0"],
        Some("late\n"),
    );
    assert!(
        refused.text().contains("Broker: Invalid request"),
        "{}",
        refused.text()
    );

    // Later, planned: A becomes the primary again and B its mirror, in one command
    // (B's topic, promoted by the failover, becomes a mirror again).
    let done = mirrors(
        &proxy_a,
        &[
            "--reverse-and-start-mirror",
            "--topics",
            &topic,
            "--link",
            &to_a,
        ],
    );
    assert!(done.contains("are ACTIVE mirrors of them"), "{done}");
    let before = dump(&b.bootstrap, &topic).len();
    produce(&proxy_a.bootstrap, &topic, 1, "p1-a-again", 10);
    eventually("B follows A again", CONVERGED, || {
        let on_a = dump(&a.bootstrap, &topic);
        (on_a.len() == before + 10 && on_a == dump(&b.bootstrap, &topic)).then_some(())
    });
}

#[test]
fn a_bidirectional_pair_mirrors_both_ways_and_never_back() {
    let Pair {
        a,
        a_metadata,
        b_metadata,
        proxy_a,
        proxy_b,
    } = pair("bidi");
    let b = destination();
    let link_config = |bootstrap: &str, remote: &str| {
        format!("bootstrap.servers={bootstrap},link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic={remote}")
    };
    let from_a = new_link(
        &proxy_b,
        "bidi-ab",
        &["--config", &link_config(&a.bootstrap, &a_metadata)],
    );
    let b_first = b.bootstrap.split(',').next().unwrap_or_default();
    let from_b = new_link(
        &proxy_a,
        "bidi-ba",
        &["--config", &link_config(b_first, &b_metadata)],
    );
    let on_a = unique("bidi-on-a");
    let on_b = unique("bidi-on-b");
    common::create_topic(
        &a,
        &on_a,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    common::create_topic(
        b,
        &on_b,
        &["--partitions", "1", "--replication-factor", "3"],
    );
    produce(&a.bootstrap, &on_a, 0, "a", 30);
    produce(&b.bootstrap, &on_b, 0, "b", 20);
    mirrors(
        &proxy_b,
        &["--create", "--mirror-topic", &on_a, "--link", &from_a],
    );
    mirrors(
        &proxy_a,
        &["--create", "--mirror-topic", &on_b, "--link", &from_b],
    );

    // A's mirror on B is never mirrored back to A, under any name.
    let back = cli(
        &proxy_a,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &format!("{on_a}-back"),
            "--source-topic",
            &on_a,
            "--link",
            &from_b,
        ],
    );
    assert!(!back.status.success(), "{}", text(&back));
    assert!(
        text(&back).contains("mirroring it back would loop"),
        "{}",
        text(&back)
    );

    // Writes go on on both sides; each topic ends the same on both, nothing twice.
    produce(&a.bootstrap, &on_a, 0, "a-more", 10);
    produce(&b.bootstrap, &on_b, 0, "b-more", 10);
    for (topic, count) in [(&on_a, 40), (&on_b, 30)] {
        eventually("the mirrors caught up", CONVERGED, || {
            let (here, there) = (dump(&a.bootstrap, topic), dump(&b.bootstrap, topic));
            (here == there && here.len() == count).then_some(())
        });
    }
}

#[test]
fn a_planned_failback_makes_the_old_topic_a_mirror_in_place() {
    let Pair {
        a,
        b_metadata,
        proxy_a,
        proxy_b,
        ..
    } = pair("inplace");
    let b = destination();
    let topic = topic_on_a(&a, "inplace", [("p0-a", 30), ("p1-a", 20)]);
    let to_b = new_link(
        &proxy_b,
        "inplace-ab",
        &["--config", &format!("bootstrap.servers={}", a.bootstrap)],
    );
    mirrors(
        &proxy_b,
        &["--create", "--mirror-topic", &topic, "--link", &to_b],
    );
    eventually("B's mirror equals A's topic", CONVERGED, || {
        (dump(&b.bootstrap, &topic) == dump(&a.bootstrap, &topic)).then_some(())
    });
    // A group read on A; nothing more is written there.
    let group = unique("inplace-app");
    consume(&a.bootstrap, &topic, &group, 25);
    let a_offsets = group_offsets(&a.bootstrap, &group);
    assert!(!a_offsets.is_empty());

    // B takes over, with nothing lost, and is written.
    mirrors(&proxy_b, &["--failover", "--topics", &topic]);
    produce(&proxy_b.bootstrap, &topic, 1, "p1-b", 15);

    let b_first = b.bootstrap.split(',').next().unwrap_or_default();
    let to_a = new_link(
        &proxy_a,
        "inplace-ba",
        &[
            "--config",
            &format!("bootstrap.servers={b_first},mirror.remote.metadata.topic={b_metadata}"),
        ],
    );
    let done = mirrors(
        &proxy_a,
        &[
            "--truncate-and-restore",
            "--topics",
            &topic,
            "--link",
            &to_a,
        ],
    );
    assert!(done.contains("0 records set aside"), "{done}");
    assert!(done.contains("(in place"), "{done}");
    // Not deleted: the group's offsets on A are still there; B's new records arrive.
    assert_eq!(group_offsets(&a.bootstrap, &group), a_offsets);
    eventually("A's topic equals B's", CONVERGED, || {
        let here = dump(&a.bootstrap, &topic);
        (here == dump(&b.bootstrap, &topic) && here.len() == 65).then_some(())
    });
}

/// An idempotent Java verifiable producer through `proxy`: `count` records at `rate`/s.
fn steady_producer(proxy: &Proxy, topic: &str, count: usize, rate: usize) -> Running {
    let config = std::env::temp_dir().join(unique("mg-reverse-producer.properties"));
    std::fs::write(
        &config,
        "enable.idempotence=true\nacks=all\nretries=2147483647\n",
    )
    .unwrap();
    spawn_traced(
        &repo_root().join("testbed/kafka"),
        &[
            "tool",
            "kafka-verifiable-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            topic,
            "--max-messages",
            &count.to_string(),
            "--throughput",
            &rate.to_string(),
            "--value-prefix",
            "7",
            "--producer.config",
            config.to_str().unwrap(),
        ],
        false,
        Duration::from_secs(180),
        None,
    )
}

fn describe_line(proxy: &Proxy, topic: &str) -> String {
    let out = mirrors(proxy, &["--describe", "--topics", topic]);
    out.lines()
        .find(|l| l.contains("State:"))
        .unwrap_or_default()
        .to_string()
}

/// A healthy pair flipped both ways: A's topic mirrored to B, then (under a producer
/// writing through B's mirrorgate, forwarded to A) `--reverse-and-start-mirror` on B
/// makes B's topic writable and A's an ACTIVE mirror of it, the producer seeing no
/// error; then `--reverse-and-pause-mirror` on A flips it back, B's a PAUSED mirror.
#[test]
fn reverse_and_start_flips_a_pair_under_a_steady_producer_and_reverse_and_pause_flips_it_back() {
    // 20 s at 150 records/s: the reverse must begin while it runs, even on a busy machine.
    const PRODUCED: usize = 3_000;
    let Pair {
        a,
        a_metadata,
        b_metadata,
        proxy_a,
        proxy_b,
    } = pair("reverse");
    let b = destination();
    let b_first = b.bootstrap.split(',').next().unwrap_or_default();
    // One link name on both sides, bidirectional, writes forwarded to the source.
    let link = new_link(
        &proxy_b,
        "reverse",
        &[
            "--config",
            &format!(
                "bootstrap.servers={},link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic={a_metadata},mirror.produce.mode=forward",
                a.bootstrap
            ),
        ],
    );
    let topic = topic_on_a(&a, "reverse", [("a0-", 50), ("a1-", 50)]);
    mirrors(
        &proxy_b,
        &["--create", "--mirror-topic", &topic, "--link", &link],
    );
    // Without the same link on A's side, a reverse is refused before anything is fenced.
    let refused = cli(
        &proxy_b,
        &[
            "mirrors",
            "--reverse-and-start-mirror",
            "--topics",
            &topic,
            "--link",
            &link,
        ],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("has no link"), "{}", text(&refused));
    assert!(describe_line(&proxy_b, &topic).contains("ACTIVE"));

    link_named(
        &proxy_a,
        &link,
        &[
            "--config",
            &format!(
                "bootstrap.servers={b_first},link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic={b_metadata},mirror.produce.mode=forward"
            ),
        ],
    );
    eventually("B's mirror equals A's topic", CONVERGED, || {
        (dump(&b.bootstrap, &topic) == dump(&a.bootstrap, &topic)).then_some(())
    });

    // A dry run checks both sides and changes nothing.
    let plan = mirrors(
        &proxy_b,
        &[
            "--reverse-and-start-mirror",
            "--topics",
            &topic,
            "--link",
            &link,
            "--dry-run",
        ],
    );
    assert!(plan.contains("becomes an ACTIVE mirror"), "{plan}");
    assert!(describe_line(&proxy_b, &topic).contains("ACTIVE"));

    let producer = steady_producer(&proxy_b, &topic, PRODUCED, 150);
    // Reversed once the producer's writes reach A (forwarded), so the flip is mid-run.
    eventually("the producer's first records are on A", CONVERGED, || {
        let ends: i64 = end_offsets(&a, &topic)
            .lines()
            .filter_map(|line| line.rsplit(':').next()?.parse::<i64>().ok())
            .sum();
        (ends > 100).then_some(())
    });
    let done = mirrors(
        &proxy_b,
        &[
            "--reverse-and-start-mirror",
            "--topics",
            &topic,
            "--link",
            &link,
        ],
    );
    eprintln!("{done}");
    assert!(done.contains("are ACTIVE mirrors of them"), "{done}");
    let producer = producer.wait();
    let acked = common::replication::verifiable_acks(&producer, PRODUCED);

    // B's topic is writable and holds every record once, each at the offset its
    // producer was told; A's topic is an ACTIVE mirror of it and catches up.
    assert!(describe_line(&proxy_b, &topic).contains("STOPPED"));
    let a_line = describe_line(&proxy_a, &topic);
    assert!(
        a_line.contains("ACTIVE") && a_line.contains(&link),
        "{a_line}"
    );
    let on_b = common::replication::by_offset(&dump(&b.bootstrap, &topic));
    for (at, value) in &acked {
        assert_eq!(on_b.get(at), Some(value), "B at {at:?}");
    }
    let values: BTreeSet<&String> = on_b.values().collect();
    assert_eq!(values.len(), on_b.len(), "no record twice");
    assert_eq!(on_b.len(), 100 + PRODUCED);
    // The flip came mid-run: B recorded, on promoting, what it had mirrored from A.
    let described = mirrors(&proxy_b, &["--describe", "--topics", &topic]);
    let mirrored: i64 = described
        .split("LastMirroredOffset: ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<i64>().ok())
        .map(|last| last + 1)
        .sum();
    assert!(
        mirrored > 100 && mirrored < (100 + PRODUCED) as i64,
        "{mirrored} records came from A before the flip: {described}"
    );
    eventually("A's topic equals B's", CONVERGED, || {
        (dump(&a.bootstrap, &topic) == dump(&b.bootstrap, &topic)).then_some(())
    });
    // Written through A's mirrorgate now, a record is forwarded to B, the source.
    produce(&proxy_a.bootstrap, &topic, 0, "via-a-", 5);
    eventually("A's write is on B and back on A", CONVERGED, || {
        let on_b = dump(&b.bootstrap, &topic);
        (on_b.len() == 105 + PRODUCED && on_b == dump(&a.bootstrap, &topic)).then_some(())
    });

    // And back: A's topic writable again, B's a PAUSED mirror of it.
    let done = mirrors(
        &proxy_a,
        &[
            "--reverse-and-pause-mirror",
            "--topics",
            &topic,
            "--link",
            &link,
        ],
    );
    assert!(done.contains("are PAUSED mirrors of them"), "{done}");
    assert!(describe_line(&proxy_a, &topic).contains("STOPPED"));
    eventually("B's topic is a PAUSED mirror", CONVERGED, || {
        let line = describe_line(&proxy_b, &topic);
        (line.contains("PAUSED") && line.contains(&link)).then_some(())
    });
    produce(&proxy_a.bootstrap, &topic, 1, "a-again-", 10);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dump(&b.bootstrap, &topic).len(), 105 + PRODUCED, "paused");
    mirrors(&proxy_b, &["--resume", "--topics", &topic]);
    eventually("B follows A again", CONVERGED, || {
        let on_a = dump(&a.bootstrap, &topic);
        (on_a.len() == 115 + PRODUCED && on_a == dump(&b.bootstrap, &topic)).then_some(())
    });
}
