// One stored flow: the neutral Flow (flow/flow.h) plus what the store adds on
// insert. Third-party exporters send unidirectional delta records without
// process or TCP details (those fields stay unset, stored as NULL); flowscope
// agents send bidirectional totals since the flow started with all of them.
#pragma once

#include <cstdint>
#include <string>

#include "flow/flow.h"

namespace flowscope {

struct FlowRow : Flow {
  FlowRow() = default;
  explicit FlowRow(Flow f) : Flow(std::move(f)) {}

  int64_t id = 0;  // assigned by the store
  // Filled by the store on insert: this record's share of the flow's totals
  // (for cumulative records, what grew since the flow's previous record), and
  // whether it is the flow's first record. Aggregates sum these, so a
  // long-lived flow reported many times is neither missed nor counted twice.
  uint64_t delta_bytes = 0;      // both directions: delta_bytes_out + delta_bytes_in
  uint64_t delta_bytes_out = 0;  // src -> dst (`bytes`; the agent: sent by the local end)
  uint64_t delta_bytes_in = 0;   // dst -> src (`rev_bytes`; the agent: received by the local end)
  uint64_t delta_packets = 0;  // both directions
  uint64_t delta_retrans = 0;
  bool first = true;
};

// A mirror record (the second end seen of one connection) keeps its own
// counters, but its share is already counted on the other end's records:
// aggregates see none of it, so a connection captured at both ends counts
// once. Stores call this after filling the deltas.
inline void count_once(FlowRow& r) {
  if (!r.mirror.value_or(false)) return;
  r.delta_bytes = r.delta_bytes_out = r.delta_bytes_in = r.delta_packets = r.delta_retrans = 0;
  r.first = false;
}

// The API's JSON form of a row (one object), keys from the field table.
std::string flow_row_json(const FlowRow& r);

}  // namespace flowscope
