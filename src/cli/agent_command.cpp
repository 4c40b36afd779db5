// `flowscope agent`
#include <memory>

#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "cli/commands.h"
#include "export/json_sink.h"

namespace flowscope::cli {

namespace {

struct AgentArgs {
  AgentOptions opts;
  double active_timeout_s = 60;
  double stats_s = 0;
};

int run_agent(AgentArgs& a, const GlobalOptions& global) {
  a.opts.verbose = global.verbose;
  a.opts.active_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.active_timeout_s * 1000));
  a.opts.stats_interval = std::chrono::milliseconds(static_cast<int64_t>(a.stats_s * 1000));
  auto agent = Agent::create(a.opts);
  if (!agent) {
    spdlog::error("{}", agent.error().message);
    return 1;
  }
  auto json = std::make_shared<JsonLinesSink>(stdout);
  (*agent)->add_sink(json);
  install_signal_handlers();
  spdlog::info("agent running; flows as JSON lines on stdout");
  auto r = (*agent)->run(g_stop);
  if (!r) {
    spdlog::error("{}", r.error().message);
    return 1;
  }
  if (json->failed()) {
    spdlog::error("writing to stdout failed");
    return 1;
  }
  return 0;
}

}  // namespace

Command add_agent_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<AgentArgs>();
  auto* cmd = app.add_subcommand("agent", "Report every TCP connection on this host as a flow record (JSON lines on stdout)");
  AgentOptions& o = args->opts;
  cmd->add_option("--active-timeout", args->active_timeout_s, "Seconds between interim records of a long-lived flow")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  cmd->add_option("--max-flows", o.max_flows, "Open connections tracked at once in the kernel")
      ->check(CLI::Range(1024u, 16u << 20))
      ->capture_default_str();
  cmd->add_option("--ringbuf-size", o.ringbuf_bytes, "Kernel-to-user ring buffer bytes (rounded up to a power of two)")
      ->check(CLI::Range(4096u, 1u << 30))
      ->capture_default_str();
  cmd->add_option("--netns", o.netns, "Only flows in this network namespace (path such as /var/run/netns/NAME, or inode)");
  cmd->add_option("--port", o.port, "Only flows with this local or remote port");
  cmd->add_option("--pid", o.pid, "Only flows owned by this process id");
  cmd->add_option("--cgroup", o.cgroup, "Only flows of this cgroup (path or cgroup id)");
  cmd->add_option("--stats", args->stats_s, "Print counters to stderr as JSON lines every SECONDS")
      ->check(CLI::Range(0.0, 86400.0));
  return {cmd, [args, &global] { return run_agent(*args, global); }};
}

}  // namespace flowscope::cli
