// `flowscope run`: the main job in one command. The agent captures flows and
// an in-process store keeps them (a SQLite file by default, or ClickHouse);
// the HTTP API answers on loopback.
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "cli/commands.h"
#include "cli/serve.h"
#include "collector/store_writer.h"

namespace flowscope::cli {

namespace {

struct RunArgs {
  ServeArgs serve;
  CaptureArgs capture;
};

int run_run(RunArgs& a, const GlobalOptions& global) {
  auto served = open_store(a.serve);
  if (!served) {
    spdlog::error("{}", served.error().message);
    return 1;
  }
  auto agent = Agent::create(a.capture.resolve(global));
  if (!agent) {
    spdlog::error("{}", agent.error().message);
    return 1;
  }
  Agent* ag = agent->get();
  (*agent)->add_sink(std::make_shared<StoreSink>(served->writer));
  add_store_metrics(*served);
  served->metrics->add_snapshot([ag](FamilyBuilder& b) {
    const auto s = ag->stats();
    b.counter("flowscope_agent_flows_emitted_total", "Flow records the kernel side emitted", double(s.flows_emitted));
    b.counter("flowscope_agent_records_received_total", "Flow records read from the ring buffer",
              double(s.records_received));
    b.counter("flowscope_agent_lost_total", "Flow records lost (flow map or ring buffer full)", double(s.lost()));
    b.gauge("flowscope_agent_open_flows", "TCP connections tracked now", double(s.open_flows));
  });
  auto writer = served->writer;
  auto api = start_api(a.serve, *served, [ag, writer](const ExporterPage&) {
    const auto s = ag->stats();
    const auto w = writer->stats();
    return nlohmann::json{
        {"exporters",
         {{{"exporter", "local"},
           {"transports", {"in-process"}},
           {"flows", s.records_received},
           {"lost", s.lost()},
           {"open_flows", s.open_flows}}}},
        {"store",
         {{"queued", w.queued}, {"written", w.written}, {"dropped", w.dropped}, {"failed", w.failed},
          {"queue_depth", w.queue_depth}}}};
  });
  if (!api) {
    spdlog::error("{}", api.error().message);
    return 1;
  }
  for (const auto& d : (*agent)->degraded()) spdlog::warn("{}", d);
  install_signal_handlers();
  spdlog::info("flowscope running: flows stored in {}, HTTP API on http://{}:{}", served->where, a.serve.http_addr,
               (*api)->port());
  auto r = (*agent)->run(g_stop);
  served->writer->drain();
  api->reset();
  const auto ws = served->writer->stats();
  spdlog::info("flowscope stopped: {} flows stored, {} dropped", ws.written, ws.dropped + ws.failed);
  if (!r) {
    spdlog::error("{}", r.error().message);
    return 1;
  }
  return 0;
}

}  // namespace

Command add_run_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run",
      "Capture every TCP connection, store flows (a SQLite file or ClickHouse) and serve the HTTP API on 127.0.0.1");
  add_serve_options(*cmd, args->serve, false);
  add_capture_options(*cmd, args->capture);
  return {cmd, [args, &global] { return run_run(*args, global); }};
}

}  // namespace flowscope::cli
