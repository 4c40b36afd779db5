#include "cli/serve.h"

#include "collector/api_params.h"
#include "storage/clickhouse_store.h"
#include "storage/sqlite_store.h"

namespace flowscope::cli {

void add_serve_options(CLI::App& cmd, ServeArgs& a, bool http_addr_option) {
  cmd.add_option("--db", a.db,
                 "SQLite file the flows are stored in (created if missing); short for --store sqlite:PATH")
      ->capture_default_str();
  cmd.add_option("--store", a.store,
                 "Where flows are stored: sqlite:PATH (the default, with --db's path) or "
                 "clickhouse://HOST:PORT/DATABASE (ClickHouse 18.16 or later, its HTTP port)");
  cmd.add_option("--store-credentials", a.store_credentials,
                 "File with the ClickHouse user and password (lines user=NAME, password=SECRET; mode 600)");
  cmd.add_option("--clickhouse-cluster", a.clickhouse_cluster,
                 "ClickHouse cluster name (remote_servers): <table>_local on every shard, Distributed tables "
                 "over them");
  cmd.add_option("--clickhouse-shard", a.clickhouse_shards,
                 "With --clickhouse-cluster: HOST:PORT (HTTP) of a shard, where the collector creates the tables "
                 "(repeatable; ClickHouse 18.16 has no ON CLUSTER without ZooKeeper)");
  cmd.add_option("--clickhouse-max-pending", a.clickhouse_max_pending,
                 "ClickHouse: flow records held in memory while the server is unreachable or slow; beyond, "
                 "records are dropped and counted")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
      ->capture_default_str();
  cmd.add_option("--retention-1m", a.retention_1m, "ClickHouse: keep the 1-minute rollup this long (0: keep all)")
      ->capture_default_str();
  cmd.add_option("--retention-5m", a.retention_5m, "ClickHouse: keep the 5-minute rollup this long (0: keep all)")
      ->capture_default_str();
  cmd.add_option("--retention-1h", a.retention_1h, "ClickHouse: keep the 1-hour rollup this long (0: keep all)")
      ->capture_default_str();
  cmd.add_option("--retention", a.retention, "Delete flows older than this (e.g. 12h, 7d, 30d; 0: keep all)")
      ->capture_default_str();
  if (http_addr_option) {
    cmd.add_option("--http-addr", a.http_addr,
                   "Address the HTTP API listens on; anything but loopback requires --token-file")
        ->capture_default_str();
    cmd.add_option("--token-file", a.token_file,
                   "File holding the bearer token the HTTP API requires (mode 600, at least 16 characters)");
  }
  cmd.add_option("--http-port", a.http_port, "Port of the HTTP API (0: any free port)")->capture_default_str();
  cmd.add_option("--allow-host", a.allow_hosts,
                 "Host name the HTTP API answers besides localhost, 127.x and [::1] when it needs no token "
                 "(repeatable; other Host headers get 421, against DNS rebinding)");
  cmd.add_option("--clock-skew", a.clock_skew_s,
                 "Seconds two agents' clocks may differ: both ends of a connection are joined, and an address's "
                 "owner named, only where this much difference cannot change the answer (docs/fleet.md)")
      ->check(CLI::Range(0.0, 300.0))
      ->capture_default_str();
  cmd.add_option("--query-timeout", a.query_timeout_s,
                 "Seconds an HTTP API query may run (from its arrival); past it the answer is 503")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
}

namespace {

Result<std::shared_ptr<ClickHouseStore>> open_clickhouse(const ServeArgs& a, std::string& where) {
  ClickHouseOptions o;
  if (auto r = parse_clickhouse_url(a.store, o); !r) return std::unexpected(r.error());
  if (a.store_credentials)
    if (auto r = read_clickhouse_credentials(*a.store_credentials, o); !r) return std::unexpected(r.error());
  o.cluster = a.clickhouse_cluster;
  o.max_pending_rows = a.clickhouse_max_pending;
  if (!a.clickhouse_shards.empty() && o.cluster.empty()) return fail("--clickhouse-shard needs --clickhouse-cluster");
  for (const auto& s : a.clickhouse_shards) {
    ClickHouseOptions shard;
    if (auto r = parse_clickhouse_url("clickhouse://" + s + "/x", shard); !r)
      return fail("--clickhouse-shard '{}': expected HOST:PORT", s);
    o.shards.emplace_back(shard.host, shard.port);
  }
  const std::pair<const char*, std::chrono::seconds*> rollups[] = {
      {a.retention_1m.c_str(), &o.retention_1m}, {a.retention_5m.c_str(), &o.retention_5m},
      {a.retention_1h.c_str(), &o.retention_1h}};
  for (const auto& [text, out] : rollups) {
    auto ns = parse_duration_ns(text);
    if (!ns) return fail("--retention-*: {}", ns.error().message);
    *out = std::chrono::seconds(*ns / 1'000'000'000ull);
  }
  where = a.store + (o.cluster.empty() ? "" : " (cluster " + o.cluster + ")");
  auto s = ClickHouseStore::open(o);
  if (!s) return std::unexpected(s.error());
  return std::shared_ptr<ClickHouseStore>(std::move(*s));
}

}  // namespace

Result<Served> open_store(const ServeArgs& a, StoreWriterOptions wo) {
  wo.conversations.skew_ns = static_cast<uint64_t>(a.clock_skew_s * 1e9);
  auto retention = parse_duration_ns(a.retention);
  if (!retention) return fail("--retention: {}", retention.error().message);
  Served s;
  if (a.store.starts_with("clickhouse://")) {
    auto store = open_clickhouse(a, s.where);
    if (!store) return std::unexpected(store.error());
    s.store = std::move(*store);
  } else {
    if (!a.store.empty() && !a.store.starts_with("sqlite:"))
      return fail("--store '{}': expected sqlite:PATH or clickhouse://HOST:PORT/DATABASE", a.store);
    if (a.store_credentials || !a.clickhouse_cluster.empty() || !a.clickhouse_shards.empty())
      return fail("--store-credentials and --clickhouse-cluster/--clickhouse-shard need --store clickhouse://...");
    const std::string path = a.store.empty() ? a.db : a.store.substr(7);
    if (path.empty()) return fail("--store sqlite: needs a path");
    auto store = SqliteStore::open({.path = path});
    if (!store) return std::unexpected(store.error());
    s.store = std::move(*store);
    s.where = path;
  }
  wo.retention = std::chrono::seconds(*retention / 1'000'000'000ull);
  s.writer = std::make_shared<StoreWriter>(s.store, wo);
  s.metrics = std::make_shared<Metrics>();
  return s;
}

Result<std::unique_ptr<ApiServer>> start_api(const ServeArgs& a, Served& s, ApiServer::ExportersFn exporters) {
  ApiOptions o;
  o.host = a.http_addr;
  o.port = a.http_port;
  for (const auto& h : a.allow_hosts) {
    if (h.empty() || h.size() > 253 || h.find_first_of(" /:[]") != std::string::npos)
      return fail("--allow-host '{}': expected a host name without port", h);
    o.allowed_hosts.push_back(h);
  }
  o.limits.query_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.query_timeout_s * 1000));
  o.owner_rules.skew_ns = static_cast<uint64_t>(a.clock_skew_s * 1e9);
  if (a.token_file) {
    auto t = read_token_file(*a.token_file);
    if (!t) return std::unexpected(t.error());
    o.token = *t;
  }
  return ApiServer::start(o, s.store, std::move(exporters), s.metrics);
}

void add_store_metrics(Served& s) {
  // Traffic per local workload (bounded: docs/collector.md, "Metrics").
  auto traffic = std::make_shared<TrafficMetrics>();
  s.writer->on_rows([traffic](const std::vector<FlowRow>& rows) { traffic->add(rows); });
  s.metrics->add_snapshot([traffic](FamilyBuilder& b) { traffic->collect(b); });
  s.metrics->add_snapshot([store = s.store, writer = s.writer](FamilyBuilder& b) {
    const auto st = store->stats();
    const auto ws = writer->stats();
    b.counter("flowscope_store_rows_inserted_total", "Flow records committed to the store", double(st.rows_inserted));
    b.counter("flowscope_store_batches_total", "Insert transactions committed", double(st.batches));
    b.counter("flowscope_store_insert_errors_total", "Flow records lost in failed inserts", double(st.insert_errors));
    b.counter("flowscope_store_retention_deleted_total", "Flow records deleted by retention",
              double(st.retention_deleted));
    b.gauge("flowscope_store_rows", "Flow records stored", double(st.rows));
    b.gauge("flowscope_store_disk_bytes", "Size of the database file and its WAL", double(st.bytes_on_disk));
    b.counter("flowscope_store_queue_drops_total", "Flow records dropped because the store queue was full",
              double(ws.dropped));
    b.gauge("flowscope_store_queue_depth", "Flow records waiting to be written", double(ws.queue_depth));
    b.gauge("flowscope_store_pending_rows", "Flow records encoded and waiting for the server (ClickHouse)",
            double(st.pending_rows));
    b.counter("flowscope_store_retries_total", "Insert requests sent again after a failure (ClickHouse)",
              double(st.retries));
    b.counter("flowscope_store_tracker_evicted_total",
              "Open flows the delta tracker forgot at its bound (ClickHouse); their next record counts in full",
              double(st.tracker_evicted));
  });
}

}  // namespace flowscope::cli
