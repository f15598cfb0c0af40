#!/usr/bin/env bash
# Fleet benchmark of mirrorgate on the local testbed.
#
#   benches/fleet.sh [--quick] [--out DIR] [--no-report]
#
# Starts a source and a destination cluster (testbed/kafka, one node each: `fleet-src`
# on 127.0.0.1:33092, `fleet-dst` on 127.0.0.1:33292) and measures:
#   copy        one preloaded source topic (1 KiB lz4 records, 6 partitions) copied by
#               1, 2 and 3 replicating instances: time to a complete mirror, MB/s, and
#               the ratio to one instance measured in the same run
#   takeover    three instances; one is SIGKILLed, and the time until the survivors
#               hold all its mirror partitions (from their /admin/fleet) is taken; the
#               killed one is restarted and the fleet settles before the next kill
#   propagation a mirror paused and resumed through one instance, and the time until
#               another instance's REST API shows the new state
# and writes the results to BENCHMARKS.md (between the fleet markers).
#
#   --quick      64 MiB preload, 3 kills, 5 propagation rounds (about 3 minutes)
#   --out DIR    scratch directory (default target/fleet-bench)
#   --no-report  leave BENCHMARKS.md alone
#
# Everything listens on 127.0.0.1 (ports 33000-33999) and is stopped on exit.
set -euo pipefail
PROG=fleet
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
OUT=target/fleet-bench
REPORT=1
parse_flags "$@"

SRC=127.0.0.1:33092
DST=127.0.0.1:33292
TOPIC=fleet-bench
PARTITIONS=6
RECORD_SIZE=1024
if ((QUICK)); then PRELOAD_MIB=64; KILLS=3; ROUNDS=5; else PRELOAD_MIB=512; KILLS=6; ROUNDS=20; fi
RECORDS=$((PRELOAD_MIB * 1024 * 1024 / RECORD_SIZE))
SESSION_MS=6000
INSTANCE_PORT_BASE=33400   # instance I: proxy on 33400+100*I, admin API on 33490+100*I
TOOL_TIMEOUT=1800

rm -rf "$OUT"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  clusters_down fleet-src fleet-dst
  exit "$rc"
}
trap cleanup EXIT

build_mirrorgate
step "Clusters fleet-src ($SRC) and fleet-dst ($DST)"
kafka fetch
clusters_down fleet-src fleet-dst
kafka up fleet-src --nodes 1 --port 33092 >/dev/null
kafka up fleet-dst --nodes 1 --port 33292 >/dev/null

step "Preloading $TOPIC: $RECORDS records of $RECORD_SIZE bytes in $PARTITIONS partitions"
tool kafka-topics --bootstrap-server "$SRC" --create --topic "$TOPIC" --partitions "$PARTITIONS" \
  --replication-factor 1 >/dev/null
tool kafka-producer-perf-test --topic "$TOPIC" --num-records "$RECORDS" --record-size "$RECORD_SIZE" \
  --throughput -1 --producer-props bootstrap.servers="$SRC" acks=all compression.type=lz4 \
  linger.ms=5 >"$OUT/preload.txt"
SOURCE_ENDS="$(tool kafka-get-offsets --bootstrap-server "$SRC" --topic "$TOPIC" | sort)"

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  PIDS=()
}
# The mirror partitions an instance copies.
held() { curl -fs "$(instance_admin "$1")/admin/fleet" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["mirror_partitions"]))'; }

step "Copy throughput with 1, 2 and 3 instances"
: >"$OUT/copy.tsv"
for n in 1 2 3; do
  meta="_mirrorgate-metadata-bench-$n"
  for ((i = 0; i < n; i++)); do start_instance "copy$n-$i" "$i" "$meta" "$SESSION_MS"; done
  sleep 1
  mg_on 0 cluster-links --create --link "l$n" \
    --config "bootstrap.servers=$SRC,cluster.link.prefix=r$n." >/dev/null
  start=$(now)
  mg_on 0 mirrors --create --mirror-topic "r$n.$TOPIC" --link "l$n" >/dev/null
  want="$(sed "s/^$TOPIC/r$n.$TOPIC/" <<<"$SOURCE_ENDS")"
  until [[ "$(tool kafka-get-offsets --bootstrap-server "$DST" --topic "r$n.$TOPIC" | sort)" == "$want" ]]; do
    sleep 0.2
  done
  end=$(now)
  printf '%s\t%s\n' "$n" "$(echo "$end - $start" | bc -l)" >>"$OUT/copy.tsv"
  stop_all
done

step "Takeover after SIGKILL ($KILLS kills, session timeout $SESSION_MS ms)"
meta=_mirrorgate-metadata-bench-takeover
for i in 0 1 2; do start_instance "take-$i" "$i" "$meta" "$SESSION_MS"; done
mg_on 0 cluster-links --create --link lt \
  --config "bootstrap.servers=$SRC,cluster.link.prefix=t." >/dev/null
mg_on 0 mirrors --create --mirror-topic "t.$TOPIC" --link lt >/dev/null
: >"$OUT/takeover.tsv"
settled() { [[ $(( $(held 0) + $(held 1) + $(held 2) )) -eq $PARTITIONS && $(held 0) -gt 0 && $(held 1) -gt 0 && $(held 2) -gt 0 ]]; }
for ((k = 0; k < KILLS; k++)); do
  until settled 2>/dev/null; do sleep 0.2; done
  victim=$((1 + k % 2))
  kill -KILL "${PIDS[$victim]}"
  start=$(now)
  survivor=$((3 - victim))
  until [[ $(( $(held 0) + $(held "$survivor") )) -eq $PARTITIONS ]]; do sleep 0.05; done
  printf '%s\n' "$(echo "$(now) - $start" | bc -l)" >>"$OUT/takeover.tsv"
  start_instance "take-$victim" "$victim" "$meta" "$SESSION_MS"
done

step "Catalog propagation ($ROUNDS pause/resume rounds, instance 0 -> instance 1)"
: >"$OUT/propagation.tsv"
for ((r = 0; r < ROUNDS; r++)); do
  for change in pause resume; do
    want=$([[ $change == pause ]] && echo PAUSED || echo ACTIVE)
    mg_on 0 mirrors "--$change" --topics "t.$TOPIC" >/dev/null
    start=$(now)
    until curl -fs "$(instance_admin 1)/kafka/v3/clusters/-/links/-/mirrors" | grep -q "\"mirror_status\":\"$want\""; do
      sleep 0.005
    done
    printf '%s\n' "$(echo "$(now) - $start" | bc -l)" >>"$OUT/propagation.tsv"
  done
done
stop_all

step "Report"
python3 - "$OUT" "$RECORDS" "$RECORD_SIZE" "$PRELOAD_MIB" "$SESSION_MS" "$REPORT" <<'PY'
import pathlib, statistics, sys
out, records, size, mib, session, report = sys.argv[1:]
out = pathlib.Path(out)
copy = [l.split("\t") for l in (out / "copy.tsv").read_text().split("\n") if l]
take = [float(l) for l in (out / "takeover.tsv").read_text().split() if l]
prop = [float(l) * 1000 for l in (out / "propagation.tsv").read_text().split() if l]
base = float(copy[0][1])
lines = ["<!-- fleet:begin -->", "## Fleet (benches/fleet.sh)", "",
         f"{mib} MiB preloaded ({records} records of {size} B, lz4, 6 partitions), one-node "
         "source and destination on this machine, release build.", "",
         "| instances | copy time (s) | MB/s | vs 1 instance |", "|---|---|---|---|"]
for n, secs in copy:
    secs = float(secs)
    mbs = int(records) * int(size) / secs / 1e6
    lines.append(f"| {n} | {secs:.1f} | {mbs:.1f} | {base / secs:.2f}x |")
lines += ["", f"Takeover after SIGKILL (session timeout {int(session) / 1000:.0f} s, "
          f"{len(take)} kills): p50 {statistics.median(take):.1f} s, max {max(take):.1f} s.",
          "", f"Catalog propagation between instances ({len(prop)} changes, measured by "
          f"polling the other instance's REST API every 5 ms): p50 {statistics.median(prop):.0f} ms, "
          f"max {max(prop):.0f} ms.", "<!-- fleet:end -->"]
text = "\n".join(lines)
print(text)
if report == "1":
    bench = pathlib.Path("BENCHMARKS.md")
    current = bench.read_text() if bench.exists() else ""
    if "<!-- fleet:begin -->" in current:
        head, rest = current.split("<!-- fleet:begin -->", 1)
        tail = rest.split("<!-- fleet:end -->", 1)[1]
        current = head + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    bench.write_text(current)
PY
