#!/usr/bin/env bash
# Allocations per request on the delivery hot path (docs/capacity.md, "Allocations per request").
# Builds corecast with the `count-allocations` feature (a counting global allocator; /metrics then
# has corecast_delivery_allocations_total per worker), serves the demo stream, warms up, then
# fetches segments and playlists over keep-alive connections and prints
#   delta(allocations on delivery threads) / delta(requests).
#
#   bench/alloc-per-request.sh [REQUESTS_PER_PHASE] [VIEWERS] [VIEWER_SECONDS]
#
# Phases: closed-loop keep-alive GETs with curl (one connection per URL kind), then
# `corecast-bench viewers` (skipped when VIEWERS is 0). Env: CARGO_TARGET_DIR, BENCH_NO_BUILD=1,
# CORECAST_ALLOC_BACKTRACE=N (the server prints a backtrace for every Nth delivery allocation into
# its log, kept as out/bench/alloc-server.log). Exits 1 if the counters are missing.
# The counting binary replaces $CARGO_TARGET_DIR/release/corecast until the next plain build
# (run-viewers.sh rebuilds unless BENCH_NO_BUILD is set).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-2000}
viewers=${2:-500}
viewer_seconds=${3:-20}
target=${CARGO_TARGET_DIR:-target}
if [[ "$viewers" != 0 && "$viewer_seconds" -lt 10 ]]; then
  echo "VIEWER_SECONDS must be at least 10 (5 s ramp-up, 3 s to finish)" >&2
  exit 2
fi
source bench/lib.sh
port=$(free_port_block "${BENCH_HTTP_PORT:-39080}" 4)
out=out/bench
mkdir -p "$out"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  cargo build --release -p corecast --features count-allocations
  [[ "$viewers" == 0 ]] || cargo build --release -p corecast-bench
fi

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
TOML
timeout $((viewer_seconds + 300)) "$target/release/corecast" run \
  --config "$run_dir/corecast.toml" >"$run_dir/corecast.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; cp "$run_dir/corecast.log" "$out/alloc-server.log" 2>/dev/null || true; rm -rf "$run_dir"' EXIT

base=http://127.0.0.1:$port/live/demo/source
for _ in $(seq 1 150); do
  n=$(curl -sf "$base/index.m3u8" | grep -c '\.m4s$' || true)
  [[ "${n:-0}" -ge 3 ]] && break
  sleep 0.2
done
metrics() { curl -sf "http://127.0.0.1:$((port + 2))/metrics"; }
if ! metrics | grep -q '^corecast_delivery_allocations_total'; then
  echo "no corecast_delivery_allocations_total in /metrics: not a count-allocations build?" >&2
  exit 1
fi
# "allocations requests accepted-connections" summed over the workers.
totals() {
  metrics | awk '/^corecast_delivery_allocations_total/ {a += $2}
                 /^corecast_delivery_requests_total/ {r += $2}
                 /^corecast_delivery_accepted_total/ {c += $2}
                 END {print a, r, c}'
}
# N keep-alive GETs of one URL on one connection (curl reuses it across its URL list).
keepalive_gets() {
  local url=$1 count=$2 cfg
  cfg=$(mktemp)
  for _ in $(seq 1 "$count"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done >"$cfg"
  curl -sf --config "$cfg"
  rm -f "$cfg"
}
report() {
  local label=$1 before=$2 after=$3
  read -r a0 r0 c0 <<<"$before"
  read -r a1 r1 c1 <<<"$after"
  awk -v l="$label" -v a=$((a1 - a0)) -v r=$((r1 - r0)) -v c=$((c1 - c0)) \
    'BEGIN {printf "%-34s conns %6d  requests %7d  allocations %7d  per request %.4f\n", l, c, r, a, (r ? a / r : 0)}'
}
read -r setup_allocations _ <<<"$(totals)"
echo "allocations on delivery threads before the first request: $setup_allocations (ring, tables)"

segment=$(curl -sf "$base/index.m3u8" | grep '\.m4s$' | tail -n 1)
init=$(curl -sf "$base/index.m3u8" | sed -n 's/.*URI="\([^"]*\)".*/\1/p' | head -n 1)
echo "segment $segment ($(curl -sf "$base/$segment" | wc -c) bytes), playlist $(curl -sf "$base/index.m3u8" | wc -c) bytes"
# Warm-up: the same connections' first requests (buffers grow once per connection).
keepalive_gets "$base/$segment" 50
keepalive_gets "$base/index.m3u8" 50
for kind in segment playlist init; do
  case $kind in
    segment) url=$base/$segment ;;
    playlist) url=$base/index.m3u8 ;;
    init) url=$base/${init:-init.mp4} ;;
  esac
  # One warm-up request on a fresh connection, then the measured ones on that connection.
  cfg=$(mktemp)
  { printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
    for _ in $(seq 1 "$requests"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done
  } >"$cfg"
  before=$(totals)
  curl -sf --config "$cfg"
  after=$(totals)
  rm -f "$cfg"
  report "keep-alive GET $kind (1 conn)" "$before" "$after"
done

before=$(totals)
for _ in $(seq 1 50); do curl -sf -o /dev/null "$base/index.m3u8"; done
after=$(totals)
report "new connection per GET (playlist)" "$before" "$after"

if [[ "$viewers" != 0 ]]; then
  # Let the viewers connect and catch up first, then measure a steady window.
  "$target/release/corecast-bench" viewers --url "http://127.0.0.1:$port/live/demo" \
    -n "$viewers" --duration "$viewer_seconds" --ramp $((viewers * 2)) --progress 0 \
    >"$run_dir/viewers.txt" &
  bench=$!
  before=$(totals)
  sleep 5
  after=$(totals)
  report "$viewers viewers, ramp-up (first 5 s)" "$before" "$after"
  before=$after
  sleep $((viewer_seconds - 8))
  after=$(totals)
  wait $bench
  report "$viewers viewers, steady window" "$before" "$after"
  grep -iE 'errors|stalls' "$run_dir/viewers.txt" | head -n 4 || true
fi
metrics | grep -E '^corecast_delivery_(allocations|requests|sends|short_sends|enobufs)_total'
