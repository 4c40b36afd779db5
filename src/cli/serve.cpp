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

Result<std::unique_ptr<ApiServer>> start_api(const ServeArgs& a, Served& s, ApiServer::JsonFn exporters) {
  ApiOptions o;
  o.host = a.http_addr;
  o.port = a.http_port;
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
