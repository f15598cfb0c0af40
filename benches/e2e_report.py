#!/usr/bin/env python3
"""Turns the raw output of benches/e2e.sh into BENCHMARKS.md (markdown on stdout).

Input: the scratch directory of e2e.sh, holding
  meta.env                      key=value: machine, versions, parameters
  raw/SIDE-rN-produce.txt       kafka-producer-perf-test, --throughput -1
  raw/SIDE-rN-consume.txt       kafka-consumer-perf-test of those records
  raw/SIDE-rN-latency.txt       kafka-producer-perf-test at a fixed rate
  cpu.tsv                       side, round, CPU-seconds of the proxy over that round
  rss.tsv                       side, VmHWM in KiB at the end
  load.tsv                      side, round, place in the round, 1-minute load average
  peers.md                      how the peer proxies were obtained (or why not)
  micro.txt                     output of `cargo bench --bench frames` (full mode only)
  micro-metadata.txt            output of `cargo bench --bench metadata` (full mode only)
  replication/sections.md       sections written by benches/replication.sh (or
  replication/failed.txt        the end of its log, when it failed)
Stdlib only, so it runs wherever the testbed runs.
"""

import re
import statistics
import sys
from pathlib import Path

PRODUCE_RE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)
LABELS = {
    "direct": "direct",
    "mirrorgate": "mirrorgate",
    "mirrorgate-tls": "mirrorgate-tls",
    "kafka-proxy": "kafka-proxy",
}


def fail(msg):
    sys.exit(f"e2e_report: {msg}")


def read_meta(out):
    meta = {}
    for line in (out / "meta.env").read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    return meta


def parse_produce(path):
    # The summary is the last line; earlier lines are the 5-second progress reports.
    matches = list(PRODUCE_RE.finditer(path.read_text()))
    if not matches:
        fail(f"no producer summary in {path}")
    return {k: float(v) for k, v in matches[-1].groupdict().items()}


def parse_consume(path):
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time") and i + 1 < len(lines):
            header = [h.strip() for h in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            row = dict(zip(header, values))
            return {k: float(row[k]) for k in header[2:]}
    fail(f"no consumer summary in {path}")


def load_runs(out, meta):
    """runs[side][round] = {"produce": {...}, "consume": {...}, "latency": {...}}"""
    runs = {}
    for side in meta["sides"].split():
        runs[side] = {}
        for r in range(1, int(meta["rounds"]) + 1):
            base = out / "raw" / f"{side}-r{r}"
            runs[side][r] = {
                "produce": parse_produce(Path(f"{base}-produce.txt")),
                "consume": parse_consume(Path(f"{base}-consume.txt")),
                "latency": parse_produce(Path(f"{base}-latency.txt")),
            }
            c = runs[side][r]["consume"]["data.consumed.in.nMsg"]
            p = runs[side][r]["produce"]["records"]
            if c != p:
                fail(f"{side} round {r}: consumed {c:.0f} of {p:.0f} records")
    return runs


# Each metric: (label, phase, field). Consumer rates are the fetch rates: they leave out
# the consumer-group join, which is mostly the coordinator's rebalance, not data flow.
THROUGHPUT = [
    ("produce records/s", "produce", "rps"),
    ("produce MB/s", "produce", "mbps"),
    ("consume records/s", "consume", "fetch.nMsg.sec"),
    ("consume MB/s", "consume", "fetch.MB.sec"),
]
LATENCY_SATURATED = [
    ("produce p50 ms, saturated", "produce", "p50"),
    ("produce p99 ms, saturated", "produce", "p99"),
    ("produce p99.9 ms, saturated", "produce", "p999"),
]
LATENCY_FIXED = [
    ("produce p50 ms, {rate} rec/s", "latency", "p50"),
    ("produce p99 ms, {rate} rec/s", "latency", "p99"),
    ("produce p99.9 ms, {rate} rec/s", "latency", "p999"),
]


def values(runs, side, phase, field):
    return [runs[side][r][phase][field] for r in sorted(runs[side])]


def fmt(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def per_round(runs, side, phase, field, op):
    """op(proxy, direct) for each round: the two ran back to back, so they shared the
    machine's state more closely than any other pair of runs."""
    return [op(p, d) for p, d in zip(values(runs, side, phase, field), values(runs, "direct", phase, field))]


def median_of(runs, side, phase, field):
    return statistics.median(values(runs, side, phase, field))


def bytes_through(runs, side, record_size):
    total = 0.0
    for r in runs[side].values():
        total += r["produce"]["records"] + r["consume"]["data.consumed.in.nMsg"] + r["latency"]["records"]
    return total * record_size


def overhead_table(runs, meta, cpu, rss):
    proxies = [s for s in runs if s != "direct"]
    label = lambda s: f"kafka-proxy {meta['kafka_proxy_version']}" if s == "kafka-proxy" else s
    head = ["metric (median of rounds)", "direct"]
    for s in proxies:
        head += [label(s), f"{label(s)} vs direct"]
    rows = [head, ["---"] + ["---:"] * (len(head) - 1)]
    for name, phase, field in THROUGHPUT:
        row = [name, fmt(statistics.median(values(runs, "direct", phase, field)))]
        for s in proxies:
            ratio = median_of(runs, s, phase, field) / median_of(runs, "direct", phase, field)
            row += [fmt(median_of(runs, s, phase, field)), f"{ratio:.2f}x"]
        rows.append(row)
    for name, phase, field in LATENCY_SATURATED + LATENCY_FIXED:
        row = [name.format(rate=meta["lat_rate"]), fmt(statistics.median(values(runs, "direct", phase, field)))]
        for s in proxies:
            added = median_of(runs, s, phase, field) - median_of(runs, "direct", phase, field)
            row += [fmt(median_of(runs, s, phase, field)), f"{added:+,.0f} ms"]
        rows.append(row)
    record_size = int(meta["record_size"])
    cpu_row, gb_row, rss_row = ["proxy CPU-seconds per GB", "–"], ["GB through the proxy", "–"], ["proxy peak RSS (VmHWM)", "–"]
    for s in proxies:
        gb = bytes_through(runs, s, record_size) / 1e9
        seconds = sum(v for (side, _), v in cpu.items() if side == s)
        cpu_row += [f"{seconds / gb:.2f}", ""]
        gb_row += [f"{gb:.2f}", ""]
        rss_row += [f"{rss[s] / 1024:.1f} MiB" if s in rss else "?", ""]
    rows += [cpu_row, gb_row, rss_row]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def spread_table(runs, meta):
    """Min / median / max over rounds of the paired per-round comparison."""
    proxies = [s for s in runs if s != "direct"]
    label = lambda s: f"kafka-proxy {meta['kafka_proxy_version']}" if s == "kafka-proxy" else s
    rows = [["per round, proxy vs direct of the same round"] + [f"{label(s)}: min / median / max" for s in proxies],
            ["---"] + ["---:"] * len(proxies)]
    ratio, diff = (lambda a, b: a / b), (lambda a, b: a - b)
    for name, phase, field, op, unit in [
        ("produce MB/s, ratio", "produce", "mbps", ratio, "x"),
        ("consume MB/s, ratio", "consume", "fetch.MB.sec", ratio, "x"),
        ("produce p99 ms, saturated, difference", "produce", "p99", diff, " ms"),
        (f"produce p99 ms at {meta['lat_rate']} rec/s, difference", "latency", "p99", diff, " ms"),
    ]:
        row = [name]
        for s in proxies:
            xs = per_round(runs, s, phase, field, op)
            f = (lambda x: f"{x:.2f}x") if unit == "x" else (lambda x: f"{x:+,.0f} ms")
            row.append(" / ".join(f(x) for x in (min(xs), statistics.median(xs), max(xs))))
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def per_round_table(runs, meta, load):
    head = ["round", "side", "order", "load", "produce rec/s", "produce MB/s", "p50 / p99 / p99.9 ms (saturated)",
            "consume MB/s (fetch)", "consume MB/s (incl. group join)",
            f"p50 / p99 / p99.9 ms ({meta['lat_rate']} rec/s)"]
    rows = [head, ["---:", "---"] + ["---:"] * (len(head) - 2)]
    for r in range(1, int(meta["rounds"]) + 1):
        # In the order the sides ran.
        for side in sorted(runs, key=lambda s: load.get((s, r), (0, 0))[0]):
            x = runs[side][r]
            p, c, l = x["produce"], x["consume"], x["latency"]
            order, avg = load.get((side, r), ("?", "?"))
            rows.append([
                str(r), side, str(order), str(avg), fmt(p["rps"]), fmt(p["mbps"]),
                f"{p['p50']:.0f} / {p['p99']:.0f} / {p['p999']:.0f}",
                fmt(c["fetch.MB.sec"]), fmt(c["MB.sec"]),
                f"{l['p50']:.0f} / {l['p99']:.0f} / {l['p999']:.0f}",
            ])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def parse_criterion(text):
    """[(name, time, throughput)] from criterion's console output."""
    results, name, time = [], None, None
    for line in text.splitlines():
        m = re.match(r"^(\S+/\S+)", line)
        if m:
            name = m.group(1)
        m = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m:
            time = m.group(1)
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if m and name:
            results.append((name, time, float(m.group(1)), m.group(2)))
    return results


def to_gib(value, unit):
    scale = {"B/s": 1 / 2**30, "KiB/s": 1 / 2**20, "MiB/s": 1 / 2**10, "GiB/s": 1.0, "TiB/s": 2**10}
    return value * scale[unit]


def micro_section(out):
    path = out / "micro.txt"
    lines = ["## Micro-benchmarks", ""]
    if not path.exists():
        lines.append("Not run in `--quick` mode; the full run executes `cargo bench --bench frames` and\n"
                     "`cargo bench --bench metadata`.")
        return "\n".join(lines)
    results = parse_criterion(path.read_text())
    if not results:
        fail("no criterion results in micro.txt")
    base = next((to_gib(v, u) for n, _, v, u in results if n.endswith("baseline_memcpy")), None)
    lines += [
        "`cargo bench --bench frames` (criterion, [benches/frames.rs](benches/frames.rs)), run by the",
        "full benchmark before the cluster starts. `frame_path` pushes 256 pipelined Produce frames",
        "(16 KiB of records each) through the frame splitter and header peek; `produce_guard`",
        "runs the read-only check on one such frame. Throughput is in bytes of request frames.",
        "The yardstick is a memcpy of the same bytes into a freshly allocated buffer; a ratio",
        "above 1 means faster than that. With no mirror topic configured the guard is a flag",
        "test and never decodes the frame, so its figure is nominal. `produce_answer_v11`",
        "decodes a Produce answer of one topic (1 or 10 partitions), as the proxy does with",
        "every v10+ answer to look for KIP-951 NodeEndpoints; its throughput is in bytes of",
        "the answer.",
        "",
        "| benchmark | time per iteration (criterion estimate) | throughput | vs memcpy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, time, value, unit in results:
        gib = to_gib(value, unit)
        ratio = f"{gib / base:.2f}x" if base else ""
        lines.append(f"| `{name}` | {time} | {gib:,.2f} GiB/s | {ratio} |")
    return "\n".join(lines)


def parse_criterion_elements(text):
    """[(name, time, requests/s)] for benchmarks whose throughput is in elements."""
    scale = {"elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}
    results, name, time = [], None, None
    for line in text.splitlines():
        m = re.match(r"^(\S+/\S+)", line)
        if m:
            name = m.group(1)
        m = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m:
            time = m.group(1)
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if m and name and m.group(2) in scale:
            results.append((name, time, float(m.group(1)) * scale[m.group(2)]))
    return results


def metadata_micro(out):
    path = out / "micro-metadata.txt"
    if not path.exists():
        return ""
    results = parse_criterion_elements(path.read_text())
    if not results:
        fail("no criterion results in micro-metadata.txt")
    lines = [
        "",
        "",
        "### Metadata rewrite",
        "",
        "`cargo bench --bench metadata` ([benches/metadata.rs](benches/metadata.rs)): the proxy's",
        "rewrite of a Metadata v12 response for 3 brokers and 1,000 partitions (20 topics x 50,",
        "replication factor 3): decode, point the brokers at the proxy, learn the topic ids,",
        "encode. `addresses::metadata` itself needs the proxy's internal shared state, which a",
        "bench cannot build, so the bench runs the same steps from their public pieces.",
        "`decode_encode` is the same round trip without the rewrite.",
        "",
        "| benchmark | time per response (criterion estimate) | responses/s |",
        "| --- | ---: | ---: |",
    ]
    for name, time, rate in results:
        lines.append(f"| `{name}` | {time} | {rate:,.0f} |")
    return "\n".join(lines)


def replication_part(out):
    rep = out / "replication"
    if (rep / "sections.md").exists():
        return (rep / "sections.md").read_text().strip()
    begin, end = "<!-- replication-bench:begin -->", "<!-- replication-bench:end -->"
    if (rep / "failed.txt").exists():
        body = ("## Replication\n\n**`benches/replication.sh` failed**, so the replication, steady-state and scale "
                "sections are missing. The end of its output:\n\n```\n" + (rep / "failed.txt").read_text().strip()
                + "\n```")
    else:
        body = "## Replication\n\nNot run (`BENCH_REPLICATION=0`)."
    return f"{begin}\n\n{body}\n\n{end}"


def main():
    out = Path(sys.argv[1])
    meta = read_meta(out)
    runs = load_runs(out, meta)
    cpu = {}
    for line in (out / "cpu.tsv").read_text().splitlines():
        side, r, seconds = line.split("\t")
        if side in runs:
            cpu[(side, int(r))] = float(seconds)
    rss = {}
    for line in (out / "rss.tsv").read_text().splitlines():
        side, kb = line.split("\t")
        rss[side] = float(kb)
    load = {}
    for line in (out / "load.tsv").read_text().splitlines():
        side, r, order, avg = line.split("\t")
        load[(side, int(r))] = (int(order), avg)
    quick = meta["mode"] == "quick"
    records, rounds = int(meta["records"]), int(meta["rounds"])
    mib = records * int(meta["record_size"]) / 2**20
    quick_note = "\n**Quick mode: one round per side and few records; indicative only.**" if quick else ""

    doc = f"""# Benchmarks

Written by `benches/e2e.sh{' --quick' if quick else ''}` on {meta['date']}, in {meta['minutes']} minutes.{quick_note}
Run `benches/e2e.sh` for the full benchmark (about 20 minutes) or `benches/e2e.sh --quick`
(under 5 minutes); each rewrites this file. `benches/replication.sh [--quick]` reruns only
the replication, steady-state and scale sections and replaces them here.

## Machine

| | |
| --- | --- |
| cores | {meta['cores']} |
| memory | {meta['memory']} |
| CPU | {meta['cpu']} |
| kernel | {meta['kernel']} |
| Kafka | {meta['kafka']}, {meta['nodes']} KRaft nodes (broker+controller) on 127.0.0.1, from `testbed/kafka` |
| Java | {meta['java']} |
| mirrorgate | commit {meta['commit']}, release build |
| Rust | {meta['rustc']} |
| load average (1/5/15 min) | {meta['load_start']} at start, {meta['load_end']} at end |

**This is a noisy machine.** It has {meta['cores']} cores for everything: the brokers, the
perf-test JVMs, the proxy and the replicators all share them, and other engineers were
compiling and running Kafka clusters on the same machine during the run (see the load
averages). Absolute
numbers are therefore low and vary from round to round; the runs are interleaved and
compared as ratios for that reason. Compare the "vs direct" columns, and look at the
per-round table before trusting a small difference.

## Proxy overhead

Each round creates a fresh topic ({meta['partitions']} partitions, replication factor 3) per side,
produces {records:,} records of {meta['record_size']} B (about {mib:.0f} MiB) with
`kafka-producer-perf-test --throughput -1` (`acks=all`, `compression.type=lz4`, client
defaults otherwise), reads them back with `kafka-consumer-perf-test`, then produces
{int(meta['lat_records']):,} more at a fixed {meta['lat_rate']} records/s for latency, and deletes the
topic. The sides take turns within a round and the order rotates from round to round
(round 1: direct, mirrorgate, peer; round 2 starts with mirrorgate; ...), for {rounds}
round{'s' if rounds != 1 else ''}, after an unmeasured warm-up through every side.

"direct" bootstraps from all three brokers; a proxy is given its bootstrap address.
mirrorgate runs with one mirror topic declared (never written), so its produce guard
decodes every Produce request as it would in a deployment.
"mirrorgate-tls" is a second mirrorgate whose clients speak TLS to it (rustls terminates
it; the brokers are reached in plaintext), with the perf tools verifying its certificate
against a development CA. It is compared with plaintext "direct", so its ratios include
what TLS itself costs the clients.

{overhead_table(runs, meta, cpu, rss)}

- Every figure is the median over rounds; "vs direct" compares the medians (a ratio for
  throughput, the added milliseconds for latency). MB is 2^20 bytes, as the Kafka tools
  count it. The table after this list shows how far single rounds scatter.
- A proxy adds work to the path and cannot make the brokers faster: a throughput ratio
  above 1x, or a negative added latency, is noise, and its size shows how little a
  difference this run can resolve. On {meta['cores']} shared cores the brokers limit throughput, so
  these rows can show that a proxy is not the bottleneck, not what it costs.
- Consumer rates are the tool's `fetch.*` rates, which leave out joining the consumer
  group; the per-round table also shows the rate including the join.
- Latencies are the producer's send-to-acknowledgement percentiles. "saturated" is the
  `--throughput -1` run: there the producer's 32 MiB buffer is always full, so latency is
  mostly queueing inside the client and follows throughput. The fixed-rate run at
  {meta['lat_rate']} records/s is the one that shows the proxy's per-request cost.
- CPU-seconds per GB: utime+stime of the proxy process (from `/proc/PID/stat`) over its
  rounds, divided by the record bytes it carried (produced + consumed + the latency runs,
  10^9 bytes per GB; wire bytes are a little more). Peak RSS is `VmHWM` at the end.
  CPU time is the figure the shared machine disturbs least.

{spread_table(runs, meta)}

### Per round

"order" is the side's place in its round, "load" the 1-minute load average when it started.

{per_round_table(runs, meta, load)}

## Peer proxies

{(out / 'peers.md').read_text().strip()}

{replication_part(out)}

{micro_section(out)}{metadata_micro(out)}
"""
    print((doc.rstrip() + kept_sections(doc)).rstrip())


def kept_sections(doc):
    """The marked sections other benchmarks wrote into the current BENCHMARKS.md
    (`<!-- NAME:begin -->` ... `<!-- NAME:end -->`) that this report does not write."""
    current = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if current is None or not current.exists():
        return ""
    kept = ""
    for m in re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", current.read_text(), re.S):
        if f"<!-- {m.group(1)}:begin -->" not in doc:
            kept += "\n\n" + m.group(0)
    return kept


if __name__ == "__main__":
    main()
