// `flowscope features`: what each subcommand can and cannot do on this
// kernel, and why — the same probes the agent and the tracer run at start-up.
#include <sys/utsname.h>

#include <cstdio>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "kernel/features.h"
#include "kernel/system.h"

namespace flowscope::cli {

Command add_features_command(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("features",
                                 "Show what each subcommand can do on this kernel: every hook it uses, the kernel "
                                 "version that brings it, whether this kernel has it, and what is lost without it");
  return {cmd, [] {
            // Trial loads need the same privileges as the agent.
            if (auto r = check_bpf_privileges(); !r) {
              spdlog::error("{}", r.error().message);
              return 1;
            }
            // As the agent does: classic tracepoints are looked up in tracefs.
            if (auto r = ensure_tracefs(); !r) spdlog::warn("{}", r.error().message);
            const KernelProbe probe = KernelProbe::open();
            if (!probe.has_btf()) spdlog::warn("{}", probe.btf_error());
            utsname u{};
            uname(&u);
            std::vector<CommandReport> reports;
            for (const char* c : {"agent", "trace", "trace --functions", "collector"})
              reports.push_back(probe_command(probe, c));
            // `run` is the agent and the collector in one process.
            reports.push_back({"run", reports[0].check() ? "the agent's features (above): runs here"
                                                         : "the agent's features (above): cannot run here",
                               {}});
            fmt::print("{}", format_reports(fmt::format("{} ({})", u.release, u.machine), reports));
            fmt::print("\nOnly trace --functions uses kprobes; every other command runs on tracepoints.\n");
            std::fflush(stdout);
            return 0;
          }};
}

}  // namespace flowscope::cli
