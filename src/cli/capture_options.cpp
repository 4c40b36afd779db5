// Capture options shared by `flowscope agent` and `flowscope run`.
#include "cli/commands.h"

namespace flowscope::cli {

AgentOptions CaptureArgs::resolve(const GlobalOptions& global) const {
  AgentOptions o = opts;
  o.verbose = global.verbose;
  o.active_timeout = std::chrono::milliseconds(static_cast<int64_t>(active_timeout_s * 1000));
  o.stats_interval = std::chrono::milliseconds(static_cast<int64_t>(stats_s * 1000));
  return o;
}

void add_capture_options(CLI::App& cmd, CaptureArgs& c) {
  AgentOptions& o = c.opts;
  cmd.add_option("--active-timeout", c.active_timeout_s, "Seconds between interim records of a long-lived flow")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  cmd.add_option("--max-flows", o.max_flows, "Open connections tracked at once in the kernel")
      ->check(CLI::Range(1024u, 16u << 20))
      ->capture_default_str();
  cmd.add_option("--ringbuf-size", o.ringbuf_bytes, "Kernel-to-user ring buffer bytes (rounded up to a power of two)")
      ->check(CLI::Range(4096u, 1u << 30))
      ->capture_default_str();
  cmd.add_option("--netns", o.netns, "Only flows in this network namespace (path such as /var/run/netns/NAME, or inode)");
  cmd.add_option("--port", o.port, "Only flows with this local or remote port");
  cmd.add_option("--pid", o.pid, "Only flows owned by this process id");
  cmd.add_option("--cgroup", o.cgroup, "Only flows of this cgroup (path or cgroup id)");
  cmd.add_flag("--unspecified-drops", o.unspecified_drops,
               "Also attribute kernel frees without a drop reason (NOT_SPECIFIED) to flows");
  cmd.add_option("--stats", c.stats_s, "Print counters to stderr as JSON lines every SECONDS")
      ->check(CLI::Range(0.0, 86400.0));
}

}  // namespace flowscope::cli
