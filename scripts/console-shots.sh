#!/usr/bin/env bash
# Refreshes the console screenshots in docs/console/ from the browser test
# (which otherwise writes them to the build tree). Usage: scripts/console-shots.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
FLOWSCOPE_DOC_SHOTS=1 ctest --test-dir "$build" -R '^console_browser$' --output-on-failure
