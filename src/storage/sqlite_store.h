// FlowStore on SQLite: one file, WAL (readers never wait for the writer),
// batches inserted in one transaction each, indexes for time-range and
// address queries, and every value bound as a parameter.
#pragma once

#include <memory>
#include <string>

#include "storage/flow_store.h"

namespace flowscope {

struct SqliteOptions {
  std::string path;
  // Flows whose cumulative counters the store tracks to compute per-record
  // deltas (open flows); beyond this, the oldest are forgotten and counted.
  size_t max_tracked_flows = 1 << 20;
  // Answer top() and series() from the per-minute rollup where the range
  // and filter allow (off: always from the flows; for tests).
  bool use_rollups = true;
};

class SqliteStore : public FlowStore {
 public:
  static Result<std::unique_ptr<SqliteStore>> open(const SqliteOptions& opts);
  ~SqliteStore() override;

  Result<void> insert(std::vector<FlowRow>& rows) override;
  Result<void> insert_marked(std::vector<FlowRow>& rows, const std::vector<DeliveryMark>& marks) override;
  Result<std::vector<DeliveryMark>> delivery_marks() override;
  Result<FlowPage> query(const FlowQuery& q) override;
  Result<std::vector<TopEntry>> top(const TopQuery& q) override;
  Result<std::vector<SeriesPoint>> series(const SeriesQuery& q) override;
  Result<std::vector<std::string>> complete(const CompleteQuery& q) override;
  Result<void> insert_claims(const std::vector<OwnershipClaim>& claims) override;
  Result<std::vector<OwnershipClaim>> claims(const ClaimQuery& q) override;
  Result<std::vector<Claimant>> claimants(uint64_t since_ns) override;
  Result<uint64_t> expire(uint64_t cutoff_ns) override;
  StoreStats stats() override;
  // Whether this thread's last top() or series() read the rollup.
  static bool last_used_rollup();

  struct Impl;

 private:
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowscope
