#!/usr/bin/env bash
# Capacity run: corecast serving its demo stream (640x360, 300 kbps video, 2 s segments) and
# `corecast-bench viewers` against it, on this box. Every step stops by itself.
#
#   bench/run-viewers.sh [VIEWERS] [SECONDS] [more corecast-bench viewers flags...]
#
# Writes out/bench/viewers-<N>-<time>.json (and .txt). Env: BENCH_HTTP_PORT (first free from 38080),
# BENCH_SERVER_CPUS / BENCH_CLIENT_CPUS (taskset lists, default: unpinned), BENCH_NO_BUILD=1
# (use the binaries already built).
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${1:-1000}
seconds=${2:-40}
shift $(( $# < 2 ? $# : 2 ))
target=${CARGO_TARGET_DIR:-target}
# Four free ports in a row (another corecast on this box must not catch our load).
source bench/lib.sh
port=$(free_port_block "${BENCH_HTTP_PORT:-38080}" 4)
out=out/bench
mkdir -p "$out"
[[ -n "${BENCH_NO_BUILD:-}" ]] || cargo build --release -p corecast -p corecast-bench

run_dir=$(mktemp -d)
corecast_addresses "$port" > "$run_dir/corecast.toml"
cat >> "$run_dir/corecast.toml" <<TOML
[demo]
width = 640
height = 360
fps = 30
video_kbps = 300
[packaging]
segment_seconds = 2.0
[delivery]
max_connections_per_worker = 20000
TOML

pin_server=()
pin_client=()
[[ -n "${BENCH_SERVER_CPUS:-}" ]] && pin_server=(taskset -c "$BENCH_SERVER_CPUS")
[[ -n "${BENCH_CLIENT_CPUS:-}" ]] && pin_client=(taskset -c "$BENCH_CLIENT_CPUS")

# The server stops by itself too, should this script die without its trap.
"${pin_server[@]}" timeout $((seconds + 120)) "$target/release/corecast" run \
  --config "$run_dir/corecast.toml" >"$run_dir/corecast.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$run_dir"' EXIT

# Wait until three segments are listed (players start three behind the live edge).
for _ in $(seq 1 100); do
  n=$(curl -sf "http://127.0.0.1:$port/live/demo/source/index.m3u8" | grep -c '\.m4s$' || true)
  [[ "${n:-0}" -ge 3 ]] && break
  sleep 0.2
done
# The real corecast process (timeout forks it as a child), and it must be the one listening.
pid=$(pgrep -P "$server" -x corecast || true)
if [[ -z "$pid" ]] || ! ss -Htlnp "sport = :$port" | grep -q "pid=$pid,"; then
  echo "corecast did not start on port $port:" >&2
  cat "$run_dir/corecast.log" >&2
  exit 1
fi

# TCP retransmits and loss probes, and softnet backlog drops (research/uring.md: tails on this
# VM come with them; compare runs only where they did not move).
net_counters() {
  awk '/^Tcp: [0-9]/ {print "RetransSegs=" $13}' /proc/net/snmp
  awk '/^TcpExt: [A-Z]/ {for (i = 1; i <= NF; i++) h[i] = $i} /^TcpExt: [0-9]/ {for (i = 1; i <= NF; i++) if (h[i] == "TCPLossProbes") print "TCPLossProbes=" $i}' /proc/net/netstat
  local dropped=0 _p d _r
  while read -r _p d _r; do dropped=$((dropped + 16#$d)); done </proc/net/softnet_stat
  echo "softnet_dropped=$dropped"
}
stamp=$(date +%Y%m%d-%H%M%S)
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
before=$(net_counters | tr '\n' ' ')
"${pin_client[@]}" "$target/release/corecast-bench" viewers \
  --url "http://127.0.0.1:$port/live/demo" -n "$viewers" --duration "$seconds" \
  --server-pid "$pid" --json "$out/viewers-$viewers-$stamp.json" "$@" \
  | tee "$out/viewers-$viewers-$stamp.txt"
cp "$run_dir/corecast.log" "$out/viewers-$viewers-$stamp.server.log"
if ! kill -0 "$pid" 2>/dev/null; then
  echo "corecast exited during the run; its log: $out/viewers-$viewers-$stamp.server.log" >&2
fi
echo "sockstat after the run: $(grep TCP: /proc/net/sockstat)"
echo "net counters before: $before"
echo "net counters after:  $(net_counters | tr '\n' ' ')"
