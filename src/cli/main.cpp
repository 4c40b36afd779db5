// flowscope: one binary, one subcommand per part.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "export/json_sink.h"
#include "kernel/libbpf_log.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout shows up as a write error
}

void setup_logging(bool verbose) {
  auto logger = spdlog::stderr_color_mt("flowscope");
  logger->set_pattern("flowscope: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  flowscope::install_libbpf_logging(verbose);
}

int run_agent(const flowscope::AgentOptions& opts) {
  auto agent = flowscope::Agent::create(opts);
  if (!agent) {
    spdlog::error("{}", agent.error().message);
    return 1;
  }
  auto json = std::make_shared<flowscope::JsonLinesSink>(stdout);
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

int main(int argc, char** argv) {
  CLI::App app{"flowscope: eBPF network observability for Linux"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Verbose logs, including libbpf's");

  flowscope::AgentOptions aopts;
  auto* agent = app.add_subcommand("agent", "Report every TCP connection on this host as a flow record (JSON lines on stdout)");
  double active_timeout_s = 60, stats_s = 0;
  agent->add_option("--active-timeout", active_timeout_s, "Seconds between interim records of a long-lived flow")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  agent->add_option("--max-flows", aopts.max_flows, "Open connections tracked at once in the kernel")
      ->check(CLI::Range(1024u, 16u << 20))
      ->capture_default_str();
  agent->add_option("--ringbuf-size", aopts.ringbuf_bytes, "Kernel-to-user ring buffer bytes (rounded up to a power of two)")
      ->check(CLI::Range(4096u, 1u << 30))
      ->capture_default_str();
  agent->add_option("--netns", aopts.netns, "Only flows in this network namespace (path such as /var/run/netns/NAME, or inode)");
  agent->add_option("--port", aopts.port, "Only flows with this local or remote port");
  agent->add_option("--pid", aopts.pid, "Only flows owned by this process id");
  agent->add_option("--cgroup", aopts.cgroup, "Only flows of this cgroup (path or cgroup id)");
  agent->add_option("--stats", stats_s, "Print counters to stderr as JSON every SECONDS")->check(CLI::Range(0.0, 86400.0));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  setup_logging(verbose);

  if (agent->parsed()) {
    aopts.verbose = verbose;
    aopts.active_timeout = std::chrono::milliseconds(static_cast<int64_t>(active_timeout_s * 1000));
    aopts.stats_interval = std::chrono::milliseconds(static_cast<int64_t>(stats_s * 1000));
    return run_agent(aopts);
  }
  return 0;
}
