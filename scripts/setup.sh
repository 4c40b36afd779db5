#!/usr/bin/env bash
# Installs every Debian package flowscope needs to build, run and test, then builds it.
# Usage (as root on Debian 12): bash scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Build toolchain and libraries.
PKGS_BUILD=(
  build-essential cmake ninja-build pkg-config clang llvm
  libbpf-dev bpftool libelf-dev zlib1g-dev
  libpcap-dev libsqlite3-dev libmicrohttpd-dev libcpp-httplib-dev libssl-dev prometheus-cpp-dev
  libcli11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev
  clang-16  # the clang build: clang 14 cannot compile std::expected with libstdc++
)
# Real peers the tests compare against.
PKGS_TEST=(
  iproute2 iputils-ping tcpdump nftables tshark nfdump softflowd libfixbuf-tools libbpf-tools iperf3 procps python3 sqlite3 curl
  gnuplot-nox systemd
  faketime  # the fleet tests run agents with their clocks offset (libfaketime)
  # The kernel matrix (scripts/kernel-matrix.sh): Debian's kernels booted under qemu.
  qemu-system-x86 busybox-static cpio xz-utils
  clickhouse-server clickhouse-client  # the ClickHouse store's tests start their own servers (never the service)
  chromium  # the web console's browser tests (driven by playwright-core)
)
need=()
for p in "${PKGS_BUILD[@]}" "${PKGS_TEST[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
# The web console is bundled with esbuild (npm ci below); a node and npm
# already on the PATH (e.g. a newer Node.js) are used as they are.
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The web console's build and test tools, at the versions web/package-lock.json pins.
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  npm ci --prefix web --no-audit --no-fund
fi

if [ "${1:-}" != "--no-build" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build build -j"$(nproc)"
fi
