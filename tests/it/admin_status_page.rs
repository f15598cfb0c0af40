//! The status page at `GET /` of the admin listener, loaded in headless Chromium against
//! a running link: the page's script fills in the link, the mirror and its partitions'
//! lag from the admin API. The test keeps a screenshot in `target/test-artifacts/`.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::replication::{
    link_and_mirror, one_partition_topic, replicating, source, wait_identical,
};
use common::{destination, eventually, repo_root, unique, Proxy};

/// Chromium, headless, on `url` with `args`; its stdout. The page refreshes every 5 s:
/// the virtual time budget lets its first round of requests finish.
fn chromium(url: &str, args: &[&str], profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=4000",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium (testbed/install-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_shows_the_link_the_mirror_and_its_lag() {
    let src = source();
    let values: String = (0..25).map(|i| format!("status-{i}\n")).collect();
    let topic = one_partition_topic(&src, "status", &values);
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-status")),
    );
    let link = link_and_mirror(&proxy, &src, &topic);
    wait_identical(&proxy, &src, &topic);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", proxy.admin);
    // The lag shown catches up with the copy: the mirror's row reads end 25, lag 0.
    let row = format!(
        "<td>{topic}</td><td>{link}</td><td class=\"ok\">ACTIVE</td><td>0</td><td>25</td><td>25</td><td>0</td>"
    );
    let dom = eventually(
        "the page shows the mirror at end 25, lag 0",
        Duration::from_secs(60),
        || {
            let dom = chromium(&url, &["--dump-dom"], profile.path());
            if dom.contains(&row) {
                return Ok(dom);
            }
            Err(format!("no row {row} in\n{dom}"))
        },
    );
    assert!(
        dom.contains(&format!(
            "<td>{link}</td><td class=\"ok\">ACTIVE</td><td class=\"ok\">true</td>"
        )),
        "{dom}"
    );
    assert!(
        dom.contains("<td>stable</td>"),
        "the fleet membership: {dom}"
    );

    // Once the lag was sampled (every 10 s), the chart has the mirror's series.
    eventually("the lag is sampled", Duration::from_secs(30), || {
        common::http_get(&proxy.admin, "/admin/lag-history")
            .is_some_and(|(_, body)| body.contains(&topic))
            .then_some(())
    });
    let dom = chromium(&url, &["--dump-dom"], profile.path());
    assert!(dom.contains("<polyline"), "{dom}");
    assert!(
        dom.contains(&format!("■ {topic}")),
        "the chart's legend: {dom}"
    );

    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
        profile.path(),
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot of {size} bytes");
}
