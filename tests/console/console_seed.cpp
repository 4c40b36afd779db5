// Serves the collector's HTTP API (and so the web console) over a SQLite
// store holding a few known flows, for the browser tests. Prints
// {"port":N,"now_ns":T} once the API listens, then serves until stdin closes.
//
//   fs_console_seed --db /tmp/x.db [--token-file FILE]
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "collector/http_api.h"
#include "net/cidr.h"
#include "storage/sqlite_store.h"

using namespace flowscope;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

uint64_t wall_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

FlowRow flow(uint64_t end_ns, const char* src, uint16_t sport, const char* dst, uint16_t dport, const char* comm,
             uint32_t pid, uint64_t bytes, uint64_t rev_bytes, CloseReason close) {
  FlowRow r;
  r.exporter = "local";
  r.end_ns = end_ns;
  r.start_ns = end_ns - 2 * kSec;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.direction = Direction::Outbound;
  r.bytes = bytes;
  r.packets = bytes / 1000 + 1;
  r.rev_bytes = rev_bytes;
  r.rev_packets = rev_bytes / 1000 + 1;
  r.bidirectional = true;
  r.retrans = 0;
  r.close = close;
  r.comm = comm;
  r.pid = pid;
  r.host = pid % 2 ? "web-1" : "db-1";  // two hosts for the host group
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The HTTP API over a store of known flows, for the console's browser tests"};
  std::string db, token_file;
  app.add_option("--db", db, "SQLite file (created)")->required();
  app.add_option("--token-file", token_file, "Bearer token the API requires");
  CLI11_PARSE(app, argc, argv);

  auto opened = SqliteStore::open({.path = db});
  if (!opened) {
    std::cerr << "fs_console_seed: " << opened.error().message << "\n";
    return 1;
  }
  std::shared_ptr<SqliteStore> store = std::move(*opened);
  ApiOptions o;
  o.port = 0;
  if (!token_file.empty()) {
    auto t = read_token_file(token_file);
    if (!t) {
      std::cerr << "fs_console_seed: " << t.error().message << "\n";
      return 1;
    }
    o.token = *t;
  }
  auto api = ApiServer::start(o, store, nullptr, nullptr);
  if (!api) {
    std::cerr << "fs_console_seed: " << api.error().message << "\n";
    return 1;
  }
  const uint16_t port = (*api)->port();

  // The flows the tests look for (docs/console.md names them too).
  const uint64_t now = wall_ns();
  std::vector<FlowRow> rows;
  for (int i = 0; i < 3; ++i)
    rows.push_back(flow(now - (60 + 120 * i) * kSec, "10.0.0.1", static_cast<uint16_t>(40000 + i), "10.0.0.2", 443,
                        "curl", 1001, 1'048'576, 20'000, CloseReason::Fin));
  rows.push_back(flow(now - 90 * kSec, "10.0.0.3", 8080, "10.0.0.4", 51000, "nginx", 1002, 5'000'000, 3000,
                      CloseReason::Fin));
  rows.back().direction = Direction::Inbound;
  rows.push_back(flow(now - 100 * kSec, "fd00::1", 41000, "fd00::2", 5432, "postgres", 1003, 4096, 70'000,
                      CloseReason::RstReceived));
  rows.back().retrans = 4;
  rows.push_back(flow(now - 110 * kSec, "10.0.0.5", 42000, "10.0.0.6", 9, "refuser", 1004, 0, 0,
                      CloseReason::Refused));
  rows.push_back(flow(now - 120 * kSec, "10.0.0.7", 43000, "10.0.0.8", 80, "dropper", 1005, 2000, 0,
                      CloseReason::Timeout));
  rows.back().drops = {{"NO_SOCKET", 3}, {"TCP_CSUM", 1}};
  rows.push_back(flow(now - 130 * kSec, "10.0.0.9", 44000, "10.0.0.10", 80, "<img src=x onerror=alert(1)>", 1006,
                      777, 0, CloseReason::Fin));
  rows.push_back(flow(now - 140 * kSec, "10.0.0.1", 45000, "10.0.0.53", 53, "resolver", 1007, 60, 120,
                      CloseReason::Fin));
  rows.back().protocol = 17;
  rows.back().close.reset();
  // The console's own polling, as an agent on this host would record it.
  rows.push_back(flow(now - 30 * kSec, "127.0.0.1", 46000, "127.0.0.1", port, "apiself", 1008, 300, 9000,
                      CloseReason::Fin));
  // Three hours old: outside the default hour, inside "last 6h".
  rows.push_back(flow(now - 3 * 3600 * kSec, "10.0.0.11", 47000, "10.0.0.12", 22, "oldjob", 1009, 12345, 678,
                      CloseReason::Fin));
  if (auto ok = store->insert(rows); !ok) {
    std::cerr << "fs_console_seed: " << ok.error().message << "\n";
    return 1;
  }
  std::cout << fmt::format("{{\"port\":{},\"now_ns\":{}}}", port, now) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
