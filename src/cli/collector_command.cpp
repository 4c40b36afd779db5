// `flowscope collector`: receive IPFIX (and NetFlow v9) over UDP and TCP,
// store flows (SQLite or ClickHouse), answer queries over HTTP.
#include <thread>

#include <spdlog/spdlog.h>

#include "net/cidr.h"
#include "cli/commands.h"
#include "cli/serve.h"
#include "collector/collector.h"
#include "collector/http_api.h"

namespace flowscope::cli {

namespace {

struct CollectorArgs {
  ServeArgs serve;
  std::string ipfix_addr = "127.0.0.1";
  uint16_t udp_port = 4739;
  uint16_t tcp_port = 4739;
  bool no_udp = false;
  bool no_tcp = false;
  std::vector<std::string> allow;
  double template_lifetime_s = 1800;
  CollectorOptions limits;  // the TCP input's and the decoder's bounds
  double tcp_idle_s = 300, tcp_message_s = 10;
};

int run_collector(CollectorArgs& a) {
  CollectorOptions co = a.limits;
  co.tcp_idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.tcp_idle_s * 1000));
  co.tcp_message_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.tcp_message_s * 1000));
  co.host = a.ipfix_addr;
  co.udp_port = a.udp_port;
  co.tcp_port = a.tcp_port;
  co.udp = !a.no_udp;
  co.tcp = !a.no_tcp;
  co.decoder.template_lifetime = std::chrono::seconds(static_cast<int64_t>(a.template_lifetime_s));
  for (const auto& s : a.allow) {
    auto c = parse_cidr(s);
    if (!c) {
      spdlog::error("--allow: {}", c.error().message);
      return 1;
    }
    co.allow.push_back(*c);
  }
  // Secure by default: listening beyond loopback needs an explicit list of
  // exporters (--allow 0.0.0.0/0 --allow ::/0 to take anyone).
  if (!is_loopback_host(co.host) && co.allow.empty()) {
    spdlog::error("IPFIX listeners on {} (not loopback) need --allow CIDR for the exporters' networks", co.host);
    return 1;
  }
  if (!is_loopback_host(a.serve.http_addr) && !a.serve.token_file) {
    spdlog::error("the HTTP API on {} (not loopback) needs --token-file", a.serve.http_addr);
    return 1;
  }
  // A short store queue (four transactions): the decoder waits for room,
  // so a backlog stays in the decode queue as datagrams, ten times smaller
  // than decoded rows.
  StoreWriterOptions wo;
  wo.queue_max = 4 * wo.batch_max;
  auto served = open_store(a.serve, wo);
  if (!served) {
    spdlog::error("{}", served.error().message);
    return 1;
  }
  auto collector = Collector::start(co, served->writer);
  if (!collector) {
    spdlog::error("{}", collector.error().message);
    return 1;
  }
  Collector* c = collector->get();
  add_store_metrics(*served);
  served->metrics->add_snapshot([c](FamilyBuilder& b) { c->collect_metrics(b); });
  auto api = start_api(a.serve, *served, [c](const ExporterPage& p) { return c->exporters_json(p.after, p.limit); });
  if (!api) {
    spdlog::error("{}", api.error().message);
    return 1;
  }
  install_signal_handlers();
  if (co.udp && (*collector)->udp_rcvbuf() < co.udp_rcvbuf)
    spdlog::warn("UDP receive buffer is {} bytes (asked for {}); raise net.core.rmem_max", (*collector)->udp_rcvbuf(),
                 co.udp_rcvbuf);
  spdlog::info("collector running: IPFIX on {} udp/{} tcp/{}, HTTP API on http://{}:{}{}, database {}", co.host,
               co.udp ? std::to_string((*collector)->udp_port()) : "off",
               co.tcp ? std::to_string((*collector)->tcp_port()) : "off", a.serve.http_addr, (*api)->port(),
               a.serve.token_file ? " (bearer token required)" : "", served->where);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("collector stopping");
  api->reset();
  collector->reset();  // decodes what is queued
  served->writer->drain();
  const auto ws = served->writer->stats();
  spdlog::info("collector stopped: {} flows stored, {} dropped", ws.written, ws.dropped + ws.failed);
  return 0;
}

}  // namespace

Command add_collector_command(CLI::App& app, const GlobalOptions&) {
  auto args = std::make_shared<CollectorArgs>();
  auto* cmd = app.add_subcommand("collector",
                                 "Receive IPFIX/NetFlow v9, store flows (SQLite or ClickHouse), serve the HTTP API");
  cmd->add_option("--ipfix-addr", args->ipfix_addr, "Address the IPFIX listeners bind (beyond loopback needs --allow)")
      ->capture_default_str();
  cmd->add_option("--udp-port", args->udp_port, "IPFIX UDP port")->capture_default_str();
  cmd->add_option("--tcp-port", args->tcp_port, "IPFIX TCP port")->capture_default_str();
  cmd->add_flag("--no-udp", args->no_udp, "No UDP listener");
  cmd->add_flag("--no-tcp", args->no_tcp, "No TCP listener");
  cmd->add_option("--allow", args->allow, "Accept exporters in this network only (repeatable; IPv4 or IPv6 CIDR)");
  cmd->add_option("--template-lifetime", args->template_lifetime_s,
                  "Seconds a UDP template lives without refresh (>= 3x the exporters' refresh interval)")
      ->check(CLI::Range(1.0, 86400.0 * 7))
      ->capture_default_str();
  // Bounds against hostile or broken exporters (README, "Security").
  auto* l = &args->limits;
  cmd->add_option("--max-tcp-connections", l->max_tcp_connections, "IPFIX TCP connections open at once, in all")
      ->check(CLI::Range(size_t{1}, size_t{65536}))
      ->capture_default_str();
  cmd->add_option("--max-tcp-connections-per-source", l->max_tcp_connections_per_source,
                  "IPFIX TCP connections open at once from one exporter address")
      ->check(CLI::Range(size_t{1}, size_t{65536}))
      ->capture_default_str();
  cmd->add_option("--tcp-idle-timeout", args->tcp_idle_s, "Seconds an IPFIX TCP connection may send nothing")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--tcp-message-timeout", args->tcp_message_s,
                  "Seconds an IPFIX message over TCP may take from its first byte to its last")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--max-sessions-per-source", l->decoder.max_domains_per_source,
                  "Decoder sessions (session, observation domain) one exporter address may hold; beyond, its least "
                  "recently used is evicted")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-template-bytes-per-source", l->decoder.max_template_bytes_per_source,
                  "Template memory one exporter address may hold (bytes); beyond, its least recently used is evicted")
      ->check(CLI::Range(size_t{4096}, size_t{1} << 30))
      ->capture_default_str();
  add_serve_options(*cmd, args->serve, true);
  return {cmd, [args] { return run_collector(*args); }};
}

}  // namespace flowscope::cli
