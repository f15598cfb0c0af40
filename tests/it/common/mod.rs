//! Shared harness for integration tests: real Kafka clusters from `testbed/kafka`,
//! the real `mirrorgate` binary, real clients (Kafka's Java tools, kcat) run under
//! strace so a test can prove which ports a client connected to.

pub mod gate;
pub mod kafka;
pub mod replication;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A unique name for this test's topics and groups (clusters are shared by a run).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// How often `eventually` and `eventually_async` try again.
const EVENTUALLY_INTERVAL: Duration = Duration::from_millis(200);

/// What one attempt of `eventually` found. `Some(value)` or `Ok(value)`: the wait is
/// over and returns `value`. `None`: not yet. `Err(seen)`: not yet, and `seen` says what
/// the attempt found instead; a timeout shows the last attempt's (the state a failure
/// message should show).
pub trait Outcome<T> {
    fn into_result(self) -> Result<T, Option<String>>;
}

impl<T> Outcome<T> for Option<T> {
    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Outcome<T> for Result<T, String> {
    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Calls `attempt` until it succeeds (see `Outcome`), 200 ms apart, and returns its
/// value. Once `timeout` has passed since the first call, a failed attempt panics with
/// `timed out after {timeout:?} waiting until {what}` (and what it saw, if it said):
/// `what` reads as the condition awaited. A bool-shaped check returns
/// `cond.then_some(())`.
#[track_caller]
pub fn eventually<T, A: Outcome<T>>(
    what: &str,
    timeout: Duration,
    attempt: impl FnMut() -> A,
) -> T {
    eventually_every(what, timeout, EVENTUALLY_INTERVAL, attempt)
}

/// `eventually`, trying again every `interval`: for a wait that must catch a short
/// window (a copy still under way, a cut-over step) or tell how soon something happened.
#[track_caller]
pub fn eventually_every<T, A: Outcome<T>>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut attempt: impl FnMut() -> A,
) -> T {
    let started = Instant::now();
    loop {
        match attempt().into_result() {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= timeout => timed_out(what, timeout, seen),
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// `eventually` for async checks, sleeping with `tokio::time::sleep`. `attempt` may be an
/// async closure (`async || ...`), which can use a connection of the caller's every time.
pub async fn eventually_async<T, A: Outcome<T>>(
    what: &str,
    timeout: Duration,
    attempt: impl AsyncFnMut() -> A,
) -> T {
    eventually_every_async(what, timeout, EVENTUALLY_INTERVAL, attempt).await
}

/// `eventually_async`, trying again every `interval` (see `eventually_every`).
pub async fn eventually_every_async<T, A: Outcome<T>>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut attempt: impl AsyncFnMut() -> A,
) -> T {
    let started = Instant::now();
    loop {
        match attempt().await.into_result() {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= timeout => timed_out(what, timeout, seen),
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

#[track_caller]
fn timed_out(what: &str, timeout: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => {
            panic!("timed out after {timeout:?} waiting until {what}; last attempt: {seen}")
        }
        None => panic!("timed out after {timeout:?} waiting until {what}"),
    }
}

pub struct Cluster {
    pub name: &'static str,
    pub bootstrap: String,
    pub ports: Vec<u16>,
}

impl Cluster {
    pub fn up(name: &'static str, nodes: u16, port: u16) -> Cluster {
        Self::up_with(name, nodes, port, &[])
    }

    /// A cluster with extra `testbed/kafka up` arguments (e.g. `--security ssl`).
    pub fn up_with(name: &'static str, nodes: u16, port: u16, extra: &[&str]) -> Cluster {
        let (nodes_arg, port_arg) = (nodes.to_string(), port.to_string());
        let mut up = Command::new(repo_root().join("testbed/kafka"));
        up.args(["up", name, "--nodes", &nodes_arg, "--port", &port_arg])
            .args(extra)
            .stderr(Stdio::inherit());
        // Source clusters may run another Kafka version than the destination
        // (`testbed/matrix`); `KAFKA_VERSION` sets the destination's and the tools'.
        if let Ok(version) = std::env::var("MIRRORGATE_SOURCE_KAFKA_VERSION") {
            if name.starts_with("mg-src") && !version.is_empty() {
                up.env("KAFKA_VERSION", version);
            }
        }
        let out = up.output().expect("run testbed/kafka up");
        assert!(out.status.success(), "testbed/kafka up {name} failed");
        let ports: Vec<u16> = (0..nodes).map(|i| port + i).collect();
        let bootstrap = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            name,
            bootstrap,
            ports,
        }
    }

    /// Broker, controller and internal ports: what no proxied client may connect to.
    pub fn all_ports(&self) -> BTreeSet<u16> {
        self.ports
            .iter()
            .flat_map(|p| [*p, p + 100, p + 200])
            .collect()
    }
}

/// First port of the test clusters: `MIRRORGATE_TEST_PORT` (default 29092), so two
/// checkouts can run their suites side by side. The destination takes port..port+2
/// (controllers +100), the discovery test's cluster port+208.. . Below Linux's
/// ephemeral range (32768..), so client sockets never hold a broker's port.
pub fn test_port_base() -> u16 {
    std::env::var("MIRRORGATE_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(29092)
}

/// The 3-node destination cluster shared by every test of a run.
pub fn destination() -> &'static Cluster {
    static DEST: OnceLock<Cluster> = OnceLock::new();
    DEST.get_or_init(|| Cluster::up("mg-dest", 3, test_port_base()))
}

/// The 3-node cluster of the tests that stop brokers, held by one test at a time so a
/// stopped broker never disturbs another test. Every node is running again when the
/// lease is dropped, whatever the test did.
pub struct BrokerRestarts {
    pub cluster: &'static Cluster,
    _turn: std::sync::MutexGuard<'static, ()>,
}

pub fn broker_restarts() -> BrokerRestarts {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = CLUSTER.get_or_init(|| Cluster::up("mg-elastic", 3, test_port_base() + 208));
    BrokerRestarts {
        cluster,
        _turn: turn,
    }
}

impl BrokerRestarts {
    pub fn stop_node(&self, node: u16) {
        testbed(&["stop-node", self.cluster.name, &node.to_string()]);
    }

    pub fn start_node(&self, node: u16) {
        testbed(&["start-node", self.cluster.name, &node.to_string()]);
    }

    /// The testbed node index of one of the cluster's broker addresses.
    pub fn node_of(&self, addr: &str) -> u16 {
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a broker port");
        port - self.cluster.ports[0]
    }
}

impl Drop for BrokerRestarts {
    fn drop(&mut self) {
        for node in 0..self.cluster.ports.len() {
            let _ = Command::new(repo_root().join("testbed/kafka"))
                .args(["start-node", self.cluster.name, &node.to_string()])
                .status();
        }
    }
}

/// Runs a `testbed/kafka` subcommand and asserts it succeeded.
pub fn testbed(args: &[&str]) {
    let status = Command::new(repo_root().join("testbed/kafka"))
        .args(args)
        .status()
        .expect("run testbed/kafka");
    assert!(status.success(), "testbed/kafka {args:?} failed");
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct TCP ports nobody listens on right now: all are held while they are
/// chosen, so two successive choices never hand out the same port.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// A base port with `count` free ports after it (for per-broker listeners).
fn free_port_range(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        // Below the ephemeral range too, clear of the clusters (29092..29502).
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 50;
        let base = 20000 + (std::process::id() % 20) as u16 * 400 + offset as u16 * 8;
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

#[derive(Default, Clone)]
pub struct ProxyOptions {
    pub mirror_topics: Vec<String>,
    /// Lines added to [proxy].
    pub extra_proxy_toml: String,
    /// Lines added to [destination].
    pub extra_destination_toml: String,
    /// Lines added to [admin].
    pub extra_admin_toml: String,
    /// Whole tables appended at the end ([proxy.tls], [log], ...).
    pub extra_tables: String,
    /// Replaces the destination's bootstrap servers.
    pub bootstrap_override: Option<String>,
    pub extra_args: Vec<String>,
    /// Leave RUST_LOG unset (the config's log.level then decides).
    pub no_rust_log: bool,
}

/// Starts `mirrorgate run` on the config file in `dir`, logging (appending) to
/// `dir/mirrorgate.log`.
fn launch(dir: &Path, options: &ProxyOptions) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("mirrorgate.log"))
        .expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorgate"));
    command
        .args(["run", "--config"])
        .arg(dir.join("mirrorgate.toml"))
        .args(&options.extra_args)
        .stdout(Stdio::null())
        .stderr(log);
    if options.no_rust_log {
        command.env_remove("RUST_LOG");
    } else {
        command.env("RUST_LOG", "mirrorgate=debug,info");
    }
    command.spawn().expect("spawn mirrorgate")
}

fn render_config(
    port: u16,
    broker_port_base: u16,
    admin: &str,
    cluster_bootstrap: &str,
    options: &ProxyOptions,
) -> String {
    let bootstrap = options
        .bootstrap_override
        .as_deref()
        .unwrap_or(cluster_bootstrap);
    let mut config = format!(
        "[proxy]\nbind = \"127.0.0.1:{port}\"\nadvertised_host = \"127.0.0.1\"\n\
         broker_port_base = {broker_port_base}\n{}\n\n\
         [destination]\nbootstrap_servers = \"{bootstrap}\"\n{}\n\n[admin]\nbind = \"{admin}\"\n{}\n",
        options.extra_proxy_toml, options.extra_destination_toml, options.extra_admin_toml
    );
    for topic in &options.mirror_topics {
        config.push_str(&format!("\n[[mirror_topics]]\nname = \"{topic}\"\n"));
    }
    config.push_str(&options.extra_tables);
    config
}

/// A running `mirrorgate run` process in front of a cluster; killed on drop.
pub struct Proxy {
    child: Child,
    pub bootstrap: String,
    pub port: u16,
    pub broker_port_base: u16,
    pub admin: String,
    cluster_bootstrap: String,
    dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(cluster: &Cluster, options: ProxyOptions) -> Proxy {
        let mut proxy = Self::spawn(cluster, options);
        proxy.wait_ready();
        proxy
    }

    /// Starts the process without waiting for readiness.
    pub fn spawn(cluster: &Cluster, options: ProxyOptions) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let [port, admin_port] = free_ports();
        let broker_port_base = free_port_range(8);
        let admin = format!("127.0.0.1:{admin_port}");
        let cluster_bootstrap = cluster.bootstrap.clone();
        let config_path = dir.path().join("mirrorgate.toml");
        let text = render_config(port, broker_port_base, &admin, &cluster_bootstrap, &options);
        std::fs::write(&config_path, text).expect("write config");
        Proxy {
            child: launch(dir.path(), &options),
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            broker_port_base,
            admin,
            cluster_bootstrap,
            dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mirrorgate.toml")
    }

    /// SIGKILL (no drain, no goodbye), then the same process again: same config file,
    /// same ports; waits until it is ready.
    pub fn kill_and_restart(&mut self, options: &ProxyOptions) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = launch(self.dir.path(), options);
        self.wait_ready();
    }

    /// SIGKILL (no drain, no goodbye).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, then the same process again, not waiting for readiness.
    pub fn respawn(&mut self, options: &ProxyOptions) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = launch(self.dir.path(), options);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the config file for these options (same ports), atomically.
    pub fn write_config(&self, options: &ProxyOptions) {
        let text = render_config(
            self.port,
            self.broker_port_base,
            &self.admin,
            &self.cluster_bootstrap,
            options,
        );
        self.write_raw_config(&text);
    }

    pub fn write_raw_config(&self, text: &str) {
        let tmp = self.dir.path().join("mirrorgate.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// POST /admin/reload: (status, body).
    pub fn reload(&self) -> (u16, String) {
        http_request(&self.admin, "POST", "/admin/reload").expect("admin reload")
    }

    pub fn metrics(&self) -> String {
        http_get(&self.admin, "/metrics").expect("metrics").1
    }

    /// The sum of every series of the metric `name` (0 when it has none yet).
    pub fn metric_sum(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until /readyz answers 200, looking often (every proxy start waits here).
    /// A failed wait prints the log (`drop`).
    fn wait_ready(&mut self) {
        let (timeout, often) = (Duration::from_secs(30), Duration::from_millis(100));
        eventually_every("mirrorgate is ready", timeout, often, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mirrorgate exited early ({status}):\n{}", self.log());
            }
            match http_get(&self.admin, "/readyz") {
                Some((200, _)) => Ok(()),
                answer => Err(format!("/readyz answered {answer:?}")),
            }
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mirrorgate.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every port of this proxy: bootstrap and the per-broker listeners.
    pub fn ports(&self) -> BTreeSet<u16> {
        let mut ports: BTreeSet<u16> = (0..8).map(|i| self.broker_port_base + i).collect();
        ports.insert(self.port);
        ports
    }

    pub fn broker_addr(&self, node_id: u16) -> String {
        format!("127.0.0.1:{}", self.broker_port_base + node_id)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        sigterm(&self.child).expect("kill");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- mirrorgate log ---\n{}", self.log());
        }
    }
}

/// GET `path` of the HTTP server at `addr`: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path)
}

/// `method` on `path` (state changes carry `{}`, the admin API's "no body"): (status
/// code, body); None when the server cannot be reached.
pub fn http_request(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let response = match method {
        "GET" => agent.get(&url).call(),
        "DELETE" => agent.delete(&url).call(),
        "PUT" => agent.put(&url).content_type("application/json").send("{}"),
        _ => agent.post(&url).content_type("application/json").send("{}"),
    };
    let mut response = response.ok()?;
    let code = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((code, body))
}

/// A client command's output and every TCP port it tried to connect to.
pub struct Traced {
    pub output: Output,
    pub connected_ports: BTreeSet<u16>,
}

impl Traced {
    pub fn stdout(&self) -> String {
        without_tool_warnings(&String::from_utf8_lossy(&self.output.stdout))
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }

    /// Asserts the client reached the proxy and never a broker or controller port.
    pub fn assert_only_proxy(&self, proxy: &Proxy, cluster: &Cluster) {
        self.assert_only_proxy_via(proxy.port, proxy, cluster);
    }

    /// `assert_only_proxy` for a client bootstrapped through `entry` (a gate in front of
    /// the proxy's bootstrap port).
    pub fn assert_only_proxy_via(&self, entry: u16, proxy: &Proxy, cluster: &Cluster) {
        assert!(
            self.connected_ports.contains(&entry),
            "client never connected to its bootstrap port {entry}; ports: {:?}\n{}",
            self.connected_ports,
            self.text()
        );
        let cluster_ports = cluster.all_ports();
        let direct: Vec<_> = self.connected_ports.intersection(&cluster_ports).collect();
        assert!(
            direct.is_empty(),
            "client connected straight to cluster ports {direct:?}\n{}",
            self.text()
        );
        let mut proxy_ports = proxy.ports();
        proxy_ports.insert(entry);
        let others: Vec<_> = self.connected_ports.difference(&proxy_ports).collect();
        assert!(
            others.is_empty(),
            "client connected to unexpected ports {others:?}"
        );
    }
}

/// SIGTERM to a child process, by `kill` (the tests have no signal crate).
fn sigterm(child: &Child) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
}

/// Runs `program args` under `strace -f` (connect calls only), feeding `stdin`.
pub fn traced(program: &Path, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Traced {
    traced_with_hosts(program, args, stdin, timeout, None)
}

/// As `traced`, with `hosts` (a file in /etc/hosts format) as the client's /etc/hosts:
/// a private mount namespace gives test-only names (SNI routing) an address without
/// touching the machine's resolver. Needs root, as CI has.
pub fn traced_with_hosts(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
    hosts: Option<&Path>,
) -> Traced {
    let mut running = spawn_traced(program, args, stdin.is_some(), timeout, hosts);
    if let (Some(input), Some(mut pipe)) = (stdin, running.child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    running.wait()
}

/// A traced client still running (`spawn_traced`); its stdin is open when asked for.
pub struct Running {
    pub child: Child,
    trace: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Stops the client now: SIGTERM to `timeout`, which passes it on to the client (a
    /// SIGKILL would end only `timeout` and leave the client running, orphaned).
    pub fn stop(self) -> Traced {
        let _ = sigterm(&self.child);
        self.wait()
    }

    /// Waits for the client to exit (closing its stdin first).
    pub fn wait(mut self) -> Traced {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for client");
        let read = |name: &str| std::fs::read(self._dir.path().join(name)).unwrap_or_default();
        let output = Output {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
        };
        let text = std::fs::read_to_string(&self.trace).unwrap_or_default();
        Traced {
            output,
            connected_ports: parse_connect_ports(&text),
        }
    }
}

/// Starts `program args` under `strace -f` (connect calls only) and `timeout`, without
/// waiting: for clients that run while a test does something else.
pub fn spawn_traced(
    program: &Path,
    args: &[&str],
    with_stdin: bool,
    timeout: Duration,
    hosts: Option<&Path>,
) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("connect.trace");
    let mut command = Command::new("timeout");
    command.arg(format!("{}", timeout.as_secs()));
    if let Some(hosts) = hosts {
        command
            .args(["unshare", "--mount", "--", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(hosts);
    }
    let strace = [
        "strace",
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-e",
        "trace=connect",
        "-o",
    ];
    let child = command
        .args(strace)
        .arg(&trace)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        // Files, not pipes: a client running in the background must never block on a
        // full pipe nobody reads yet.
        .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
        .spawn()
        .expect("spawn strace");
    Running {
        child,
        trace,
        _dir: dir,
    }
}

/// TCP/UDP ports of every connect(); DNS lookups (port 53) are not Kafka traffic.
fn parse_connect_ports(trace: &str) -> BTreeSet<u16> {
    const DNS: u16 = 53;
    trace
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET")))
        .filter_map(|l| {
            let start = l.find("htons(")? + "htons(".len();
            let end = start + l[start..].find(')')?;
            l[start..end].parse().ok()
        })
        .filter(|port| *port != DNS)
        .collect()
}

/// A Kafka CLI tool (through `testbed/kafka tool`), traced.
pub fn kafka_tool(args: &[&str], stdin: Option<&str>) -> Traced {
    let mut full = vec!["tool"];
    full.extend_from_slice(args);
    traced(
        &repo_root().join("testbed/kafka"),
        &full,
        stdin,
        Duration::from_secs(120),
    )
}

/// A Kafka CLI tool run straight against a cluster (test setup and checks).
pub fn kafka_tool_direct(args: &[&str]) -> Output {
    let mut out = Command::new(repo_root().join("testbed/kafka"))
        .arg("tool")
        .args(args)
        .output()
        .expect("run kafka tool");
    out.stdout = without_tool_warnings(&String::from_utf8_lossy(&out.stdout)).into_bytes();
    out
}

/// Newer Kafka tools (4.2+) print a line to stdout for each option they renamed
/// (`Option --property is deprecated ...`); the options the tests use work on every
/// version, so those lines are dropped from what the tests read.
fn without_tool_warnings(stdout: &str) -> String {
    stdout
        .split_inclusive('\n')
        .filter(|line| !(line.starts_with("Option --") && line.contains(" is deprecated")))
        .collect()
}

/// kcat arguments that read a whole topic from the beginning and exit.
pub fn kcat_read_all(bootstrap: &str, topic: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

/// kcat, traced.
pub fn kcat(args: &[&str], stdin: Option<&str>) -> Traced {
    traced(Path::new("kcat"), args, stdin, Duration::from_secs(60))
}

pub fn create_topic(cluster: &Cluster, topic: &str, extra: &[&str]) {
    let mut args = vec![
        "kafka-topics",
        "--bootstrap-server",
        &cluster.bootstrap,
        "--create",
        "--topic",
        topic,
    ];
    args.extend_from_slice(extra);
    let out = kafka_tool_direct(&args);
    assert!(
        out.status.success(),
        "create {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// End offsets read straight from the cluster: "topic:partition:offset" lines.
pub fn end_offsets(cluster: &Cluster, topic: &str) -> String {
    let out = kafka_tool_direct(&[
        "kafka-get-offsets",
        "--bootstrap-server",
        &cluster.bootstrap,
        "--topic",
        topic,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The Java clients of `tests/clients/java` (Maven Central's Kafka client and Streams),
/// built if needed, once per run (Maven's own start costs seconds of CPU): their
/// classpath.
pub fn java_clients_classpath() -> String {
    static CLASSPATH: OnceLock<String> = OnceLock::new();
    CLASSPATH.get_or_init(build_java_clients).clone()
}

fn build_java_clients() -> String {
    let dir = repo_root().join("tests/clients/java");
    let built = Command::new("mvn")
        .args(["-q", "-B", "package"])
        .current_dir(&dir)
        .output()
        .expect("run mvn");
    assert!(
        built.status.success(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    format!(
        "{}:{}/*",
        dir.join("target/classes").display(),
        dir.join("target/libs").display()
    )
}

/// The admin client config file of testbed cluster `cluster` for `mechanism` (plain,
/// scram-256, scram-512).
pub fn client_config(cluster: &str, mechanism: &str) -> String {
    let out = Command::new(repo_root().join("testbed/kafka"))
        .args(["client-config", cluster, mechanism])
        .output()
        .expect("client-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
