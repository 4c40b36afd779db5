#!/usr/bin/env bash
# Bounded libFuzzer run of the IPFIX / NetFlow v9 decoder with ASan + UBSan.
# Usage: bash scripts/fuzz.sh [SECONDS] [--bin PATH]
#   Builds build-fuzz/fuzz_ipfix_decoder with clang++ unless --bin is given,
#   runs it for SECONDS (default 60) from the committed seed corpus
#   tests/ipfix/corpus, and fails if it finds a crash, leak, timeout or UB.
#   Findings are written to build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    *) secs="$1"; shift ;;
  esac
done
out=build-fuzz
mkdir -p "$out/artifacts"
if [ -z "$bin" ]; then
  bin="$out/fuzz_ipfix_decoder"
  srcs=(tests/ipfix/fuzz_decoder.cpp src/ipfix/decoder.cpp src/flow/flow_record.cpp)
  # Rebuild when a source or header is newer than the binary.
  if [ ! -x "$bin" ] || [ -n "$(find src/ipfix src/flow tests/ipfix/fuzz_decoder.cpp -newer "$bin" -print -quit)" ]; then
    echo "fuzz.sh: building $bin" >&2
    "${CXX_FUZZ:-clang++}" -std=c++2b -g -O1 -fno-omit-frame-pointer \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -Isrc -Ibpf "${srcs[@]}" -lfmt -o "$bin"
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# New inputs go to a scratch directory; the committed seeds stay untouched.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$out/artifacts/" "$work" tests/ipfix/corpus
echo "fuzz.sh: no findings in ${secs}s"
