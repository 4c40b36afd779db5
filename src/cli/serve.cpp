#include "cli/serve.h"

#include "collector/api_params.h"

namespace flowscope::cli {

void add_serve_options(CLI::App& cmd, ServeArgs& a, bool http_addr_option) {
  cmd.add_option("--db", a.db, "SQLite file the flows are stored in (created if missing)")->capture_default_str();
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
  cmd.add_option("--query-timeout", a.query_timeout_s,
                 "Seconds an HTTP API query may run (from its arrival); past it the answer is 503")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
}

Result<Served> open_store(const ServeArgs& a, StoreWriterOptions wo) {
  auto retention = parse_duration_ns(a.retention);
  if (!retention) return fail("--retention: {}", retention.error().message);
  auto store = SqliteStore::open({.path = a.db});
  if (!store) return std::unexpected(store.error());
  Served s;
  s.store = std::move(*store);
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
  if (a.token_file) {
    auto t = read_token_file(*a.token_file);
    if (!t) return std::unexpected(t.error());
    o.token = *t;
  }
  return ApiServer::start(o, s.store, std::move(exporters), s.metrics);
}

void add_store_metrics(Served& s) {
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
  });
}

}  // namespace flowscope::cli
