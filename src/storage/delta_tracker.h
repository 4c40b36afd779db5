// Per-record shares of cumulative flows for append-only stores. flowscope
// agents report a long flow several times (interim records, then the final
// one), each with totals since the flow started; aggregates must count what
// grew since the flow's previous record, and count the flow once. A store
// that cannot look back cheaply (ClickHouse) keeps the open flows' last
// totals here, bounded: past `max_flows` the least recently seen is
// forgotten and counted (its next record then counts its whole totals).
//
// The rules are the SQLite store's, so both backends give the same answers.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

#include "storage/flow_row.h"

namespace flowscope {

// Identity of one flow across its records (interim and final share it).
std::string flow_identity(const FlowRow& r);

class DeltaTracker {
 public:
  explicit DeltaTracker(size_t max_flows) : max_(max_flows) {}
  // Fills r.delta_* and r.first from the flow's previous record.
  void account(FlowRow& r);
  size_t open() const { return open_.size(); }
  // The open flows' last totals, most recently seen first (to keep them
  // across a restart).
  template <class F>
  void for_each_open(F&& f) const {
    for (const auto& key : lru_) {
      const Totals& t = open_.at(key).first;
      f(key, t.bytes, t.rev_bytes, t.packets, t.retrans);
    }
  }
  // Takes back one saved flow; call oldest first. False when full or known.
  bool restore(const std::string& key, uint64_t bytes, uint64_t rev_bytes, uint64_t packets, uint64_t retrans);
  uint64_t evicted() const { return evicted_; }

 private:
  struct Totals {
    uint64_t bytes = 0, rev_bytes = 0;  // each way: the deltas keep the directions apart
    uint64_t packets = 0, retrans = 0;
  };
  size_t max_;
  uint64_t evicted_ = 0;
  std::list<std::string> lru_;  // most recently seen first
  std::unordered_map<std::string, std::pair<Totals, std::list<std::string>::iterator>> open_;
};

}  // namespace flowscope
