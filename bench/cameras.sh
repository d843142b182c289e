#!/usr/bin/env bash
# RTSP cameras per core: corecast pulling N cameras of ~2 Mbit/s H.264 (passthrough: no
# transcoding, every camera packaged as HLS/DASH) from GStreamer's RTSP server, measured from
# /proc. Every step stops by itself.
#
#   bench/cameras.sh [CAMERAS] [SECONDS]          (default 50 cameras, 60 s)
#
# The server (tests/rtsp_server.py, run with /usr/bin/python3) encodes ONE 1280x720 30 fps
# stream of noise (videotestsrc pattern=snow, which x264 cannot compress below its target, so
# the stream really is BENCH_KBPS kbit/s; x264 ultrafast, an IDR every 2 s) on a shared mount, so N clients
# cost it one encoder plus N RTP copies; corecast opens N RTSP sessions (TCP-interleaved,
# BENCH_TRANSPORT=udp for RTP over UDP) to it as N `[[source]]` entries, exactly as it would to
# N cameras. After every camera is live (checked in /api/v1/sources) and a 10 s settle, the
# window of SECONDS is measured: corecast's utime+stime (/proc/PID/stat), the RTSP server's,
# the whole box's busy and irq time (/proc/stat), and the bytes corecast received
# (/api/v1/sources counters). foreign = box busy - irq - corecast - RTSP server: other load on
# this shared box, reported with the result. Writes out/bench/cameras-<N>-<time>.txt.
# Env: BENCH_NO_BUILD=1 (use the release binary already built), BENCH_KBPS (default 2000),
# BENCH_TRANSPORT (tcp|udp), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
cameras=${1:-50}
seconds=${2:-60}
kbps=${BENCH_KBPS:-2000}
transport=${BENCH_TRANSPORT:-tcp}
target=${CARGO_TARGET_DIR:-target}
python=/usr/bin/python3
[[ -x $python ]] || { echo "needs Debian's /usr/bin/python3 with python3-gi" >&2; exit 1; }
[[ -n "${BENCH_NO_BUILD:-}" ]] || cargo build --release -p corecast
bin="$target/release/corecast"

source bench/lib.sh
port=$(free_port_block "${BENCH_PORT:-39080}" 5)
api=$((port + 2)) rtsp=$((port + 4))
out=out/bench
mkdir -p "$out"
run_dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$python" tests/rtsp_server.py "$rtsp" $((seconds + 120)) --size 1280x720 --bitrate "$kbps" --pattern snow \
  > "$run_dir/rtsp_server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 100); do
  port_free "$rtsp" || break
  sleep 0.1
done

{
  corecast_addresses "$port"
  echo "[demo]"
  echo "enabled = false"
  echo "[packaging]"
  echo "segment_seconds = 2.0"
  for i in $(seq "$cameras"); do
    echo "[[source]]"
    echo "name = \"cam$i\""
    echo "url = \"rtsp://127.0.0.1:$rtsp/test\""
    echo "transport = \"$transport\""
  done
} > "$run_dir/corecast.toml"
RUST_LOG=warn "$bin" run --config "$run_dir/corecast.toml" > "$run_dir/corecast.log" 2>&1 &
corecast_pid=$!
pids+=("$corecast_pid")

sources_json() { curl -s "http://127.0.0.1:$api/api/v1/sources" || true; }
live_count() { sources_json | grep -o '"state":"live"' | wc -l; }
bytes_total() {
  sources_json | grep -o '"bytes":[0-9]*' | awk -F: '{s += $2} END {print s + 0}'
}
deadline=$((SECONDS + 60))
until [[ $(live_count) -ge $cameras ]]; do
  if (( SECONDS > deadline )); then
    echo "only $(live_count) of $cameras cameras live after 60 s; see $run_dir" >&2
    exit 1
  fi
  sleep 1
done
sleep 10

proc_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
box_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $7+$8; exit}' /proc/stat; }
hz=$(getconf CLK_TCK)
cores=$(nproc)
c0=$(proc_ticks "$corecast_pid"); s0=$(proc_ticks "$server_pid"); read -r b0 i0 < <(box_ticks)
bytes0=$(bytes_total); t0=$(date +%s.%N)
sleep "$seconds"
c1=$(proc_ticks "$corecast_pid"); s1=$(proc_ticks "$server_pid"); read -r b1 i1 < <(box_ticks)
bytes1=$(bytes_total); t1=$(date +%s.%N)
live=$(live_count)
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$corecast_pid/status")
# Hub queue drops and per-source errors over the whole run, from /metrics.
metrics=$(curl -s "http://127.0.0.1:$api/metrics")
dropped=$(awk '/^corecast_hub_dropped_units_total/ {print $2}' <<< "$metrics")
errors=$(awk '/^corecast_source_errors_total/ {
  match($0, /error="[^"]*"/); kind = substr($0, RSTART + 7, RLENGTH - 8); n[kind] += $2
} END {for (k in n) printf "%s %d, ", k, n[k]}' <<< "$metrics")

report=$(awk -v n="$cameras" -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" \
  -v b0="$b0" -v b1="$b1" -v i0="$i0" -v i1="$i1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
  -v by0="$bytes0" -v by1="$bytes1" -v live="$live" -v rss="$rss" -v cores="$cores" \
  -v dropped="${dropped:-0}" -v errors="$errors" -v transport="$transport" 'BEGIN {
  wall = t1 - t0
  corecast = (c1 - c0) / hz / wall
  server = (s1 - s0) / hz / wall
  busy = (b1 - b0) / hz / wall
  irq = (i1 - i0) / hz / wall
  foreign = busy - irq - corecast - server
  mbps = (by1 - by0) * 8 / wall / 1e6
  printf "cameras            %d (%d live at the end), RTSP over %s\n", n, live, transport
  printf "window             %.1f s\n", wall
  printf "received           %.1f Mbit/s in all, %.2f Mbit/s per camera\n", mbps, mbps / n
  printf "corecast CPU       %.3f cores (%.2f %% of one core per camera), RSS %d MiB\n", corecast, 100 * corecast / n, rss / 1024
  printf "RTSP server CPU    %.3f cores\n", server
  printf "box busy           %.3f of %d cores (irq+softirq %.3f)\n", busy, cores, irq
  printf "foreign CPU        %.3f cores\n", foreign
  printf "hub drops          %d units; source errors (whole run): %s\n", dropped, errors
  if (corecast > 0) printf "CAMERAS PER CORE   %.0f at %.2f Mbit/s passthrough\n", n / corecast, mbps / n
}')
stamp=$(date -u +%Y%m%dT%H%M%SZ)
echo "$report" | tee "$out/cameras-$cameras-$stamp.txt"
echo "command: bench/cameras.sh $cameras $seconds (BENCH_KBPS=$kbps BENCH_TRANSPORT=$transport)" \
  >> "$out/cameras-$cameras-$stamp.txt"
