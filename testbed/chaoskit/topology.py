"""The chaos topology: a 3-node source, a 3-node destination, 3 replicating mirrorgate
instances, all on loopback with their own ports (24000-25999, below the ephemeral range so no client socket holds one).

Brokers listen for the workload and the checker on their normal ports; mirrorgate
reaches them only through the fault relay (their RELAY listeners, see relay.py).
"""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAFKA = os.path.join(ROOT, "testbed", "kafka")

NODES = 3
SRC_PORT = 24092
DST_PORT = 24592
INSTANCES = 3
METADATA_TOPIC = "_mirrorgate-metadata-chaos"
FLEET_GROUP = "mirrorgate." + METADATA_TOPIC
SESSION_MS = 6000
LINK = "chaos"


class Cluster:
    def __init__(self, name, port):
        self.name = name
        self.port = port

    @property
    def bootstrap(self):
        return ",".join("127.0.0.1:%d" % (self.port + i) for i in range(NODES))

    @property
    def relay_bootstrap(self):
        return ",".join("127.0.0.1:%d" % (self.port + 400 + i) for i in range(NODES))

    def relay_routes(self):
        return {self.port + 400 + i: (self.name, self.port + 300 + i) for i in range(NODES)}

    def up(self):
        kafka("up", self.name, "--nodes", str(NODES), "--port", str(self.port), "--relay")

    def down(self):
        kafka("down", self.name, check=False)

    def kill_node(self, i):
        kafka("kill-node", self.name, str(i))

    def stop_node(self, i):
        kafka("stop-node", self.name, str(i))

    def start_node(self, i):
        kafka("start-node", self.name, str(i))


def kafka(*args, check=True, timeout=300):
    env = dict(os.environ)
    env.setdefault("KAFKA_HEAP_OPTS", "-Xms192m -Xmx384m")
    return subprocess.run(
        [KAFKA, *args],
        check=check,
        timeout=timeout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tool(*args, timeout=120):
    """A Kafka CLI tool (kafka-topics, kafka-reassign-partitions, ...)."""
    env = dict(os.environ)
    env.setdefault("KAFKA_TOOL_OPTS", "-Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return subprocess.run(
        [KAFKA, "tool", *args],
        timeout=timeout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Instance:
    """One replicating mirrorgate instance: proxy on 25000+100k, brokers at +10+N,
    admin at +90."""

    def __init__(self, k, binary, out_dir, dst_bootstrap):
        self.k = k
        self.name = "mg%d" % k
        self.binary = binary
        self.port = 25000 + 100 * k
        self.admin = "127.0.0.1:%d" % (self.port + 90)
        self.dir = os.path.join(out_dir, self.name)
        self.proc = None
        self.stopped = False
        self.starts = 0
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "mirrorgate.toml")
        with open(self.config, "w") as f:
            f.write(
                f"""[proxy]
bind = "127.0.0.1:{self.port}"
advertised_host = "127.0.0.1"
broker_port_base = {self.port + 10}

[destination]
bootstrap_servers = "{dst_bootstrap}"
metadata_refresh_ms = 5000

[admin]
bind = "{self.admin}"

[replicator]
enabled = true
metadata_topic = "{METADATA_TOPIC}"
session_timeout_ms = {SESSION_MS}
instance_id = "{self.name}"
"""
            )

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.dir, "mirrorgate-%d.log" % self.starts), "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("CHAOS_RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [self.binary, "run", "--config", self.config],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.stopped = False

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = http(self.admin, "GET", "/readyz")
            if status == 200:
                return True
            time.sleep(0.2)
        return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.stopped = True

    def resume(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cli(self, *args, timeout=60):
        env = dict(os.environ, MIRRORGATE_ADMIN_URL="http://" + self.admin)
        return subprocess.run(
            [self.binary, *args], env=env, timeout=timeout, capture_output=True, text=True
        )

    def metrics(self):
        status, body = http(self.admin, "GET", "/metrics")
        return parse_metrics(body) if status == 200 else None


def http(addr, method, path, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (addr, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError):
        return None, ""


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            if "{" in head:
                name, rest = head.split("{", 1)
                labels = frozenset(
                    tuple(kv.split("=", 1)) for kv in _split_labels(rest.rstrip("}"))
                )
            else:
                name, labels = head, frozenset()
            out[(name, labels)] = float(value)
        except ValueError:
            continue
    return out


def _split_labels(s):
    parts, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
            continue
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def metric_sum(metrics, name, **labels):
    want = set(labels.items())
    return sum(v for (n, l), v in metrics.items() if n == name and want <= set(l))


def java_string_hash(s):
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def coordinator_partition(group, partitions=10):
    """__consumer_offsets partition of a group (Kafka's Utils.abs(hashCode) % n)."""
    return (java_string_hash(group) & 0x7FFFFFFF) % partitions
