#!/usr/bin/env bash
# Installs the Debian 12 packages corecast builds and tests with, only those that are missing.
# Used by every Makefile target, so `make run` and `make test` work on a fresh machine.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also the real peers the tests use (ffmpeg, nginx, ...)
set -euo pipefail

build_pkgs=(
  pkg-config clang libclang-dev nasm
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libx264-dev
  # drivers/srt: Haivision's libsrt (docs/srt.md).
  libsrt-openssl-dev
)
test_pkgs=(
  curl
  ffmpeg
  # SRT peers: srt-live-transmit (tests/tests/srt_*.rs).
  srt-tools
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # tests/rtsp_server.py: GStreamer's RTSP server through GObject introspection.
  gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
  chromium
  # corecast-bench compare-nginx: the reference server and its closed-loop load client.
  nginx wrk
)
# The browser tests (tests/browser) drive Chromium from Node.js. The machine image brings Node 20
# from NodeSource (with its own npm); Debian's nodejs/npm would clash with it, so they are added
# only where no `node` exists. Debian 12's Node is 18: playwright-core is pinned at 1.61.1, the
# last release that accepts it.
if ! command -v node >/dev/null 2>&1; then
  test_pkgs+=(nodejs npm)
fi

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The pinned web players and playwright-core for tests/browser (package-lock.json).
if [[ "${1:-}" == "--test" && ! -d "$(dirname "$0")/../tests/browser/node_modules" ]]; then
  echo "install-deps: npm ci in tests/browser" >&2
  (cd "$(dirname "$0")/../tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Debian 12's rustc (1.63) is too old for this workspace: use rustup's stable toolchain.
if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    echo "install-deps: cargo is in ~/.cargo/bin; add it to PATH (source ~/.cargo/env)" >&2
  else
    echo "install-deps: installing Rust with rustup" >&2
    command -v curl >/dev/null 2>&1 || { $sudo apt-get install -y -qq curl ca-certificates >/dev/null; }
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    echo "install-deps: Rust installed in ~/.cargo/bin (make finds it there)" >&2
  fi
fi

