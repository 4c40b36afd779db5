#!/usr/bin/env bash
# Builds the Debian package from the install rules and checks it on this
# machine, as root: the install tree (DESTDIR), `dpkg -i`, the installed
# `flowscope --version` against the package version, the units with
# `systemd-analyze verify`, the installed collector (as an unprivileged user,
# like its unit) answering the HTTP API with a temporary database, then
# `dpkg -r` and `dpkg --purge` leaving nothing behind.
# Usage: bash scripts/package-test.sh [BUILD_DIR]   (default build-pkg)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-pkg}
PKG=flowscope
UNITS=(flowscope-agent.service flowscope-collector.service flowscope-run.service)

fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "package-test: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i)"
TMP=$(mktemp -d /tmp/flowscope-pkgtest-XXXXXX)
COLLECTOR_PID=
cleanup() {
  [ -n "$COLLECTOR_PID" ] && kill "$COLLECTOR_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# 1. Build: Release, installed under /usr, warnings as errors. A new build
#    directory is configured without tests (the package needs none); an
#    existing one keeps its choice, so CI packages the Release tree it built.
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
t0=$(date +%s)
tests=()
[ -f "$BUILD/CMakeCache.txt" ] || tests=(-DFLOWSCOPE_TESTS=OFF)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DFLOWSCOPE_WERROR=ON \
  "${tests[@]}" "${launcher[@]}" > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target flowscope
rm -f "$BUILD"/${PKG}_*.deb
(cd "$BUILD" && cpack > /dev/null)
DEB=$(ls "$BUILD"/${PKG}_*.deb)
step "built $DEB ($(stat -c %s "$DEB") bytes) in $(($(date +%s) - t0)) s"
VERSION=$(dpkg-deb -f "$DEB" Version)
dpkg-deb -f "$DEB" Depends | grep -q libbpf || fail "Depends lacks libbpf: $(dpkg-deb -f "$DEB" Depends)"

# 2. The install tree with DESTDIR: every file where GNUInstallDirs puts it.
DESTDIR="$TMP/dest" cmake --install "$BUILD" > /dev/null
for f in usr/bin/flowscope etc/flowscope/agent.env etc/flowscope/collector.env etc/flowscope/run.env \
         usr/share/doc/flowscope/README.md usr/share/doc/flowscope/docs/collector.md \
         usr/lib/systemd/system/flowscope-agent.service usr/lib/systemd/system/flowscope-collector.service \
         usr/lib/systemd/system/flowscope-run.service; do
  [ -e "$TMP/dest/$f" ] || fail "DESTDIR install lacks /$f"
done
step "DESTDIR install: $(find "$TMP/dest" -type f | wc -l) files"

# 3. dpkg -i (after removing any earlier copy, so this is a fresh install).
exec 9> /tmp/apt.lock
flock 9
dpkg --purge "$PKG" > /dev/null 2>&1 || true
dpkg -i "$DEB" > /dev/null || fail "dpkg -i"
flock -u 9
mapfile -t FILES < <(dpkg -L "$PKG")
got=$(/usr/bin/flowscope --version)
[ "$got" = "flowscope $VERSION" ] || fail "flowscope --version says '$got', the package is $VERSION"
step "installed; /usr/bin/flowscope --version: $got"

# 4. The installed units verify (systemd need not be PID 1 for this).
out=$(systemd-analyze verify "${UNITS[@]/#//usr/lib/systemd/system/}" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
step "systemd-analyze verify: clean"

# 5. The installed collector as user nobody without any capability (as its
#    unit runs it), a temporary database, any free ports; one API request.
mkdir -p "$TMP/db" && chown nobody "$TMP/db" && chmod 755 "$TMP"
setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --bounding-set=-all \
  /usr/bin/flowscope collector --db "$TMP/db/flows.db" --udp-port 0 --tcp-port 0 --http-port 0 \
  2> "$TMP/collector.err" &
COLLECTOR_PID=$!
port=
for _ in $(seq 200); do
  port=$(sed -n 's|.*HTTP API on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$TMP/collector.err")
  [ -n "$port" ] && break
  kill -0 "$COLLECTOR_PID" 2> /dev/null || fail "collector exited: $(cat "$TMP/collector.err")"
  sleep 0.05
done
[ -n "$port" ] || fail "collector did not start: $(cat "$TMP/collector.err")"
curl -sf "http://127.0.0.1:$port/healthz" > /dev/null || fail "/healthz"
flows=$(curl -sf "http://127.0.0.1:$port/api/flows?limit=1") || fail "/api/flows"
echo "$flows" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["count"] == 0, d' \
  || fail "/api/flows on an empty database: $flows"
kill -TERM "$COLLECTOR_PID"
wait "$COLLECTOR_PID" || fail "collector exit status $? after SIGTERM: $(cat "$TMP/collector.err")"
COLLECTOR_PID=
grep -q "collector stopped" "$TMP/collector.err" || fail "no clean stop: $(cat "$TMP/collector.err")"
[ -s "$TMP/db/flows.db" ] || fail "no database written"
step "installed collector served /healthz and /api/flows on port $port, stopped cleanly on SIGTERM"

# 6. Removal. An enabled unit leaves a link in /etc/systemd/system that must
#    go with the package; conffiles stay after -r and go with --purge.
systemctl enable flowscope-collector.service > /dev/null 2>&1 || fail "systemctl enable"
[ -L /etc/systemd/system/multi-user.target.wants/flowscope-collector.service ] || fail "systemctl enable made no link"
flock 9
dpkg -r "$PKG" > /dev/null || fail "dpkg -r"
for f in "${FILES[@]}"; do
  [ -f "$f" ] && [[ "$f" != /etc/flowscope/* ]] && fail "$f left after dpkg -r"
done
dpkg --purge "$PKG" > /dev/null || fail "dpkg --purge"
flock -u 9
for f in "${FILES[@]}"; do
  [ -f "$f" ] && fail "$f left after dpkg --purge"
done
[ -e /etc/flowscope ] && fail "/etc/flowscope left after purge"
[ -e /usr/share/doc/flowscope ] && fail "/usr/share/doc/flowscope left after purge"
stray=$(find /etc/systemd /usr/lib/systemd /lib/systemd /var/lib/dpkg/info -name 'flowscope*' 2> /dev/null || true)
[ -z "$stray" ] || fail "left after purge: $stray"
step "dpkg -r and --purge left no files (the flow database in /var/lib/flowscope is kept by design)"
step "OK"
