// Capture options shared by `flowscope agent` and `flowscope run`.
#include <unistd.h>

#include <charconv>
#include <fstream>

#include <fmt/format.h>

#include "cli/commands.h"

namespace flowscope::cli {

namespace {
constexpr uint64_t kMinFlows = 1024;
constexpr uint64_t kMaxFlows = 16u << 20;
}  // namespace

namespace {

std::optional<std::string> this_host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || !name[0]) return std::nullopt;
  return std::string(name);
}

// systemd's machine id: stable across renames, new addresses and reboots.
std::optional<std::string> this_host_id() {
  std::ifstream in("/etc/machine-id");
  std::string id;
  if (!(in >> id) || id.size() != 32 ||
      id.find_first_not_of("0123456789abcdef") != std::string::npos)
    return std::nullopt;
  return id;
}

}  // namespace

AgentOptions CaptureArgs::resolve(const GlobalOptions& global) const {
  AgentOptions o = opts;
  if (!o.host) o.host = this_host_name();
  if (!o.host_id) o.host_id = this_host_id();
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
      ->check(CLI::Validator(
          [](const std::string& v) -> std::string {
            uint64_t n = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || p != v.data() + v.size()) return v + " is not a number of flows";
            if (n < kMinFlows)
              return fmt::format(
                  "{} is below the minimum of {}: every TCP socket open at once on the host needs a slot (both ends of a "
                  "local connection count), and a smaller map would lose most flows to flow_map_full. The map is not "
                  "preallocated, so a large bound costs no memory while few connections are open",
                  n, kMinFlows);
            if (n > kMaxFlows) return fmt::format("{} is above the maximum of {}", n, kMaxFlows);
            return {};
          },
          fmt::format("{}-{}", kMinFlows, kMaxFlows)))
      ->capture_default_str();
  cmd.add_option("--ringbuf-size", o.ringbuf_bytes, "Kernel-to-user ring buffer bytes (rounded up to a power of two)")
      ->check(CLI::Range(4096u, 1u << 30))
      ->capture_default_str();
  cmd.add_option("--host", o.host,
                 "The host name every record carries (default: this host's name; its id comes from /etc/machine-id)");
  cmd.add_option("--netns", o.netns, "Only flows in this network namespace (path such as /var/run/netns/NAME, or inode)");
  cmd.add_option("--port", o.port, "Only flows with this local or remote port");
  cmd.add_option("--pid", o.pid, "Only flows owned by this process id");
  cmd.add_option("--cgroup", o.cgroup, "Only flows of this cgroup (path or cgroup id)");
  cmd.add_flag("--unspecified-drops", o.unspecified_drops,
               "Also attribute kernel frees without a drop reason (NOT_SPECIFIED) to flows");
  cmd.add_flag("--no-ownership-claims", [&o](int64_t) { o.ownership_claims = false; },
               "Send no ownership evidence (address and port claims) beside the flows");
  cmd.add_option("--stats", c.stats_s, "Print counters to stderr as JSON lines every SECONDS")
      ->check(CLI::Range(0.0, 86400.0));
}

}  // namespace flowscope::cli
