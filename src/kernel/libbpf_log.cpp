#include "kernel/libbpf_log.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>

#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

namespace flowscope {
namespace {

constexpr size_t kMaxKept = 64 * 1024;  // verifier logs can be megabytes
std::mutex g_mu;
std::string g_tail;
bool g_verbose = false;

int print_fn(enum libbpf_print_level level, const char* fmt, va_list args) {
  // A verifier log arrives as one message of any length; its end says why.
  va_list again;
  va_copy(again, args);
  char buf[4096];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n <= 0) {
    va_end(again);
    return 0;
  }
  std::string line;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    line.assign(buf, n);
  } else {
    line.resize(n + 1);
    vsnprintf(line.data(), line.size(), fmt, again);
    line.resize(n);
  }
  va_end(again);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  {
    std::lock_guard lk(g_mu);
    g_tail += line;
    g_tail += '\n';
    if (g_tail.size() > kMaxKept) g_tail.erase(0, g_tail.size() - kMaxKept);
  }
  if (g_verbose || level == LIBBPF_WARN) {
    if (level == LIBBPF_DEBUG)
      spdlog::debug("libbpf: {}", line);
    else if (level == LIBBPF_INFO)
      spdlog::info("libbpf: {}", line);
    else if (g_verbose)
      spdlog::warn("libbpf: {}", line);
    else
      spdlog::debug("libbpf: {}", line);  // shown with -v; summarised in errors
  }
  return n;
}

}  // namespace

void install_libbpf_logging(bool verbose) {
  g_verbose = verbose;
  libbpf_set_print(print_fn);
}

std::string take_libbpf_log() {
  std::lock_guard lk(g_mu);
  return std::exchange(g_tail, {});
}

}  // namespace flowscope
