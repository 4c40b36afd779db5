#!/usr/bin/env bash
# The agent's and the tracer's root tests on Debian's LTS kernels, each booted
# under qemu.
#
# Usage (as root, after a build):
#   bash scripts/kernel-matrix.sh [--kernel 5.10|6.1|6.12|all] [--tests FILTER|ci|all]
#                                 [--build DIR] [--cache DIR] [--timeout SECONDS] [--no-docs]
#
# For each kernel: its Debian cloud image package is fetched once with apt
# (private sources list and state: the system's apt configuration is not
# touched) into the cache; an initramfs is made of busybox, the flowscope
# binary, the root test binaries, the tools they call (ip, nft, ss, nstat)
# with their shared libraries, and the kernel's own modules the tests need
# (veth, nf_tables ...); qemu boots it (KVM when it works, else TCG), the init
# script runs the tests (a gtest filter) and `flowscope features`, and the
# result comes back over the serial console. docs/kernels.md gets one row per
# kernel and test set (`ci`, `all` or a filter), naming the commit the
# binaries were built from; a run replaces only its own rows (not with
# --no-docs, as in CI: a run leaves the tree as it was). The exit status is
# non-zero when any test failed or the VM did not report.
#
# The tests run in the VM under the same paths as in the build tree (the test
# binaries name flowscope and fs_peer by absolute path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Kernel versions are pinned: a matrix entry must not change under CI's feet.
# Override with FLOWSCOPE_KERNEL_<5_10|6_1|6_12>=<package version part>.
declare -A PKG=(
  [5.10]="${FLOWSCOPE_KERNEL_5_10:-5.10.0-32}"
  [6.1]="${FLOWSCOPE_KERNEL_6_1:-6.1.0-47}"
  [6.12]="${FLOWSCOPE_KERNEL_6_12:-6.12.117+deb13}"
)
declare -A SUITE=([5.10]=bullseye [6.1]=bookworm [6.12]=trixie)
ORDER=(5.10 6.1 6.12)

# The CI subset: exact bytes both ways (v4 and v6), retransmits and drops
# against nstat and nft, refused and reset closes, pid attribution, inbound
# and outbound tuples (the dual-stack listener). A few minutes under TCG.
CI_FILTER='Sizes/ExactBytes.*/v4_1048576up_12345down:Sizes/ExactBytes.*/v6_12345up_1048576down'
CI_FILTER+=':Agent.Ipv4OnDualStackSocketIsFamily4:Agent.InboundTupleIsExactOnEveryFamily'
CI_FILTER+=':Agent.RetransmitsAndDropsMatchKernelCounters:Agent.RefusedConnectIsAFlowWithNoSocketDrop'
CI_FILTER+=':Agent.ResetByPeerAndResetSent:Agent.AttributesBothEndsToTheirProcessesUnderLoad:Agent/AcceptorProcess.*'
CI_FILTER+=':Agent.StatsNameTheFeaturesThisKernelLacks:Probe.*:FeaturesCommand.*'
# The tracer: the closed-port story (SYN, NO_SOCKET drop, reset), and
# --functions through netfilter to a drop and up to the TCP socket.
CI_FILTER+=':TraceRoot.ClosedPortShowsSynDroppedNoSocketAndResetSent:TraceFunctions.*'

kernel=6.1 tests=ci build=build timeout=1200 docs=1
cache=${FLOWSCOPE_KERNEL_CACHE:-/var/cache/flowscope-kernels}
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "kernel-matrix: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $tests in ci) filter=$CI_FILTER ;; all) filter='*' ;; *) filter=$tests ;; esac
# Oracles only the tests outside the CI subset call (the tracer's filter
# against tcpdump, its pcapng read back by tshark, UDP sent with bash's
# /dev/udp): packed for those runs only, tshark's libraries being ~160 MB.
FULL_TOOLS=()
[ "$tests" = ci ] || FULL_TOOLS=(bash tcpdump tshark)
if [ "$kernel" = all ]; then kernels=("${ORDER[@]}")
elif [ -n "${PKG[$kernel]:-}" ]; then kernels=("$kernel")
else echo "kernel-matrix: --kernel must be one of ${ORDER[*]} or all" >&2; exit 2; fi

build=$(cd "$build" && pwd)
BINS=("$build/flowscope" "$build/tests/support/fs_peer")
TESTS=("$build/tests/agent/agent_integration_test" "$build/tests/kernel/kernel_root_test" "$build/tests/trace/trace_root_test")
for f in "${BINS[@]}" "${TESTS[@]}"; do
  [ -x "$f" ] || { echo "kernel-matrix: $f missing: build flowscope, fs_peer, agent_integration_test, kernel_root_test and trace_root_test first" >&2; exit 2; }
done
for t in qemu-system-x86_64 busybox cpio xz apt-get dpkg-deb objcopy ldd dash timeout ip nft ss nstat sysctl findmnt setpriv "${FULL_TOOLS[@]}"; do
  command -v "$t" > /dev/null || { echo "kernel-matrix: $t missing (bash scripts/setup.sh installs it)" >&2; exit 2; }
done

# --- kernels: fetched once with a private apt state ---------------------------

# The Debian mirror the system already uses.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2> /dev/null |
  grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)
mirror=${mirror%/}
[ -n "$mirror" ] || { echo "kernel-matrix: no Debian mirror in /etc/apt/sources.list*" >&2; exit 2; }
APT=(-o "Dir::Etc::sourcelist=$cache/apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$cache/apt/lists"
     -o "Dir::Cache=$cache/apt/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

fetch_kernel() {  # $1: matrix key; sets kdir and krel
  local k=$1 v=${PKG[$1]}
  kdir=$cache/x/$v
  if [ ! -d "$kdir" ]; then
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs"
    if ! ls "$cache"/debs/linux-image-"$v"-cloud-amd64_*.deb > /dev/null 2>&1; then
      local kr=/usr/share/keyrings/debian-archive-keyring.gpg s
      : > "$cache/apt/sources.list"
      for s in bullseye bookworm trixie; do
        echo "deb [signed-by=$kr] $mirror $s main" >> "$cache/apt/sources.list"
        echo "deb [signed-by=$kr] ${mirror%/debian}/debian-security $s-security main" >> "$cache/apt/sources.list"
      done
      apt-get "${APT[@]}" update -q > "$cache/apt/update.log" 2>&1 || { cat "$cache/apt/update.log" >&2; exit 1; }
      (cd "$cache/debs" && apt-get "${APT[@]}" download "linux-image-$v-cloud-amd64") ||
        { echo "kernel-matrix: apt-get download linux-image-$v-cloud-amd64 failed" >&2; exit 1; }
    fi
    rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
    dpkg-deb -x "$cache"/debs/linux-image-"$v"-cloud-amd64_*.deb "$kdir.tmp"
    # Modules live under usr/lib on a merged-/usr package (trixie).
    [ -d "$kdir.tmp/lib/modules" ] || { mkdir -p "$kdir.tmp/lib" && ln -s ../usr/lib/modules "$kdir.tmp/lib/modules"; }
    mv "$kdir.tmp" "$kdir"
  fi
  krel=$v-cloud-amd64
  [ -f "$kdir/boot/vmlinuz-$krel" ] || { echo "kernel-matrix: no vmlinuz in $kdir (${SUITE[$k]})" >&2; exit 1; }
}

# --- initramfs -------------------------------------------------------------------

stage=$(mktemp -d /tmp/flowscope-matrix.XXXXXX)
trap 'rm -rf "$stage"' EXIT

copy_with_libs() {  # files, copied to the same path with every shared library they load
  local f lib
  for f in "$@"; do
    f=$(readlink -f "$f")
    [ -e "$stage/root$f" ] && continue
    mkdir -p "$stage/root$(dirname "$f")"
    # Debug info is not needed in the VM and doubles the archive.
    objcopy --strip-debug "$f" "$stage/root$f" 2> /dev/null || cp "$f" "$stage/root$f"
    for lib in $(ldd "$f" 2> /dev/null | grep -oE '/[^ ]+'); do
      [ -e "$stage/root$lib" ] && continue
      mkdir -p "$stage/root$(dirname "$lib")"
      cp -L "$lib" "$stage/root$lib"
    done
  done
}

make_common() {
  local r=$stage/root
  mkdir -p "$r"/{bb,bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,var,mnt}
  ln -s ../run "$r/var/run"
  cp "$(command -v busybox)" "$r/bb/busybox"
  # system(3) and popen(3) run /bin/sh: dash, since busybox's shell prefers
  # its own applets (its `ip` has no netns) to the real tools on PATH.
  copy_with_libs "$(command -v dash)"
  [ -e "$r/bin/sh" ] || ln -s "$(readlink -f "$(command -v dash)")" "$r/bin/sh"
  # The real tools the tests call, in front of busybox's applets on PATH.
  local t tools=()
  for t in ip nft ss nstat sysctl findmnt setpriv "${FULL_TOOLS[@]}"; do tools+=("$(command -v "$t")"); done
  copy_with_libs "${BINS[@]}" "${TESTS[@]}" "${tools[@]}"
  for t in "${tools[@]}"; do [ -e "$r$t" ] || { mkdir -p "$r$(dirname "$t")"; cp "$t" "$r$t"; }; done
  [ -d /etc/iproute2 ] && cp -r /etc/iproute2 "$r/etc/"
  [ -d /usr/share/iproute2 ] && mkdir -p "$r/usr/share" && cp -r /usr/share/iproute2 "$r/usr/share/"
  if [ ${#FULL_TOOLS[@]} -gt 0 ] && [ -d /usr/share/wireshark ]; then cp -r /usr/share/wireshark "$r/usr/share/"; fi
  echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
  echo 'root:x:0:' > "$r/etc/group"
  # Debian's tcpdump drops to its own user after opening the capture, and
  # exits when that user does not exist.
  if [[ " ${FULL_TOOLS[*]} " == *" tcpdump "* ]]; then
    getent passwd tcpdump >> "$r/etc/passwd" || true
    getent group tcpdump >> "$r/etc/group" || true
  fi
  cat > "$r/init" << 'EOF'
#!/bb/busybox sh
/bb/busybox --install -s /bb
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bb HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No tmpfs on /tmp: the initramfs root is in memory already, and a build tree
# under /tmp (a CI clone) would be hidden by it.
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing 2> /dev/null || mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf 2> /dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2> /dev/null
echo 1 > /proc/sys/kernel/printk
ip link set lo up
while read -r m; do insmod "$m" || echo "FSM-MODULE-FAILED $m"; done < /modules.order
. /matrix.conf
echo; echo "FSM-KERNEL $(uname -r)"
echo "FSM-BOOTED $(cut -d' ' -f1 /proc/uptime)"
flowscope=$(cat /flowscope.path)
$flowscope features > /tmp/features 2>&1
sed 's/^/FSM-FEATURES /' /tmp/features
if [ -n "${EXTRA:-}" ]; then eval "$EXTRA"; fi
# A kernel below the agent's minimum: the agent must refuse it in one
# sentence (checked on the host side), and its tests cannot run.
if grep -q '^agent: cannot run here' /tmp/features; then
  echo "FSM-AGENT-OFF $($flowscope agent 2>&1 | head -1)"
  TESTS=$(echo $TESTS | tr ' ' '\n' | grep -v agent_integration_test)
fi
if grep -q '^trace: cannot run here' /tmp/features; then
  echo "FSM-TRACE-OFF $($flowscope trace 2>&1 | head -1)"
  TESTS=$(echo $TESTS | tr ' ' '\n' | grep -v trace_root_test)
fi
for t in $TESTS; do
  echo "FSM-RUN $t"
  "$t" --gtest_color=no --gtest_filter="$FILTER" 2>&1
  echo "FSM-RC $t $?"
done
echo "FSM-DONE $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
EOF
  chmod +x "$r/init"
  readlink -f "${BINS[0]}" > "$r/flowscope.path"
  {
    echo "TESTS='${TESTS[*]}'"
    echo "FILTER='$filter'"
    # Test deadlines (never delays) stretched under TCG, about 17x slower.
    if [ "${accel[*]}" = "-accel tcg" ]; then echo "export FLOWSCOPE_TEST_SLACK=4"; fi
    # A shell command run in the VM before the tests (for a look around).
    if [ -n "${FLOWSCOPE_MATRIX_EXTRA:-}" ]; then printf 'EXTRA=%q\n' "$FLOWSCOPE_MATRIX_EXTRA"; fi
  } > "$r/matrix.conf"
}

# The kernel's modules the tests need, with their dependencies, in load order.
# The package ships no modules.dep (its installer runs depmod): dependencies
# are read from each module's own .modinfo section. tcp_diag: without it `ss`
# falls back to /proc/net/tcp and shows no tcp_info (rtt, bytes_acked).
WANT_MODULES=(veth nf_tables nft_numgen nft_counter nft_ct nft_reject_inet tcp_diag)
add_modules() {  # $1: kernel dir, $2: release
  local mdir=$1/lib/modules/$2 r=$stage/root f n
  rm -rf "$r/lib/modules" "$r/modules.order"
  mkdir -p "$r/lib/modules"
  : > "$r/modules.order"
  declare -A where=() seen=()
  while IFS= read -r f; do
    n=${f##*/}; n=${n%%.ko*}; where[${n//-/_}]=$f
  done < <(find -L "$mdir/kernel" -name '*.ko*')
  visit() {
    local m=$1 f out d
    f=${where[$m]:-}
    [ -n "$f" ] || return 0  # built in, or absent on this kernel
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    out=$r/lib/modules/$m.ko
    case $f in
      *.xz) xz -dc "$f" > "$out" ;;
      *.zst) zstd -qdc "$f" > "$out" ;;
      *) cp "$f" "$out" ;;
    esac
    for d in $(objcopy -O binary --only-section=.modinfo "$out" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
      visit "${d//-/_}"
    done
    echo "/lib/modules/$m.ko" >> "$r/modules.order"
  }
  local m
  for m in "${WANT_MODULES[@]}"; do visit "$m"; done
}

# --- run -----------------------------------------------------------------------

mkdir -p "$cache/logs"
accel=(-accel tcg)
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then accel=(-accel kvm -accel tcg); fi
make_common

declare -A ROW=()
fail=0
# The commit the tested binaries come from ("+changes" when the work tree's
# code differed from it): a row is evidence for that tree only.
tree=$(git rev-parse --short=10 HEAD 2> /dev/null || echo unknown)
if [ "$tree" != unknown ] && ! git diff --quiet HEAD -- . ':!*.md' 2> /dev/null; then tree+="+changes"; fi
for k in "${kernels[@]}"; do
  fetch_kernel "$k"
  add_modules "$kdir" "$krel"
  img=$stage/initrd-$k.cpio
  (cd "$stage/root" && find . | cpio -o -H newc --quiet > "$img")
  log=$cache/logs/$k.log
  echo "kernel-matrix: $k ($krel): booting, tests '$filter'"
  t0=$SECONDS
  # Serial console to stdout; a panic or a hang ends in qemu's exit or the timeout.
  timeout "$timeout" qemu-system-x86_64 "${accel[@]}" -m 2048 -smp 2 -nographic -no-reboot \
    -kernel "$kdir/boot/vmlinuz-$krel" -initrd "$img" \
    -append "console=ttyS0 panic=-1 quiet loglevel=1 rdinit=/init" < /dev/null 2>&1 |
    sed -u 's/\r$//' | tee "$log" | grep --line-buffered -E '^\[ *(RUN|OK|FAILED) |^FSM-(KERNEL|BOOTED|RC|DONE|MODULE)' || true
  wall=$((SECONDS - t0))
  booted=$(sed -n 's/^FSM-BOOTED //p' "$log" | head -1)
  passed=$(grep -cE '^\[ +OK \] ' "$log" || true)
  failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$log" || true)
  done_line=$(grep -c '^FSM-DONE' "$log" || true)
  # Per command: on / off, and the hooks it goes without here.
  features=$(grep -o 'FSM-FEATURES .*' "$log" | sed 's/^FSM-FEATURES //' | awk '
    /^(agent|trace|trace --functions): / {c = $0; sub(/: .*/, "", c); order[++n] = c
      state[c] = /cannot run here/ ? "off" : "on"}
    /^  / && / [0-9]+\.[0-9]+ +no +/ && !/not needed here/ {
      sub(/^  +/, ""); sub(/  +[0-9]+\.[0-9]+ +no .*/, ""); miss[c] = miss[c] (miss[c] ? ", " : "") $0}
    END {for (i = 1; i <= n; i++) {c = order[i]
      printf "%s%s %s%s", (i > 1 ? "; " : ""), c, state[c], (miss[c] ? " (without " miss[c] ")" : "")}}')
  status=finished
  ran=$tests
  if refusal=$(grep -o 'FSM-AGENT-OFF .*' "$log"); then
    # Below the agent's minimum: the probe tests only, and the refusal must
    # be the one-sentence kind.
    ran="$tests (probes only: the agent refuses this kernel)"
    echo "kernel-matrix: $k: ${refusal#FSM-AGENT-OFF }"
    case $refusal in *"needs Linux "*" or newer: this kernel lacks "*) ;; *) fail=1 ;; esac
  fi
  if [ "$done_line" = 0 ]; then status="did not finish (see $log)"; fail=1; fi
  if [ "$failed" != 0 ] || [ "$passed" = 0 ]; then fail=1; fi
  grep -q '^FSM-RC .* [^0]$' "$log" && fail=1
  echo "kernel-matrix: $k: $passed passed, $failed failed, boot ${booted:-?} s (guest clock), wall $wall s, $status"
  skipped=$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$log" || true)
  ROW[$k]="| ${PKG[$k]} (${SUITE[$k]}) | $(grep -o 'FSM-KERNEL .*' "$log" | head -1 | cut -d' ' -f2) | $ran | $passed | $failed | $skipped | $wall s | $tree | $features |"
done

# --- docs/kernels.md: this run's rows replace the same kernels' rows for the ----
# --- same test set; rows of other test sets stay ------------------------------

doc=docs/kernels.md
if [ "$docs" = 1 ] && [ -f "$doc" ] && grep -q '^| --- ' "$doc"; then
  {
    sed '/^| --- /q' "$doc"
    for k in "${ORDER[@]}"; do
      {
        # The third column is the test set, with a note after it at times.
        grep -F "| ${PKG[$k]} (" "$doc" | awk -F' [|] ' -v t="$tests" -v mine="${ROW[$k]:+1}" \
          '!(mine && ($3 == t || index($3, t " (") == 1))' || true
        if [ -n "${ROW[$k]:-}" ]; then echo "${ROW[$k]}"; fi
      } | awk -F' [|] ' '{print ($3 ~ /^ci( |$)/ ? 0 : $3 ~ /^all( |$)/ ? 1 : 2) "\t" $0}' | sort -s -t"$(printf '\t')" -k1,1n | cut -f2-
    done
  } > "$doc.tmp"
  mv "$doc.tmp" "$doc"
  echo "kernel-matrix: results in $doc"
fi
exit $fail
