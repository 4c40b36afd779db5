#!/usr/bin/env bash
# Bounded libFuzzer runs of the decoders that read outside input, with ASan + UBSan.
# Usage: bash scripts/fuzz.sh [SECONDS] [--target ipfix|packet|all] [--bin PATH]
#   ipfix:  the IPFIX / NetFlow v9 decoder, seeds tests/ipfix/corpus
#   packet: the tracer's packet decoder, seeds tests/trace/corpus
#   all (default): each for SECONDS (default 60), one after the other.
#   Each target is built as build-fuzz/fuzz_<target> with clang++ unless --bin
#   gives a prebuilt one (then --target names a single target). Fails on any
#   crash, leak, timeout or UB; findings are written to build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60
bin=""
target=all
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    *) secs="$1"; shift ;;
  esac
done
if [ -n "$bin" ] && [ "$target" = all ]; then target=ipfix; fi
out=build-fuzz
mkdir -p "$out/artifacts"

fuzz_one() {  # fuzz_one NAME
  local name=$1 exe srcs watch corpus
  case "$name" in
    ipfix)
      srcs=(tests/ipfix/fuzz_decoder.cpp src/ipfix/decoder.cpp src/flow/flow.cpp src/net/ip16.cpp)
      watch=(src/ipfix src/flow src/net tests/ipfix/fuzz_decoder.cpp)
      corpus=tests/ipfix/corpus ;;
    packet)
      srcs=(tests/trace/fuzz_packet.cpp src/trace/packet.cpp)
      watch=(src/trace/packet.cpp src/trace/packet.h tests/trace/fuzz_packet.cpp)
      corpus=tests/trace/corpus ;;
    *) echo "fuzz.sh: unknown target '$name' (ipfix, packet, all)" >&2; return 2 ;;
  esac
  exe=${bin:-$out/fuzz_$name}
  # Rebuild when a source or header is newer than the binary.
  if [ -z "$bin" ] && { [ ! -x "$exe" ] || [ -n "$(find "${watch[@]}" -newer "$exe" -print -quit)" ]; }; then
    echo "fuzz.sh: building $exe" >&2
    "${CXX_FUZZ:-clang++}" -std=c++2b -g -O1 -fno-omit-frame-pointer \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -Isrc -Ibpf "${srcs[@]}" -lfmt -o "$exe"
  fi
  local work
  work=$(mktemp -d)
  # New inputs go to a scratch directory; the committed seeds stay untouched.
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$work" "$corpus" || { rm -rf "$work"; return 1; }
  rm -rf "$work"
  echo "fuzz.sh: $name: no findings in ${secs}s"
}

if [ "$target" = all ]; then
  fuzz_one ipfix
  fuzz_one packet
else
  fuzz_one "$target"
fi
