// flowscope: one binary, one subcommand per part.
#include <signal.h>

#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#if FLOWSCOPE_HAVE_BPF
#include "kernel/libbpf_log.h"
#endif

namespace flowscope::cli {

std::atomic<bool> g_stop{false};

namespace {
void on_signal(int) { g_stop.store(true); }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout or socket shows up as a write error
}

}  // namespace flowscope::cli

namespace {

void setup_logging(bool verbose) {
  auto logger = spdlog::stderr_color_mt("flowscope");
  logger->set_pattern("flowscope: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
#if FLOWSCOPE_HAVE_BPF
  flowscope::install_libbpf_logging(verbose);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  using namespace flowscope::cli;
  CLI::App app{"flowscope: eBPF network observability for Linux"};
  app.require_subcommand(1);
  // The project version from CMake, which is also the Debian package's version.
  app.set_version_flag("--version", "flowscope " FLOWSCOPE_VERSION, "Print the version and exit");
  GlobalOptions global;
  app.add_flag("-v,--verbose", global.verbose, "Verbose logs, including libbpf's");
  // Global options also after the subcommand (`flowscope agent -v`); the
  // subcommands created below inherit this.
  app.fallthrough();

  std::vector<Command> commands;
#if FLOWSCOPE_HAVE_BPF
  commands.push_back(add_agent_command(app, global));
#endif
  commands.push_back(add_collector_command(app, global));
#if FLOWSCOPE_HAVE_BPF
  commands.push_back(add_run_command(app, global));
  commands.push_back(add_trace_command(app, global));
  commands.push_back(add_features_command(app, global));
#endif
  commands.push_back(add_schema_command(app, global));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  setup_logging(global.verbose);
  for (auto& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return 0;
}
