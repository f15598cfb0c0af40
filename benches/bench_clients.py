#!/usr/bin/env python3
"""Small Kafka clients for benches/replication.sh (confluent-kafka, installed by that
script into a venv under testbed/.cache/).

  wait-offsets   poll end offsets of topics until they add up to a target; report when
                 the first data and the whole target arrived, and the CPU time and memory
                 of a process (the replicator being measured) at that moment
  lag-consumer   read a topic from its current end and measure, per record, now minus
                 the record's timestamp (CreateTime, preserved by the mirror)
  produce-each   write K records of S bytes to every partition of some topics
  idle-conns     open N connections to a Kafka listener, send ApiVersions on each,
                 then keep them open and idle until terminated
  fleet-records  write a large catalog into a metadata topic (mirror and synced-config
                 records), then the heartbeats of a fleet of instances, each every 2 s

Results are one JSON object on stdout; progress goes to stderr.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench_clients: {msg}", file=sys.stderr, flush=True)


def proc_cpu_seconds(pid):
    """utime+stime of all threads; fields counted after the ')' ending the name."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def partitions_of(client, topics, timeout=5.0):
    """{topic: partition count} for the topics that exist (and have all leaders)."""
    md = client.list_topics(timeout=timeout)
    out = {}
    for t in topics:
        tm = md.topics.get(t)
        if tm is None or tm.error is not None or not tm.partitions:
            continue
        if any(p.leader < 0 for p in tm.partitions.values()):
            continue
        out[t] = len(tm.partitions)
    return out


def end_offsets(client, counts, timeout=10.0):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    req = {TopicPartition(t, p): OffsetSpec.latest() for t, n in counts.items() for p in range(n)}
    if not req:
        return {}
    futures = client.list_offsets(req, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def cmd_wait_offsets(args):
    topics = args.topics.split(",")
    client = admin(args.bootstrap)
    t0 = args.t0 or time.time()
    deadline = time.monotonic() + args.timeout
    first_data, cpu_at_first, total, counts = None, None, 0, {}
    progress = []  # (seconds since t0, records on the destination), for the charts
    while True:
        now = time.time()
        try:
            counts = partitions_of(client, topics)
            total = sum(end_offsets(client, counts).values()) if counts else 0
        except Exception as e:  # a topic being created, a leader moving: poll again
            log(f"poll failed: {e}")
        progress.append([round(now - t0, 2), total])
        if total > 0 and first_data is None:
            first_data = now
            cpu_at_first = proc_cpu_seconds(args.pid) if args.pid else None
        if total >= args.target and len(counts) == len(topics):
            break
        if time.monotonic() > deadline:
            print(json.dumps({"complete": False, "end_offsets_sum": total, "target": args.target,
                              "topics_found": len(counts)}))
            return 1
        time.sleep(args.interval)
    result = {
        "complete": True,
        "end_offsets_sum": total,
        "target": args.target,
        "partitions": sum(counts.values()),
        "complete_s": now - t0,
        "first_data_s": (first_data - t0) if first_data else None,
        "progress": progress,
    }
    if args.pid:
        result["cpu_s"] = proc_cpu_seconds(args.pid)
        result["cpu_at_first_data_s"] = cpu_at_first
        result["cpu_at_t0_s"] = args.cpu_at_t0
        result["rss_kb"] = proc_status_kb(args.pid, "VmRSS")
        result["hwm_kb"] = proc_status_kb(args.pid, "VmHWM")
    print(json.dumps(result))
    return 0


def percentile(sorted_xs, q):
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, int(round(q / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


def cmd_lag_consumer(args):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"bench-lag-{os.getpid()}",
        "enable.auto.commit": False,
        "log_level": 3,
    })
    deadline = time.monotonic() + 60
    while True:
        md = consumer.list_topics(args.topic, timeout=5.0).topics.get(args.topic)
        if md is not None and md.error is None and md.partitions:
            break
        if time.monotonic() > deadline:
            log(f"topic {args.topic} not found via {args.bootstrap}")
            return 1
        time.sleep(0.5)
    # Explicit start offsets (the current end), so nothing produced after "ready" is missed.
    assignment = []
    for p in sorted(md.partitions):
        _, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10.0)
        assignment.append(TopicPartition(args.topic, p, high))
    consumer.assign(assignment)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    lags, received, first_ts = [], 0, None
    deadline = time.monotonic() + args.timeout
    while received < args.expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        now_ms = time.time() * 1000.0
        ts = msg.timestamp()[1]
        received += 1
        # Records of the first seconds (the producer's JVM warming up) are counted, not measured.
        first_ts = ts if first_ts is None else min(first_ts, ts)
        if ts >= first_ts + args.skip_first_secs * 1000:
            lags.append(now_ms - ts)
    consumer.close()
    xs = sorted(lags)
    print(json.dumps({
        "received": received,
        "records": len(xs),
        "expected": args.expect,
        "p50_ms": percentile(xs, 50),
        "p99_ms": percentile(xs, 99),
        "p999_ms": percentile(xs, 99.9),
        "max_ms": xs[-1] if xs else None,
    }))
    return 0 if received >= args.expect else 1


def cmd_produce_each(args):
    from confluent_kafka import Producer

    topics = args.topics.split(",")
    counts = partitions_of(admin(args.bootstrap), topics)
    missing = set(topics) - set(counts)
    if missing:
        log(f"topics not found: {sorted(missing)}")
        return 1
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "compression.type": "lz4",
        "linger.ms": 20,
        "log_level": 3,
    })
    value = os.urandom(args.size // 2).hex().encode()[: args.size]
    n = 0
    for t, parts in counts.items():
        for p in range(parts):
            for _ in range(args.per_partition):
                while True:
                    try:
                        producer.produce(t, value=value, partition=p)
                        break
                    except BufferError:
                        producer.poll(0.1)
                n += 1
        producer.poll(0)
    left = producer.flush(60)
    if left:
        log(f"{left} records not delivered")
        return 1
    print(json.dumps({"records": n, "partitions": sum(counts.values())}))
    return 0


def api_versions_v0(correlation_id):
    client_id = b"bench-idle"
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header)) + header


def read_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        return buf

    (size,) = struct.unpack(">i", exact(4))
    return exact(size)


def cmd_idle_conns(args):
    host, port = args.addr.rsplit(":", 1)
    socks = []
    for i in range(args.count):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(api_versions_v0(i))
        socks.append(s)
    # Every connection got its answer: each is a live, handshaken client connection.
    for i, s in enumerate(socks):
        frame = read_frame(s)
        (corr,) = struct.unpack(">i", frame[:4])
        if corr != i:
            log(f"connection {i}: correlation id {corr}")
            return 1
    log(f"{len(socks)} connections open and idle")
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{len(socks)}\n")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.2)
    closed = 0
    for s in socks:
        # A connection the proxy dropped while idle shows up as readable with EOF.
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(json.dumps({"opened": len(socks), "closed_by_peer": closed}))
    return 0


def cmd_fleet_records(args):
    """The catalog first, flushed; then heartbeats until --secs have passed."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "log_level": 3})
    now_ms = int(time.time() * 1000)
    configs = {f"bench.config.{k}": f"value-{k}" for k in range(args.configs)}
    for m in range(args.mirrors):
        topic = f"bench-mirror-{m}"
        record = {"topic": topic, "source_topic": topic, "link": "bench-absent-link",
                  "partitions": 6, "state": "ACTIVE", "reason": None,
                  "state_time_ms": now_ms, "version": 1}
        producer.produce(args.topic, key=f"mirror/{topic}", value=json.dumps(record))
        producer.produce(args.topic, key=f"configs/{topic}", value=json.dumps(configs))
        producer.poll(0)
    if producer.flush(60):
        log("catalog records not delivered")
        return 1
    if args.ready_file:
        open(args.ready_file, "w").close()
    started = time.time()
    interval = 2.0 / max(args.instances, 1)
    beats = 0
    while time.time() - started < args.secs:
        instance = beats % max(args.instances, 1)
        record = {"heartbeat_ms": int(time.time() * 1000), "started_ms": now_ms,
                  "replicating": False}
        producer.produce(args.topic, key=f"instance/bench-fleet-{instance}",
                         value=json.dumps(record))
        producer.poll(0)
        beats += 1
        time.sleep(max(0.0, started + beats * interval - time.time()))
    producer.flush(30)
    print(json.dumps({"heartbeats": beats, "secs": time.time() - started}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("wait-offsets")
    w.add_argument("--bootstrap", required=True)
    w.add_argument("--topics", required=True, help="comma-separated")
    w.add_argument("--target", type=int, required=True, help="sum of end offsets that means complete")
    w.add_argument("--pid", type=int, help="process whose CPU time and memory to report")
    w.add_argument("--t0", type=float, help="start time (epoch seconds); default now")
    w.add_argument("--cpu-at-t0", type=float, help="CPU-seconds of --pid read at t0, reported back")
    w.add_argument("--timeout", type=float, default=1800)
    w.add_argument("--interval", type=float, default=0.5)

    c = sub.add_parser("lag-consumer")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--timeout", type=float, default=300)
    c.add_argument("--ready-file")
    c.add_argument("--skip-first-secs", type=float, default=0, help="measure only records sent after this")

    p = sub.add_parser("produce-each")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True, help="comma-separated")
    p.add_argument("--per-partition", type=int, required=True)
    p.add_argument("--size", type=int, default=1024)

    i = sub.add_parser("idle-conns")
    i.add_argument("--addr", required=True, help="host:port")
    i.add_argument("--count", type=int, required=True)
    i.add_argument("--ready-file")

    f = sub.add_parser("fleet-records")
    f.add_argument("--bootstrap", required=True)
    f.add_argument("--topic", required=True, help="the metadata topic")
    f.add_argument("--mirrors", type=int, required=True)
    f.add_argument("--configs", type=int, default=20, help="synced configs per mirror")
    f.add_argument("--instances", type=int, required=True, help="heartbeating instances")
    f.add_argument("--secs", type=float, required=True)
    f.add_argument("--ready-file")

    args = ap.parse_args()
    return {
        "wait-offsets": cmd_wait_offsets,
        "lag-consumer": cmd_lag_consumer,
        "produce-each": cmd_produce_each,
        "idle-conns": cmd_idle_conns,
        "fleet-records": cmd_fleet_records,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
