#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and root).
# Usage (as root on Debian 12): bash scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Root tests create network namespaces and load BPF programs; they run one at
# a time so their traffic and counters do not mix.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
