//! Helpers for replicator tests: the CLI against a running mirrorgate, replicating
//! proxy options, topic dumps, and the shared development certificates.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{kcat, repo_root, Proxy, ProxyOptions};

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
