//! Conditional copying through the real binary: two instances copying the same mirror
//! at once (each alone in its own fleet group) end with an identical mirror (the broker refuses whichever append comes
//! second), and a record written behind the proxy fails the mirror when it resumes.

use crate::common;

use std::time::Duration;

use common::replication::{
    cli, dump_as, link_and_mirror, load_one_per_batch, one_partition_topic, replicating, text,
};
use common::{destination, eventually, eventually_every, kcat, unique, Proxy};

/// Every field `kcat` shows that copying must keep.
const FULL: &str = "%p %o %k %s %T %h\\n";
/// One record per batch, so the copy lasts long enough for both copiers to be at it.
const RECORDS: usize = 5_000;

fn refusals(proxy: &Proxy) -> u64 {
    proxy.metric_sum("mirrorgate_conditional_append_refusals_total") as u64
}

#[test]
fn two_instances_copying_one_mirror_leave_it_identical() {
    let source = common::replication::source();
    let options = replicating(&unique("_mirrorgate-metadata-two"));
    let a = Proxy::start(destination(), options.clone());
    let topic = unique("two-copiers");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    let records: String = (0..RECORDS)
        .map(|i| format!("k{i}:record-{i:06}\n"))
        .collect();
    load_one_per_batch(
        &source,
        &topic,
        &records,
        &["-K", ":", "-H", "origin=source"],
    );
    link_and_mirror(&a, &source, &topic);
    // The second instance reads the same mirror from the metadata topic but is in a
    // group of its own (a misconfigured fleet): both hold every shard and copy every
    // partition at once.
    let mut alone = options.clone();
    alone
        .extra_tables
        .push_str(&format!("group_id = \"{}\"\n", unique("mirrorgate-alone")));
    let b = Proxy::start(destination(), alone);

    let expected = dump_as(&source.bootstrap, &topic, FULL);
    assert_eq!(expected.len(), RECORDS);
    // A second apart: each look reads every record.
    let every = Duration::from_secs(1);
    eventually_every(
        "the mirror equals the source",
        Duration::from_secs(400),
        every,
        || {
            let got = dump_as(&a.bootstrap, &topic, FULL);
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
    // Read through the other instance too, and straight from the destination.
    assert_eq!(dump_as(&b.bootstrap, &topic, FULL), expected);
    let (from_a, from_b) = (refusals(&a), refusals(&b));
    eprintln!("conditional append refusals: instance A {from_a}, instance B {from_b}");
    assert!(from_a + from_b > 0, "the two copiers never collided");
    for proxy in [&a, &b] {
        let described = text(&cli(proxy, &["mirrors", "--describe", "--topics", &topic]));
        assert!(!described.contains("FAILED"), "{described}");
    }
}

#[test]
fn a_record_written_behind_the_proxy_fails_the_mirror_on_resume() {
    let source = common::replication::source();
    let options = replicating(&unique("_mirrorgate-metadata-foreign"));
    let mut proxy = Proxy::start(destination(), options.clone());
    let topic = one_partition_topic(&source, "foreign", "a\nb\nc\n");
    link_and_mirror(&proxy, &source, &topic);
    common::replication::wait_identical(&proxy, &source, &topic);
    // Created CreateTime explicitly, and config sync leaves it so.
    std::thread::sleep(Duration::from_secs(6));
    let configs =
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(common::kafka::topic_configs(
                &destination().bootstrap,
                &topic,
            ));
    assert_eq!(
        configs.get("message.timestamp.type").map(String::as_str),
        Some("CreateTime")
    );
    proxy.terminate(Duration::from_secs(30));

    // Straight to the destination broker, at the mirror's end.
    let write = kcat(
        &[
            "-b",
            &destination().bootstrap,
            "-P",
            "-t",
            &topic,
            "-p",
            "0",
        ],
        Some("foreign\n"),
    );
    assert!(write.output.status.success(), "{}", write.text());

    let restarted = Proxy::start(destination(), options);
    let described = eventually("the mirror fails", Duration::from_secs(60), || {
        let described = text(&cli(
            &restarted,
            &["mirrors", "--describe", "--topics", &topic],
        ));
        if described.contains("FAILED") {
            return Ok(described);
        }
        Err(described)
    });
    assert!(described.contains("OFFSET_MISMATCH"), "{described}");
    assert!(described.contains("offsets 3..=3"), "{described}");
    // Nothing more was copied: the foreign record is still the last one.
    let dest = dump_as(&destination().bootstrap, &topic, "%o %s\\n");
    assert_eq!(dest.last().map(String::as_str), Some("3 foreign"));
}
