//! A benchmark where the proxy is the bottleneck. A stand-in broker (`upstream`)
//! answers Produce and Fetch from memory; a load generator pipelines requests like
//! real clients; in between sits nothing, a plain relay of our own (`relay`, the floor
//! a byte-copying proxy can reach), or mirrorgate. Each middle runs as its own process
//! so its CPU time is its own. Every ratio is against the relay and the direct path
//! measured in the same run.
//!
//! `cargo bench --bench proxy_bound [-- --quick] [-- --write] [-- --baseline PATH]`
//! prints a Markdown section; `--write` also puts it into BENCHMARKS.md between its
//! markers; `--baseline` adds another mirrorgate binary (an earlier build) as middles
//! interleaved with this one, for a before/after in one run. With `BENCH_PROFILE=DIR`,
//! `perf` samples each middle per workload in the first round (top symbols in DIR);
//! with `BENCH_PIN=1`, the middle runs on a core of its own. `BENCH_ONLY=a,b` keeps
//! the workloads and middles whose label contains one of the words (not with `--write`);
//! `BENCH_ROUNDS=N` runs N rounds instead of 3 (1 with `--quick`); `BENCH_SYSCALLS=DIR`
//! counts each middle's system calls per workload in the first round (`strace -c`).

mod load;
mod relay;
mod upstream;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub const PRODUCE_TOPIC: &str = "bench-produce";
pub const FETCH_TOPIC: &str = "bench-fetch";
pub const FETCH_TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(2);
/// Partitions of a many-partition fetch response, 1 KiB of records each.
pub const SMALL_PARTITIONS: i32 = 200;

/// What the stand-in answers a Fetch with, asked for through the request's client id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FetchShape {
    /// One partition, the whole 4 MiB log.
    Whole,
    /// The same, plus the NodeEndpoints a broker adds after a leader move (KIP-951),
    /// which the proxy must rewrite.
    Moved,
    /// [`SMALL_PARTITIONS`] partitions of 1 KiB each, as a consumer of many quiet
    /// partitions gets them.
    Partitions,
}

impl FetchShape {
    pub fn client_id(self) -> &'static str {
        match self {
            FetchShape::Whole => "proxy-bound-bench",
            FetchShape::Moved => "proxy-bound-bench/moved",
            FetchShape::Partitions => "proxy-bound-bench/partitions",
        }
    }

    pub fn of_client_id(id: &[u8]) -> Self {
        [FetchShape::Moved, FetchShape::Partitions]
            .into_iter()
            .find(|shape| shape.client_id().as_bytes() == id)
            .unwrap_or(FetchShape::Whole)
    }
}
const FETCH_RESPONSE_BYTES: usize = 4 << 20;

/// The value after `flag`.
pub fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, "--role") {
        Some("upstream") => upstream::main(&args),
        Some("relay") => relay::main(&args),
        Some(other) => bail!("unknown role {other}"),
        None => run(
            args.iter().any(|a| a == "--quick"),
            args.iter().any(|a| a == "--write"),
            arg(&args, "--baseline").map(PathBuf::from),
        ),
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Eight free consecutive ports, below the ephemeral range.
fn free_port_range() -> Result<u16> {
    for base in (21000..29000).step_by(8) {
        if (0..8).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no free port range")
}

fn ourselves(args: &[&str]) -> Result<Process> {
    let child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .context("spawn a role of the benchmark")?;
    Ok(Process(child))
}

/// What sits between the load and the stand-in broker.
#[derive(Clone, Copy)]
enum Kind {
    Direct,
    Relay,
    Mirrorgate { mirror_declared: bool },
}

/// A middle, and whether clients reach it over TLS (terminated there).
#[derive(Clone)]
struct Middle {
    kind: Kind,
    tls: bool,
    /// Another mirrorgate binary than this build's (`--baseline`).
    binary: Option<PathBuf>,
}

impl Middle {
    fn label(&self) -> String {
        let name = match self.kind {
            Kind::Direct => "direct",
            Kind::Relay => "relay (256 KiB buffers)",
            Kind::Mirrorgate {
                mirror_declared: false,
            } => "mirrorgate",
            Kind::Mirrorgate {
                mirror_declared: true,
            } => "mirrorgate, fetched topic a mirror",
        };
        let name = match (&self.binary, self.kind) {
            (Some(_), Kind::Mirrorgate { .. }) => format!("{name} (baseline build)"),
            _ => name.to_string(),
        };
        if self.tls {
            format!("{name}, TLS")
        } else {
            name
        }
    }

    /// Starts it; returns the process (none when direct) and where clients go.
    fn start(
        &self,
        upstream: u16,
        dir: &Path,
        client_tls: &Arc<rustls::ClientConfig>,
    ) -> Result<(Option<Process>, load::Target)> {
        let tls = self.tls.then(|| client_tls.clone());
        let cert = dir.join("proxy.pem").display().to_string();
        let key = dir.join("proxy-key.pem").display().to_string();
        let (process, addr) = match self.kind {
            Kind::Direct => (None, format!("127.0.0.1:{upstream}")),
            Kind::Relay => {
                let listen = format!("127.0.0.1:{}", free_port()?);
                let to = format!("127.0.0.1:{upstream}");
                let mut args = vec!["--role", "relay", "--listen", &listen, "--to", &to];
                if self.tls {
                    args.extend(["--tls-cert", &cert, "--tls-key", &key]);
                }
                (Some(ourselves(&args)?), listen.clone())
            }
            Kind::Mirrorgate { mirror_declared } => {
                let bootstrap = free_port()?;
                let brokers = free_port_range()?;
                let admin = free_port()?;
                let mut config = format!(
                    "[proxy]\nbind = \"127.0.0.1:{bootstrap}\"\nadvertised_host = \"127.0.0.1\"\n\
                     broker_port_base = {brokers}\n\n"
                );
                if self.tls {
                    config.push_str(&format!(
                        "[proxy.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\n"
                    ));
                }
                config.push_str(&format!(
                    "[destination]\nbootstrap_servers = \"127.0.0.1:{upstream}\"\n\n\
                     [admin]\nbind = \"127.0.0.1:{admin}\"\n\n[log]\nlevel = \"warn\"\n"
                ));
                if mirror_declared {
                    config.push_str(&format!("\n[[mirror_topics]]\nname = \"{FETCH_TOPIC}\"\n"));
                }
                let path = dir.join("mirrorgate.toml");
                std::fs::write(&path, config)?;
                let binary = self.binary.clone().unwrap_or_else(mirrorgate_binary);
                let child = Command::new(binary)
                    .args(["run", "--config"])
                    .arg(&path)
                    .stdout(Stdio::null())
                    .spawn()
                    .context("spawn mirrorgate")?;
                // Broker 0's own listener, where a client sends its Produce and Fetch.
                (Some(Process(child)), format!("127.0.0.1:{brokers}"))
            }
        };
        Ok((process, load::Target { addr, tls }))
    }
}

/// Development certificates in `dir` (the script the TLS tests use), and a client
/// config trusting their CA.
fn certificates(dir: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/make-dev-certs");
    let out = Command::new(script).arg(dir).output()?;
    if !out.status.success() {
        bail!("make-dev-certs: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem"))? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn mirrorgate_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mirrorgate"))
}

/// User plus system CPU seconds a process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One kind of load.
enum Workload {
    Bulk {
        label: &'static str,
        request: Bytes,
        connections: usize,
        depth: usize,
    },
    Rate {
        label: &'static str,
        request: Bytes,
        rate: u32,
    },
}

impl Workload {
    fn label(&self) -> &'static str {
        match self {
            Workload::Bulk { label, .. } | Workload::Rate { label, .. } => label,
        }
    }

    fn request(&self) -> &Bytes {
        match self {
            Workload::Bulk { request, .. } | Workload::Rate { request, .. } => request,
        }
    }

    async fn run(&self, target: &load::Target, duration: Duration) -> Result<load::Outcome> {
        match self {
            Workload::Bulk {
                request,
                connections,
                depth,
                ..
            } => load::bulk(target, request, *connections, *depth, duration).await,
            Workload::Rate { request, rate, .. } => {
                load::fixed_rate(target, request, *rate, duration).await
            }
        }
    }
}

struct Row {
    workload: &'static str,
    middle: String,
    kind_relay: bool,
    tls: bool,
    mb_per_s: f64,
    requests_per_s: f64,
    cpu_s_per_gb: Option<f64>,
    cpu_us_per_request: Option<f64>,
    p50: f64,
    p99: f64,
    p999: f64,
    fixed_rate: bool,
    /// Latency (ms) at each of `CURVE`'s quantiles, for the CDF charts.
    curve: Vec<f64>,
}

/// Quantiles the latency CDF charts are drawn through.
fn curve_quantiles() -> Vec<f64> {
    let mut q: Vec<f64> = (0..=99).map(|p| p as f64 / 100.0).collect();
    q.extend([0.995, 0.999, 1.0]);
    q
}

/// Pins every thread of `pid` to `cpu` (`taskset`).
fn pin(pid: u32, cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-cp", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (BENCH_PIN)")?;
    if !status.success() {
        bail!("taskset failed: {status}");
    }
    Ok(())
}

fn run(quick: bool, write: bool, baseline: Option<PathBuf>) -> Result<()> {
    // BENCH_PIN=1: the load generator and the stand-in broker on core 0, the middle on
    // core 1, so the middle's latency is not its wait for a core the others hold.
    let pinned = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    if pinned {
        pin(std::process::id(), 0)?;
    }
    let duration = Duration::from_secs(if quick { 3 } else { 5 });
    // Rounds interleave the middles, so a noisy minute on this machine hits them all.
    // BENCH_ROUNDS=N: more rounds for rows whose spread hides a small difference.
    let rounds = match std::env::var("BENCH_ROUNDS")
        .ok()
        .map(|v| v.parse::<usize>())
    {
        Some(Ok(n)) if n > 0 => n,
        Some(_) => bail!("BENCH_ROUNDS must be a whole number above 0"),
        None if quick => 1,
        None => 3,
    };
    let dir = tempfile::tempdir()?;
    let upstream_port = free_port()?;
    let fetch_bytes = FETCH_RESPONSE_BYTES.to_string();
    let port = upstream_port.to_string();
    let _upstream = ourselves(&[
        "--role",
        "upstream",
        "--port",
        &port,
        "--fetch-bytes",
        &fetch_bytes,
    ])?;
    let workloads = vec![
        Workload::Bulk {
            label: "produce 1 MiB batches, 4 conns x 4 in flight",
            request: load::produce_request(1 << 20)?,
            connections: 4,
            depth: 4,
        },
        Workload::Bulk {
            label: "produce 16 KiB batches, 4 conns x 16 in flight",
            request: load::produce_request(16 << 10)?,
            connections: 4,
            depth: 16,
        },
        Workload::Bulk {
            label: "fetch 4 MiB responses, 4 conns x 2 in flight",
            request: load::fetch_request(load::FETCH_VERSION, FetchShape::Whole)?,
            connections: 4,
            depth: 2,
        },
        Workload::Bulk {
            label: "fetch 4 MiB, v17 (topic ids, KIP-951 era)",
            request: load::fetch_request(load::MODERN_FETCH_VERSION, FetchShape::Whole)?,
            connections: 4,
            depth: 2,
        },
        Workload::Bulk {
            label: "fetch 4 MiB, v17 with NodeEndpoints (rewritten)",
            request: load::fetch_request(load::MODERN_FETCH_VERSION, FetchShape::Moved)?,
            connections: 4,
            depth: 2,
        },
        Workload::Bulk {
            label: "fetch 200 partitions x 1 KiB, v17, 4 conns x 8 in flight",
            request: load::fetch_request(load::MODERN_FETCH_VERSION, FetchShape::Partitions)?,
            connections: 4,
            depth: 8,
        },
        Workload::Rate {
            label: "1,000 produce/s of 1 KiB, 1 conn",
            request: load::produce_request(1 << 10)?,
            rate: 1000,
        },
        Workload::Rate {
            label: "10,000 produce/s of 1 KiB, 1 conn",
            request: load::produce_request(1 << 10)?,
            rate: 10_000,
        },
    ];
    let client_tls = certificates(dir.path())?;
    let mut middles: Vec<Middle> = [
        (Kind::Direct, false),
        (Kind::Relay, false),
        (
            Kind::Mirrorgate {
                mirror_declared: false,
            },
            false,
        ),
        (
            Kind::Mirrorgate {
                mirror_declared: true,
            },
            false,
        ),
        (Kind::Relay, true),
        (
            Kind::Mirrorgate {
                mirror_declared: false,
            },
            true,
        ),
    ]
    .into_iter()
    .map(|(kind, tls)| Middle {
        kind,
        tls,
        binary: None,
    })
    .collect();
    if let Some(binary) = baseline {
        for (mirror_declared, tls) in [(false, false), (true, false), (false, true)] {
            middles.push(Middle {
                kind: Kind::Mirrorgate { mirror_declared },
                tls,
                binary: Some(binary.clone()),
            });
        }
    }
    let (workloads, middles) = only(workloads, middles, write)?;
    let runtime = tokio::runtime::Runtime::new()?;
    // BENCH_PROFILE=DIR: `perf` samples each middle process per workload, first round.
    let profile_dir = std::env::var_os("BENCH_PROFILE").map(PathBuf::from);
    // BENCH_SYSCALLS=DIR: `strace -c` of each middle per workload, first round.
    let syscalls_dir = std::env::var_os("BENCH_SYSCALLS").map(PathBuf::from);
    let mut rows = Vec::new();
    for middle in (0..rounds).flat_map(|_| middles.iter()) {
        let (process, target) = middle.start(upstream_port, dir.path(), &client_tls)?;
        if let (true, Some(process)) = (pinned, &process) {
            pin(process.pid(), 1)?;
        }
        runtime.block_on(wait_ready(&target, workloads[0].request()))?;
        for workload in &workloads {
            // A short warm-up, so connection set-up is not measured.
            runtime.block_on(workload.run(&target, Duration::from_millis(500)))?;
            let cpu_before = process.as_ref().map(|p| cpu_seconds(p.pid())).transpose()?;
            // Samplers watch the middle process in the first round only.
            let sampled = match &process {
                Some(p) if rows.len() < middles.len() * workloads.len() => {
                    Some((p.pid(), sample_name(&middle.label(), workload.label())))
                }
                _ => None,
            };
            let profile = match (&profile_dir, &sampled) {
                (Some(dir), Some((pid, name))) => Some(Profile::start(dir, *pid, name)?),
                _ => None,
            };
            let syscalls = match (&syscalls_dir, &sampled) {
                (Some(dir), Some((pid, name))) => Some(SyscallCount::start(dir, *pid, name)?),
                _ => None,
            };
            let mut outcome = runtime.block_on(workload.run(&target, duration))?;
            if let Some(profile) = profile {
                profile.finish()?;
            }
            if let Some(syscalls) = syscalls {
                syscalls.finish(outcome.requests)?;
            }
            let cpu = match (&process, cpu_before) {
                (Some(p), Some(before)) => Some(cpu_seconds(p.pid())? - before),
                _ => None,
            };
            let secs = outcome.elapsed.as_secs_f64();
            let gb = outcome.bytes as f64 / 1e9;
            rows.push(Row {
                workload: workload.label(),
                middle: middle.label(),
                kind_relay: matches!(middle.kind, Kind::Relay),
                tls: middle.tls,
                mb_per_s: outcome.bytes as f64 / 1e6 / secs,
                requests_per_s: outcome.requests as f64 / secs,
                cpu_s_per_gb: cpu.map(|c| c / gb),
                cpu_us_per_request: cpu.map(|c| c * 1e6 / outcome.requests.max(1) as f64),
                p50: outcome.latency_ms(0.5),
                p99: outcome.latency_ms(0.99),
                p999: outcome.latency_ms(0.999),
                fixed_rate: matches!(workload, Workload::Rate { .. }),
                curve: curve_quantiles()
                    .into_iter()
                    .map(|q| outcome.latency_ms(q))
                    .collect(),
            });
            eprintln!("done: {} through {}", workload.label(), middle.label());
        }
        drop(process);
    }
    let medians = medians(&rows);
    let section = section(&medians, duration, rounds, pinned);
    println!("{section}");
    if write {
        write_report(&section)?;
        draw_charts(&medians, dir.path())?;
    }
    Ok(())
}

/// `BENCH_ONLY`: the workloads and middles whose label contains one of its
/// comma-separated words; a side with no match is kept whole.
fn only(
    workloads: Vec<Workload>,
    middles: Vec<Middle>,
    write: bool,
) -> Result<(Vec<Workload>, Vec<Middle>)> {
    let Ok(words) = std::env::var("BENCH_ONLY") else {
        return Ok((workloads, middles));
    };
    if write {
        bail!("BENCH_ONLY runs a part of the section; it cannot be written");
    }
    let words: Vec<String> = words.split(',').map(|w| w.trim().to_string()).collect();
    let hit = |label: &str| {
        words
            .iter()
            .any(|w| !w.is_empty() && label.contains(w.as_str()))
    };
    let workloads = match workloads.iter().any(|w| hit(w.label())) {
        true => workloads.into_iter().filter(|w| hit(w.label())).collect(),
        false => workloads,
    };
    let middles = match middles.iter().any(|m| hit(&m.label())) {
        true => middles.into_iter().filter(|m| hit(&m.label())).collect(),
        false => middles,
    };
    Ok((workloads, middles))
}

/// A file name for one middle over one workload.
fn sample_name(middle: &str, workload: &str) -> String {
    format!("{middle}--{workload}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Starts a sampler that attaches to a middle, its output silenced.
fn attach(command: &mut Command) -> std::io::Result<Child> {
    command.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
}

/// Stops a sampler with SIGINT, which makes it write what it gathered, and waits for it.
fn interrupt(sampler: &mut Child) -> Result<()> {
    Command::new("kill")
        .args(["-INT", &sampler.id().to_string()])
        .status()?;
    sampler.wait()?;
    Ok(())
}

/// `strace -c` of one middle over one workload: its system calls by kind, and the
/// requests they served, so a reader can put them per request.
struct SyscallCount {
    strace: Child,
    report: PathBuf,
}

impl SyscallCount {
    fn start(dir: &Path, pid: u32, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let report = dir.join(format!("{name}.strace.txt"));
        let strace = attach(
            Command::new("strace")
                .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
                .arg(&report),
        )
        .context("start strace (BENCH_SYSCALLS)")?;
        Ok(Self { strace, report })
    }

    fn finish(mut self, requests: u64) -> Result<()> {
        // strace detaches and writes its table.
        interrupt(&mut self.strace)?;
        let table = std::fs::read_to_string(&self.report).unwrap_or_default();
        std::fs::write(&self.report, format!("requests: {requests}\n{table}"))?;
        Ok(())
    }
}

/// `perf record` of one middle over one workload, reported as its top symbols.
struct Profile {
    perf: Child,
    data: PathBuf,
    report: PathBuf,
}

impl Profile {
    fn start(dir: &Path, pid: u32, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let data = dir.join(format!("{name}.perf.data"));
        let perf = attach(
            Command::new("perf")
                .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
                .arg(&data),
        )
        .context("start perf (BENCH_PROFILE)")?;
        Ok(Self {
            perf,
            data,
            report: dir.join(format!("{name}.txt")),
        })
    }

    fn finish(mut self) -> Result<()> {
        // perf writes its data and exits.
        interrupt(&mut self.perf)?;
        let report = Command::new("perf")
            .args(["report", "--no-children", "--stdio", "--percent-limit", "1"])
            .args(["--sort", "dso,symbol", "-g", "none", "-i"])
            .arg(&self.data)
            .output()?;
        std::fs::write(&self.report, report.stdout)?;
        Ok(())
    }
}

/// The SVG charts linked from the section (`benches/proxy_bound_charts.py`).
fn draw_charts(rows: &[Row], scratch: &Path) -> Result<()> {
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload,
                "middle": r.middle,
                "fixed_rate": r.fixed_rate,
                "cpu_s_per_gb": r.cpu_s_per_gb,
                "cpu_us_per_request": r.cpu_us_per_request,
                "curve": curve_quantiles().into_iter().zip(r.curve.iter().copied()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let path = scratch.join("proxy_bound.json");
    std::fs::write(&path, serde_json::to_vec(&data)?)?;
    let benches = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let status = Command::new("python3")
        .arg(benches.join("proxy_bound_charts.py"))
        .arg(&path)
        .arg(benches.join("charts"))
        .status()?;
    if !status.success() {
        bail!("drawing the charts failed: {status}");
    }
    Ok(())
}

async fn wait_ready(target: &load::Target, request: &Bytes) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), load::once(target, request)).await {
            Ok(Ok(())) => return Ok(()),
            _ if Instant::now() > deadline => bail!("{} never answered", target.addr),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One row per (workload, middle): the median of each figure over the rounds.
fn medians(rows: &[Row]) -> Vec<Row> {
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    }
    let mut out: Vec<Row> = Vec::new();
    for row in rows {
        if out
            .iter()
            .any(|r| r.workload == row.workload && r.middle == row.middle)
        {
            continue;
        }
        let same: Vec<&Row> = rows
            .iter()
            .filter(|r| r.workload == row.workload && r.middle == row.middle)
            .collect();
        let of = |f: fn(&Row) -> f64| median(same.iter().map(|r| f(r)).collect());
        let of_opt = |f: fn(&Row) -> Option<f64>| {
            let values: Vec<f64> = same.iter().filter_map(|r| f(r)).collect();
            (!values.is_empty()).then(|| median(values))
        };
        out.push(Row {
            workload: row.workload,
            middle: row.middle.clone(),
            kind_relay: row.kind_relay,
            tls: row.tls,
            mb_per_s: of(|r| r.mb_per_s),
            requests_per_s: of(|r| r.requests_per_s),
            cpu_s_per_gb: of_opt(|r| r.cpu_s_per_gb),
            cpu_us_per_request: of_opt(|r| r.cpu_us_per_request),
            p50: of(|r| r.p50),
            p99: of(|r| r.p99),
            p999: of(|r| r.p999),
            fixed_rate: row.fixed_rate,
            curve: (0..row.curve.len())
                .map(|i| {
                    median(
                        same.iter()
                            .filter_map(|r| r.curve.get(i).copied())
                            .collect(),
                    )
                })
                .collect(),
        });
    }
    out
}

const BEGIN: &str = "<!-- proxy-bound:begin -->";
const END: &str = "<!-- proxy-bound:end -->";

/// The BENCHMARKS.md section: how it was run, then the table.
fn section(rows: &[Row], duration: Duration, rounds: usize, pinned: bool) -> String {
    let mut out = format!(
        "{BEGIN}\n## Proxy-bound (benches/proxy_bound)\n\n\
         `cargo bench --bench proxy_bound [-- --quick] [-- --write]`. A stand-in broker answers \
         Produce (v9, acks=1) and Fetch (4 MiB of 64 KiB record batches, v12 by name or v17 by \
         topic id; v17 also as after a leader move, with KIP-951 NodeEndpoints the proxy must \
         rewrite; and 200 partitions of 1 KiB each) from memory, so \
         the middle of the path is what is measured. Middles: none (direct), a plain relay of \
         our own with 256 KiB buffers (the floor a byte-copying proxy reaches), and mirrorgate \
         (release build, defaults). Each middle is its own process; CPU is its user + system \
         time over the run. Load generator, stand-in broker and middle share this machine's \
         2 cores, so MB/s is what the three reach together; compare the ratios. \
         Latency of the fixed-rate rows counts from when each request was due (paced at the \
         timer's millisecond, so 10,000/s goes out in bursts of about 10); `p99 over relay` is \
         the latency added beyond the relay's. {} s per row, \
         {rounds} round(s) interleaving the middles; each figure is the median over the rounds.{}\n\n\
         | workload | middle | MB/s | vs direct | req/s | CPU-s/GB | CPU-µs/req | CPU vs relay | p50 ms | p99 ms | p99 over relay ms | p99.9 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        duration.as_secs(),
        if pinned {
            " Pinned (`BENCH_PIN=1`): load generator and stand-in broker on core 0, the middle on core 1."
        } else {
            ""
        }
    );
    for row in rows {
        let same_workload = |r: &&Row| r.workload == row.workload;
        let relay_row = rows
            .iter()
            .filter(same_workload)
            .find(|r| r.kind_relay && r.tls == row.tls);
        let relay = relay_row.and_then(|r| r.cpu_us_per_request);
        let over_relay = match relay_row {
            Some(relay) if !row.kind_relay && row.cpu_us_per_request.is_some() => {
                format!("{:+.2}", row.p99 - relay.p99)
            }
            _ => "-".into(),
        };
        let direct = rows
            .iter()
            .filter(same_workload)
            .find(|r| r.cpu_us_per_request.is_none())
            .map(|r| r.mb_per_s);
        let ratio = |ours: Option<f64>, base: Option<f64>| match (ours, base) {
            (Some(ours), Some(base)) if base > 0.0 => format!("{:.2}x", ours / base),
            _ => "-".into(),
        };
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} |\n",
            row.workload,
            row.middle,
            row.mb_per_s,
            ratio(Some(row.mb_per_s), direct),
            row.requests_per_s,
            opt(row.cpu_s_per_gb, 2),
            opt(row.cpu_us_per_request, 1),
            ratio(row.cpu_us_per_request, relay),
            row.p50,
            row.p99,
            over_relay,
            row.p999,
        ));
    }
    out.push_str(
        "\nCharts of these medians: latency CDFs of the fixed-rate rows \
         ([1,000/s](benches/charts/proxy_bound_latency_1.svg), \
         [10,000/s](benches/charts/proxy_bound_latency_2.svg)) and \
         [the middles' CPU](benches/charts/proxy_bound_cpu.svg).\n",
    );
    out.push_str(END);
    out
}

/// Replaces the section in BENCHMARKS.md (or appends it).
fn write_report(section: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!(
                "{}{section}{}",
                &current[..begin],
                &current[end + END.len()..]
            )
        }
        _ => format!("{}\n\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
