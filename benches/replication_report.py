#!/usr/bin/env python3
"""Turns the raw output of benches/replication.sh into BENCHMARKS.md sections.

  replication_report.py OUT                 markdown sections on stdout
  replication_report.py --splice MD FILE    put the sections of MD into FILE, between the
                                            replication markers (replacing what is there;
                                            before "## Micro-benchmarks", or at the end,
                                            if FILE has no markers yet)

Input: the scratch directory of replication.sh, holding
  meta.env                      key=value: parameters, versions, load averages
  mm2-error.txt                 why MirrorMaker 2 could not be fetched (if it could not)
  raw/preload.txt               kafka-producer-perf-test of the preload
  raw/copy-{mirrorgate,mm2}.json    bench_clients.py wait-offsets of the copies
  raw/steady-{mirror,source}.json   bench_clients.py lag-consumer results
  raw/steady-cpu.env            mirrorgate CPU-seconds over the steady-state window
  raw/load-{without,with}-{produce,consume}.txt   perf tools through the proxy
  raw/scale-rss.tsv             label, VmRSS KiB, VmHWM KiB of mirrorgate
  raw/idle.json                 bench_clients.py idle-conns result
  raw/scale-partitions.{json,env}   the 1,000-partition link
Stdlib only.
"""

import json
import re
import sys
from pathlib import Path

import svg_chart

CHARTS = Path(__file__).parent / "charts"

BEGIN = "<!-- replication-bench:begin -->"
END = "<!-- replication-bench:end -->"
MIB = 2**20

PRODUCE_RE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


def fail(msg):
    sys.exit(f"replication_report: {msg}")


def read_env(path):
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            k, _, v = line.partition("=")
            out[k] = v
    return out


def read_json(path):
    return json.loads(path.read_text()) if path.exists() and path.read_text().strip() else None


def parse_produce(path):
    matches = list(PRODUCE_RE.finditer(path.read_text()))
    if not matches:
        fail(f"no producer summary in {path}")
    return {k: float(v) for k, v in matches[-1].groupdict().items()}


def parse_consume(path):
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time") and i + 1 < len(lines):
            header = [h.strip() for h in line.split(",")]
            row = dict(zip(header, [v.strip() for v in lines[i + 1].split(",")]))
            return {k: float(row[k]) for k in header[2:]}
    fail(f"no consumer summary in {path}")


def fmt(x, unit=""):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        s = f"{x:,.0f}"
    elif abs(x) >= 100:
        s = f"{x:.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return s + unit


def table(rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def copy_section(out, meta):
    records = int(meta["preload_records"])
    size = int(meta["record_size"])
    mib = records * size / MIB
    src_log = int(meta.get("src_log_bytes") or 0)
    preload = parse_produce(out / "raw" / "preload.txt")
    mg = read_json(out / "raw" / "copy-mirrorgate.json")
    mm2 = read_json(out / "raw" / "copy-mm2.json")
    quick = meta["mode"] == "quick"
    lines = [
        "## Replication vs MirrorMaker 2",
        "",
        f"A source topic of {int(meta['partitions'])} partitions is preloaded with {records:,} records of "
        f"{size} B ({mib:,.0f} MiB of record values; {src_log / MIB:,.0f} MiB of lz4 log segments) by "
        "`kafka-producer-perf-test` (`acks=all`, `compression.type=lz4`, at "
        f"{preload['mbps']:.1f} MB/s; the tool's values are random capital letters). Then mirrorgate's",
        "replicator copies it to a mirror topic, and afterwards MirrorMaker 2 copies the same topic,",
        "each to a destination cluster of its own that held nothing before. Source and destinations",
        "are one-node clusters (replication factor 1) of the testbed, so that two clusters and a",
        "replicator fit on the machine.",
        "",
        "- mirrorgate: a fresh process (`[replicator] enabled = true`), one link, then",
        "  `mirrorgate mirrors --create`; the clock starts at that command.",
        "- MirrorMaker 2: dedicated mode (`org.apache.kafka.connect.mirror.MirrorMaker`,",
        f"  `connect-mirror` {meta['kafka']} and its dependencies from Maven Central via",
        "  `testbed/kafka fetch-mm2`), with the JVM flags of Kafka's `connect-mirror-maker.sh`",
        "  (`-Xms256m -Xmx2g`, G1) and an `mm2.properties` of defaults plus the two clusters, the",
        "  one `src->dst` flow and topic, replication factor 1 for the topics it creates and",
        "  `sync.topic.acls.enabled = false`. So `tasks.max` is 1 and its producer does not",
        "  compress (`compression.type=none`), as by default. The clock starts at the JVM's",
        "  launch: starting Connect is part of what MM2 costs each time it starts.",
        "- Complete: the end offsets of the destination topic add up to the source total,",
        "  polled every 0.5 s with the Admin API. CPU-seconds: utime+stime from `/proc/PID/stat`",
        "  of the replicating process (mirrorgate's process; MM2's JVM), all threads, from its",
        "  start to that moment; for mirrorgate this includes its start-up and the proxy.",
        "  MB/s and MB per CPU-second count record values (MB = 2^20 bytes, as the Kafka tools).",
        "  The copy phase is from the first record on the destination to complete.",
        "",
    ]
    if mm2 is None:
        err = out / "mm2-error.txt"
        if meta.get("run_mm2") == "1" and err.exists():
            lines += ["**MirrorMaker 2 could not be fetched**, so it has no column:", "",
                      "```", err.read_text().strip(), "```", ""]
        elif quick:
            lines += ["**Quick mode: MirrorMaker 2 was not run** (its JVM and Connect start-up alone take",
                      "longer than the quick copy); run the full benchmark for the comparison.", ""]
        else:
            lines += ["**MirrorMaker 2 was not run** (`BENCH_MM2=0`).", ""]

    def col(r):
        if r is None:
            return None
        copy_s = r["complete_s"] - r["first_data_s"] if r.get("first_data_s") is not None else None
        return {
            "time": r["complete_s"],
            "mbps": mib / r["complete_s"],
            "copy_s": copy_s,
            "copy_mbps": mib / copy_s if copy_s else None,
            "cpu": r["cpu_s"],
            "copy_cpu": r["cpu_s"] - r["cpu_at_first_data_s"] if r.get("cpu_at_first_data_s") is not None else None,
            "mb_per_cpu": mib / r["cpu_s"] if r["cpu_s"] else None,
            "mirror_cpu": mirror_cpu(r),
            "hwm": r["hwm_kb"] / 1024,
        }

    a, b = col(mg), col(mm2)
    head = ["", "mirrorgate"] + (["MirrorMaker 2", "mirrorgate / MM2"] if b else [])
    rows = [head, ["---"] + ["---:"] * (len(head) - 1)]

    def row(label, key, unit="", higher_better=True):
        r = [label, fmt(a[key], unit)]
        if b:
            ratio = (a[key] / b[key] if higher_better else b[key] / a[key]) if a[key] and b[key] else None
            r += [fmt(b[key], unit), f"{ratio:.2f}x" if ratio else "–"]
        rows.append(r)

    row("time to complete mirror", "time", " s", higher_better=False)
    row("throughput, MB/s", "mbps")
    row("copy phase (first record on destination to complete)", "copy_s", " s", higher_better=False)
    row("throughput in the copy phase, MB/s", "copy_mbps")
    row("CPU-seconds to complete", "cpu", "", higher_better=False)
    row("MB per CPU-second", "mb_per_cpu")
    row("CPU-seconds in the copy phase", "copy_cpu", "", higher_better=False)
    if a["mirror_cpu"] is not None:  # MM2 copies from its start: it has no such moment
        rows.append(["CPU-seconds from the mirror's creation", fmt(a["mirror_cpu"])] + (["–", ""] if b else []))
    rows.append(["peak RSS (VmHWM)", fmt(a["hwm"], " MiB")] + ([fmt(b["hwm"], " MiB"), ""] if b else []))
    if b and meta.get("mm2_dst_log_bytes"):
        rows.append(["destination log segments", "the source's batches, byte for byte",
                     fmt(int(meta["mm2_dst_log_bytes"]) / MIB, " MiB"), ""])
    lines.append(table(rows))
    lines.append("")
    if b:
        ratio = a["mb_per_cpu"] / b["mb_per_cpu"]
        verdict = "met" if ratio >= 5 else "not met"
        lines += [f"Ratios are mirrorgate's advantage (time: MM2's divided by mirrorgate's). Goal: at least 5x "
                  f"the MB per CPU-second of MirrorMaker 2; this run: **{ratio:.1f}x ({verdict})**.", ""]
    if progress_chart(mg, mm2, records, CHARTS / "replication_progress.svg"):
        lines += ["[Records on the destination over time, both copies](benches/charts/replication_progress.svg)"
                  " (each from its own clock start, as above).", ""]
    lines += rounds_lines(out, meta, mib)
    return "\n".join(lines)


def progress_chart(mg, mm2, records, path):
    """Copy progress of each side as a line chart; False when the run kept no samples."""
    series = [(name, [(t, n / records * 100) for t, n in r["progress"]])
              for name, r in (("mirrorgate", mg), ("MirrorMaker 2", mm2)) if r and r.get("progress")]
    if not series:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    svg_chart.lines("Mirror copy progress", series, "seconds from start",
                    "% of the source's records on the destination", path, y_max=100)
    return True


def rounds_lines(out, meta, mib):
    """The copy by a baseline build and by this tree, alternating (BENCH_COPY_BASELINE)."""
    rev_file = out / "raw" / "copy-baseline.rev"
    if not rev_file.exists():
        return []
    rev = rev_file.read_text().strip()
    rounds = int(meta.get("copy_rounds") or 0)
    gb = mib * MIB / 1e9
    per = {"baseline": [], "current": []}
    rows = [["round", "side", "time s", "CPU-s", "CPU-s per GB", "from the mirror's creation, per GB", "MB/s"],
            ["---:", "---", "---:", "---:", "---:", "---:", "---:"]]
    for r in range(1, rounds + 1):
        order = ["baseline", "current"] if r % 2 else ["current", "baseline"]
        for side in order:
            res = read_json(out / "raw" / f"copy-round-r{r}-{side}.json")
            if res is None:
                continue
            per[side].append(res)
            since = mirror_cpu(res)
            rows.append([str(r), side, f"{res['complete_s']:.1f}", f"{res['cpu_s']:.2f}",
                         f"{res['cpu_s'] / gb:.2f}", fmt(since / gb if since is not None else None),
                         f"{mib / res['complete_s']:.1f}"])
    if not per["baseline"] or not per["current"]:
        return []

    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    b_cpu = median([x["cpu_s"] for x in per["baseline"]])
    c_cpu = median([x["cpu_s"] for x in per["current"]])
    since = {side: [mirror_cpu(x) for x in xs if mirror_cpu(x) is not None] for side, xs in per.items()}
    since_line = []
    if since["baseline"] and since["current"]:
        b_since, c_since = median(since["baseline"]), median(since["current"])
        since_line = [f"From the mirror's creation (the process start and the link left out): "
                      f"{b_since / gb:.2f} and {c_since / gb:.2f} CPU-s per GB "
                      f"(**{c_since / b_since:.2f}x**).", ""]
    b_t = median([x["complete_s"] for x in per["baseline"]])
    c_t = median([x["complete_s"] for x in per["current"]])
    return [
        f"### This build against `{rev}`, {rounds} rounds",
        "",
        "The same preloaded topic copied again by each build in turn (order alternating), each",
        "round a fresh process, a link of its own and a fresh mirror topic (`cluster.link.prefix`).",
        "CPU-seconds from the process start to a complete mirror, per GB of record values",
        "(10^9 bytes).",
        "",
        table(rows),
        "",
        f"Medians: CPU-s per GB {b_cpu / gb:.2f} (`{rev}`) and {c_cpu / gb:.2f} (this build): "
        f"**{c_cpu / b_cpu:.2f}x** the CPU; time to complete {b_t:.1f} s and {c_t:.1f} s "
        f"({c_t / b_t:.2f}x).",
        "",
    ] + since_line


def mirror_cpu(res):
    """CPU-seconds from just before the mirror was created to a complete mirror."""
    if res.get("cpu_at_t0_s") is None:
        return None
    return res["cpu_s"] - res["cpu_at_t0_s"]


def steady_section(out, meta):
    mirror = read_json(out / "raw" / "steady-mirror.json")
    source = read_json(out / "raw" / "steady-source.json")
    cpu = float(read_env(out / "raw" / "steady-cpu.env").get("cpu_s", "nan"))
    prod = parse_produce(out / "raw" / "steady-produce.txt")
    secs = int(meta["steady_secs"])
    warm = int(meta.get("steady_warmup", 0))
    lines = [
        "## Steady-state lag",
        "",
        f"While the link mirrors a {meta['partitions']}-partition topic, `kafka-producer-perf-test --throughput "
        f"{meta['steady_rate']}` writes {int(meta['steady_records']):,} records of {meta['record_size']} B "
        f"(lz4, `acks=all`) to the source for {warm} + {secs} s (it achieved {prod['rps']:,.0f} records/s; "
        f"its own send-to-ack p50/p99: {prod['p50']:.0f} / {prod['p99']:.0f} ms).",
        f"Two consumers ({meta['py_client']}, client defaults) start at the current end: one reads",
        "the mirror through the mirrorgate proxy, one the source directly. For every record each",
        "takes its receive time minus the record's timestamp (CreateTime, set by the producer at",
        "`send()` and preserved by the mirror). The source row is the floor (producer batching,",
        "the source's append and the consumer's fetch); the difference is what mirroring adds.",
        f"Records of the first {warm} s (the producer's JVM warming up) are counted but not measured.",
        "",
    ]
    rows = [["path", "records", "p50 ms", "p99 ms", "p99.9 ms", "max ms"], ["---", "---:", "---:", "---:", "---:", "---:"]]
    for label, r in [("source, read directly", source), ("mirror, read through mirrorgate", mirror)]:
        rows.append([label, f"{r['records']:,}", fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["p999_ms"]), fmt(r["max_ms"])])
    added = lambda k: f"{mirror[k] - source[k]:+.1f}"
    rows.append(["added by mirroring", "", added("p50_ms"), added("p99_ms"), added("p999_ms"), added("max_ms")])
    lines.append(table(rows))
    lines += ["", f"mirrorgate used {cpu:.2f} CPU-seconds over the window ({cpu / secs * 100:.1f}% of one core)"
              f" for {int(meta['steady_rate']) * int(meta['record_size']) / MIB:.2f} MB/s mirrored"
              " and read back through the proxy.", ""]
    return "\n".join(lines)


def scale_section(out, meta):
    raw = out / "raw"
    rss = {}
    for line in (raw / "scale-rss.tsv").read_text().splitlines():
        label, kb, hwm = line.split("\t")
        rss[label] = (int(kb) / 1024, int(hwm) / 1024)
    idle = read_json(raw / "idle.json") or {}
    n = int(meta["idle_conns"])
    load = {}
    for side in ("without", "with"):
        load[side] = (parse_produce(raw / f"load-{side}-produce.txt"), parse_consume(raw / f"load-{side}-consume.txt"))
    records = int(meta["load_records"])
    lines = [
        "## Scale",
        "",
        f"### {n:,} idle client connections",
        "",
        f"A produce/consume load through the proxy ({records:,} records of {meta['record_size']} B with "
        "`kafka-producer-perf-test --throughput -1`, then read back with `kafka-consumer-perf-test`,",
        "on a 6-partition topic of the destination) runs once with no other clients, then again while",
        f"{n:,} more connections are open to the proxy's bootstrap listener: each sent one ApiVersions",
        "request, got its answer and then idles (a Python script holding the sockets). RSS is",
        "mirrorgate's `VmRSS` (the same process as the steady-state run, its link still mirroring).",
        "",
    ]
    p0, c0 = load["without"]
    p1, c1 = load["with"]
    rows = [["", "without idle connections", f"with {n:,} idle connections", "with / without"],
            ["---", "---:", "---:", "---:"],
            ["produce MB/s", fmt(p0["mbps"]), fmt(p1["mbps"]), f"{p1['mbps'] / p0['mbps']:.2f}x"],
            ["produce p99 ms", fmt(p0["p99"]), fmt(p1["p99"]), f"{p1['p99'] - p0['p99']:+.0f} ms"],
            ["consume MB/s (fetch)", fmt(c0["fetch.MB.sec"]), fmt(c1["fetch.MB.sec"]),
             f"{c1['fetch.MB.sec'] / c0['fetch.MB.sec']:.2f}x"],
            ["RSS before the load", fmt(rss["before"][0], " MiB"), fmt(rss["idle-open"][0], " MiB"),
             f"{rss['idle-open'][0] - rss['after-without'][0]:+.1f} MiB"],
            ["RSS after the load", fmt(rss["after-without"][0], " MiB"), fmt(rss["after-with"][0], " MiB"),
             f"{rss['after-with'][0] - rss['after-without'][0]:+.1f} MiB"]]
    lines.append(table(rows))
    per_conn = (rss["idle-open"][0] - rss["after-without"][0]) * 1024 / n
    lines += ["", f"Opening the {n:,} connections changed RSS by {per_conn:+.1f} KiB per connection (proxy side and the"
              " upstream connection it holds for each). Peak RSS (VmHWM) of the process at the end: "
              f"{rss['after-with'][1]:.1f} MiB."]
    if idle:
        lines.append(f"The proxy closed {idle.get('closed_by_peer', 0)} of the {idle.get('opened', n):,} idle connections.")
    lines.append("")

    env = read_env(raw / "scale-partitions.env")
    sp = read_json(raw / "scale-partitions.json")
    topics, parts, per = int(meta["scale_topics"]), int(meta["scale_partitions"]), int(meta["scale_per_partition"])
    total_parts = topics * parts
    lines += [
        f"### {total_parts:,} mirror partitions",
        "",
        f"{topics} source topics of {parts} partitions, {per} records of {meta['record_size']} B in every partition;",
        f"a fresh mirrorgate, one link, then `mirrorgate mirrors --create` for each topic in turn. Time runs from",
        "the first create until the destination's end offsets of all partitions add up to the source's.",
        "",
    ]
    rows = [["", ""], ["---", "---:"],
            ["mirror partitions", f"{sp['partitions']:,}"],
            ["records", f"{sp['target']:,}"],
            [f"`mirrors --create` x {topics} (CLI round trips)", fmt(float(env["create_s"]), " s")],
            ["time until all mirrored (lag 0)", fmt(sp["complete_s"], " s")],
            ["RSS with the link and no mirror", fmt(int(env["rss_idle_kb"]) / 1024, " MiB")],
            ["RSS when all are mirrored", fmt(sp["rss_kb"] / 1024, " MiB")],
            ["RSS 10 s later", fmt(int(env["rss_after_kb"]) / 1024, " MiB")],
            ["peak RSS (VmHWM)", fmt(sp["hwm_kb"] / 1024, " MiB")],
            ["CPU-seconds from start to all mirrored", fmt(sp["cpu_s"])],
            [f"CPU-seconds over the next 10 s, all {total_parts:,} caught up", fmt(float(env["idle_cpu_s"]))]]
    lines.append(table(rows))
    lines.append("")
    return "\n".join(lines)


def sections(out):
    meta = read_env(out / "meta.env")
    quick = meta["mode"] == "quick"
    head = (f"The sections up to the micro-benchmarks come from `benches/replication.sh{' --quick' if quick else ''}`"
            f" ({meta['date']}, {meta['minutes']} min; load average {meta['load_start']} at its start,"
            f" {meta['load_end']} at its end; Kafka {meta['kafka']}).")
    if quick:
        head += "\n**Quick mode: small sizes; indicative only.**"
    return "\n\n".join([BEGIN, head, copy_section(out, meta), steady_section(out, meta), scale_section(out, meta).rstrip(), END])


def splice(md_path, target):
    block = Path(md_path).read_text().strip()
    path = Path(target)
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + block + post
    elif "\n## Micro-benchmarks" in text:
        pre, post = text.split("\n## Micro-benchmarks", 1)
        text = pre.rstrip() + "\n\n" + block + "\n\n## Micro-benchmarks" + post
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--splice":
        splice(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        print(sections(Path(sys.argv[1])))
    else:
        fail("usage: replication_report.py OUT | --splice SECTIONS.md FILE")


if __name__ == "__main__":
    main()
