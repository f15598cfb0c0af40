#!/usr/bin/env bash
# TLS benchmark of mirrorgate on the local testbed: mirrorgate terminating the clients'
# TLS, against the brokers' own TLS listener, in the same run.
#
#   benches/tls.sh [--quick] [--out DIR] [--no-report]
#
# Starts a one-node cluster `tls-bench` (testbed/kafka, --security ssl): its client
# listener on 127.0.0.1:27092 speaks TLS, its INTERNAL listener on 127.0.0.1:27292 is
# plaintext. Three sides, each round in a rotating order:
#   broker-tls      clients speak TLS to the broker's own listener
#   mirrorgate-tls  clients speak TLS to mirrorgate (rustls, release build), which reaches
#                   the broker in plaintext (INTERNAL)
#   plaintext       clients speak plaintext to the broker (INTERNAL): what TLS costs
# Each side produces RECORDS records of 1 KiB (kafka-producer-perf-test, acks=all, lz4,
# unthrottled) into a new topic of 6 partitions and reads them back
# (kafka-consumer-perf-test). The clients verify the certificates against the same
# development CA. Measured per side: produce and consume MB/s, the broker's CPU-seconds
# per GB and mirrorgate's. Results go to BENCHMARKS.md (between the tls markers), as
# medians over the rounds and as ratios to broker-tls measured in the same run.
#
#   --quick      2 rounds of 100,000 records (about 4 minutes); default 5 rounds of 200,000
#   --out DIR    scratch directory (default target/tls-bench)
#   --no-report  leave BENCHMARKS.md alone
#
# Environment:
#   BENCH_PROFILE  1 to sample mirrorgate with `perf record` over the measured rounds (it
#                  works only in the mirrorgate-tls runs) and write its top symbols to
#                  OUT/profile.txt
#
# Everything listens on 127.0.0.1 (ports 27000-27999, below the ephemeral range) and is
# stopped on exit.
set -euo pipefail
PROG=tls-bench
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
OUT=target/tls-bench
REPORT=1
parse_flags "$@"
ROUNDS=$((QUICK ? 2 : 5))
RECORDS=$((QUICK ? 100000 : 200000))
RECORD_SIZE=1024
TOOL_TIMEOUT=600

BROKER_TLS=127.0.0.1:27092
PLAINTEXT=127.0.0.1:27292     # the INTERNAL listener (testbed/kafka: port + 200)
MG_TLS=127.0.0.1:27400
MG_BROKER_PORT_BASE=27410
MG_ADMIN=127.0.0.1:27490

need_commands curl python3
for p in 27092 27192 27292 27400 27410 27490; do need_free_port "$p"; done
rm -rf "$OUT"
mkdir -p "$OUT"
MG_PID=""
cleanup() {
  local rc=$?
  stop_pid "$MG_PID"
  clusters_down tls-bench
  exit "$rc"
}
trap_cleanup

build_mirrorgate
step "Cluster tls-bench ($BROKER_TLS TLS, $PLAINTEXT plaintext)"
certs/make-dev-certs "$OUT/certs" >/dev/null
kafka fetch
clusters_down tls-bench
kafka up tls-bench --nodes 1 --port 27092 --security ssl --certs "$OUT/certs" >/dev/null
BROKER_PID="$(cat testbed/.run/tls-bench/node-0/pid)"

step "mirrorgate terminating TLS on $MG_TLS"
mg_config "$MG_TLS" "$MG_BROKER_PORT_BASE" "$PLAINTEXT" "$MG_ADMIN" >"$OUT/mirrorgate.toml"
cat >>"$OUT/mirrorgate.toml" <<TOML

[proxy.tls]
cert_file = "$(abs_path "$OUT")/certs/proxy.pem"
key_file = "$(abs_path "$OUT")/certs/proxy-key.pem"
TOML
RUST_LOG=warn target/release/mirrorgate run --config "$OUT/mirrorgate.toml" 2>"$OUT/mirrorgate.log" &
MG_PID=$!
wait_http "http://$MG_ADMIN/readyz" "$MG_PID" "$OUT/mirrorgate.log" "mirrorgate"

printf 'security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n' \
  "$(abs_path "$OUT")/certs/ca.pem" >"$OUT/client-tls.properties"
: >"$OUT/client-plain.properties"

bootstrap() {
  case "$1" in
    broker-tls) echo "$BROKER_TLS" ;;
    mirrorgate-tls) echo "$MG_TLS" ;;
    plaintext) echo "$PLAINTEXT" ;;
  esac
}
client_config() {
  if [[ $1 == plaintext ]]; then echo "$OUT/client-plain.properties"; else echo "$OUT/client-tls.properties"; fi
}
mg_cpu() { if [[ $1 == mirrorgate-tls ]]; then cpu_seconds "$MG_PID"; else echo 0; fi; }

# measure SIDE ROUND ORDER: one produce-then-consume run; a line of results in results.tsv.
measure() {
  local side=$1 topic="tls-$1-$2" b c b0 m0 b1 m1 b2 m2
  b=$(bootstrap "$side")
  c=$(client_config "$side")
  tool kafka-topics --bootstrap-server "$PLAINTEXT" --create --topic "$topic" --partitions 6 \
    --replication-factor 1 >/dev/null
  b0=$(cpu_seconds "$BROKER_PID") m0=$(mg_cpu "$side")
  produce "$b" "$topic" "$RECORDS" -1 "$OUT/$topic.produce.txt" "$c" \
    || die "produce through $side failed: $(tail -n 5 "$OUT/$topic.produce.txt")"
  b1=$(cpu_seconds "$BROKER_PID") m1=$(mg_cpu "$side")
  consume "$b" "$topic" "$RECORDS" "g-$topic" "$OUT/$topic.consume.txt" "$c" \
    || die "consume through $side failed: $(tail -n 5 "$OUT/$topic.consume.txt")"
  b2=$(cpu_seconds "$BROKER_PID") m2=$(mg_cpu "$side")
  tool kafka-topics --bootstrap-server "$PLAINTEXT" --delete --topic "$topic" >/dev/null
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$2" "$3" "$(throughput "$OUT/$topic.produce.txt")" \
    "$(grep -A1 '^start.time' "$OUT/$topic.consume.txt" | tail -n 1)" \
    "$(delta "$b0" "$b1")" "$(delta "$b1" "$b2")" "$(delta "$m0" "$m1")" "$(delta "$m1" "$m2")" \
    "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/results.tsv"
}

SIDES=(broker-tls mirrorgate-tls plaintext)
step "Warm-up (not measured)"
for side in "${SIDES[@]}"; do
  RECORDS=20000 measure "$side" 0 0
done
: >"$OUT/results.tsv"
PERF_PID=""
if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
  need_commands perf
  perf record -F 499 -p "$MG_PID" -o "$OUT/tls.perf.data" 2>"$OUT/perf.log" &
  PERF_PID=$!
fi
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#SIDES[@]}; k++)); do
    side=${SIDES[$(((r - 1 + k) % ${#SIDES[@]}))]}
    step "Round $r of $ROUNDS: $side"
    measure "$side" "$r" $((k + 1))
  done
done
MG_RSS_KB=$(status_kb "$MG_PID" VmHWM)
if [[ -n "$PERF_PID" ]]; then
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  perf report -i "$OUT/tls.perf.data" --no-children --stdio --percent-limit 0.7 \
    --sort dso,symbol 2>/dev/null | grep -v '^#' | grep -v '^$' >"$OUT/profile.txt"
  log "mirrorgate's top symbols: $OUT/profile.txt"
fi

step "Report"
python3 benches/tls_report.py "$OUT/results.tsv" "$ROUNDS" "$RECORDS" "$MG_RSS_KB" "$REPORT"
