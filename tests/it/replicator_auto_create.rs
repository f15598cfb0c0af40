//! Auto-created mirrors on a prefixed link: source topics matching the link's topic
//! filters become mirrors named prefix + source topic, also topics created later;
//! others do not, and a hand-made mirror on that link must carry the prefix.

use crate::common;

use std::time::Duration;

use common::replication::{cli, dump, replicating, source, text};
use common::{destination, eventually, kcat, unique, Proxy};

fn produce(bootstrap: &str, topic: &str, values: &str) {
    let out = kcat(&["-b", bootstrap, "-P", "-t", topic], Some(values));
    assert!(out.output.status.success(), "{}", out.text());
}

/// Waits until the mirror, read through the proxy, holds the source topic's records.
fn wait_mirrored(proxy: &Proxy, source_bootstrap: &str, topic: &str, mirror: &str) {
    let expected = dump(source_bootstrap, topic);
    let what = format!("{mirror} mirrors {topic}");
    eventually(&what, Duration::from_secs(60), || {
        let listed = text(&cli(proxy, &["mirrors", "--list"]));
        if listed.lines().any(|l| l.trim() == mirror) && dump(&proxy.bootstrap, mirror) == expected
        {
            return Ok(());
        }
        Err(format!("mirrors listed: {listed}"))
    });
}

#[test]
fn matching_source_topics_become_prefixed_mirrors_now_and_later() {
    let source = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-auto")),
    );
    let family = unique("auto");
    let early = format!("{family}.early");
    let late = format!("{family}.late");
    let excluded = format!("{family}.secret");
    let other = unique("unrelated");
    for topic in [&early, &excluded, &other] {
        common::create_topic(
            &source,
            topic,
            &["--partitions", "2", "--replication-factor", "1"],
        );
        produce(&source.bootstrap, topic, "one\ntwo\nthree\n");
    }
    let filters = std::env::temp_dir().join(format!("{family}-filters.json"));
    std::fs::write(
        &filters,
        format!(
            r#"{{"topicFilters":[
                {{"name":"{family}.","patternType":"PREFIXED","filterType":"INCLUDE"}},
                {{"name":"{excluded}","patternType":"LITERAL","filterType":"EXCLUDE"}}]}}"#
        ),
    )
    .expect("write filters");
    let link = unique("auto-link");
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!(
                "bootstrap.servers={},cluster.link.prefix=src.,auto.create.mirror.topics.enable=true,topic.config.sync.ms=500",
                source.bootstrap
            ),
            "--topic-filters-json-file",
            &filters.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // A topic that existed before the link, and one created after it.
    wait_mirrored(&proxy, &source.bootstrap, &early, &format!("src.{early}"));
    common::create_topic(
        &source,
        &late,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    produce(&source.bootstrap, &late, "later\n");
    wait_mirrored(&proxy, &source.bootstrap, &late, &format!("src.{late}"));

    let listed = text(&cli(&proxy, &["mirrors", "--list", "--link", &link]));
    assert!(
        !listed.contains(&excluded),
        "excluded topic mirrored: {listed}"
    );
    assert!(
        !listed.contains(&other),
        "unmatched topic mirrored: {listed}"
    );
    let described = text(&cli(
        &proxy,
        &["cluster-links", "--describe", "--link", &link],
    ));
    assert!(
        described.contains("Task: AutoCreateMirror  State: ACTIVE"),
        "{described}"
    );

    // On a prefixed link a mirror's name is prefix + source topic.
    let out = cli(
        &proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            &other,
            "--link",
            &link,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must be named 'src.'"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_file(filters);
}
