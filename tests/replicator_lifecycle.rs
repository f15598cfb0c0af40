//! The replicator through restarts and state changes: SIGKILL in the middle of a copy
//! resumes with no duplicate and no gap; pause stops copying and resume catches up;
//! failover works with the source cluster gone.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{destination, kcat, test_port_base, unique, Cluster, Proxy, ProxyOptions};

fn cli(proxy: &Proxy, args: &[&str]) -> Output {
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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn replicating(metadata: &str) -> ProxyOptions {
    ProxyOptions {
        extra_tables: format!("\n[replicator]\nenabled = true\nmetadata_topic = \"{metadata}\"\n"),
        ..Default::default()
    }
}

/// "partition offset value" of every record, sorted.
fn dump(bootstrap: &str, topic: &str) -> Vec<String> {
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
            "%p %o %s\\n",
        ],
        None,
    );
    let mut lines: Vec<String> = out.stdout().lines().map(String::from).collect();
    lines.sort();
    lines
}

fn link_and_mirror(proxy: &Proxy, source: &Cluster, topic: &str) -> String {
    let link = unique("life-link");
    let out = cli(
        proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &format!("bootstrap.servers={}", source.bootstrap),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
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

fn wait_identical(proxy: &Proxy, source: &Cluster, topic: &str) {
    let expected = dump(&source.bootstrap, topic);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = dump(&proxy.bootstrap, topic);
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror differs: {} of {} records",
            got.len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sum of DestLogEndOffset and of LastFetchSourceHighWatermark in --describe.
fn progress(proxy: &Proxy, topic: &str) -> (i64, i64) {
    let described = text(&cli(proxy, &["mirrors", "--describe", "--topics", topic]));
    let field = |name: &str| -> i64 {
        described
            .split(&format!("{name}: "))
            .skip(1)
            .filter_map(|rest| rest.split(['\t', '\n']).next()?.parse::<i64>().ok())
            .sum()
    };
    (
        field("DestLogEndOffset"),
        field("LastFetchSourceHighWatermark"),
    )
}

#[test]
fn sigkill_in_the_middle_of_a_copy_resumes_without_duplicate_or_gap() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let options = replicating(&unique("_mirrorgate-metadata-kill"));
    let mut proxy = Proxy::start(destination(), options.clone());
    let topic = unique("big");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "3", "--replication-factor", "1"],
    );
    // Many small batches, so the copy takes a while.
    let records: String = (0..60_000).map(|i| format!("record-{i:06}\n")).collect();
    let load = kcat(
        &[
            "-b",
            &source.bootstrap,
            "-P",
            "-t",
            &topic,
            "-X",
            "linger.ms=0",
            "-X",
            "batch.num.messages=20",
        ],
        Some(&records),
    );
    assert!(load.output.status.success(), "{}", load.text());
    link_and_mirror(&proxy, &source, &topic);

    // Kill once some, but not all, has been copied.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (copied, end) = progress(&proxy, &topic);
        if copied > 0 && end > 0 && copied < end {
            break;
        }
        assert!(
            copied == 0 || copied < 60_000,
            "copy finished before the kill; make it bigger"
        );
        assert!(Instant::now() < deadline, "copy never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.kill_and_restart(&options);
    wait_identical(&proxy, &source, &topic);
    assert_eq!(dump(&proxy.bootstrap, &topic).len(), 30_000);
}

#[test]
fn pause_stops_copying_and_resume_catches_up() {
    let source = Cluster::up("mg-src", 1, test_port_base() + 530);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-pause")),
    );
    let topic = unique("pausable");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some("a\nb\n")
    )
    .output
    .status
    .success());
    link_and_mirror(&proxy, &source, &topic);
    wait_identical(&proxy, &source, &topic);

    let out = cli(&proxy, &["mirrors", "--pause", "--topics", &topic]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some("c\nd\ne\n")
    )
    .output
    .status
    .success());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        dump(&proxy.bootstrap, &topic).len(),
        2,
        "nothing copied while paused"
    );
    assert!(
        text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]))
            .contains("State: PAUSED")
    );

    let out = cli(&proxy, &["mirrors", "--resume", "--topics", &topic]);
    assert!(out.status.success(), "{}", text(&out));
    wait_identical(&proxy, &source, &topic);
}

#[test]
fn failover_works_with_the_source_cluster_gone() {
    let source = Cluster::up("mg-src-gone", 1, test_port_base() + 540);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-gone")),
    );
    let topic = unique("orphan");
    common::create_topic(
        &source,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    assert!(kcat(
        &["-b", &source.bootstrap, "-P", "-t", &topic],
        Some("x\ny\n")
    )
    .output
    .status
    .success());
    let link = link_and_mirror(&proxy, &source, &topic);
    wait_identical(&proxy, &source, &topic);

    common::testbed(&["down", "mg-src-gone"]);
    let out = cli(&proxy, &["mirrors", "--failover", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&cli(&proxy, &["mirrors", "--describe", "--topics", &topic]))
            .contains("State: STOPPED")
    );
    let write = kcat(&["-b", &proxy.bootstrap, "-P", "-t", &topic], Some("z\n"));
    assert!(write.output.status.success(), "{}", write.text());
    assert_eq!(dump(&proxy.bootstrap, &topic).len(), 3);
}
