// What `flowscope collector` and `flowscope run` share: the store (a SQLite
// file, or ClickHouse), the store writer with retention, and the HTTP API
// with its security checks.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "collector/http_api.h"
#include "collector/metrics.h"
#include "collector/store_writer.h"
#include "base/result.h"
#include "storage/flow_store.h"

namespace flowscope::cli {

struct ServeArgs {
  std::string db = "flowscope.db";
  std::string store;  // sqlite:PATH or clickhouse://HOST:PORT/DATABASE; empty: sqlite:<db>
  std::optional<std::string> store_credentials;
  std::string clickhouse_cluster;
  std::vector<std::string> clickhouse_shards;  // HOST:PORT (HTTP) of every shard
  std::string retention = "7d";
  std::string retention_1m = "7d", retention_5m = "90d", retention_1h = "365d";  // ClickHouse rollups
  size_t clickhouse_max_pending = 1'000'000;  // rows held while ClickHouse is away
  std::string http_addr = "127.0.0.1";
  uint16_t http_port = 9740;
  std::optional<std::string> token_file;
  std::vector<std::string> allow_hosts;  // Host names the loopback API answers besides loopback ones
  double query_timeout_s = 10;
  // The largest clock difference between two agents' hosts: joins and
  // ownership decisions allow it (docs/fleet.md).
  double clock_skew_s = 5;
};

void add_serve_options(CLI::App& cmd, ServeArgs& a, bool http_addr_option);

struct Served {
  std::shared_ptr<FlowStore> store;
  std::string where;  // the store, for log lines
  std::shared_ptr<StoreWriter> writer;
  std::shared_ptr<Metrics> metrics;
};

// Opens the store and starts the writer (with retention; the other writer
// options from `wo`).
Result<Served> open_store(const ServeArgs& a, StoreWriterOptions wo = {});
// Starts the API (after the collector, so exporters() can see it).
Result<std::unique_ptr<ApiServer>> start_api(const ServeArgs& a, Served& s, ApiServer::ExportersFn exporters);
// Adds the store's and writer's families to /metrics.
void add_store_metrics(Served& s);

}  // namespace flowscope::cli
