#!/usr/bin/env bash
# End-to-end benchmark of mirrorgate on the local testbed.
#
#   benches/e2e.sh [--quick]
#
# Starts a 3-node Kafka cluster (testbed/kafka, cluster `bench-dest` on 127.0.0.1:45092..),
# mirrorgate in front of it and, when it can be obtained, the peer proxy
# grepplabs/kafka-proxy. Then runs Kafka's own perf tools (kafka-producer-perf-test,
# kafka-consumer-perf-test) once straight at the brokers and once through each proxy,
# interleaved round by round, and writes the results with a description of the machine
# to BENCHMARKS.md (the summary table is printed as well).
#
# Then stops that cluster and runs benches/replication.sh (replication vs MirrorMaker 2,
# steady-state lag through the proxy, scale with idle connections and many mirror
# partitions), whose sections go into the same BENCHMARKS.md.
#
#   --quick   fewer records, one round per side, a small replication run without
#             MirrorMaker 2 (under 5 minutes); the full run (about 20 minutes) does
#             6 rounds, the 1 GiB replication comparison and the micro-benchmarks
#
# Environment:
#   KAFKA_PROXY_BIN   a kafka-proxy binary to use when `go install` cannot fetch it
#   BENCH_RECORDS     records per producer run (default 120000 full, 50000 quick)
#   BENCH_ROUNDS      rounds per side (default 6 full, 1 quick)
#   BENCH_REPLICATION 0 to skip benches/replication.sh (its sections then say so);
#                     its own variables (BENCH_PRELOAD_MIB, BENCH_MM2, ...) pass through
#
# Everything listens on 127.0.0.1 only, and everything started here is stopped on exit.
set -euo pipefail
PROG=e2e
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
MODE=full
case "${1:-}" in
  "") ;;
  --quick) QUICK=1; MODE=quick ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; die "unknown argument $1" ;;
esac

# --- parameters ------------------------------------------------------------------------
# Ports are fixed and away from the ones the tests and the demo use (39092, 39300, 29092,
# 49092), so a benchmark can run while other clusters are up.
CLUSTER=bench-dest
NODES=3
DEST_PORT=45092
DIRECT=127.0.0.1:$DEST_PORT     # every broker, as clients would list them
for ((i = 1; i < NODES; i++)); do DIRECT+=",127.0.0.1:$((DEST_PORT + i))"; done
MG_BIND=127.0.0.1:45300
MG_ADMIN=127.0.0.1:45390
MG_BROKER_PORT_BASE=45400
# A second mirrorgate terminating TLS from the clients (plaintext to the brokers).
MG_TLS_BIND=127.0.0.1:45310
MG_TLS_ADMIN=127.0.0.1:45391
MG_TLS_BROKER_PORT_BASE=45410
KP_PORT_BASE=45500              # kafka-proxy: broker i is served on 127.0.0.1:45500+i
KP_HTTP=127.0.0.1:45590
KAFKA_PROXY_VERSION=v0.4.3      # latest tag of github.com/grepplabs/kafka-proxy
# kafka-proxy maps each broker to a fixed local port; with dynamic listeners off it never
# opens ports of its own choosing.
KP_ARGS=(server --dynamic-listeners-disable --http-listen-address "$KP_HTTP" --log-level warning)
for ((i = 0; i < NODES; i++)); do
  KP_ARGS+=(--bootstrap-server-mapping "127.0.0.1:$((DEST_PORT + i)),127.0.0.1:$((KP_PORT_BASE + i))")
done
KROXYLICIOUS_VERSION=0.16.0

RECORD_SIZE=1024
PARTITIONS=6
if ((QUICK)); then
  RECORDS="${BENCH_RECORDS:-50000}"; ROUNDS="${BENCH_ROUNDS:-1}"; LAT_SECONDS=5
else
  # 6 rounds: every side takes every place in the rotating order equally often (2 or 3 sides).
  RECORDS="${BENCH_RECORDS:-120000}"; ROUNDS="${BENCH_ROUNDS:-6}"; LAT_SECONDS=10
fi
# Latency is also measured at a fixed, modest rate: at --throughput -1 the producer's
# own buffer is always full, so its percentiles are mostly queueing time inside the
# client and move with throughput rather than with the proxy's per-request cost.
LAT_RATE=1000
LAT_RECORDS=$((LAT_RATE * LAT_SECONDS))
# The brokers' JVMs are cold after `up`: with a 20000-record warm-up the first full round
# still ran markedly slower. It goes through every side, so each proxy is warm as well.
WARMUP_RECORDS=$((QUICK ? 20000 : 50000))
TOOL_TIMEOUT=900                # seconds; no perf-test run may hang the benchmark

OUT=target/e2e-bench            # scratch (raw tool output, configs, logs); not committed
RAW="$OUT/raw"
REPORT=BENCHMARKS.md

need_commands cargo java mvn curl python3 timeout getconf
for p in ${MG_BIND##*:} ${MG_ADMIN##*:} ${MG_TLS_BIND##*:} ${MG_TLS_ADMIN##*:} ${KP_HTTP##*:} \
  $(seq "$MG_BROKER_PORT_BASE" $((MG_BROKER_PORT_BASE + NODES - 1))) \
  $(seq "$MG_TLS_BROKER_PORT_BASE" $((MG_TLS_BROKER_PORT_BASE + NODES - 1))) \
  $(seq "$KP_PORT_BASE" $((KP_PORT_BASE + NODES - 1))); do
  need_free_port "$p"
done

rm -rf "$OUT"
mkdir -p "$RAW"
START_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT/peers.md"
: >"$OUT/cpu.tsv"
: >"$OUT/rss.tsv"
: >"$OUT/load.tsv"

# --- cleanup ---------------------------------------------------------------------------
MG_PID=""
MG_TLS_PID=""
KP_PID=""
cleanup() {
  local rc=$? pid
  for pid in "$MG_PID" "$MG_TLS_PID" "$KP_PID"; do stop_pid "$pid"; done
  clusters_down "$CLUSTER"
  exit "$rc"
}
trap_cleanup

# --- build -----------------------------------------------------------------------------
build_mirrorgate

if ((QUICK == 0)); then
  # Before Kafka starts, so the micro-benchmarks share the machine with as little as possible.
  step "Micro-benchmarks: cargo bench --bench frames, --bench metadata"
  cargo bench --locked -q --bench frames >"$OUT/micro.txt" 2>"$OUT/micro.err" \
    || { tail -n 20 "$OUT/micro.err" >&2; die "cargo bench failed"; }
  cargo bench --locked -q --bench metadata >"$OUT/micro-metadata.txt" 2>"$OUT/micro.err" \
    || { tail -n 20 "$OUT/micro.err" >&2; die "cargo bench --bench metadata failed"; }
fi

# --- peer proxies ----------------------------------------------------------------------
# A peer that cannot be obtained is reported in BENCHMARKS.md with its exact error; it
# never fails the benchmark.
peer_note() { printf '%s\n' "$@" >>"$OUT/peers.md"; }
peer_error() { peer_note '' '```' "$(scrub <"$1" | grep -v '^[[:space:]]*$' | tail -n "${2:-6}")" '```' ''; }

# The kafka-proxy command line, one flag per line, for BENCHMARKS.md.
kp_command_text() {
  local text="kafka-proxy ${KP_ARGS[0]}" arg
  for arg in "${KP_ARGS[@]:1}"; do
    if [[ "$arg" == --* ]]; then text+=$' \\\n  '"$arg"; else text+=" $arg"; fi
  done
  echo "$text"
}

KP_BIN=""
obtain_kafka_proxy() {
  local gobin="$PWD/testbed/.cache/kafka-proxy-$KAFKA_PROXY_VERSION"
  peer_note "### grepplabs/kafka-proxy $KAFKA_PROXY_VERSION" ''
  if [[ -x "$gobin/kafka-proxy" ]]; then
    KP_BIN="$gobin/kafka-proxy"
    peer_note "Installed earlier by \`go install github.com/grepplabs/kafka-proxy@$KAFKA_PROXY_VERSION\` (cached under testbed/.cache)."
  elif ! command -v go >/dev/null; then
    peer_note "\`go\` is not installed, so \`go install github.com/grepplabs/kafka-proxy@$KAFKA_PROXY_VERSION\` could not run."
  elif GOFLAGS=-mod=mod GOBIN="$gobin" timeout 600 \
      go install "github.com/grepplabs/kafka-proxy@$KAFKA_PROXY_VERSION" >"$OUT/kafka-proxy-install.log" 2>&1; then
    KP_BIN="$gobin/kafka-proxy"
    peer_note "Built with \`GOFLAGS=-mod=mod go install github.com/grepplabs/kafka-proxy@$KAFKA_PROXY_VERSION\`."
  else
    peer_note "\`GOFLAGS=-mod=mod go install github.com/grepplabs/kafka-proxy@$KAFKA_PROXY_VERSION\` failed:"
    peer_error "$OUT/kafka-proxy-install.log"
  fi
  # Fallback for machines whose module proxy does not serve kafka-proxy.
  if [[ -z "$KP_BIN" && -n "${KAFKA_PROXY_BIN:-}" ]]; then
    [[ -x "$KAFKA_PROXY_BIN" ]] || die "KAFKA_PROXY_BIN is not an executable"
    KP_BIN="$KAFKA_PROXY_BIN"
    peer_note "Used instead: the binary given in \`KAFKA_PROXY_BIN\`, which reports" \
      "\`$("$KP_BIN" version 2>&1 | head -n 1 | scrub)\`."
  fi
  if [[ -n "$KP_BIN" ]]; then
    peer_note '' "Run with one mapping per broker and dynamic listeners off, its defaults otherwise" \
      "(256 open requests per connection, as mirrorgate's \`max_in_flight_per_connection\`):" '' \
      '```' "$(kp_command_text)" '```' ''
  fi
}

obtain_kroxylicious() {
  peer_note "### Kroxylicious $KROXYLICIOUS_VERSION" ''
  # Kroxylicious is a Java proxy published to Maven Central; resolve its app artifact.
  if mvn -B -U dependency:get -Dtransitive=false \
      -Dartifact="io.kroxylicious:kroxylicious-app:$KROXYLICIOUS_VERSION" \
      >"$OUT/kroxylicious-install.log" 2>&1; then
    peer_note "\`mvn dependency:get -Dartifact=io.kroxylicious:kroxylicious-app:$KROXYLICIOUS_VERSION\` succeeded," \
      "but this script does not run Kroxylicious yet (it needs its own YAML config), so it has no rows."
  else
    peer_note "\`mvn dependency:get -Dartifact=io.kroxylicious:kroxylicious-app:$KROXYLICIOUS_VERSION\` failed," \
      "so Kroxylicious has no rows:"
    # The first ERROR line says what failed; the rest is Maven's generic advice.
    grep -m 1 '^\[ERROR\]' "$OUT/kroxylicious-install.log" >"$OUT/kroxylicious-error.txt" || true
    peer_error "$OUT/kroxylicious-error.txt"
  fi
}

step "Peer proxies"
obtain_kafka_proxy
obtain_kroxylicious
cat "$OUT/peers.md" >&2

# --- cluster and proxies ---------------------------------------------------------------
step "Starting Kafka cluster $CLUSTER ($NODES nodes on 127.0.0.1:$DEST_PORT..)"
# A cluster left over from an interrupted run would still hold its topics: start clean.
clusters_down "$CLUSTER"
up_cluster "$CLUSTER" "$NODES" "$DEST_PORT" "$OUT/cluster-up.log" \
  || { tail -n 20 "$OUT/cluster-up.log" >&2; die "cluster $CLUSTER did not start"; }
KAFKA_VERSION_RUN="$(sed -n 's/^VERSION=//p' "testbed/.run/$CLUSTER/cluster.env")"

step "Starting mirrorgate on $MG_BIND"
# One mirror topic is declared (and never written) so the produce guard decodes every
# Produce request, as it does in a deployment with mirror topics.
mg_config "$MG_BIND" "$MG_BROKER_PORT_BASE" "$DIRECT" "$MG_ADMIN" >"$OUT/mirrorgate.toml"
cat >>"$OUT/mirrorgate.toml" <<TOML

[[mirror_topics]]
name = "bench-mirror"
TOML
RUST_LOG=warn target/release/mirrorgate run --config "$OUT/mirrorgate.toml" 2>"$OUT/mirrorgate.log" &
MG_PID=$!
wait_http "http://$MG_ADMIN/readyz" "$MG_PID" "$OUT/mirrorgate.log" mirrorgate

step "Starting mirrorgate with TLS for clients on $MG_TLS_BIND"
certs/make-dev-certs "$OUT/certs" >/dev/null
sed -e "s|^bind = \"$MG_BIND\"|bind = \"$MG_TLS_BIND\"|" \
  -e "s|^broker_port_base = .*|broker_port_base = $MG_TLS_BROKER_PORT_BASE|" \
  -e "s|^bind = \"$MG_ADMIN\"|bind = \"$MG_TLS_ADMIN\"|" "$OUT/mirrorgate.toml" >"$OUT/mirrorgate-tls.toml"
cat >>"$OUT/mirrorgate-tls.toml" <<TOML

[proxy.tls]
cert_file = "certs/proxy.pem"
key_file = "certs/proxy-key.pem"
TOML
RUST_LOG=warn target/release/mirrorgate run --config "$OUT/mirrorgate-tls.toml" 2>"$OUT/mirrorgate-tls.log" &
MG_TLS_PID=$!
wait_http "http://$MG_TLS_ADMIN/readyz" "$MG_TLS_PID" "$OUT/mirrorgate-tls.log" "mirrorgate (TLS)"
# The Java clients verify the proxy's certificate (SAN 127.0.0.1) against the dev CA.
TLS_CLIENT="$OUT/client-tls.properties"
printf 'security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n' \
  "$(abs_path "$OUT")/certs/ca.pem" >"$TLS_CLIENT"
: >"$OUT/client-plain.properties"

SIDES=(direct mirrorgate mirrorgate-tls)
if [[ -n "$KP_BIN" ]]; then
  step "Starting kafka-proxy on 127.0.0.1:$KP_PORT_BASE.."
  "$KP_BIN" "${KP_ARGS[@]}" >"$OUT/kafka-proxy.log" 2>&1 &
  KP_PID=$!
  wait_http "http://$KP_HTTP/health" "$KP_PID" "$OUT/kafka-proxy.log" kafka-proxy
  SIDES+=(kafka-proxy)
fi

bootstrap_of() {
  case "$1" in
    direct) echo "$DIRECT" ;;
    mirrorgate) echo "$MG_BIND" ;;
    mirrorgate-tls) echo "$MG_TLS_BIND" ;;
    kafka-proxy) echo "127.0.0.1:$KP_PORT_BASE" ;;
  esac
}
pid_of() {
  case "$1" in
    mirrorgate) echo "$MG_PID" ;;
    mirrorgate-tls) echo "$MG_TLS_PID" ;;
    kafka-proxy) echo "$KP_PID" ;;
    *) echo "" ;;
  esac
}

# --- measurement -----------------------------------------------------------------------
# Topics are created and deleted straight on the brokers: admin calls are not measured.
create_topic() {
  tool kafka-topics --bootstrap-server "$DIRECT" --create --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor 3 >/dev/null
}
delete_topic() { tool kafka-topics --bootstrap-server "$DIRECT" --delete --topic "$1" >/dev/null; }

# Client properties of a side: TLS settings for the TLS side, none otherwise.
client_config() {   # BOOTSTRAP
  if [[ "$1" == "$MG_TLS_BIND" ]]; then echo "$TLS_CLIENT"; else echo "$OUT/client-plain.properties"; fi
}

# One round of one side, on a fresh topic: saturated produce, consume of those records,
# then the fixed-rate latency run. Proxy CPU is sampled around the whole round.
# On failure FAILED holds the output of the step that failed.
FAILED=""
run_round() {   # SIDE ROUND
  local side="$1" round="$2" bs cfg pid topic t0 t1 base
  bs="$(bootstrap_of "$side")"
  cfg="$(client_config "$bs")"
  pid="$(pid_of "$side")"
  topic="bench-$side-r$round"
  base="$RAW/$side-r$round"
  create_topic "$topic" || { FAILED=/dev/null; return 1; }
  [[ -z "$pid" ]] || t0="$(cpu_seconds "$pid")"
  FAILED="$base-produce.txt"
  produce "$bs" "$topic" "$RECORDS" -1 "$FAILED" "$cfg" || return 1
  FAILED="$base-consume.txt"
  consume "$bs" "$topic" "$RECORDS" "$topic" "$FAILED" "$cfg" || return 1
  FAILED="$base-latency.txt"
  produce "$bs" "$topic" "$LAT_RECORDS" "$LAT_RATE" "$FAILED" "$cfg" || return 1
  FAILED=""
  if [[ -n "$pid" ]]; then
    t1="$(cpu_seconds "$pid")"
    printf '%s\t%s\t%s\n' "$side" "$round" "$(delta "$t0" "$t1")" >>"$OUT/cpu.tsv"
  fi
  delete_topic "$topic" || true
  log "$side round $round: $(throughput "$base-produce.txt") produce"
}

step "Warm-up ($WARMUP_RECORDS records produced and consumed per side, not measured)"
for side in "${SIDES[@]}"; do
  bs="$(bootstrap_of "$side")"
  create_topic "bench-warmup-$side"
  if ! { produce "$bs" "bench-warmup-$side" "$WARMUP_RECORDS" -1 "$OUT/warmup-$side.txt" "$(client_config "$bs")" &&
    consume "$bs" "bench-warmup-$side" "$WARMUP_RECORDS" "bench-warmup-$side" "$OUT/warmup-consume-$side.txt" "$(client_config "$bs")"; }; then
    tail -n 5 "$OUT/warmup-$side.txt" "$OUT/warmup-consume-$side.txt" >&2
    die "warm-up via $side failed"
  fi
  delete_topic "bench-warmup-$side"
done

step "Measuring: $ROUNDS round(s) x (${SIDES[*]}), $RECORDS records of $RECORD_SIZE B per produce"
KP_FAILED=0
for ((round = 1; round <= ROUNDS; round++)); do
  # Sides alternate within a round and their order rotates from round to round, so
  # neither a slow phase of the shared machine nor a place in the order favours a side.
  n=${#SIDES[@]}
  for ((k = 0; k < n; k++)); do
    side="${SIDES[(k + round - 1) % n]}"
    [[ "$side" == kafka-proxy && $KP_FAILED == 1 ]] && continue
    # The 1-minute load average goes into the per-round table as a noise indicator.
    printf '%s\t%s\t%s\t%s\n' "$side" "$round" $((k + 1)) "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/load.tsv"
    if ! run_round "$side" "$round"; then
      tail -n 8 "$FAILED" >&2
      [[ "$side" == kafka-proxy ]] || die "round $round via $side failed (raw output in $RAW)"
      # A peer that breaks mid-run loses its rows, not the benchmark.
      peer_note "**kafka-proxy failed in round $round** (its rows are left out):" ''
      peer_error "$FAILED" 8
      KP_FAILED=1
    fi
  done
done
if ((KP_FAILED)); then
  rm -f "$RAW/kafka-proxy-"*
  SIDES=(direct mirrorgate mirrorgate-tls)
fi

for side in "${SIDES[@]}"; do
  pid="$(pid_of "$side")"
  [[ -z "$pid" ]] || printf '%s\t%s\n' "$side" "$(status_kb "$pid" VmHWM)" >>"$OUT/rss.tsv"
done

# --- replication -----------------------------------------------------------------------
# The proxy-overhead cluster and proxies are stopped first: the replication benchmark
# starts clusters of its own and wants the machine to itself.
for pid in "$MG_PID" "$MG_TLS_PID" "$KP_PID"; do stop_pid "$pid"; done
MG_PID=""
MG_TLS_PID=""
KP_PID=""
clusters_down "$CLUSTER"
REPL_OUT="$OUT/replication"
if [[ "${BENCH_REPLICATION:-1}" == 0 ]]; then
  log "BENCH_REPLICATION=0: replication benchmark skipped"
else
  repl_args=(--out "$REPL_OUT" --no-report)
  ((QUICK == 0)) || repl_args+=(--quick)
  step "Replication benchmark: benches/replication.sh ${repl_args[*]}"
  # Its failure is reported in BENCHMARKS.md; the proxy-overhead results still count.
  if ! benches/replication.sh "${repl_args[@]}" 2> >(tee "$OUT/replication.log" >&2); then
    log "replication benchmark failed (log in $OUT/replication.log)"
    mkdir -p "$REPL_OUT"
    tail -n 15 "$OUT/replication.log" | scrub >"$REPL_OUT/failed.txt"
  fi
fi

# --- report ----------------------------------------------------------------------------
commit="$(git rev-parse --short=12 HEAD)"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit+=" (with uncommitted changes)"
cat >"$OUT/meta.env" <<EOF
mode=$MODE
date=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$commit
cores=$(nproc)
memory=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
kernel=$(uname -sr)
kafka=$KAFKA_VERSION_RUN
java=$(java -version 2>&1 | head -n 1)
rustc=$(rustc --version)
load_start=$START_LOAD
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
nodes=$NODES
partitions=$PARTITIONS
records=$RECORDS
rounds=$ROUNDS
record_size=$RECORD_SIZE
lat_rate=$LAT_RATE
lat_records=$LAT_RECORDS
kafka_proxy_version=$KAFKA_PROXY_VERSION
sides=${SIDES[*]}
minutes=$(((SECONDS + 30) / 60))
EOF
# Sections other benchmarks wrote (between their markers) are carried over.
python3 benches/e2e_report.py "$OUT" "$REPORT" >"$OUT/BENCHMARKS.md" && mv "$OUT/BENCHMARKS.md" "$REPORT"
step "Results (written to $REPORT)"
sed -n '/^## Proxy overhead/,/^## /p' "$REPORT" | sed '$d'
