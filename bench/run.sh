#!/usr/bin/env bash
# flowscope benchmarks: builds what is needed, runs every scenario, writes
# BENCHMARKS.md, bench/results.json and bench/benchmarks.png.
#
#   sudo bash bench/run.sh            # full run (about 10-15 minutes)
#   sudo bash bench/run.sh --smoke    # seconds; fails only on real breakage (CI)
#   sudo bash bench/run.sh --only churn,hold --reps 5
#   sudo bash bench/run.sh --only churn,bulk --contenders trace --out /tmp/t.md   # baseline + tracer rows only
#   sudo bash bench/run.sh --only churn,bulk --contenders JSON --before-build /tmp/old/build --out /tmp/ab.md  # A/B
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh: run as root (loads BPF programs, creates network namespaces)" >&2
  exit 1
fi
bash scripts/setup.sh --no-build >&2
BUILD=${FLOWSCOPE_BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$BUILD" -j"$(nproc)" --target flowscope fs_churn fs_bulk fs_holdopen fs_ipfix_gen fs_store_query \
  fs_bpf_costs fs_api_latency fs_attribution $(grep -q 'build bench/fs_micro' "$BUILD/build.ninja" && echo fs_micro) >&2
export FLOWSCOPE_BUILD="$(realpath "$BUILD")"
exec /usr/bin/python3 bench/harness.py "$@"
