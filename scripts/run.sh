#!/usr/bin/env bash
# Installs what is missing, builds, and starts flowscope's main job:
# `flowscope run` (agent + SQLite store + HTTP API on 127.0.0.1:9740).
# Usage (as root on Debian 12): bash scripts/run.sh [flowscope run options...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec build/flowscope run "$@"
