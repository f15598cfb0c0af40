#!/usr/bin/env bash
# Idle-connection benchmark of mirrorgate on the local testbed: what thousands of idle
# client connections cost the proxy in memory, and whether it still serves a load
# while they are open.
#
#   benches/idle.sh [--quick] [--out DIR] [--no-report]
#
# Starts a one-node cluster `idle-bench` (testbed/kafka, 127.0.0.1:28092) and a fresh
# mirrorgate in front of it (release build, no replicator, one mirror topic declared).
# After a warm-up load, it opens CONNS connections to the proxy's bootstrap listener;
# each sends one ApiVersions request, gets its answer (so the proxy holds a destination
# connection for it too) and then idles (benches/bench_clients.py idle-conns). Measured:
# mirrorgate's VmRSS before, with the connections open and after they closed, and a
# produce/consume load (kafka-producer-perf-test, then kafka-consumer-perf-test) with
# and without them. Results go to BENCHMARKS.md (between the idle markers).
#
# Each handshaken connection takes two of mirrorgate's file descriptors (client and
# destination), so CONNS is capped by the open-files limit (ulimit -n) it runs under:
# 10,000 where the limit allows, the most it allows otherwise (the report says which).
#
#   --quick      40,000 records per load run instead of 100,000
#   --out DIR    scratch directory (default target/idle-bench)
#   --no-report  leave BENCHMARKS.md alone
#
# Everything listens on 127.0.0.1 (ports 28000-28999, below the ephemeral range) and is
# stopped on exit.
set -euo pipefail
PROG=idle-bench
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
OUT=target/idle-bench
REPORT=1
parse_flags "$@"
RECORDS=$((QUICK ? 40000 : 100000))
RECORD_SIZE=1024
TOOL_TIMEOUT=600
WANTED=10000

DST=127.0.0.1:28092
MG_BIND=127.0.0.1:28400
MG_BROKER_PORT_BASE=28410
MG_ADMIN=127.0.0.1:28490

# Two descriptors per connection plus headroom for the process's own (listeners,
# metrics, the warm-up's connections).
LIMIT=$(ulimit -n)
[[ $LIMIT == unlimited ]] && LIMIT=$((4 * WANTED))
CONNS=$(((LIMIT - 200) / 2))
((CONNS > WANTED)) && CONNS=$WANTED
((CONNS >= 100)) || die "ulimit -n is $LIMIT: too low for this benchmark"

need_commands curl python3
for p in 28092 28192 28400 28410 28490; do need_free_port "$p"; done
rm -rf "$OUT"
mkdir -p "$OUT"
MG_PID=""
IDLE_PID=""
cleanup() {
  local rc=$?
  [[ -z "$IDLE_PID" ]] || kill -KILL "$IDLE_PID" 2>/dev/null || true
  stop_pid "$MG_PID"
  clusters_down idle-bench
  exit "$rc"
}
trap_cleanup

build_mirrorgate
step "Cluster idle-bench ($DST)"
kafka fetch
clusters_down idle-bench
kafka up idle-bench --nodes 1 --port 28092 >/dev/null

step "mirrorgate on $MG_BIND (max $CONNS idle connections: ulimit -n $LIMIT)"
mg_config "$MG_BIND" "$MG_BROKER_PORT_BASE" "$DST" "$MG_ADMIN" >"$OUT/mirrorgate.toml"
cat >>"$OUT/mirrorgate.toml" <<TOML

[[mirror_topics]]
name = "idle-bench-mirror"
TOML
sed -i "s/^broker_port_base = .*/&\nmax_connections = $((CONNS + 100))/" "$OUT/mirrorgate.toml"
RUST_LOG=warn target/release/mirrorgate run --config "$OUT/mirrorgate.toml" 2>"$OUT/mirrorgate.log" &
MG_PID=$!
wait_http "http://$MG_ADMIN/readyz" "$MG_PID" "$OUT/mirrorgate.log" "mirrorgate"

# load NAME: produce then consume RECORDS records through the proxy; "MB/s MB/s" on stdout.
load() {
  local topic="idle-$1"
  tool kafka-topics --bootstrap-server "$DST" --create --topic "$topic" --partitions 6 \
    --replication-factor 1 >/dev/null
  produce "$MG_BIND" "$topic" "$RECORDS" -1 "$OUT/$1.produce.txt" \
    || die "produce failed: $(tail -n 5 "$OUT/$1.produce.txt")"
  consume "$MG_BIND" "$topic" "$RECORDS" "g-$topic" "$OUT/$1.consume.txt" \
    || die "consume failed: $(tail -n 5 "$OUT/$1.consume.txt")"
  echo "$(throughput "$OUT/$1.produce.txt" | grep -o '([0-9.]*' | tr -d '(') \
    $(grep -A1 '^start.time' "$OUT/$1.consume.txt" | tail -n 1 | cut -d, -f9 | tr -d ' ')"
}
rss() { status_kb "$MG_PID" VmRSS; }

step "Warm-up load (not measured)"
load warmup >/dev/null
step "Load without idle connections"
read -r P0 C0 <<<"$(load without)"
RSS_BEFORE=$(rss)

step "Opening $CONNS idle connections"
# idle-conns needs only the standard library.
python3 benches/bench_clients.py idle-conns --addr "$MG_BIND" --count "$CONNS" \
  --ready-file "$OUT/idle.ready" >"$OUT/idle.json" 2>"$OUT/idle.log" &
IDLE_PID=$!
for _ in $(seq 600); do
  [[ -f "$OUT/idle.ready" ]] && break
  kill -0 "$IDLE_PID" 2>/dev/null || die "idle connections could not be opened: $(tail -n 3 "$OUT/idle.log")"
  sleep 0.5
done
[[ -f "$OUT/idle.ready" ]] || die "$CONNS idle connections not open after 300s"
sleep 2
RSS_OPEN=$(rss)
step "Load with $CONNS idle connections open"
read -r P1 C1 <<<"$(load with)"
RSS_LOADED=$(rss)
kill -TERM "$IDLE_PID"
wait "$IDLE_PID" || die "idle connection holder failed"
IDLE_PID=""
sleep 2
RSS_CLOSED=$(rss)
HWM=$(status_kb "$MG_PID" VmHWM)

step "Report"
python3 - "$CONNS" "$LIMIT" "$RECORDS" "$P0" "$C0" "$P1" "$C1" "$RSS_BEFORE" "$RSS_OPEN" \
  "$RSS_LOADED" "$RSS_CLOSED" "$HWM" "$(cat "$OUT/idle.json")" "$REPORT" <<'PY'
import json, pathlib, sys
(conns, limit, records, p0, c0, p1, c1, before, opened, loaded, closed, hwm, idle,
 report) = sys.argv[1:]
conns, records = int(conns), int(records)
p0, c0, p1, c1 = map(float, (p0, c0, p1, c1))
before, opened, loaded, closed, hwm = (int(x) / 1024 for x in (before, opened, loaded, closed, hwm))
idle = json.loads(idle)
extra = opened - before
per_10k = extra / conns * 10000
BEGIN, END = "<!-- idle:begin -->", "<!-- idle:end -->"
lines = [BEGIN, f"### {conns:,} idle client connections (benches/idle.sh)", "",
         f"A fresh mirrorgate (release build, one mirror topic declared, no replicator) in "
         f"front of one broker. {conns:,} connections to its bootstrap listener each send one "
         "ApiVersions request, get the answer (so the proxy also holds a destination "
         "connection for each) and idle. "
         + ("" if conns >= 10000 else
            f"{conns:,} is the most this machine allows: mirrorgate needs two file "
            f"descriptors per connection and may open {limit}. ")
         + f"The load is {records:,} records of 1 KiB produced "
         "(`kafka-producer-perf-test`, acks=all, lz4) and read back through the proxy.", "",
         "| | value |", "| --- | ---: |",
         f"| RSS before (after a warm-up load) | {before:.1f} MiB |",
         f"| RSS with the connections open | {opened:.1f} MiB |",
         f"| extra RSS | {extra:+.1f} MiB ({extra * 1024 / conns:.2f} KiB per connection; "
         f"{per_10k:.1f} MiB per 10,000) |",
         f"| RSS after a load with them open | {loaded:.1f} MiB |",
         f"| RSS after they closed | {closed:.1f} MiB |",
         f"| peak RSS (VmHWM) | {hwm:.1f} MiB |",
         f"| produce MB/s without / with them | {p0:.1f} / {p1:.1f} ({p1 / p0:.2f}x) |",
         f"| consume MB/s without / with them | {c0:.0f} / {c1:.0f} ({c1 / c0:.2f}x) |",
         f"| idle connections the proxy closed | {idle['closed_by_peer']} of {idle['opened']} |",
         END]
text = "\n".join(lines)
print(text)
if report == "1":
    bench = pathlib.Path("BENCHMARKS.md")
    current = bench.read_text()
    if BEGIN in current:
        head, rest = current.split(BEGIN, 1)
        current = head + text + rest.split(END, 1)[1]
    else:
        # After the replication section (under its Scale heading), never inside it:
        # benches/replication.sh rewrites everything between its markers.
        anchor = "<!-- replication-bench:end -->"
        current = current.replace(anchor, anchor + "\n\n" + text, 1) if anchor in current \
            else current.rstrip("\n") + "\n\n" + text + "\n"
    bench.write_text(current)
PY
