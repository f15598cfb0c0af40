//! `mirrorgate cutover` against a fleet of two instances on real brokers: producers
//! (Java, idempotent and not, and librdkafka) write a mirror in `forward` mode through
//! one instance while a Java consumer group and a librdkafka consumer group read it
//! through the other; the cut-over moves the topic to the destination under them, and
//! no client sees an error, restarts or loses its place. A producer writing to the
//! source directly makes the cut-over abort with that reason, losing nothing; the
//! instance driving a cut-over may be killed mid-way and another one ends it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::gate::Gate;
use common::replication::{
    by_offset, cli, dump, fleet, link_and_mirror_with, source, source_topic, text, verifiable_acks,
    wait_state,
};
use common::{
    destination, eventually, eventually_every, repo_root, spawn_traced, unique, Proxy, Running,
    Traced,
};

const FORWARD: &str = ",mirror.produce.mode=forward";
/// Records each producer writes, and at what rate: long enough that the cut-over
/// happens in the middle.
const PER_PRODUCER: usize = 2_400;
const RATE: usize = 150;

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("mg-cutover-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Java verifiable producer at `RATE` records/s, through `proxy`.
fn java_producer(proxy: &Proxy, topic: &str, prefix: u32, config: &str) -> Running {
    java_producer_at(&proxy.bootstrap, topic, prefix, config)
}

/// `java_producer` bootstrapped from `bootstrap`.
fn java_producer_at(bootstrap: &str, topic: &str, prefix: u32, config: &str) -> Running {
    let dir = tempdir(&format!("producer-{prefix}"));
    let file = dir.join("producer.properties");
    std::fs::write(&file, config).unwrap();
    let count = PER_PRODUCER.to_string();
    let rate = RATE.to_string();
    let prefix = prefix.to_string();
    spawn_traced(
        &repo_root().join("testbed/kafka"),
        &[
            "tool",
            "kafka-verifiable-producer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--max-messages",
            &count,
            "--throughput",
            &rate,
            "--value-prefix",
            &prefix,
            "--producer.config",
            file.to_str().unwrap(),
        ],
        false,
        Duration::from_secs(180),
        None,
    )
}

/// kcat reads its input a block at a time: a line this long is produced as it comes,
/// not when a block fills.
const KCAT_LINE_PAD: usize = 1_100;

/// `prefix.N`, padded so kcat sends it at once.
fn kcat_line(prefix: u32, n: usize) -> String {
    format!("{prefix}.{n} {}", "x".repeat(KCAT_LINE_PAD))
}

/// An idempotent librdkafka producer (kcat) fed `prefix.N` lines at `RATE` per second.
fn kcat_producer(proxy: &Proxy, topic: &str, prefix: u32) -> Running {
    let mut running = spawn_traced(
        Path::new("kcat"),
        &[
            "-b",
            &proxy.bootstrap,
            "-P",
            "-t",
            topic,
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=5",
        ],
        true,
        Duration::from_secs(180),
        None,
    );
    let mut stdin = running.child.stdin.take().expect("kcat stdin");
    std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..PER_PRODUCER {
            let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if writeln!(stdin, "{}", kcat_line(prefix, i)).is_err() {
                return;
            }
            let _ = stdin.flush();
        }
    });
    running
}

/// A Java console consumer in group `group`, through `proxy`, until `count` records.
fn java_consumer(proxy: &Proxy, topic: &str, group: &str, count: usize) -> Running {
    let count = count.to_string();
    spawn_traced(
        &repo_root().join("testbed/kafka"),
        &[
            "tool",
            "kafka-console-consumer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            &count,
            "--timeout-ms",
            "90000",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
        ],
        false,
        Duration::from_secs(180),
        None,
    )
}

/// A librdkafka consumer group (kcat -G), through `proxy`, until `count` records.
fn kcat_consumer(proxy: &Proxy, topic: &str, group: &str, count: usize) -> Running {
    let count = count.to_string();
    spawn_traced(
        Path::new("kcat"),
        &[
            "-b",
            &proxy.bootstrap,
            "-G",
            group,
            topic,
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            &count,
            "-f",
            "%p %o %s\\n",
        ],
        false,
        Duration::from_secs(180),
        None,
    )
}

fn acked(out: &Traced) -> BTreeMap<(i32, i64), String> {
    verifiable_acks(out, PER_PRODUCER)
}

fn records(lines: &[String]) -> BTreeMap<(i32, i64), String> {
    by_offset(lines)
}

/// The console consumer's `Partition:P\tOffset:O\tvalue` lines as "P O value".
fn console_lines(out: &Traced) -> Vec<String> {
    out.stdout()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let p = fields.next()?.strip_prefix("Partition:")?;
            let o = fields.next()?.strip_prefix("Offset:")?;
            Some(format!("{p} {o} {}", fields.collect::<Vec<_>>().join("\t")))
        })
        .collect()
}

/// Every sequence number of every producer exactly once, and each producer's in order
/// within a partition.
fn assert_exactly_once_in_order(topic_records: &BTreeMap<(i32, i64), String>, prefixes: &[u32]) {
    let mut seen: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let mut last: BTreeMap<(u32, i32), usize> = BTreeMap::new();
    for ((p, o), value) in topic_records {
        let numbered = value.split(' ').next().unwrap_or_default();
        let (prefix, seq) = numbered.split_once('.').expect("prefix.seq");
        let (prefix, seq): (u32, usize) = (prefix.parse().unwrap(), seq.parse().unwrap());
        assert!(
            seen.entry(prefix).or_default().insert(seq),
            "{numbered} twice (at {p} {o})"
        );
        if let Some(before) = last.insert((prefix, *p), seq) {
            assert!(
                before < seq,
                "{numbered} at {p} {o} after {prefix}.{before}: out of order"
            );
        }
    }
    for prefix in prefixes {
        let got = seen.get(prefix).map_or(0, BTreeSet::len);
        assert_eq!(got, PER_PRODUCER, "producer {prefix}: every record once");
    }
    assert_eq!(topic_records.len(), PER_PRODUCER * prefixes.len());
}

fn assert_no_kcat_error(out: &Traced) {
    assert!(out.output.status.success(), "{}", out.text());
    let text = out.text();
    assert!(
        !text.contains("ERROR") && !text.contains("Delivery failed"),
        "{text}"
    );
}

const IDEMPOTENT: &str = "enable.idempotence=true\nacks=all\nretries=2147483647\n";
const NOT_IDEMPOTENT: &str = "enable.idempotence=false\nacks=all\nretries=2147483647\nmax.in.flight.requests.per.connection=1\n";

#[test]
fn producers_and_consumers_run_straight_through_a_cutover_without_an_error() {
    let source = source();
    let (writer, reader) = fleet("cutover");
    let topic = source_topic(&source, "cutover", 3);
    let link = link_and_mirror_with(&writer, &source, &topic, FORWARD);
    wait_state(&reader, &topic, "ACTIVE");

    let total = PER_PRODUCER * 3;
    let java_group = unique("cutover-java");
    let kcat_group = unique("cutover-kcat");
    let java_reader = java_consumer(&reader, &topic, &java_group, total);
    let kcat_reader = kcat_consumer(&reader, &topic, &kcat_group, total);
    let idempotent = java_producer(&writer, &topic, 1, IDEMPOTENT);
    let plain = java_producer(&writer, &topic, 2, NOT_IDEMPOTENT);
    let librdkafka = kcat_producer(&writer, &topic, 3);

    // A few seconds of forwarded writes first; the cut-over is started on the other
    // instance, which need not be the one driving it.
    std::thread::sleep(Duration::from_secs(5));
    let out = cli(
        &reader,
        &["cutover", "--link", &link, "--timeout-ms", "30000"],
    );
    eprintln!("{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("completed"), "{}", text(&out));
    wait_state(&writer, &topic, "STOPPED");

    let idempotent = idempotent.wait();
    let plain = plain.wait();
    let librdkafka = librdkafka.wait();
    let java_reader = java_reader.wait();
    let kcat_reader = kcat_reader.wait();
    for client in [&idempotent, &plain, &librdkafka] {
        client.assert_only_proxy(&writer, destination());
    }
    for client in [&java_reader, &kcat_reader] {
        client.assert_only_proxy(&reader, destination());
    }
    assert_no_kcat_error(&librdkafka);

    // Every record on the destination at the offset its producer was told, once each,
    // in order; some written before the flip (forwarded, copied), some after.
    let on_destination = records(&dump(&destination().bootstrap, &topic));
    for (at, value) in acked(&idempotent).iter().chain(&acked(&plain)) {
        assert_eq!(on_destination.get(at), Some(value), "destination at {at:?}");
    }
    assert_exactly_once_in_order(&on_destination, &[1, 2, 3]);
    let on_source = dump(&source.bootstrap, &topic).len();
    assert!(
        on_source > 0 && on_source < total,
        "{on_source} of {total} written before the flip: the cut-over happened mid-run"
    );

    // Both groups read every record exactly once, across the flip, never restarted.
    let java_read = records(&console_lines(&java_reader));
    let kcat_read = records(
        &kcat_reader
            .stdout()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        java_read,
        on_destination,
        "Java group\n{}",
        java_reader.stderr()
    );
    assert_eq!(
        kcat_read,
        on_destination,
        "kcat group\n{}",
        kcat_reader.stderr()
    );
    // The Java group's commits after the flip are kept (the offset sync stopped with the
    // promote): its committed offsets are the topic's end.
    let described = common::kafka_tool_direct(&[
        "kafka-consumer-groups",
        "--bootstrap-server",
        &destination().bootstrap,
        "--describe",
        "--group",
        &java_group,
        "--offsets",
    ]);
    let described = String::from_utf8_lossy(&described.stdout).into_owned();
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 5 && f[1] == topic)
        .collect();
    assert_eq!(rows.len(), 3, "{described}");
    for row in rows {
        assert_eq!(row[3], row[4], "committed at the end: {described}");
    }
    // librdkafka reports each assignment: one, at the start; the flip caused none.
    let assignments = kcat_reader.stderr().matches("assigned:").count();
    assert_eq!(assignments, 1, "{}", kcat_reader.stderr());

    let metrics = writer.metrics();
    assert!(
        metrics.contains("mirrorgate_produce_parked_total"),
        "{metrics}"
    );
}

#[test]
fn a_producer_writing_to_the_source_directly_aborts_the_cutover_and_nothing_is_lost() {
    let source = source();
    let (first, second) = fleet("cutover-bypass");
    let topic = source_topic(&source, "cutover-bypass", 1);
    let link = link_and_mirror_with(&first, &source, &topic, FORWARD);
    wait_state(&second, &topic, "ACTIVE");

    let through = java_producer(&first, &topic, 1, IDEMPOTENT);
    // Somebody who never moved: writing to the source cluster itself.
    const MAX_DIRECT: usize = 30_000;
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let direct = {
        let mut running = spawn_traced(
            Path::new("kcat"),
            &["-b", &source.bootstrap, "-P", "-t", &topic],
            true,
            Duration::from_secs(180),
            None,
        );
        let mut stdin = running.child.stdin.take().expect("kcat stdin");
        let writing = writing.clone();
        std::thread::spawn(move || {
            // Until the cut-over has been tried, however long the clients take to start.
            for i in 0..MAX_DIRECT {
                if !writing.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1000 / RATE as u64));
                if writeln!(stdin, "{}", kcat_line(9, i))
                    .and_then(|_| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
        running
    };
    // Both under way before the cut-over starts (a slow JVM start would otherwise put
    // the forwarded producer's first write at the fence).
    eventually("the producer wrote", Duration::from_secs(60), || {
        dump(&source.bootstrap, &topic)
            .iter()
            .any(|r| r.split(' ').nth(2).is_some_and(|v| v.starts_with("1.")))
            .then_some(())
    });
    let out = cli(
        &second,
        &["cutover", "--link", &link, "--timeout-ms", "30000"],
    );
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("writes to the source directly"),
        "{}",
        text(&out)
    );
    let describe = cli(&first, &["cutover", "--link", &link, "--describe"]);
    assert!(
        text(&describe).contains("Step: ABORTED"),
        "{}",
        text(&describe)
    );

    let through = through.wait();
    assert_no_kcat_error(&direct.wait());
    through.assert_only_proxy(&first, destination());
    // The producer through mirrorgate kept going (parked, then forwarded again): every
    // record acked, each on the source and the mirror at its offset.
    let acked = acked(&through);
    wait_state(&first, &topic, "ACTIVE");
    common::replication::wait_identical(&first, &source, &topic);
    let on_source = records(&dump(&source.bootstrap, &topic));
    for (at, value) in &acked {
        assert_eq!(on_source.get(at), Some(value), "source at {at:?}");
    }
    let values: BTreeSet<&str> = on_source
        .values()
        .map(|v| v.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(values.len(), on_source.len(), "nothing twice");
    let through_mirrorgate = values.iter().filter(|v| v.starts_with("1.")).count();
    assert_eq!(through_mirrorgate, PER_PRODUCER, "nothing lost");
}

const CUTOVER_PATH: &str = "/kafka/v3/clusters/-/links";

/// The link's latest cut-over as the instance shows it.
fn cutover_view(proxy: &Proxy, link: &str) -> serde_json::Value {
    let path = format!("{CUTOVER_PATH}/{link}/cutover");
    common::http_get(&proxy.admin, &path)
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Starts a cut-over of every mirror of `link` with the API's defaults.
fn start_cutover(proxy: &Proxy, link: &str) {
    let path = format!("{CUTOVER_PATH}/{link}/cutover");
    let (code, body) = common::http_request(&proxy.admin, "POST", &path).expect("admin API");
    assert_eq!(code, 202, "{body}");
}

/// Polls every `poll` (short, to catch a step that passes quickly) until the cut-over
/// is at one of `steps` (or past them: DONE, ABORTED).
fn wait_step(proxy: &Proxy, link: &str, steps: &[&str], poll: Duration) -> String {
    let what = format!("the cut-over reaches {steps:?}");
    eventually_every(&what, Duration::from_secs(120), poll, || {
        let step = cutover_view(proxy, link)["step"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (steps.contains(&step.as_str()) || step == "DONE" || step == "ABORTED").then_some(step)
    })
}

/// The instance whose fleet share holds the link's jobs (and so drives its cut-over).
fn runs_link(proxy: &Proxy, link: &str) -> bool {
    common::http_get(&proxy.admin, "/admin/fleet")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .is_some_and(|fleet| {
            fleet["links"]
                .as_array()
                .is_some_and(|links| links.iter().any(|l| l == link))
        })
}

/// SIGKILL of the instance driving the cut-over once it reached `step`: the other
/// instance ends it (done or aborted), and every acknowledged record is on the
/// destination once, in order.
fn driver_killed_at(step: &str) {
    let source = source();
    let (mut a, mut b) = fleet(&format!("cutover-kill-{}", step.to_lowercase()));
    let topic = source_topic(&source, "cutover-kill", 2);
    let link = link_and_mirror_with(&a, &source, &topic, FORWARD);
    wait_state(&b, &topic, "ACTIVE");
    eventually(
        &format!("an instance runs {link}"),
        Duration::from_secs(60),
        || (runs_link(&a, &link) || runs_link(&b, &link)).then_some(()),
    );
    let (driver, survivor) = if runs_link(&a, &link) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    let producer = java_producer(survivor, &topic, 1, IDEMPOTENT);
    std::thread::sleep(Duration::from_secs(3));
    start_cutover(survivor, &link);
    let reached = wait_step(survivor, &link, &[step], Duration::from_millis(10));
    driver.kill();
    let ended = wait_step(survivor, &link, &[], Duration::from_millis(200));
    eprintln!("killed the driver at {reached}; the cut-over ended {ended}");

    let producer = producer.wait();
    producer.assert_only_proxy(survivor, destination());
    let acked = acked(&producer);
    if ended == "ABORTED" {
        // Still a mirror, forwarded to: the destination catches up with the source.
        common::replication::wait_identical(survivor, &source, &topic);
    } else {
        wait_state(survivor, &topic, "STOPPED");
    }
    let on_destination = records(&dump(&destination().bootstrap, &topic));
    for (at, value) in &acked {
        assert_eq!(on_destination.get(at), Some(value), "destination at {at:?}");
    }
    assert_exactly_once_in_order(&on_destination, &[1]);
}

#[test]
fn the_driver_killed_while_fencing_another_instance_ends_the_cutover() {
    driver_killed_at("FENCING");
}

#[test]
fn the_driver_killed_while_verifying_another_instance_ends_the_cutover() {
    driver_killed_at("VERIFYING");
}

#[test]
fn the_driver_killed_while_promoting_another_instance_ends_the_cutover() {
    driver_killed_at("SYNCING");
}

/// `reject` mode: producers repointed to mirrorgate while the fence is up are parked
/// and then written to the promoted topic, never refused.
#[test]
fn in_reject_mode_a_producer_arriving_at_the_fence_is_parked_not_refused() {
    let source = source();
    let (first, second) = fleet("cutover-reject");
    let topic = source_topic(&source, "cutover-reject", 1);
    let link = link_and_mirror_with(&first, &source, &topic, "");
    let seed: String = (0..50).map(|i| format!("0.{i}\n")).collect();
    let out = common::kcat(&["-b", &source.bootstrap, "-P", "-t", &topic], Some(&seed));
    assert!(out.output.status.success(), "{}", out.text());
    common::replication::wait_identical(&first, &source, &topic);
    wait_state(&second, &topic, "ACTIVE");

    start_cutover(&second, &link);
    let step = wait_step(
        &first,
        &link,
        &["FENCING", "VERIFYING"],
        Duration::from_millis(10),
    );
    assert!(
        step == "FENCING" || step == "VERIFYING",
        "missed the fence: {step}"
    );
    let values: String = (0..100).map(|i| format!("1.{i}\n")).collect();
    let out = common::kcat(
        &[
            "-b",
            &first.bootstrap,
            "-P",
            "-t",
            &topic,
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
        ],
        Some(&values),
    );
    assert_no_kcat_error(&out);
    out.assert_only_proxy(&first, destination());
    assert_eq!(
        wait_step(&first, &link, &[], Duration::from_millis(200)),
        "DONE"
    );
    let parked = first.metric_sum("mirrorgate_produce_parked_total");
    assert!(parked > 0.0, "the write was parked at the fence");

    // The 50 mirrored records, then the 100 parked ones, each once, in order.
    let on_destination = records(&dump(&destination().bootstrap, &topic));
    let values: Vec<&str> = on_destination.values().map(String::as_str).collect();
    let expected: Vec<String> = (0..50)
        .map(|i| format!("0.{i}"))
        .chain((0..100).map(|i| format!("1.{i}")))
        .collect();
    assert_eq!(values, expected);
}

/// The dry run fences nothing, and names a consumer group still reading the source
/// directly (it has not moved to mirrorgate).
#[test]
fn a_dry_run_names_a_group_still_reading_the_source() {
    let source = source();
    let (first, _second) = fleet("cutover-dry");
    let topic = source_topic(&source, "cutover-dry", 1);
    let link = link_and_mirror_with(&first, &source, &topic, FORWARD);
    let group = unique("still-on-source");
    let on_source = spawn_traced(
        Path::new("kcat"),
        &["-b", &source.bootstrap, "-G", &group, &topic, "-q"],
        false,
        Duration::from_secs(90),
        None,
    );
    // Not `eventually`: on a timeout the source's consumer is stopped before the checks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let out = cli(&first, &["cutover", "--link", &link, "--dry-run"]);
        assert!(out.status.success(), "{}", text(&out));
        let shown = text(&out);
        if shown.contains(&group) || Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    on_source.stop();
    assert!(
        shown.contains(&format!("Group on the source: {group}")),
        "{shown}"
    );
    assert!(shown.contains("nothing is fenced"), "{shown}");
    // Nothing was started: the link has no cut-over, and the mirror is still ACTIVE.
    let describe = cli(&first, &["cutover", "--link", &link, "--describe"]);
    assert!(!describe.status.success(), "{}", text(&describe));
    wait_state(&first, &topic, "ACTIVE");
}

/// A live instance that cannot confirm the fence is waited for (here: stopped with
/// SIGSTOP, so the driver stops waiting for it only 12 s later). A transactional
/// producer started meanwhile is held (AddPartitionsToTxn retried, Produce parked) and
/// commits every transaction on the promoted topic once the fence lifts; a producer
/// whose requests time out sooner gets REQUEST_TIMED_OUT for its parked writes, retries
/// them, and loses none.
#[test]
fn a_transactional_producer_arriving_at_the_fence_commits_after_it() {
    let source = source();
    let (first, _second) = fleet("cutover-txn");
    let topic = source_topic(&source, "cutover-txn", 2);
    let link = link_and_mirror_with(&first, &source, &topic, "");
    // A third instance (not replicating) on the same metadata topic, that will not
    // answer.
    let config = std::fs::read_to_string(first.config_path()).unwrap();
    let line = config
        .lines()
        .find(|l| l.starts_with("metadata_topic"))
        .expect("metadata_topic in the config")
        .to_string();
    let silent = Proxy::start(
        destination(),
        common::ProxyOptions {
            extra_tables: format!("\n[replicator]\nenabled = false\n{line}\n"),
            ..Default::default()
        },
    );
    // Heartbeating: listed as live by the others.
    eventually(
        "the third instance shows up",
        Duration::from_secs(30),
        || cutover_instances_live(&first, &link, 3).then_some(()),
    );
    // The producers' JVMs take seconds to start, and the fence holds only until the
    // silent instance counts as gone: they start first, behind a gate that lets them
    // through once the fence is up.
    let gate = Gate::new();
    // A producer whose requests time out sooner than the fence holds: its parked writes
    // are answered REQUEST_TIMED_OUT, which it retries until the fence lifts.
    let impatient = java_producer_at(
        &gate.addr,
        &topic,
        7,
        "enable.idempotence=true\nacks=all\nretries=2147483647\nrequest.timeout.ms=2000\ndelivery.timeout.ms=120000\n",
    );
    let producer = spawn_traced(
        &repo_root().join("testbed/kafka"),
        &[
            "tool",
            "kafka-producer-perf-test",
            "--topic",
            &topic,
            "--num-records",
            "3000",
            "--record-size",
            "100",
            "--throughput",
            "300",
            "--transactional-id",
            &unique("cutover-txn-id"),
            "--transaction-duration-ms",
            "300",
            "--producer-props",
            &format!("bootstrap.servers={}", gate.addr),
            "acks=all",
        ],
        false,
        Duration::from_secs(180),
        None,
    );
    gate.wait_for_clients(2);
    let status = std::process::Command::new("kill")
        .args(["-STOP", &silent.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    start_cutover(&first, &link);
    assert_eq!(
        wait_step(&first, &link, &["FENCING"], Duration::from_millis(50)),
        "FENCING"
    );
    let fencing = Instant::now();
    gate.open(&first.bootstrap);
    // When the first parked write reached its limit, and when the fence lifted, both
    // counted from FENCING: a failure says which came first.
    let mut first_timeout = None;
    let ended = eventually_every(
        "the cut-over ends",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            if first_timeout.is_none() && park_timeouts(&first) > 0.0 {
                first_timeout = Some(fencing.elapsed());
            }
            let step = cutover_view(&first, &link)["step"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (step == "DONE" || step == "ABORTED").then_some(step)
        },
    );
    let lifted = fencing.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &silent.pid().to_string()])
        .status();
    assert_eq!(ended, "DONE");
    let impatient = impatient.wait();
    let impatient_acked = acked(&impatient);
    assert!(
        park_timeouts(&first) > 0.0,
        "a parked write reached its time limit (the fence lifted {lifted:?} after FENCING; first time-out seen at {first_timeout:?})"
    );
    let producer = producer.wait();
    assert!(producer.output.status.success(), "{}", producer.text());
    assert!(
        !producer.text().contains("Exception"),
        "{}",
        producer.text()
    );
    producer.assert_only_proxy_via(gate.port, &first, destination());
    // Read committed (kcat's default): every record of every committed transaction, and
    // the impatient producer's, each once.
    let on_destination = records(&dump(&destination().bootstrap, &topic));
    for (at, value) in &impatient_acked {
        assert_eq!(on_destination.get(at), Some(value), "destination at {at:?}");
    }
    assert_eq!(on_destination.len(), 3000 + PER_PRODUCER);
}

/// `mirrorgate_produce_park_timeouts_total` of `proxy`.
fn park_timeouts(proxy: &Proxy) -> f64 {
    proxy.metric_sum("mirrorgate_produce_park_timeouts_total")
}

/// True once the cut-over view (or, before one exists, a dry run) lists `n` live
/// instances for `link`.
fn cutover_instances_live(proxy: &Proxy, link: &str, n: usize) -> bool {
    let out = cli(proxy, &["cutover", "--link", link, "--dry-run"]);
    text(&out).contains(&format!("on {n} live instance(s)"))
}
