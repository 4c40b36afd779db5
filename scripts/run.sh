#!/usr/bin/env bash
# Installs what is missing, builds, and starts flowscope's main job.
# Usage (as root on Debian 12): bash scripts/run.sh [options...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec build/flowscope agent "$@"
