// Subcommand registration: each part of flowscope adds its subcommand to the
// app and returns a runner that is called when it was chosen.
#pragma once

#include <atomic>
#include <functional>

#include <CLI/CLI.hpp>

#if FLOWSCOPE_HAVE_BPF
#include "agent/agent.h"
#endif

namespace flowscope::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

struct GlobalOptions {
  bool verbose = false;
};

// Set by SIGINT/SIGTERM; long-running commands stop when it turns true.
extern std::atomic<bool> g_stop;
void install_signal_handlers();

#if FLOWSCOPE_HAVE_BPF
// Capture options shared by `agent` and `run`.
struct CaptureArgs {
  AgentOptions opts;
  double active_timeout_s = 60;
  double stats_s = 0;
  AgentOptions resolve(const GlobalOptions& global) const;
};
void add_capture_options(CLI::App& cmd, CaptureArgs& c);

Command add_agent_command(CLI::App& app, const GlobalOptions& global);
Command add_run_command(CLI::App& app, const GlobalOptions& global);
Command add_trace_command(CLI::App& app, const GlobalOptions& global);
Command add_features_command(CLI::App& app, const GlobalOptions& global);
#endif
Command add_collector_command(CLI::App& app, const GlobalOptions& global);
Command add_schema_command(CLI::App& app, const GlobalOptions& global);

}  // namespace flowscope::cli
