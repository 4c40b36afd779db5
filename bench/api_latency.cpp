// HTTP API latency under concurrent clients: fills a SQLite store with
// synthetic flows (spread over the last 24 h), serves it with the
// collector's API in process, and has N clients each loop over one endpoint
// for a while. Prints p50/p99/max per endpoint (and how many answers were
// 503) as one JSON line each.
//
//   fs_api_latency --db /tmp/api.db --rows 1000000 --clients 50 --seconds 20
//   fs_api_latency --db /tmp/api.db --serve   # fill, print {"port":N}, serve until stdin closes
//                                             # (bench/console_bench.mjs measures the console on it)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>

#include "collector/http_api.h"
#include "storage/sqlite_store.h"

#include "flow_fill.h"

using namespace flowscope;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP API latency with concurrent clients over a filled store"};
  std::string db = "/tmp/fs-api-latency.db";
  uint64_t rows = 1'000'000;
  int clients = 50;
  double seconds = 20;
  double query_timeout = 10;
  unsigned workers = ApiLimits{}.query_workers, queue = ApiLimits{}.query_queue;
  std::vector<std::string> paths = {"/api/flows?from=-1h&limit=100",       "/api/flows?from=-24h&limit=100",
                                    "/api/top?from=-1h&group=pair",        "/api/top?from=-24h&group=pair",
                                    "/api/timeseries?from=-1h&interval=1m", "/api/timeseries?from=-24h&interval=15m"};
  app.add_option("--db", db, "SQLite file (filled when it holds fewer rows than --rows)");
  app.add_option("--rows", rows, "Flows in the store");
  app.add_option("--clients", clients, "Concurrent HTTP clients");
  app.add_option("--seconds", seconds, "Duration per endpoint");
  app.add_option("--query-timeout", query_timeout, "The API's per-query time limit, seconds");
  app.add_option("--path", paths, "Endpoints to measure (repeatable)");
  app.add_option("--query-workers", workers, "The API's query workers");
  app.add_option("--query-queue", queue, "The API's query queue");
  bool serve = false;
  uint16_t api_port = 0;
  app.add_option("--port", api_port, "The API's port (0: any free one)");
  app.add_flag("--serve", serve, "Fill the store, print {\"port\":N} and serve until stdin closes");
  CLI11_PARSE(app, argc, argv);

  auto store = SqliteStore::open({.path = db});
  if (!store) {
    fmt::print(stderr, "{}\n", store.error().message);
    return 1;
  }
  std::shared_ptr<SqliteStore> s = std::move(*store);
  {
    // The flows count is what a full /api/flows?limit=1 over all time says.
    const auto t0 = Clock::now();
    FlowQuery q;
    q.limit = 1;
    q.offset = rows - 1;
    auto page = s->query(q);
    if (!page || page->flows.empty()) {
      if (auto r = fsbench::fill(*s, {.rows = rows, .span_ns = 86400 * kSec}); !r) {
        fmt::print(stderr, "fill: {}\n", r.error().message);
        return 1;
      }
    }
    fmt::print(stderr, "store ready: {} rows ({:.1f} s)\n", rows,
               std::chrono::duration<double>(Clock::now() - t0).count());
  }
  ApiOptions o;
  o.port = api_port;
  o.limits.query_timeout = std::chrono::milliseconds(static_cast<int64_t>(query_timeout * 1000));
  o.limits.query_workers = workers;
  o.limits.query_queue = queue;
  auto api = ApiServer::start(o, s, nullptr, nullptr);
  if (!api) {
    fmt::print(stderr, "{}\n", api.error().message);
    return 1;
  }
  const uint16_t port = (*api)->port();
  if (serve) {
    fmt::print("{{\"port\":{}}}\n", port);
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return 0;
  }
  for (const auto& path : paths) {
    std::vector<std::vector<double>> lat(static_cast<size_t>(clients)), lat_ok(static_cast<size_t>(clients));
    std::atomic<uint64_t> ok{0}, busy{0}, timeout{0}, failed{0};
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
      threads.emplace_back([&, c] {
        httplib::Client cl("127.0.0.1", port);
        cl.set_keep_alive(true);
        cl.set_read_timeout(120);
        while (Clock::now() < end) {
          const auto t0 = Clock::now();
          auto r = cl.Get(path);
          const double took = std::chrono::duration<double>(Clock::now() - t0).count();
          lat[static_cast<size_t>(c)].push_back(took);
          if (!r) ++failed;
          else if (r->status == 200) ++ok, lat_ok[static_cast<size_t>(c)].push_back(took);
          else if (r->status == 503 && r->body.find("busy") != std::string::npos) ++busy;
          else if (r->status == 503) ++timeout;
          else ++failed;
        }
      });
    for (auto& t : threads) t.join();
    auto sorted = [](const std::vector<std::vector<double>>& per) {
      std::vector<double> all;
      for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
      std::sort(all.begin(), all.end());
      return all;
    };
    const auto all = sorted(lat), good = sorted(lat_ok);
    auto pct = [](const std::vector<double>& v, double p) {
      return v.empty() ? 0.0 : v[std::min(v.size() - 1, size_t(p * double(v.size())))] * 1000;
    };
    fmt::print("{{\"path\":\"{}\",\"rows\":{},\"clients\":{},\"requests\":{},\"ok\":{},\"busy_503\":{},"
               "\"time_limit_503\":{},\"failed\":{},\"p50_ms\":{:.1f},\"p99_ms\":{:.1f},\"max_ms\":{:.1f},"
               "\"ok_p50_ms\":{:.1f},\"ok_p99_ms\":{:.1f}}}\n",
               path, rows, clients, all.size(), ok.load(), busy.load(), timeout.load(), failed.load(), pct(all, 0.5),
               pct(all, 0.99), all.empty() ? 0.0 : all.back() * 1000, pct(good, 0.5), pct(good, 0.99));
    std::fflush(stdout);
  }
  return 0;
}
