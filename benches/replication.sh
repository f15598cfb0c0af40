#!/usr/bin/env bash
# Replication benchmark of mirrorgate on the local testbed.
#
#   benches/replication.sh [--quick] [--out DIR] [--no-report]
#
# Starts a source and a destination cluster (testbed/kafka, one node each:
# `bench-src` on 127.0.0.1:31092, `bench-dst` on 127.0.0.1:31292) and measures:
#   copy      a preloaded source topic (1 GiB of 1 KiB lz4 records, 6 partitions)
#             copied by mirrorgate's replicator, then (full mode) by MirrorMaker 2 in
#             dedicated mode to a fresh destination cluster (`bench-mm2-dst`, 31492):
#             time and CPU-seconds to a complete mirror
#   steady    a constant produce rate on the source while mirrorgate mirrors: end-to-end
#             lag from send to readable through the mirrorgate proxy, p50/p99
#   scale     the proxy with 1,000 idle client connections under a produce/consume load
#             (RSS and throughput, with and without), and a link with 1,000 mirror
#             partitions (10 topics x 100): RSS and time until all are mirrored
# and writes the sections to BENCHMARKS.md (between the replication markers).
#
#   --quick      64 MiB preload, no MirrorMaker 2, shorter steady state, 2 x 100 mirror
#                partitions (about 2 minutes)
#   --out DIR    scratch directory (default target/replication-bench)
#   --no-report  leave BENCHMARKS.md alone (benches/e2e.sh assembles it)
#
# Environment:
#   BENCH_PRELOAD_MIB   preload size (default 1024 full, 64 quick)
#   BENCH_MM2           1 to run MirrorMaker 2 in --quick too, 0 to skip it in full
#   BENCH_STEADY_SECS   steady-state duration (default 60 full, 10 quick)
#   BENCH_COPY_BASELINE a git revision: its build and this tree's copy the preloaded topic
#                       in alternating rounds, each a fresh process and link, for the
#                       CPU-per-GB ratio measured in one run (BENCH_COPY_ROUNDS, default 3)
#   BENCH_PROFILE       1 to record the copy phase with `perf record -g` (user space)
#                       and write the hottest functions to $OUT/copy-profile.txt
#
# Everything listens on 127.0.0.1 (ports 31000-31999: below the kernel's ephemeral range,
# so no client socket elsewhere can hold one), and everything started here is
# stopped on exit.
set -euo pipefail
PROG=replication
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
OUT=target/replication-bench
REPORT=1
parse_flags "$@"

# --- parameters ------------------------------------------------------------------------
SRC_CLUSTER=bench-src
SRC_PORT=31092
DST_CLUSTER=bench-dst
DST_PORT=31292
MM2_CLUSTER=bench-mm2-dst
MM2_PORT=31492
SRC=127.0.0.1:$SRC_PORT
DST=127.0.0.1:$DST_PORT
MM2_DST=127.0.0.1:$MM2_PORT
MG_BIND=127.0.0.1:31700
MG_ADMIN=127.0.0.1:31790
MG_BROKER_PORT_BASE=31800
export MIRRORGATE_ADMIN_URL="http://$MG_ADMIN"

RECORD_SIZE=1024
PARTITIONS=6
COPY_TOPIC=bench-repl
STEADY_TOPIC=bench-steady
LOAD_TOPIC=bench-load
STEADY_RATE=2000
IDLE_CONNS=1000
SCALE_PARTITIONS=100
SCALE_PER_PARTITION=5
if ((QUICK)); then
  PRELOAD_MIB="${BENCH_PRELOAD_MIB:-64}"; RUN_MM2="${BENCH_MM2:-0}"
  STEADY_SECS="${BENCH_STEADY_SECS:-10}"; SCALE_TOPICS=2; LOAD_RECORDS=20000
else
  PRELOAD_MIB="${BENCH_PRELOAD_MIB:-1024}"; RUN_MM2="${BENCH_MM2:-1}"
  STEADY_SECS="${BENCH_STEADY_SECS:-60}"; SCALE_TOPICS=10; LOAD_RECORDS=100000
fi
PRELOAD_RECORDS=$((PRELOAD_MIB * 1024 * 1024 / RECORD_SIZE))
STEADY_WARMUP=5                 # seconds of records counted but not measured (JVM warm-up)
STEADY_RECORDS=$((STEADY_RATE * (STEADY_SECS + STEADY_WARMUP)))
SCALE_TOTAL=$((SCALE_TOPICS * SCALE_PARTITIONS * SCALE_PER_PARTITION))
SCALE_TOPIC_LIST="$(for ((i = 0; i < SCALE_TOPICS; i++)); do printf 'scale-%02d,' "$i"; done)"
SCALE_TOPIC_LIST="${SCALE_TOPIC_LIST%,}"
TOOL_TIMEOUT=1800               # seconds; no tool run may hang the benchmark
COPY_TIMEOUT=3600

VENV=testbed/.cache/bench-venv
PY="$VENV/bin/python"
RAW="$OUT/raw"

MG_BIN=target/release/mirrorgate   # what start_mirrorgate runs
mg() { target/release/mirrorgate "$@"; }
# Background clients are started as `"$PY" "$CLIENTS" ... &` so that $! is python's pid.
CLIENTS=benches/bench_clients.py
clients() { "$PY" "$CLIENTS" "$@"; }

need_commands cargo java mvn curl python3 timeout getconf
for p in $SRC_PORT $((SRC_PORT + 100)) $DST_PORT $((DST_PORT + 100)) $MM2_PORT $((MM2_PORT + 100)) \
  ${MG_BIND##*:} ${MG_ADMIN##*:} $MG_BROKER_PORT_BASE; do
  need_free_port "$p"
done

rm -rf "$OUT"
mkdir -p "$RAW"
START_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- cleanup ---------------------------------------------------------------------------
MG_PID=""
MM2_PID=""
BG_PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${BG_PIDS[@]}" "$MG_PID" "$MM2_PID"; do stop_pid "$pid"; done
  clusters_down "$SRC_CLUSTER" "$DST_CLUSTER" "$MM2_CLUSTER"
  exit "$rc"
}
trap_cleanup

# --- setup -----------------------------------------------------------------------------
build_mirrorgate

step "Python client (confluent-kafka) in $VENV"
if ! "$PY" -c 'import confluent_kafka' 2>/dev/null; then
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q confluent-kafka >"$OUT/pip.log" 2>&1 \
    || { tail -n 5 "$OUT/pip.log" >&2; die "pip install confluent-kafka failed"; }
fi
PY_CLIENT="$("$PY" -c 'import confluent_kafka as c; v = c.version(); v = v[0] if isinstance(v, tuple) else v; print(f"confluent-kafka {v}, librdkafka {c.libversion()[0]}")')"

MM2_LIBS=""
if ((RUN_MM2)); then
  step "MirrorMaker 2 jars (testbed/kafka fetch-mm2)"
  if MM2_LIBS="$(testbed/kafka fetch-mm2 2>"$OUT/mm2-fetch.log")"; then
    log "MirrorMaker 2 from $MM2_LIBS"
  else
    MM2_LIBS=""
    grep -m 3 -E '^\[ERROR\]|kafka: ' "$OUT/mm2-fetch.log" | scrub >"$OUT/mm2-error.txt" || true
    log "could not fetch MirrorMaker 2 (its rows stay empty):"; cat "$OUT/mm2-error.txt" >&2
  fi
fi

step "Starting clusters $SRC_CLUSTER ($SRC) and $DST_CLUSTER ($DST)"
clusters_down "$SRC_CLUSTER" "$DST_CLUSTER" "$MM2_CLUSTER"
kafka fetch
up_cluster "$SRC_CLUSTER" 1 "$SRC_PORT" "$OUT/src-up.log" &
src_up=$!
up_cluster "$DST_CLUSTER" 1 "$DST_PORT" "$OUT/dst-up.log" \
  || { tail -n 20 "$OUT/dst-up.log" >&2; die "destination cluster did not start"; }
wait "$src_up" || { tail -n 20 "$OUT/src-up.log" >&2; die "source cluster did not start"; }
KAFKA_VERSION_RUN="$(sed -n 's/^VERSION=//p' "testbed/.run/$SRC_CLUSTER/cluster.env")"

create_topic() {   # BOOTSTRAP TOPIC PARTITIONS
  tool kafka-topics --bootstrap-server "$1" --create --topic "$2" --partitions "$3" \
    --replication-factor 1 >/dev/null || die "creating topic $2 on $1 failed"
}

# mirrorgate with the replicator on, in front of the destination. Each start gets its own
# metadata topic, so it knows only the links and mirrors made in its own phase.
start_mirrorgate() {   # NAME
  mg_config "$MG_BIND" "$MG_BROKER_PORT_BASE" "$DST" "$MG_ADMIN" >"$OUT/mirrorgate-$1.toml"
  cat >>"$OUT/mirrorgate-$1.toml" <<TOML

[replicator]
enabled = true
metadata_topic = "_mirrorgate-metadata-$1"
TOML
  local attempt
  for attempt in 1 2 3; do
    RUST_LOG=warn "$MG_BIN" run --config "$OUT/mirrorgate-$1.toml" 2>"$OUT/mirrorgate-$1.log" &
    MG_PID=$!
    # A listener port briefly held by a client connection elsewhere: try again.
    ((attempt == 3)) || sleep 1
    if ((attempt < 3)) && ! kill -0 "$MG_PID" 2>/dev/null; then
      wait "$MG_PID" || true
      log "mirrorgate exited at start (attempt $attempt): $(tail -n 1 "$OUT/mirrorgate-$1.log")"
      sleep 5
      continue
    fi
    break
  done
  wait_http "http://$MG_ADMIN/readyz" "$MG_PID" "$OUT/mirrorgate-$1.log" mirrorgate
  for _ in $(seq 100); do   # the replicator loads its state right after start
    mg cluster-links --list >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "mirrorgate's replicator did not answer (see $OUT/mirrorgate-$1.log)"
}
stop_mirrorgate() { stop_pid "$MG_PID"; MG_PID=""; }
create_link() {   # LINK [PREFIX]
  printf 'bootstrap.servers=%s\n' "$SRC" >"$OUT/link-$1.properties"
  [[ -z "${2:-}" ]] || printf 'cluster.link.prefix=%s\n' "$2" >>"$OUT/link-$1.properties"
  mg cluster-links --create --link "$1" --config-file "$OUT/link-$1.properties" >"$OUT/link-$1.log" 2>&1 \
    || { cat "$OUT/link-$1.log" >&2; die "creating link $1 failed"; }
}
create_mirror() {   # LINK TOPIC
  mg mirrors --create --mirror-topic "$2" --link "$1" >>"$OUT/mirrors-$1.log" 2>&1 \
    || { tail -n 5 "$OUT/mirrors-$1.log" >&2; die "creating mirror $2 failed"; }
}
# Waits until the end offsets of TOPICS on BOOTSTRAP add up to TARGET; the result (times
# relative to T0, and CPU/memory of PID at that moment) goes to OUTFILE as JSON.
# T0_CPU: the CPU-seconds PID had spent at T0 (before the mirror was created), if known.
wait_complete() {   # BOOTSTRAP TOPICS TARGET PID T0 OUTFILE [T0_CPU]
  clients wait-offsets --bootstrap "$1" --topics "$2" --target "$3" --pid "$4" --t0 "$5" \
    ${7:+--cpu-at-t0 "$7"} --timeout "$COPY_TIMEOUT" >"$6" \
    || { cat "$6" >&2; die "mirror of $2 not complete after ${COPY_TIMEOUT}s"; }
}

# --- copy: preload -----------------------------------------------------------------------
step "Preloading $COPY_TOPIC on the source: $PRELOAD_RECORDS records of $RECORD_SIZE B ($PRELOAD_MIB MiB, lz4, $PARTITIONS partitions)"
create_topic "$SRC" "$COPY_TOPIC" "$PARTITIONS"
produce "$SRC" "$COPY_TOPIC" "$PRELOAD_RECORDS" -1 "$RAW/preload.txt" \
  || { tail -n 5 "$RAW/preload.txt" >&2; die "preload failed"; }
# Bytes of the topic's log segments (index files are preallocated and would count too).
log_bytes() { cat "testbed/.run/$1/node-0/data/$2-"*/*.log 2>/dev/null | wc -c; }
SRC_LOG_BYTES="$(log_bytes "$SRC_CLUSTER" "$COPY_TOPIC")"
log "preloaded: $(throughput "$RAW/preload.txt")"

# --- copy: mirrorgate --------------------------------------------------------------------
step "Copy by mirrorgate: mirror $COPY_TOPIC until its end offsets reach $PRELOAD_RECORDS"
start_mirrorgate copy
create_link bench-link
printf '%s\t%s\n' mirrorgate "$(cut -d' ' -f1 /proc/loadavg)" >"$OUT/copy-load.tsv"
t0="$(now)"
t0_cpu="$(cpu_seconds "$MG_PID")"
PERF_PID=""
if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
  perf record -F 999 -g --call-graph dwarf,16384 -p "$MG_PID" -o "$OUT/copy.perf.data" 2>"$OUT/perf.log" &
  PERF_PID=$!
fi
create_mirror bench-link "$COPY_TOPIC"
wait_complete "$DST" "$COPY_TOPIC" "$PRELOAD_RECORDS" "$MG_PID" "$t0" "$RAW/copy-mirrorgate.json" "$t0_cpu"
if [[ -n "$PERF_PID" ]]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true
  perf report -i "$OUT/copy.perf.data" --no-children --stdio --percent-limit 1 -g none \
    --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 >"$OUT/copy-profile.txt"
  log "profile of the copy: $OUT/copy-profile.txt"
fi
log "mirrorgate: $(cat "$RAW/copy-mirrorgate.json")"

# --- steady state ------------------------------------------------------------------------
step "Steady state: $STEADY_RATE records/s for ${STEADY_WARMUP}s + ${STEADY_SECS}s on the source, read through the proxy"
create_topic "$SRC" "$STEADY_TOPIC" "$PARTITIONS"
create_mirror bench-link "$STEADY_TOPIC"
"$PY" "$CLIENTS" lag-consumer --bootstrap "$MG_BIND" --topic "$STEADY_TOPIC" --expect "$STEADY_RECORDS" \
  --timeout $((STEADY_SECS + 120)) --skip-first-secs "$STEADY_WARMUP" --ready-file "$OUT/steady-mirror.ready" >"$RAW/steady-mirror.json" &
mirror_consumer=$!
BG_PIDS+=("$mirror_consumer")
"$PY" "$CLIENTS" lag-consumer --bootstrap "$SRC" --topic "$STEADY_TOPIC" --expect "$STEADY_RECORDS" \
  --timeout $((STEADY_SECS + 120)) --skip-first-secs "$STEADY_WARMUP" --ready-file "$OUT/steady-source.ready" >"$RAW/steady-source.json" &
source_consumer=$!
BG_PIDS+=("$source_consumer")
for _ in $(seq 600); do
  [[ -f "$OUT/steady-mirror.ready" && -f "$OUT/steady-source.ready" ]] && break
  kill -0 "$mirror_consumer" 2>/dev/null && kill -0 "$source_consumer" 2>/dev/null \
    || die "a lag consumer exited before it was ready"
  sleep 0.1
done
[[ -f "$OUT/steady-mirror.ready" && -f "$OUT/steady-source.ready" ]] || die "lag consumers not ready after 60s"
cpu0="$(cpu_seconds "$MG_PID")"
produce "$SRC" "$STEADY_TOPIC" "$STEADY_RECORDS" "$STEADY_RATE" "$RAW/steady-produce.txt" \
  || { tail -n 5 "$RAW/steady-produce.txt" >&2; die "steady-state producer failed"; }
wait "$mirror_consumer" || { cat "$RAW/steady-mirror.json" >&2; die "lag consumer (mirror) failed"; }
wait "$source_consumer" || { cat "$RAW/steady-source.json" >&2; die "lag consumer (source) failed"; }
BG_PIDS=()   # both reaped: never signal their pids again
cpu1="$(cpu_seconds "$MG_PID")"
printf 'cpu_s=%s\n' "$(delta "$cpu0" "$cpu1")" >"$RAW/steady-cpu.env"
log "through mirrorgate: $(cat "$RAW/steady-mirror.json")"
log "source, direct: $(cat "$RAW/steady-source.json")"

# --- scale: idle connections -------------------------------------------------------------
step "Scale: produce/consume through the proxy without and with $IDLE_CONNS idle connections"
create_topic "$DST" "$LOAD_TOPIC" "$PARTITIONS"
: >"$RAW/scale-rss.tsv"
rss_note() { printf '%s\t%s\t%s\n' "$1" "$(status_kb "$MG_PID" VmRSS)" "$(status_kb "$MG_PID" VmHWM)" >>"$RAW/scale-rss.tsv"; }
load_round() {   # LABEL
  produce "$MG_BIND" "$LOAD_TOPIC" "$LOAD_RECORDS" -1 "$RAW/load-$1-produce.txt" \
    || { tail -n 5 "$RAW/load-$1-produce.txt" >&2; die "load produce ($1) failed"; }
  consume "$MG_BIND" "$LOAD_TOPIC" "$LOAD_RECORDS" "bench-load-$1" "$RAW/load-$1-consume.txt" \
    || { tail -n 5 "$RAW/load-$1-consume.txt" >&2; die "load consume ($1) failed"; }
  log "load $1: $(throughput "$RAW/load-$1-produce.txt") produce"
}
rss_note before
load_round without
rss_note after-without
"$PY" "$CLIENTS" idle-conns --addr "$MG_BIND" --count "$IDLE_CONNS" --ready-file "$OUT/idle.ready" >"$RAW/idle.json" &
idle_pid=$!
BG_PIDS+=("$idle_pid")
for _ in $(seq 1200); do
  [[ -f "$OUT/idle.ready" ]] && break
  kill -0 "$idle_pid" 2>/dev/null || die "idle connections could not be opened"
  sleep 0.1
done
[[ -f "$OUT/idle.ready" ]] || die "$IDLE_CONNS idle connections not open after 120s"
sleep 2
rss_note idle-open
load_round with
rss_note after-with
kill -TERM "$idle_pid"
wait "$idle_pid" || die "idle connection holder failed"
BG_PIDS=()
log "idle connections: $(cat "$RAW/idle.json")"
stop_mirrorgate

# --- scale: many mirror partitions -------------------------------------------------------
SCALE_N=$((SCALE_TOPICS * SCALE_PARTITIONS))
step "Scale: one link with $SCALE_N mirror partitions ($SCALE_TOPICS topics x $SCALE_PARTITIONS), $SCALE_PER_PARTITION records each"
IFS=, read -r -a scale_topics <<<"$SCALE_TOPIC_LIST"
for t in "${scale_topics[@]}"; do create_topic "$SRC" "$t" "$SCALE_PARTITIONS"; done
clients produce-each --bootstrap "$SRC" --topics "$SCALE_TOPIC_LIST" --per-partition "$SCALE_PER_PARTITION" \
  --size "$RECORD_SIZE" >"$RAW/scale-produce.json" || die "writing the scale topics failed"
start_mirrorgate scale
create_link scale-link
printf 'rss_idle_kb=%s\n' "$(status_kb "$MG_PID" VmRSS)" >"$RAW/scale-partitions.env"
t0="$(now)"
for t in "${scale_topics[@]}"; do create_mirror scale-link "$t"; done
printf 'create_s=%s\n' "$(delta "$t0" "$(now)")" >>"$RAW/scale-partitions.env"
wait_complete "$DST" "$SCALE_TOPIC_LIST" "$SCALE_TOTAL" "$MG_PID" "$t0" "$RAW/scale-partitions.json"
# Ten seconds more of keeping 1,000 caught-up partitions in sync: the idle cost.
cpu0="$(cpu_seconds "$MG_PID")"
sleep 10
printf 'idle_cpu_s=%s\nrss_after_kb=%s\n' "$(delta "$cpu0" "$(cpu_seconds "$MG_PID")")" \
  "$(status_kb "$MG_PID" VmRSS)" >>"$RAW/scale-partitions.env"
log "scale: $(cat "$RAW/scale-partitions.json")"
stop_mirrorgate

# --- copy: rounds against a baseline build ----------------------------------------------
COPY_ROUNDS="${BENCH_COPY_ROUNDS:-3}"
if [[ -n "${BENCH_COPY_BASELINE:-}" ]]; then
  step "Copy rounds: $BENCH_COPY_BASELINE against this tree, $COPY_ROUNDS rounds"
  build_baseline "$BENCH_COPY_BASELINE" "$OUT/mirrorgate-baseline"
  git rev-parse --short=12 "$BENCH_COPY_BASELINE" >"$RAW/copy-baseline.rev"
  for ((round = 1; round <= COPY_ROUNDS; round++)); do
    sides=(baseline current)
    ((round % 2)) || sides=(current baseline)
    for side in "${sides[@]}"; do
      name="r$round-$side"
      if [[ "$side" == baseline ]]; then MG_BIN="$OUT/mirrorgate-baseline"; else MG_BIN=target/release/mirrorgate; fi
      start_mirrorgate "$name"
      create_link "$name" "$name."
      t0="$(now)"
      t0_cpu="$(cpu_seconds "$MG_PID")"
      create_mirror "$name" "$name.$COPY_TOPIC"
      wait_complete "$DST" "$name.$COPY_TOPIC" "$PRELOAD_RECORDS" "$MG_PID" "$t0" "$RAW/copy-round-$name.json" "$t0_cpu"
      log "$name: $(cat "$RAW/copy-round-$name.json")"
      stop_mirrorgate
      tool kafka-topics --bootstrap-server "$DST" --delete --topic "$name.$COPY_TOPIC" >/dev/null 2>&1 || true
    done
  done
  MG_BIN=target/release/mirrorgate
fi

# --- copy: MirrorMaker 2 -----------------------------------------------------------------
if [[ -n "$MM2_LIBS" ]]; then
  step "Copy by MirrorMaker 2 (dedicated mode) to a fresh cluster $MM2_CLUSTER ($MM2_DST)"
  # Only the source and MM2's own destination stay up while MM2 runs.
  kafka down "$DST_CLUSTER" >/dev/null
  up_cluster "$MM2_CLUSTER" 1 "$MM2_PORT" "$OUT/mm2-dst-up.log" \
    || { tail -n 20 "$OUT/mm2-dst-up.log" >&2; die "MirrorMaker 2's destination cluster did not start"; }
  # Defaults, plus what it needs to run here: the clusters, the one flow and topic, and
  # replication factor 1 for the topics it creates (one-node clusters).
  cat >"$OUT/mm2.properties" <<EOF
clusters = src, dst
src.bootstrap.servers = $SRC
dst.bootstrap.servers = $MM2_DST
src->dst.enabled = true
src->dst.topics = $COPY_TOPIC
dst->src.enabled = false
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
sync.topic.acls.enabled = false
EOF
  cat >"$OUT/mm2-log4j2.properties" <<'EOF'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:mm2.log.file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
  printf '%s\t%s\n' mm2 "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/copy-load.tsv"
  t0="$(now)"
  # The JVM flags of Kafka's connect-mirror-maker.sh (heap) and kafka-run-class.sh (GC).
  java -Xms256m -Xmx2g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$OUT/mm2-log4j2.properties" -Dmm2.log.file="$OUT/mm2.log" \
    -cp "$MM2_LIBS/*" org.apache.kafka.connect.mirror.MirrorMaker "$OUT/mm2.properties" \
    >"$OUT/mm2.stdout" 2>&1 &
  MM2_PID=$!
  wait_complete "$MM2_DST" "src.$COPY_TOPIC" "$PRELOAD_RECORDS" "$MM2_PID" "$t0" "$RAW/copy-mm2.json"
  log "MirrorMaker 2: $(cat "$RAW/copy-mm2.json")"
  MM2_DST_LOG_BYTES="$(log_bytes "$MM2_CLUSTER" "src.$COPY_TOPIC")"
  stop_pid "$MM2_PID"; MM2_PID=""
  kafka down "$MM2_CLUSTER" >/dev/null
fi

# --- report ------------------------------------------------------------------------------
cat >"$OUT/meta.env" <<EOF
mode=$( ((QUICK)) && echo quick || echo full)
date=$(date -u '+%Y-%m-%d %H:%M UTC')
kafka=$KAFKA_VERSION_RUN
py_client=$PY_CLIENT
load_start=$START_LOAD
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
record_size=$RECORD_SIZE
partitions=$PARTITIONS
preload_mib=$PRELOAD_MIB
preload_records=$PRELOAD_RECORDS
src_log_bytes=$SRC_LOG_BYTES
mm2_dst_log_bytes=${MM2_DST_LOG_BYTES:-}
run_mm2=$RUN_MM2
mm2_libs=$([[ -n "$MM2_LIBS" ]] && echo yes || echo no)
steady_rate=$STEADY_RATE
steady_secs=$STEADY_SECS
steady_warmup=$STEADY_WARMUP
steady_records=$STEADY_RECORDS
idle_conns=$IDLE_CONNS
load_records=$LOAD_RECORDS
scale_topics=$SCALE_TOPICS
scale_partitions=$SCALE_PARTITIONS
scale_per_partition=$SCALE_PER_PARTITION
copy_rounds=$COPY_ROUNDS
minutes=$(((SECONDS + 30) / 60))
EOF
python3 benches/replication_report.py "$OUT" >"$OUT/sections.md"
if ((REPORT)); then
  python3 benches/replication_report.py --splice "$OUT/sections.md" BENCHMARKS.md
  step "Results (written to BENCHMARKS.md)"
else
  step "Results"
fi
cat "$OUT/sections.md"
