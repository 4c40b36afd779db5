// `flowscope agent`
#include <memory>

#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "cli/commands.h"
#include "export/ipfix_exporter.h"
#include "export/json_sink.h"

namespace flowscope::cli {

namespace {

struct AgentArgs {
  CaptureArgs capture;
  std::vector<std::string> ipfix;
  IpfixExportOptions ipfix_opts;
  double template_refresh_s = 60;
  bool no_json = false;
};

int run_agent(AgentArgs& a, const GlobalOptions& global) {
  auto agent = Agent::create(a.capture.resolve(global));
  if (!agent) {
    spdlog::error("{}", agent.error().message);
    return 1;
  }
  // Loaded and attached: from here on the agent needs (almost) no privilege.
  // Before the IPFIX sender thread exists, as capabilities are per thread.
  if (auto kept = (*agent)->drop_capabilities(); kept)
    spdlog::debug("capabilities kept after attaching: {}", *kept);
  else
    spdlog::warn("capabilities not dropped: {}", kept.error().message);
  if (a.no_json && a.ipfix.empty()) {
    spdlog::error("--no-json needs at least one --ipfix destination");
    return 1;
  }
  std::shared_ptr<IpfixExporter> ipfix;
  if (!a.ipfix.empty()) {
    a.ipfix_opts.template_refresh = std::chrono::milliseconds(static_cast<int64_t>(a.template_refresh_s * 1000));
    auto e = IpfixExporter::create(a.ipfix, a.ipfix_opts);
    if (!e) {
      spdlog::error("{}", e.error().message);
      return 1;
    }
    ipfix = *e;
    (*agent)->add_sink(ipfix);
  }
  auto json = std::make_shared<JsonLinesSink>(stdout);
  if (!a.no_json) (*agent)->add_sink(json);
  install_signal_handlers();
  if (ipfix) {
    std::string dests;
    for (const auto& u : a.ipfix) dests += (dests.empty() ? "" : ", ") + u;
    spdlog::info("agent running; flows as IPFIX to {}{}", dests, a.no_json ? "" : " and as JSON lines on stdout");
  } else {
    spdlog::info("agent running; flows as JSON lines on stdout");
  }
  auto r = (*agent)->run(g_stop);
  if (ipfix) {
    // Records still queued (the interim records of open flows at exit) get a
    // few seconds to leave, and an acknowledging collector to confirm them.
    ipfix->close(std::chrono::seconds(5));
    for (const auto& s : ipfix->stats()) {
      uint64_t dropped = s.dropped_queue_full + s.dropped_send_failed + s.dropped_at_exit;
      if (dropped) spdlog::warn("ipfix {}: {} records not delivered (queue full {}, send failed {}, at exit {})", s.url,
                                dropped, s.dropped_queue_full, s.dropped_send_failed, s.dropped_at_exit);
      if (s.window_evicted + s.unconfirmed)
        spdlog::warn("ipfix {}: {} records sent but never confirmed by the collector (left the replay window {}, "
                     "unconfirmed at a reconnect or at exit {})",
                     s.url, s.window_evicted + s.unconfirmed, s.window_evicted, s.unconfirmed);
    }
    // The exporters' final counts, after that wait.
    if (a.capture.stats_s > 0) std::fprintf(stderr, "{\"type\":\"ipfix_final\",%s}\n", ipfix->stats_fields().c_str());
  }
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
  add_capture_options(*cmd, args->capture);
  cmd->add_option("--ipfix", args->ipfix,
                  "Also export flows as IPFIX to udp://HOST:PORT or tcp://HOST:PORT (repeatable)");
  cmd->add_flag("--no-json", args->no_json, "No JSON lines on stdout (with --ipfix)");
  cmd->add_option("--ipfix-domain", args->ipfix_opts.domain, "IPFIX observation domain id")->capture_default_str();
  cmd->add_option("--ipfix-pen", args->ipfix_opts.pen,
                  "Private enterprise number of flowscope's IPFIX elements (default: 32473, the documentation PEN)")
      ->check(CLI::Range(1u, 0xffffffffu))
      ->capture_default_str();
  cmd->add_option("--ipfix-template-refresh", args->template_refresh_s, "Seconds between IPFIX template re-sends over UDP")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--ipfix-queue", args->ipfix_opts.queue_records,
                  "Records queued per IPFIX destination while it is slow or away; beyond, dropped and counted")
      ->check(CLI::Range(size_t{16}, size_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--ipfix-replay-window", args->ipfix_opts.replay_window,
                  "IPFIX over TCP: records kept until a flowscope collector acknowledges them, and sent again after "
                  "a reconnect; beyond, the oldest leave unconfirmed and are counted (0: keep none)")
      ->check(CLI::Range(size_t{0}, size_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--ipfix-max-message", args->ipfix_opts.udp_max_message,
                  "Largest IPFIX message over UDP in octets (keep below the path MTU)")
      ->check(CLI::Range(size_t{1024}, size_t{65000}))
      ->capture_default_str();
  return {cmd, [args, &global] { return run_agent(*args, global); }};
}

}  // namespace flowscope::cli
