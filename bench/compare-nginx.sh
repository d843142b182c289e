#!/usr/bin/env bash
# corecast vs nginx side by side (issue 4, goal 2): installs nginx, wrk and ffmpeg if missing,
# builds release binaries, then runs `corecast-bench compare-nginx`, which starts both servers,
# publishes the test streams, runs the load and stops everything by itself.
#
#   bench/compare-nginx.sh [more corecast-bench compare-nginx flags...]
#
# Writes out/bench/compare-nginx-<unix time>/ (report.json, report.txt, configs, logs, the
# files nginx served). Env: BENCH_NO_BUILD=1 (use the binaries already built).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
target=${CARGO_TARGET_DIR:-target}
[[ -n "${BENCH_NO_BUILD:-}" ]] || cargo build --release -p corecast -p corecast-bench
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$target/release/corecast-bench" compare-nginx --corecast "$target/release/corecast" \
  --nginx "$(command -v nginx || echo /usr/sbin/nginx)" "$@"
