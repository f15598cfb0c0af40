#!/usr/bin/env bash
# What an instance spends on the fleet's heartbeats while it holds a large catalog.
#
#   benches/catalog_idle.sh [--out DIR]
#
# Starts a one-node cluster `catalog-bench`. Each round, each side gets a fresh
# replicating instance and a fresh metadata topic, into which MIRRORS mirror records
# (with 20 synced configs each) are written; the link they name does not exist, so
# nothing is copied. Then the heartbeats of INSTANCES other instances (each every 2 s,
# as instances write them) arrive for SECS seconds. Measured: the instance's
# CPU-seconds over that window, and the heartbeats it read. Prints a table.
#
# Environment:
#   BENCH_BASELINE   a git revision: its build runs the same rounds, sides alternating
#   BENCH_MIRRORS    mirror records in the catalog (default 1000)
#   BENCH_INSTANCES  heartbeating instances (default 40)
#   BENCH_SECS       seconds measured per round and side (default 30)
#   BENCH_ROUNDS     rounds (default 3)
#
# Listens on 127.0.0.1 ports 28000-28999; everything is stopped on exit.
set -euo pipefail
PROG=catalog-idle
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=target/catalog-idle
parse_flags "$@"
mkdir -p "$OUT"
OUT="$(abs_path "$OUT")"
MIRRORS="${BENCH_MIRRORS:-1000}"
INSTANCES="${BENCH_INSTANCES:-40}"
SECS="${BENCH_SECS:-30}"
ROUNDS="${BENCH_ROUNDS:-3}"
TOOL_TIMEOUT=600
DST=127.0.0.1:28092
MG_BIND=127.0.0.1:28400
MG_ADMIN=127.0.0.1:28490
VENV=testbed/.cache/bench-venv
PY="$VENV/bin/python"

need_commands cargo java python3 curl
for p in 28092 28192 28400 28490; do need_free_port "$p"; done
MG_PID=""
cleanup() {
  local rc=$?
  stop_pid "$MG_PID"
  clusters_down catalog-bench
  exit "$rc"
}
trap_cleanup

build_mirrorgate
BINS=(current)
cp target/release/mirrorgate "$OUT/mirrorgate-current"
if [[ -n "${BENCH_BASELINE:-}" ]]; then
  step "Building $BENCH_BASELINE"
  build_baseline "$BENCH_BASELINE" "$OUT/mirrorgate-baseline"
  BINS=(baseline current)
fi
if [[ ! -x "$PY" ]] || ! "$PY" -c 'import confluent_kafka' 2>/dev/null; then
  step "Python client (confluent-kafka) in $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q confluent-kafka >"$OUT/pip.log" 2>&1 || die "pip install failed"
fi

step "Cluster catalog-bench ($DST)"
clusters_down catalog-bench
up_cluster catalog-bench 1 28092 "$OUT/cluster.log" || die "cluster did not start"

# measure SIDE ROUND: one instance, one metadata topic, one window; a line of results.
measure() {
  local side=$1 topic="_mirrorgate-metadata-bench-$1-$2" c0 c1 beats
  mg_config "$MG_BIND" 28410 "$DST" "$MG_ADMIN" >"$OUT/$side.toml"
  cat >>"$OUT/$side.toml" <<TOML

[log]
level = "warn"

[replicator]
enabled = true
metadata_topic = "$topic"
TOML
  "$OUT/mirrorgate-$side" run --config "$OUT/$side.toml" 2>"$OUT/$side-$2.log" &
  MG_PID=$!
  wait_http "http://$MG_ADMIN/readyz" "$MG_PID" "$OUT/$side-$2.log" "mirrorgate ($side)"
  rm -f "$OUT/ready"
  "$PY" benches/bench_clients.py fleet-records --bootstrap "$DST" --topic "$topic" \
    --mirrors "$MIRRORS" --instances "$INSTANCES" --secs $((SECS + 5)) \
    --ready-file "$OUT/ready" >"$OUT/$side-$2.json" &
  local writer=$!
  while [[ ! -e "$OUT/ready" ]]; do
    kill -0 "$writer" 2>/dev/null || die "the record writer failed"
    sleep 0.2
  done
  sleep 5   # the catalog applied, heartbeats flowing
  c0=$(cpu_seconds "$MG_PID")
  sleep "$SECS"
  c1=$(cpu_seconds "$MG_PID")
  wait "$writer" || die "the record writer failed"
  beats=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["heartbeats"])' "$OUT/$side-$2.json")
  stop_pid "$MG_PID"
  MG_PID=""
  printf '| %s | %s | %s | %s | %s |\n' "$2" "$side" "$(delta "$c0" "$c1")" \
    "$(awk -v c="$(delta "$c0" "$c1")" -v s="$SECS" 'BEGIN {printf "%.1f", 1000 * c / s}')" "$beats"
}

{
  echo "| round | side | CPU-s over ${SECS} s | CPU-ms per second | heartbeats written |"
  echo "| ---: | --- | ---: | ---: | ---: |"
} >"$OUT/results.md"
for ((round = 1; round <= ROUNDS; round++)); do
  sides=("${BINS[@]}")
  if ((round % 2 == 0 && ${#BINS[@]} == 2)); then sides=("${BINS[1]}" "${BINS[0]}"); fi
  for side in "${sides[@]}"; do
    step "Round $round: $side"
    measure "$side" "$round" >>"$OUT/results.md"
  done
done
cat "$OUT/results.md"
