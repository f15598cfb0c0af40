#!/usr/bin/env bash
# Cut-over benchmark of mirrorgate on the local testbed: what producers writing through
# mirrorgate see while a cut-over moves their topic to the destination.
#
#   benches/cutover.sh [--quick] [--out DIR] [--no-report]
#
# Starts a source and a destination cluster (testbed/kafka, one node each: `cut-src` on
# 127.0.0.1:25092, `cut-dst` on 127.0.0.1:25292) and two replicating mirrorgate
# instances (release build). For 1 and 12 partitions, each round mirrors a new topic on
# a new link in `mirror.produce.mode=forward` and runs two Java producers through the
# first instance at a fixed rate (idempotent; not idempotent, acks=all, one request in
# flight):
#   baseline  the producers alone, forwarded to the source the whole time
#   cutover   the same, with `mirrorgate cutover` run on the second instance mid-way
# Producer latencies come from kafka-producer-perf-test (p50, p99, max: the max of a
# cut-over round is the write pause); the cut-over's duration from the command. Results
# go to BENCHMARKS.md (between the cutover markers), as medians over the rounds and as
# ratios to the baseline measured in the same run.
#
#   --quick      1 round per partition count (about 3 minutes); default 3
#   --out DIR    scratch directory (default target/cutover-bench)
#   --no-report  leave BENCHMARKS.md alone
#
# Everything listens on 127.0.0.1 (ports 25000-25999, below the ephemeral range) and is stopped on exit.
set -euo pipefail
PROG=cutover-bench
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
OUT=target/cutover-bench
REPORT=1
parse_flags "$@"
ROUNDS=$((QUICK ? 1 : 3))

SRC=127.0.0.1:25092
DST=127.0.0.1:25292
RATE=400          # records/s per producer
RECORDS=8000      # per producer: 20 s
RECORD_SIZE=256
CUTOVER_AFTER=7   # seconds into the run
INSTANCE_PORT_BASE=25400   # instance I: proxy on 25400+100*I, admin API on 25490+100*I
TOOL_TIMEOUT=600

rm -rf "$OUT"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  clusters_down cut-src cut-dst
  exit "$rc"
}
trap cleanup EXIT

build_mirrorgate
step "Clusters cut-src ($SRC) and cut-dst ($DST)"
kafka fetch
clusters_down cut-src cut-dst
kafka up cut-src --nodes 1 --port 25092 >/dev/null
kafka up cut-dst --nodes 1 --port 25292 >/dev/null

proxy() { echo "127.0.0.1:$((INSTANCE_PORT_BASE + 100 * $1))"; }

step "Two mirrorgate instances"
for i in 0 1; do start_instance "mg$i" "$i" _mirrorgate-metadata-cutover-bench 6000; done

# producer NAME TOPIC IDEMPOTENT: one perf-test producer through instance 0, in the
# background; its summary goes to $OUT/NAME.txt.
producer() {
  local props=(bootstrap.servers="$(proxy 0)" acks=all linger.ms=0)
  if [[ $3 == 1 ]]; then
    props+=(enable.idempotence=true)
  else
    props+=(enable.idempotence=false max.in.flight.requests.per.connection=1)
  fi
  tool kafka-producer-perf-test --topic "$2" --num-records "$RECORDS" --record-size "$RECORD_SIZE" \
    --throughput "$RATE" --producer-props "${props[@]}" >"$OUT/$1.txt" 2>&1 &
}

# round KIND PARTITIONS N: a new forwarded mirror, two producers, and (KIND=cutover) a
# cut-over mid-way.
round() {
  local kind=$1 parts=$2 name="cb-$1-$2-$3"
  tool kafka-topics --bootstrap-server "$SRC" --create --topic "$name" --partitions "$parts" \
    --replication-factor 1 >/dev/null
  mg_on 0 cluster-links --create --link "$name" \
    --config "bootstrap.servers=$SRC,mirror.produce.mode=forward" >/dev/null
  mg_on 0 mirrors --create --mirror-topic "$name" --link "$name" >/dev/null
  sleep 2
  producer "$name.idempotent" "$name" 1
  local p1=$!
  producer "$name.plain" "$name" 0
  local p2=$!
  if [[ $kind == cutover ]]; then
    sleep "$CUTOVER_AFTER"
    mg_on 1 cutover --link "$name" --timeout-ms 30000 >"$OUT/$name.cutover.txt" 2>&1 \
      || die "cut-over of $name failed: $(cat "$OUT/$name.cutover.txt")"
  fi
  wait "$p1" "$p2" || die "a producer of $name failed"
  grep -q 'records sent' "$OUT/$name.idempotent.txt" || die "no summary for $name"
}

for parts in 1 12; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for kind in baseline cutover; do
      step "$kind, $parts partition(s), round $r of $ROUNDS"
      round "$kind" "$parts" "$r"
    done
  done
done

step "Report"
python3 - "$OUT" "$ROUNDS" "$RATE" "$RECORDS" "$RECORD_SIZE" "$REPORT" <<'PY'
import pathlib, re, statistics, sys
out, rounds, rate, records, size, report = sys.argv[1:]
out = pathlib.Path(out)
summary = re.compile(r"records sent.*?([\d.]+) ms max latency, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th")

def latencies(path):
    m = None
    for m in summary.finditer(path.read_text()):
        pass
    if m is None:
        raise SystemExit(f"no perf-test summary in {path}")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))

def median(xs):
    return statistics.median(xs) if xs else float("nan")

lines = ["<!-- cutover:begin -->", "## Cut-over (benches/cutover.sh)", "",
         f"Two instances (release build), one-node source and destination on this machine; "
         f"two producers through the first instance at {rate} records/s each ({records} records "
         f"of {size} B, acks=all, linger 0), the topic's link in `mirror.produce.mode=forward`; "
         f"`mirrorgate cutover` run on the second instance 7 s in. Medians of {rounds} round(s); "
         "\"baseline\" is the same run without a cut-over (forwarded the whole time).", "",
         "| partitions | producer | baseline p50 / p99 / max (ms) | cut-over p50 / p99 / max (ms) | write pause vs baseline max | cut-over duration (s) |",
         "|---|---|---|---|---|---|"]
for parts in (1, 12):
    durations = []
    for r in range(1, int(rounds) + 1):
        text = (out / f"cb-cutover-{parts}-{r}.cutover.txt").read_text()
        m = re.search(r"completed in ([\d.]+) s", text)
        if m:
            durations.append(float(m.group(1)))
    for producer in ("idempotent", "plain"):
        rows = {}
        for kind in ("baseline", "cutover"):
            got = [latencies(out / f"cb-{kind}-{parts}-{r}.{producer}.txt")
                   for r in range(1, int(rounds) + 1)]
            rows[kind] = tuple(median([g[i] for g in got]) for i in range(3))
        (bmax, b50, b99), (cmax, c50, c99) = rows["baseline"], rows["cutover"]
        ratio = cmax / bmax if bmax else float("nan")
        lines.append(f"| {parts} | {producer} | {b50:.0f} / {b99:.0f} / {bmax:.0f} | "
                     f"{c50:.0f} / {c99:.0f} / {cmax:.0f} | {ratio:.1f}x | {median(durations):.1f} |")
lines += ["", "The cut-over's max latency is the longest a write waited: parked at the fence "
          "until the promote, then written on the destination.", "<!-- cutover:end -->"]
text = "\n".join(lines)
print(text)
if report == "1":
    bench = pathlib.Path("BENCHMARKS.md")
    current = bench.read_text() if bench.exists() else ""
    if "<!-- cutover:begin -->" in current:
        head, rest = current.split("<!-- cutover:begin -->", 1)
        tail = rest.split("<!-- cutover:end -->", 1)[1]
        current = head + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    bench.write_text(current)
PY
