// Query latency of the HTTP API over a big store: fills a SQLite or
// ClickHouse store with synthetic flows ending evenly over the last --days
// days (unless it holds them already), serves it with the collector's API in
// process and asks /api/top and /api/timeseries over 1 h, 24 h and 7 days,
// one request at a time, --reps times each. Ranges end at the last whole
// hour, so the ClickHouse rollups can answer them; with ClickHouse every
// query runs twice: from the rollups, and from the raw table (a second store
// object over the same database with rollups off). One JSON line per query
// with p50/p95 and the table that answered.
//
//   fs_store_query --store sqlite:/tmp/q.db --rows 10000000
//   fs_store_query --store clickhouse://127.0.0.1:8123/flowscope --rows 10000000
#include <algorithm>
#include <chrono>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>

#include "collector/http_api.h"
#include "storage/clickhouse_store.h"
#include "storage/sqlite_store.h"

#include "flow_fill.h"

using namespace flowscope;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

uint64_t wall_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

struct Query {
  std::string endpoint, range, path;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP API query latency over a big store"};
  std::string store_url = "sqlite:/tmp/fs-store-query.db";
  uint64_t rows = 10'000'000;
  int days = 8, reps = 20;
  bool fill_only = false;
  app.add_option("--store", store_url, "sqlite:PATH or clickhouse://HOST:PORT/DATABASE");
  app.add_option("--rows", rows, "Flows in the store (filled when it holds none)");
  app.add_option("--days", days, "The flows end evenly over this many days before now");
  app.add_option("--reps", reps, "Requests per query");
  app.add_flag("--fill-only", fill_only, "Fill the store and exit");
  CLI11_PARSE(app, argc, argv);

  const bool ch = store_url.starts_with("clickhouse://");
  std::vector<std::pair<std::string, std::shared_ptr<FlowStore>>> stores;  // (source, store)
  if (ch) {
    ClickHouseOptions o;
    if (auto r = parse_clickhouse_url(store_url, o); !r) return fmt::print(stderr, "{}\n", r.error().message), 1;
    o.io_timeout = std::chrono::seconds(120);
    o.retention_1m = o.retention_5m = o.retention_1h = std::chrono::seconds(0);
    for (bool rollups : {true, false}) {
      o.use_rollups = rollups;
      auto s = ClickHouseStore::open(o);
      if (!s) return fmt::print(stderr, "{}\n", s.error().message), 1;
      stores.emplace_back(rollups ? "rollups" : "raw", std::shared_ptr<FlowStore>(std::move(*s)));
    }
  } else {
    auto s = SqliteStore::open({.path = store_url.substr(7)});
    if (!s) return fmt::print(stderr, "{}\n", s.error().message), 1;
    stores.emplace_back("rollups", std::shared_ptr<FlowStore>(std::move(*s)));  // as the API does
  }
  FlowStore& main_store = *stores.front().second;
  {
    const auto t0 = Clock::now();
    auto page = main_store.query({.limit = 1});
    if (!page) return fmt::print(stderr, "{}\n", page.error().message), 1;
    if (page->flows.empty()) {
      // Big batches: one request to ClickHouse, one transaction in SQLite.
      const fsbench::FillOptions fo{.rows = rows, .span_ns = uint64_t(days) * 86400 * kSec,
                                    .batch_rows = 50'000u, .exporters = 20};
      if (auto r = fsbench::fill(main_store, fo); !r)
        return fmt::print(stderr, "fill: {}\n", r.error().message), 1;
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      fmt::print("{{\"fill\":true,\"rows\":{},\"seconds\":{:.1f},\"rows_per_s\":{:.0f}}}\n", rows, s, double(rows) / s);
      std::fflush(stdout);
    }
  }
  if (fill_only) return 0;

  // Ranges end at the last whole hour: whole buckets of every rollup.
  const uint64_t hour = 3600 * kSec, end_s = wall_ns() / hour * hour / kSec;
  std::vector<Query> queries;
  for (auto [name, secs, interval] : {std::tuple{"1h", 3600, "1m"}, std::tuple{"24h", 86400, "15m"},
                                      std::tuple{"7d", 7 * 86400, "1h"}}) {
    const std::string range = fmt::format("from={}&to={}.999999999", end_s - uint64_t(secs), end_s - 1);
    queries.push_back({"top", name, "/api/top?group=process&by=bytes&limit=10&" + range});
    queries.push_back({"timeseries", name, fmt::format("/api/timeseries?interval={}&{}", interval, range)});
  }
  for (auto& [source, store] : stores) {
    ApiOptions o;
    o.port = 0;
    o.limits.query_timeout = std::chrono::seconds(120);
    auto api = ApiServer::start(o, store, nullptr, nullptr);
    if (!api) return fmt::print(stderr, "{}\n", api.error().message), 1;
    httplib::Client cl("127.0.0.1", (*api)->port());
    cl.set_keep_alive(true);
    cl.set_read_timeout(std::chrono::seconds(130));
    for (const auto& q : queries) {
      std::vector<double> ms;
      int failed = 0;
      size_t bytes = 0;
      for (int k = 0; k < reps; ++k) {
        const auto t0 = Clock::now();
        auto r = cl.Get(q.path);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (!r || r->status != 200) {
          if (failed++ == 0) fmt::print(stderr, "{}: {}\n", q.path, r ? r->body : httplib::to_string(r.error()));
        } else {
          bytes = r->body.size();
        }
      }
      std::sort(ms.begin(), ms.end());
      auto pct = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * double(ms.size())))]; };
      // The table that answers this query (the API's worker threads do not
      // report it): the same query once more on this thread.
      FlowFilter f{.from_ns = (end_s - (q.range == "1h" ? 3600 : q.range == "24h" ? 86400 : 7 * 86400)) * kSec,
                   .to_ns = end_s * kSec - 1};
      if (q.endpoint == "top")
        (void)store->top({.filter = f, .group = TopGroup::Process, .limit = 10});
      else
        (void)store->series({.filter = f, .interval_ns = (q.range == "1h" ? 60 : q.range == "24h" ? 900 : 3600) * kSec});
      const std::string table =
          ch ? ClickHouseStore::last_table() : SqliteStore::last_used_rollup() ? "flows_1m" : "flows";
      fmt::print(
          "{{\"store\":\"{}\",\"source\":\"{}\",\"table\":\"{}\",\"endpoint\":\"{}\",\"range\":\"{}\",\"reps\":{},"
          "\"failed\":{},\"p50_ms\":{:.1f},\"p95_ms\":{:.1f},\"max_ms\":{:.1f},\"answer_bytes\":{}}}\n",
          ch ? "clickhouse" : "sqlite", source, table, q.endpoint, q.range, reps, failed, pct(0.5), pct(0.95),
          ms.back(), bytes);
      std::fflush(stdout);
    }
  }
  return 0;
}
