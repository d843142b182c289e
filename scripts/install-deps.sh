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
)
test_pkgs=(
  ffmpeg
)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
