#!/usr/bin/env bash
# Shell functions shared by the benchmarks in benches/ (e2e.sh, replication.sh, fleet.sh,
# cutover.sh). Sourced, never run; paths are relative to the repository root.
#
# The sourcing script sets PROG (prefix of its messages) and TOOL_TIMEOUT (seconds any
# Kafka tool run may take); some functions also read its OUT, DST, RECORD_SIZE and
# INSTANCE_PORT_BASE, as their comments say.

# --- messages and flags ----------------------------------------------------------------
# Prints the script's header comment (from line 2 to the first line that is no comment).
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
# Prints "PROG: MESSAGE" on stderr and exits with status 1.
die() { echo "$PROG: $*" >&2; exit 1; }
# Prints "PROG: MESSAGE" on stderr.
log() { echo "$PROG: $*" >&2; }
# Prints a bold "== STEP" heading on stderr.
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# Parses --quick, --out DIR, --no-report and --help into QUICK=1, OUT and REPORT=0 (the
# script sets their defaults first).
# shellcheck disable=SC2034  # QUICK and REPORT are the script's
parse_flags() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --quick) QUICK=1; shift ;;
      --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
      --no-report) REPORT=0; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument $1" ;;
    esac
  done
}

# Dies unless every COMMAND is installed.
need_commands() {   # COMMAND...
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "$cmd not found (testbed/install-deps installs the testbed's tools)"
  done
}
# Dies if something already listens on 127.0.0.1:PORT.
need_free_port() {   # PORT
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || die "port $1 on 127.0.0.1 is already in use (another benchmark running?)"
}

# --- Kafka (testbed/kafka) ---------------------------------------------------------------
# testbed/kafka with the given arguments.
kafka() { testbed/kafka "$@"; }
# A Kafka command-line tool of the testbed's Kafka, killed after TOOL_TIMEOUT seconds.
tool() { timeout "$TOOL_TIMEOUT" testbed/kafka tool "$@"; }
# Stops the named clusters, ignoring ones that are not running.
clusters_down() {   # NAME...
  local c
  for c in "$@"; do kafka down "$c" >/dev/null 2>&1 || true; done
}
# Starts a cluster, its stderr collected in LOG. Two retries: a port in the kernel's
# ephemeral range can be held for a while by a client connection elsewhere on the machine.
up_cluster() {   # NAME NODES PORT LOG
  local attempt
  : >"$4"
  for attempt in 1 2 3; do
    kafka up "$1" --nodes "$2" --port "$3" >/dev/null 2>>"$4" && return 0
    kafka down "$1" >/dev/null 2>&1 || true
    ((attempt < 3)) || return 1
    log "cluster $1 did not start (attempt $attempt; $(grep -o 'failed to bind to [^ ]*' "$4" | tail -n 1)); retrying"
    sleep 5
  done
}

# kafka-producer-perf-test of RECORDS records of RECORD_SIZE bytes at THROUGHPUT records/s
# (-1: unthrottled), acks=all, lz4; fails unless it printed its summary.
produce() {   # BOOTSTRAP TOPIC RECORDS THROUGHPUT OUTFILE [CLIENT_PROPERTIES_FILE]
  local config=()
  [[ -z "${6:-}" ]] || config=(--producer.config "$6")
  tool kafka-producer-perf-test --topic "$2" --num-records "$3" --record-size "$RECORD_SIZE" \
    --throughput "$4" "${config[@]}" --producer-props bootstrap.servers="$1" acks=all compression.type=lz4 \
    >"$5" 2>&1 && grep -q ' ms 99.9th' "$5"
}
# kafka-consumer-perf-test reading RECORDS records in consumer group GROUP; fails unless it
# printed its results.
consume() {   # BOOTSTRAP TOPIC RECORDS GROUP OUTFILE [CLIENT_PROPERTIES_FILE]
  local config=()
  [[ -z "${6:-}" ]] || config=(--consumer.config "$6")
  tool kafka-consumer-perf-test --bootstrap-server "$1" --topic "$2" --messages "$3" \
    "${config[@]}" --group "$4" --timeout 60000 >"$5" 2>&1 && grep -q '^start.time' "$5"
}
# Prints the last "N records/sec (M MB/sec)" of a kafka-producer-perf-test output.
throughput() { grep -o '[0-9.]* records/sec ([0-9.]* MB/sec)' "$1" | tail -n 1; }

# --- mirrorgate ------------------------------------------------------------------------
# Builds git revision REV (release, in a worktree of its own under OUT) into BINARY.
build_baseline() {   # REV BINARY
  local tree="$OUT/baseline-tree"
  rm -rf "$tree"
  git worktree add --detach "$tree" "$1" >/dev/null 2>&1 || die "cannot check out $1"
  (cd "$tree" && CARGO_TARGET_DIR="$(abs_path "$OUT")/baseline-target" cargo build --release --locked -q) \
    || die "building $1 failed"
  cp "$OUT/baseline-target/release/mirrorgate" "$2"
  git worktree remove --force "$tree"
  rm -rf "$OUT/baseline-target"
}
# Builds target/release/mirrorgate.
build_mirrorgate() {
  step "Building mirrorgate (release)"
  cargo build --release --locked -q
}
# Prints the [proxy], [destination] and [admin] sections of a mirrorgate config.
mg_config() {   # BIND BROKER_PORT_BASE DESTINATION_BOOTSTRAP ADMIN_BIND
  cat <<TOML
[proxy]
bind = "$1"
advertised_host = "127.0.0.1"
broker_port_base = $2

[destination]
bootstrap_servers = "$3"

[admin]
bind = "$4"
TOML
}
# Waits up to 30 s until URL answers; dies, showing the end of LOG, if PID exits first
# or the time runs out.
wait_http() {   # URL PID LOG NAME
  for _ in $(seq 300); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; die "$4 exited during startup"; }
    sleep 0.1
  done
  tail -n 20 "$3" >&2
  die "$4 not ready after 30s ($1)"
}
# SIGTERM, up to 10 s to exit (mirrorgate drains connections for up to
# shutdown_grace_ms), then SIGKILL. An empty PID is ignored.
stop_pid() {   # PID
  [[ -n "$1" ]] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in {1..100}; do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
# Runs the script's cleanup function on exit, also after Ctrl-C (status 130) and SIGTERM (143).
trap_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Replicating instances (fleet.sh, cutover.sh): instance I serves clients on
# 127.0.0.1:INSTANCE_PORT_BASE+100*I, its brokers from +10 on, its admin API on +90.
# Prints the admin API's URL of instance I.
instance_admin() { echo "http://127.0.0.1:$((INSTANCE_PORT_BASE + 90 + 100 * $1))"; }
# Runs the mirrorgate CLI against instance I.
mg_on() { MIRRORGATE_ADMIN_URL="$(instance_admin "$1")" target/release/mirrorgate "${@:2}"; }
# Starts instance I in front of DST ($OUT/NAME.toml, .log), its pid in PIDS[I], and waits
# until it is ready.
start_instance() {   # NAME I METADATA_TOPIC SESSION_TIMEOUT_MS
  local port=$((INSTANCE_PORT_BASE + 100 * $2))
  mg_config "127.0.0.1:$port" $((port + 10)) "$DST" "127.0.0.1:$((port + 90))" >"$OUT/$1.toml"
  cat >>"$OUT/$1.toml" <<TOML

[replicator]
enabled = true
metadata_topic = "$3"
session_timeout_ms = $4
TOML
  target/release/mirrorgate run --config "$OUT/$1.toml" 2>"$OUT/$1.log" &
  PIDS[$2]=$!
  wait_http "$(instance_admin "$2")/readyz" "${PIDS[$2]}" "$OUT/$1.log" "instance $1"
}

# --- measurement -----------------------------------------------------------------------
# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# PATH made absolute against the current directory (for config files that name it).
abs_path() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
# Prints TO - FROM (awk's number format: 6 significant digits).
delta() { awk -v a="$1" -v b="$2" 'BEGIN {print b - a}'; }
# CPU-seconds (user + system, all threads) a process has used so far. Fields are counted
# after the ")" that ends the command name, since a name may contain spaces.
cpu_seconds() { sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{print ($12 + $13) / hz}'; }
# Prints a kB field (VmRSS, VmHWM, ...) of /proc/PID/status.
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# Text for BENCHMARKS.md: this machine's paths and registry host names taken out.
scrub() { sed -e "s|$PWD|.|g" -e "s|$HOME|~|g" -e 's|https\?://[^/ ]*/|<registry>/|g'; }
