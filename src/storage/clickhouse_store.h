// FlowStore on ClickHouse, through its HTTP interface (cpp-httplib).
//
// Writes: insert() computes each record's share of its flow (DeltaTracker),
// encodes the rows in RowBinary and queues them; a sender thread posts the
// queue in requests of at most `batch_rows` rows, at least once per
// `flush_every`. When the server is unreachable, requests are retried with
// back-off while the queue holds at most `max_pending_rows`; what does not
// fit is dropped and counted (insert_errors). When it answers but is slower
// than the input, insert() waits for room instead (at most io_timeout), so
// the collector's own queue, and through it a TCP exporter, slow down. A request that may have
// reached the server is never sent twice: its rows carry consecutive ids and
// the sender checks which arrived before sending again.
//
// Tables (versioned migrations in `schema_migrations`): `flows`, the raw
// records, a MergeTree partitioned by day; `flows_1m`, `flows_5m`,
// `flows_1h`, SummingMergeTree rollups fed by materialized views, keeping
// the low-cardinality dimensions. Queries use the coarsest rollup that
// answers exactly, else the raw table. Retention drops whole partitions.
//
// Works with ClickHouse 18.16 (Debian 12) and later: the SQL is the subset
// both accept.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/flow_store.h"

namespace flowscope {

inline constexpr int kClickHouseMinMajor = 18;
inline constexpr int kClickHouseMinMinor = 16;

struct ClickHouseOptions {
  std::string host;
  uint16_t port = 8123;
  std::string database;
  std::string user = "default";
  std::string password;
  // Cluster name from the servers' remote_servers: tables are made on every
  // shard as <t>_local, with Distributed tables <t> over them.
  std::string cluster;
  // Cluster mode: every shard's HTTP endpoint, where start() creates the
  // tables (the node above may be one of them).
  std::vector<std::pair<std::string, uint16_t>> shards;
  size_t max_tracked_flows = 1 << 20;
  size_t batch_rows = 50'000;                // rows per insert request at most
  std::chrono::milliseconds flush_every{1000};  // a partial batch waits no longer
  size_t max_pending_rows = 1'000'000;       // queued for the server; beyond: wait (slow) or drop (away)
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds io_timeout{10000};
  std::chrono::milliseconds max_backoff{5000};
  // Retention of the rollups (0: keep); the raw table's comes from expire().
  std::chrono::seconds retention_1m{std::chrono::hours(24 * 7)};
  std::chrono::seconds retention_5m{std::chrono::hours(24 * 90)};
  std::chrono::seconds retention_1h{std::chrono::hours(24 * 365)};
  bool use_rollups = true;  // false: every query reads the raw table
};

// "clickhouse://HOST[:PORT]/DATABASE" into host, port and database.
Result<void> parse_clickhouse_url(std::string_view url, ClickHouseOptions& o);
// Whether a server's version() ("18.16.1", "24.3.2.23") is one flowscope works with.
bool clickhouse_version_supported(std::string_view version);
// A credentials file: lines "user=NAME" and "password=SECRET" ('#' comments).
Result<void> read_clickhouse_credentials(const std::string& path, ClickHouseOptions& o);

class ClickHouseStore : public FlowStore {
 public:
  // Checks the server (reachable, credentials, database, version), applies
  // the migrations and starts the sender. Fails with one line on any of it.
  static Result<std::unique_ptr<ClickHouseStore>> open(const ClickHouseOptions& opts);
  ~ClickHouseStore() override;  // sends what is queued (for io_timeout at most), then stops

  Result<void> insert(std::vector<FlowRow>& rows) override;
  Result<FlowPage> query(const FlowQuery& q) override;
  Result<std::vector<TopEntry>> top(const TopQuery& q) override;
  Result<std::vector<SeriesPoint>> series(const SeriesQuery& q) override;
  Result<std::vector<std::string>> complete(const CompleteQuery& q) override;
  Result<void> insert_claims(const std::vector<OwnershipClaim>& claims) override;
  Result<std::vector<OwnershipClaim>> claims(const ClaimQuery& q) override;
  Result<std::vector<Claimant>> claimants(uint64_t since_ns) override;
  Result<uint64_t> expire(uint64_t cutoff_ns) override;
  StoreStats stats() override;
  Result<void> sync(std::chrono::milliseconds timeout) override;

  // The table that answered this thread's last top() or series() ("flows",
  // "flows_1m", ...): for tests and the debug log.
  static std::string last_table();
  static constexpr int kSchemaVersion = 4;

  struct Impl;

 private:
  explicit ClickHouseStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowscope
