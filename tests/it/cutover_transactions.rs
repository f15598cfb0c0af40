//! Transactional producers writing to a mirror in `mirror.produce.mode=forward`, on a
//! fleet of two instances and real brokers: their transactions run on the source's
//! coordinator until the cut-over, which lets the one open at its fence end there and
//! waits for it; the producer (Java's client, written as Kafka documents: abort and
//! retry on an abortable error, stop on a fatal one) goes on against the destination
//! without an error. Every committed transaction is on the destination once, and a
//! transaction that would span a forwarded mirror and a destination topic commits
//! nothing anywhere.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::replication::{
    dump, dump_as, fleet, link_and_mirror_with, source, source_topic, text, wait_state,
};
use common::{
    destination, eventually, java_clients_classpath, spawn_traced, unique, Proxy, Running,
};

const FORWARD: &str = ",mirror.produce.mode=forward";
const TRANSACTIONS: usize = 60;
/// The transaction held open (records acknowledged, not committed) while the
/// cut-over's fence goes up.
const HELD: usize = 20;
const RECORDS: usize = 10;
/// Every this many transactions, the producer aborts its first attempt once the
/// records are acknowledged, then sends them again: none of the aborted records may
/// show anywhere.
const ABANDON_EVERY: usize = 7;

/// The Java transactional producer of `tests/clients/java` through `proxy`; `hold`:
/// which transaction waits, open, for `<dir>/release` (announced by `<dir>/open`).
fn txn_producer(
    proxy: &Proxy,
    topics: &str,
    transactions: usize,
    max_aborts: u32,
    hold: Option<(usize, &Path)>,
) -> Running {
    txn_producer_with(proxy, topics, transactions, max_aborts, hold, None)
}

/// As `txn_producer`; with `offsets_group`, each transaction also commits an offset of
/// that group.
fn txn_producer_with(
    proxy: &Proxy,
    topics: &str,
    transactions: usize,
    max_aborts: u32,
    hold: Option<(usize, &Path)>,
    offsets_group: Option<&str>,
) -> Running {
    let classpath = java_clients_classpath();
    let group = format!("-Doffsets.group={}", offsets_group.unwrap_or_default());
    let abandon = format!("-Dabandon.every={ABANDON_EVERY}");
    let (held, dir) = match hold {
        Some((t, dir)) => (t.to_string(), dir.display().to_string()),
        None => ("-1".to_string(), String::new()),
    };
    spawn_traced(
        Path::new("/usr/bin/env"),
        &[
            "java",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            &abandon,
            if offsets_group.is_some() {
                &group
            } else {
                "-Dno.offsets=1"
            },
            "-cp",
            &classpath,
            "TxnRetryProducer",
            &proxy.bootstrap,
            topics,
            &unique("txn-forward"),
            &transactions.to_string(),
            &RECORDS.to_string(),
            "100",
            &max_aborts.to_string(),
            &held,
            &dir,
        ],
        false,
        Duration::from_secs(240),
        None,
    )
}

/// Values of `topic`'s records read through `proxy` (fillers hidden), by value: where
/// each one is.
fn values(proxy: &Proxy, topic: &str) -> BTreeMap<String, Vec<(i32, i64)>> {
    let mut found: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for line in dump_as(&proxy.bootstrap, topic, "%p %o %k %s\\n") {
        let cols: Vec<&str> = line.splitn(4, ' ').collect();
        if cols.len() < 4 || cols[2] == "__mirrorgate_filler" {
            continue;
        }
        let at = (cols[0].parse().unwrap(), cols[1].parse().unwrap());
        found.entry(cols[3].to_string()).or_default().push(at);
    }
    found
}

#[test]
fn a_transactional_producer_writes_through_a_forwarded_mirror_and_goes_on_across_the_cutover() {
    let source = source();
    let (writer, reader) = fleet("txn-forward");
    let topic = source_topic(&source, "txn-forward", 2);
    let link = link_and_mirror_with(&writer, &source, &topic, FORWARD);
    wait_state(&reader, &topic, "ACTIVE");

    let dir = std::env::temp_dir().join(unique("txn-forward-hold"));
    std::fs::create_dir_all(&dir).unwrap();
    let producer = txn_producer(&writer, &topic, TRANSACTIONS, 5, Some((HELD, &dir)));
    // Transactions committed on the source (forwarded) until one is held open; then the
    // cut-over, started on the other instance, fences the topic under it.
    eventually(
        &format!("the producer reaches transaction {HELD}"),
        Duration::from_secs(90),
        || dir.join("open").exists().then_some(()),
    );
    // The held transaction's records are acknowledged on the source and, still in it,
    // invisible to a read_committed consumer there: only the committed ones show.
    assert_eq!(
        dump(&source.bootstrap, &topic).len(),
        HELD * RECORDS,
        "the source shows the committed transactions and not the open one"
    );
    let cutover = {
        let (reader_admin, link) = (reader.admin.clone(), link.clone());
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_mirrorgate"))
                .args(["cutover", "--link", &link, "--timeout-ms", "30000"])
                .args(["--admin-url", &format!("http://{reader_admin}")])
                .output()
                .expect("run the CLI")
        })
    };
    // The cut-over waits for the open transaction; its producer then commits it
    // through the fence.
    eventually(
        "the cut-over waits for the open transaction",
        Duration::from_secs(30),
        || {
            format!("{}{}", writer.log(), reader.log())
                .contains("waiting for transactions forwarded to the source to end")
                .then_some(())
        },
    );
    std::fs::write(dir.join("release"), b"").unwrap();
    let out = cutover.join().unwrap();
    eprintln!("{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("completed"), "{}", text(&out));
    wait_state(&writer, &topic, "STOPPED");

    let producer = producer.wait();
    eprintln!("{}", producer.text());
    assert!(producer.output.status.success(), "{}", producer.text());
    producer.assert_only_proxy(&writer, destination());
    let stdout = producer.stdout();
    assert!(!stdout.contains("fatal"), "{stdout}");
    let committed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("committed "))
        .collect();
    let expected: Vec<String> = (0..TRANSACTIONS).map(|t| t.to_string()).collect();
    assert_eq!(
        committed, expected,
        "every transaction committed once, in order"
    );
    let abandoned: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("abandoned "))
        .collect();
    let expected: Vec<String> = (0..TRANSACTIONS)
        .step_by(ABANDON_EVERY)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(abandoned, expected, "the producer aborted these once each");
    // The transaction open at the fence ended on the source through it: nothing was
    // aborted, the producer was told nothing.
    assert!(!stdout.contains("aborted"), "{stdout}");
    // Every committed record is on the destination once (an aborted attempt's copy
    // nowhere); those of a transaction in one partition, in order. Some came through
    // the source, the rest were written after.
    let on_destination = values(&reader, &topic);
    for t in 0..TRANSACTIONS {
        let mut at = Vec::new();
        for r in 0..RECORDS {
            let value = format!("{t}.{r}");
            let places = on_destination.get(&value).cloned().unwrap_or_default();
            assert_eq!(places.len(), 1, "{value} at {places:?}");
            at.push(places[0]);
        }
        assert!(
            at.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "{t}: {at:?}"
        );
    }
    assert_eq!(
        on_destination.values().map(Vec::len).sum::<usize>(),
        TRANSACTIONS * RECORDS,
        "nothing else visible"
    );
    // The held transaction and those before it went through the source; the rest were
    // written on the destination after the flip.
    let on_source = dump(&source.bootstrap, &topic).len();
    assert_eq!(
        on_source,
        (HELD + 1) * RECORDS,
        "committed on the source before the flip"
    );
    let metrics = writer.metrics();
    assert!(
        metrics.contains(&format!(
            "mirrorgate_produce_forwarded_requests_total{{link=\"{link}\"}}"
        )),
        "{metrics}"
    );
}

#[test]
fn a_transaction_spanning_a_forwarded_mirror_and_a_destination_topic_is_refused_whole() {
    let source = source();
    let (writer, _reader) = fleet("txn-mixed");
    let topic = source_topic(&source, "txn-mixed", 1);
    let link = link_and_mirror_with(&writer, &source, &topic, FORWARD);
    let local = unique("txn-mixed-local");
    common::create_topic(
        destination(),
        &local,
        &["--partitions", "1", "--replication-factor", "1"],
    );

    let producer = txn_producer(&writer, &format!("{topic},{local}"), 3, 3, None).wait();
    assert!(!producer.output.status.success(), "{}", producer.text());
    assert!(
        !producer.stdout().contains("committed"),
        "{}",
        producer.text()
    );
    // Nothing committed on either cluster.
    let on_source = dump(&source.bootstrap, &topic);
    let on_destination = dump(&destination().bootstrap, &local);
    assert!(
        on_source.is_empty() && on_destination.is_empty(),
        "committed on the source: {on_source:?}; on the destination: {on_destination:?}; producer: {}",
        producer.text()
    );
    let _ = link;
}

#[test]
fn a_forwarded_transaction_committing_consumer_offsets_is_refused_and_commits_nothing() {
    let source = source();
    let (writer, _reader) = fleet("txn-offsets");
    let topic = source_topic(&source, "txn-offsets", 1);
    let _link = link_and_mirror_with(&writer, &source, &topic, FORWARD);
    let group = unique("txn-offsets-group");

    let producer = txn_producer_with(&writer, &topic, 3, 3, None, Some(&group)).wait();
    assert!(!producer.output.status.success(), "{}", producer.text());
    assert!(
        !producer.stdout().contains("committed"),
        "{}",
        producer.text()
    );
    assert!(
        dump(&source.bootstrap, &topic).is_empty(),
        "nothing committed"
    );
    // Refused whichever comes first: the offsets (the transaction is on the source) or
    // the mirror's partitions (the transaction already holds offsets on the destination).
    let log = writer.log();
    assert!(
        log.contains("cannot commit consumer offsets")
            || log.contains("also names a forwarded mirror"),
        "mirrorgate says why"
    );
}
