#include "kernel/system.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <linux/capability.h>
#include <linux/magic.h>

#include "kernel/handles.h"

namespace flowscope {

namespace {

bool has_effective_cap(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return data[cap / 32].effective & (1u << (cap % 32));
}

}  // namespace

Result<void> check_bpf_privileges() {
  // What loading and attaching tracing programs takes without root. Kernels
  // before 5.8 have neither capability and ask for CAP_SYS_ADMIN instead,
  // which still satisfies both.
  struct Need {
    int cap;
    const char* name;
    const char* why;
  };
  static constexpr Need kNeeds[] = {
      {CAP_BPF, "CAP_BPF", "to create BPF maps and load BPF programs"},
      {CAP_PERFMON, "CAP_PERFMON", "to load tracing programs and attach them to tracepoints"},
  };
  if (has_effective_cap(CAP_SYS_ADMIN)) return {};
  for (const auto& n : kNeeds) {
    if (!has_effective_cap(n.cap)) {
      return fail("missing capability {}: flowscope needs it {}; run as root or grant CAP_BPF and CAP_PERFMON", n.name,
                  n.why);
    }
  }
  return {};
}

Result<void> ensure_tracefs() {
  struct statfs fs {};
  for (const char* p : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
    if (statfs(p, &fs) == 0 && fs.f_type == TRACEFS_MAGIC) return {};
  }
  if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0) {
    return fail_errno(errno, "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}", std::strerror(errno));
  }
  return {};
}

namespace {

// Whether some process, bind mount or /var/run/netns entry holds
// the network namespace with this inode (a namespace nothing holds is gone).
bool netns_exists(uint32_t ino) {
  auto is = [&](const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && st.st_ino == ino;
  };
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/var/run/netns", ec))
    if (is(e.path())) return true;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (!name.empty() && name[0] >= '0' && name[0] <= '9' && is(e.path().string() + "/ns/net")) return true;
  }
  // Namespaces kept by a bind mount elsewhere (container runtimes).
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, field;
    f >> id >> parent >> dev >> root >> point;
    while (f >> field && field != "-") {
    }
    if (f >> field && field == "nsfs" && is(point)) return true;
  }
  return false;
}

}  // namespace

Result<uint32_t> resolve_netns(const std::string& spec) {
  uint32_t ino = 0;
  auto [ptr, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), ino);
  if (ec == std::errc() && ptr == spec.data() + spec.size() && ino != 0) {
    if (!netns_exists(ino))
      return fail("network namespace {}: no such namespace (no process or mount holds one with that inode; "
                  "`ls -L -i /proc/PID/ns/net` shows a process's)", spec);
    return ino;
  }
  struct stat st {};
  if (stat(spec.c_str(), &st) != 0) {
    return fail_errno(errno, "network namespace '{}': {}", spec, std::strerror(errno));
  }
  struct statfs fs {};
  if (statfs(spec.c_str(), &fs) == 0 && fs.f_type != NSFS_MAGIC) {
    return fail("'{}' is not a network namespace (expected a path like /var/run/netns/NAME or /proc/PID/ns/net, or an inode number)", spec);
  }
  return static_cast<uint32_t>(st.st_ino);
}

Result<void> run_in_netns(const std::string& path, const std::function<void()>& fn) {
  Fd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return fail_errno(errno, "cannot open network namespace {}: {}", path, std::strerror(errno));
  Result<void> r;
  std::thread t([&] {
    if (setns(ns.get(), CLONE_NEWNET) != 0) {
      r = fail_errno(errno, "cannot enter network namespace {}: {}", path, std::strerror(errno));
      return;
    }
    fn();
  });
  t.join();
  return r;
}

uint32_t current_netns() {
  struct stat st {};
  if (stat("/proc/thread-self/ns/net", &st) != 0) return 0;
  return static_cast<uint32_t>(st.st_ino);
}

int64_t monotonic_to_realtime_offset_ns() {
  // Bracket the realtime read between two monotonic reads to halve the error.
  timespec m1{}, r{}, m2{};
  clock_gettime(CLOCK_MONOTONIC, &m1);
  clock_gettime(CLOCK_REALTIME, &r);
  clock_gettime(CLOCK_MONOTONIC, &m2);
  auto ns = [](const timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; };
  return ns(r) - (ns(m1) + ns(m2)) / 2;
}

void raise_memlock_limit() {
  rlimit r{RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MEMLOCK, &r);
}

}  // namespace flowscope
