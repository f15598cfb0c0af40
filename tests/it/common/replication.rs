//! Helpers for replicator tests: the CLI against a running mirrorgate, replicating
//! proxy options, topic dumps, and the shared development certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::producer::init_producer_id;
use mirrorgate::replicator::partition::PartitionCopier;
use mirrorgate::replicator::produce_mux::ProduceMux;

use super::kafka::connect;
use super::{
    destination, eventually, kcat, repo_root, test_port_base, unique, Cluster, Proxy, ProxyOptions,
};

/// `mirrorgate ARGS --admin-url ...`; retried while the replicator is still loading
/// its state (right after start).
pub fn cli(proxy: &Proxy, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_mirrorgate"))
            .args(args)
            .args(["--admin-url", &format!("http://{}", proxy.admin)])
            .output()
            .expect("run the CLI");
        if out.status.success()
            || !text(&out).contains("not loaded yet")
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// stdout then stderr of a command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Proxy options with the replicator on, on a metadata topic of the test's own.
pub fn replicating(metadata_topic: &str) -> ProxyOptions {
    ProxyOptions {
        extra_tables: format!(
            "\n[replicator]\nenabled = true\nmetadata_topic = \"{metadata_topic}\"\n"
        ),
        ..Default::default()
    }
}

/// "partition offset value" of every record of a topic, sorted.
pub fn dump(bootstrap: &str, topic: &str) -> Vec<String> {
    dump_as(bootstrap, topic, "%p %o %s\\n")
}

/// Every record of a topic in kcat's `-f` format, sorted.
pub fn dump_as(bootstrap: &str, topic: &str, format: &str) -> Vec<String> {
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
            format,
        ],
        None,
    );
    let mut lines: Vec<String> = out.stdout().lines().map(String::from).collect();
    lines.sort();
    lines
}

/// One development CA and its certificates for every run, so a TLS cluster left up
/// by an earlier run still matches them.
pub fn test_certs() -> PathBuf {
    let dir = repo_root().join("testbed/.cache/test-certs");
    let status = Command::new(repo_root().join("certs/make-dev-certs"))
        .arg(&dir)
        .arg("--if-missing")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("make-dev-certs");
    assert!(status.success());
    dir
}

/// A replicating mirrorgate that seals link credentials, with a secret key in `dir`.
pub fn sealing_proxy(dir: &Path) -> Proxy {
    Proxy::start(destination(), sealing_options(dir))
}

/// Options of a replicating mirrorgate that seals link credentials, with a secret key
/// in `dir`.
pub fn sealing_options(dir: &Path) -> ProxyOptions {
    let key = dir.join("secret.key");
    std::fs::write(
        &key,
        "8d0c4a5e1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5\n",
    )
    .expect("write the secret key");
    let metadata_topic = unique("_mirrorgate-metadata-secured");
    let tables = format!(
        "\n[replicator]\nenabled = true\nmetadata_topic = \"{metadata_topic}\"\nsecret_key_file = \"{}\"\n",
        key.display()
    );
    ProxyOptions {
        extra_tables: tables,
        ..Default::default()
    }
}

/// The SCRAM login of the SASL test cluster's user alice, as `sasl.jaas.config`.
pub const ALICE_JAAS: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";";

/// A new link to the SASL test cluster `source`, as alice with SCRAM-SHA-512, created
/// from a properties file in `dir` as operators write them.
pub fn scram_link(proxy: &Proxy, source: &Cluster, dir: &Path) -> String {
    let config = dir.join("scram.properties");
    std::fs::write(
        &config,
        format!(
            "bootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config={ALICE_JAAS}\n",
            source.bootstrap
        ),
    )
    .expect("write the link config");
    new_link(
        proxy,
        "scram-link",
        &["--config-file", &config.to_string_lossy()],
    )
}

/// `cluster-links --create` of a link named from `prefix`, with `args`; asserts success.
pub fn new_link(proxy: &Proxy, prefix: &str, args: &[&str]) -> String {
    let link = unique(prefix);
    let mut create = vec!["cluster-links", "--create", "--link", &link];
    create.extend(args);
    let out = cli(proxy, &create);
    assert!(out.status.success(), "{}", text(&out));
    link
}

/// A `--consumer-group-filters-json-file` including `group` alone (the caller removes
/// it once the link is made).
pub fn group_filter_file(group: &str) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("{group}-filters.json"));
    std::fs::write(
        &file,
        format!(
            r#"{{"groupFilters":[{{"name":"{group}","patternType":"LITERAL","filterType":"INCLUDE"}}]}}"#
        ),
    )
    .expect("write filters");
    file
}

/// The 1-node source cluster shared by replicator tests.
pub fn source() -> Cluster {
    Cluster::up("mg-src", 1, test_port_base() + 530)
}

/// A copier from partition 0 of `topic` on `src` to `mirror` on the destination,
/// where the mirror is pinned to broker 0 (so that is its leader).
pub async fn copier(src: &Cluster, topic: &str, mirror: &str) -> PartitionCopier {
    let source_conn = connect(&src.bootstrap).await;
    let dest_leader = destination()
        .bootstrap
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut init = connect(&dest_leader).await;
    let producer = init_producer_id(&mut init).await.expect("producer id");
    let dest_conn = KafkaConnection::connect(&dest_leader, "copier-test", Duration::from_secs(10))
        .await
        .expect("destination leader");
    let mux = ProduceMux::start(
        KafkaConnection::connect(&dest_leader, "copier-test", Duration::from_secs(10))
            .await
            .expect("destination leader"),
    );
    PartitionCopier::resume(topic, mirror, 0, source_conn, dest_conn, mux, producer)
        .await
        .expect("copier")
}

/// Copies until the copier reaches `end`; returns the filler records produced.
pub async fn copy_to_end(copier: &mut PartitionCopier, end: i64) -> u64 {
    copy_to_end_counting(copier, end).await.0
}

/// Copies until the copier reaches `end`; returns the filler records produced and the
/// offsets reported lost (the source's retention passed them before they were copied).
pub async fn copy_to_end_counting(copier: &mut PartitionCopier, end: i64) -> (u64, u64) {
    let (mut fillers, mut lost) = (0, 0);
    for _ in 0..200 {
        let progress = copier.copy_once(200).await.expect("copy");
        fillers += progress.fillers;
        lost += progress.lost;
        if progress.next_offset >= end {
            return (fillers, lost);
        }
    }
    panic!("copier did not reach {end}, at {}", copier.next_offset());
}

/// Produces `lines` to `topic` on `source` with kcat, one record per batch, so that
/// copying takes a produce round trip per record; `args` adds kcat flags (-K, -H, ...).
pub fn load_one_per_batch(source: &Cluster, topic: &str, lines: &str, args: &[&str]) {
    let mut all = vec!["-b", source.bootstrap.as_str(), "-P", "-t", topic];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-X", "linger.ms=0", "-X", "batch.num.messages=1"]);
    let load = kcat(&all, Some(lines));
    assert!(load.output.status.success(), "{}", load.text());
}

/// `kafka-consumer-groups --describe --members --verbose` of `group`, straight from
/// the destination.
pub fn describe_group(group: &str) -> String {
    let out = super::kafka_tool_direct(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        &destination().bootstrap,
        "--describe",
        "--group",
        group,
        "--members",
        "--verbose",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

pub fn link_and_mirror(proxy: &Proxy, source: &Cluster, topic: &str) -> String {
    link_and_mirror_with(proxy, source, topic, "")
}

/// A link with `extra` link configs (",k=v..."), and a mirror of `topic`.
pub fn link_and_mirror_with(proxy: &Proxy, source: &Cluster, topic: &str, extra: &str) -> String {
    let config = format!("bootstrap.servers={}{extra}", source.bootstrap);
    let link = new_link(proxy, "life-link", &["--config", &config]);
    let out = cli(
        proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            topic,
            "--link",
            &link,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    link
}

/// `mirrors --create --mirror-topic <topic> --link <link>` with `extra` flags.
pub fn create_mirror(proxy: &Proxy, topic: &str, link: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "mirrors",
        "--create",
        "--mirror-topic",
        topic,
        "--link",
        link,
    ];
    args.extend_from_slice(extra);
    cli(proxy, &args)
}

pub fn wait_identical(proxy: &Proxy, source: &Cluster, topic: &str) {
    wait_identical_within(proxy, source, topic, Duration::from_secs(120));
}

/// `wait_identical` for copies that are slow by design (one record per batch).
pub fn wait_identical_within(proxy: &Proxy, source: &Cluster, topic: &str, within: Duration) {
    let expected = dump(&source.bootstrap, topic);
    eventually("the mirror equals the source", within, || {
        let got = dump(&proxy.bootstrap, topic);
        if got == expected {
            return Ok(());
        }
        Err(format!(
            "mirror differs: {} of {} records",
            got.len(),
            expected.len()
        ))
    });
}

/// Records on the destination topic so far: the partitions' end offsets, read from
/// their leaders directly (the copier reports progress only between fetch rounds).
pub fn destination_records(topic: &str, partitions: i32) -> i64 {
    records_on(destination(), topic, partitions)
}

/// Records in `topic` on `cluster`: the sum of its partitions' end offsets (0 while it
/// has no leaders).
pub fn records_on(cluster: &Cluster, topic: &str, partitions: i32) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = cluster
            .bootstrap
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut any = connect(&first).await;
        let Ok(metadata) = mirrorgate::kafka::admin::metadata(&mut any, Some(&[topic])).await
        else {
            return 0;
        };
        let mut total = 0;
        for partition in 0..partitions {
            let Some(leader) = mirrorgate::kafka::admin::leader_of(&metadata, topic, partition)
            else {
                return 0;
            };
            let mut conn = connect(&leader).await;
            total += mirrorgate::replicator::partition::log_end_offset(&mut conn, topic, partition)
                .await
                .unwrap_or(0);
        }
        total
    })
}

/// A new 1-partition topic on `source` (a unique name from `prefix`) holding `values`
/// (one record per line; none when empty).
pub fn one_partition_topic(source: &Cluster, prefix: &str, values: &str) -> String {
    let topic = unique(prefix);
    super::create_topic(
        source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    if !values.is_empty() {
        let out = kcat(&["-b", &source.bootstrap, "-P", "-t", &topic], Some(values));
        assert!(out.output.status.success(), "{}", out.text());
    }
    topic
}

/// (partition, offset) -> value of every record `kafka-verifiable-producer` was told was
/// written (its JSON events on stdout); panics on any send error it reports, on an
/// offset acknowledged twice, and unless there are `expected` of them.
pub fn verifiable_acks(
    out: &super::Traced,
    expected: usize,
) -> std::collections::BTreeMap<(i32, i64), String> {
    let mut acked = std::collections::BTreeMap::new();
    for line in out.stdout().lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["name"].as_str() {
            Some("producer_send_success") => {
                let at = (
                    event["partition"].as_i64().unwrap() as i32,
                    event["offset"].as_i64().unwrap(),
                );
                let value = event["value"].as_str().unwrap().to_string();
                assert!(acked.insert(at, value).is_none(), "{at:?} acked twice");
            }
            Some("producer_send_error") => panic!("producer saw an error: {line}"),
            _ => {}
        }
    }
    assert_eq!(acked.len(), expected, "every record acked\n{}", out.text());
    acked
}

/// `dump` lines ("partition offset value") as a map; each (partition, offset) once.
pub fn by_offset(lines: &[String]) -> std::collections::BTreeMap<(i32, i64), String> {
    let mut records = std::collections::BTreeMap::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let p = parts.next().unwrap().parse().unwrap();
        let o = parts.next().unwrap().parse().unwrap();
        let value = parts.next().unwrap_or_default().to_string();
        assert!(
            records.insert((p, o), value).is_none(),
            "({p}, {o}) read twice"
        );
    }
    records
}

/// Reads `count` records as a member of `group` (one record per poll, so the offset
/// committed on close is exactly the next unread one) and returns their values.
pub fn consume(bootstrap: &str, topic: &str, group: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let out = super::kafka_tool_direct(&[
        "kafka-console-consumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--max-messages",
        &count,
        "--timeout-ms",
        "30000",
        "--consumer-property",
        "max.poll.records=1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// (topic, partition) -> committed offset of `group`, as `kafka-consumer-groups
/// --describe` shows it.
pub fn group_offsets(bootstrap: &str, group: &str) -> BTreeMap<(String, i32), i64> {
    let out = super::kafka_tool_direct(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.first() != Some(&group) {
                return None;
            }
            let partition = cols.get(2)?.parse().ok()?;
            let offset = cols.get(3)?.parse().ok()?;
            Some(((cols.get(1)?.to_string(), partition), offset))
        })
        .collect()
}

/// Two replicating instances on one metadata topic.
pub fn fleet(name: &str) -> (Proxy, Proxy) {
    let metadata_topic = unique(&format!("_mirrorgate-metadata-{name}"));
    let mut options = replicating(&metadata_topic);
    options.extra_tables.push_str("session_timeout_ms = 6000\n");
    (
        Proxy::start(destination(), options.clone()),
        Proxy::start(destination(), options),
    )
}

pub fn source_topic(source: &Cluster, prefix: &str, partitions: u32) -> String {
    let topic = unique(prefix);
    crate::common::create_topic(
        source,
        &topic,
        &[
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ],
    );
    topic
}

/// Waits until `proxy` describes `topic` as a mirror in `state`.
pub fn wait_state(proxy: &Proxy, topic: &str, state: &str) {
    let what = format!("{topic} is {state}");
    eventually(&what, Duration::from_secs(60), || {
        let described = text(&cli(proxy, &["mirrors", "--describe", "--topics", topic]));
        if described.contains(&format!("State: {state}")) {
            return Ok(());
        }
        Err(format!("{topic} not {state}: {described}"))
    });
}
