// Who talks to whom: /api/graph. Nodes are hosts, workloads, containers or
// processes (the end's own record names it, or, for an end no agent
// recorded, the agents' ownership evidence where it names the end at the
// graph's level: collector/attribution.h); any other end is its address,
// marked unattributed. Each connection (conversation) is counted
// once, as one edge from its client (the end that opened it) to its server,
// whether one or both ends were recorded. Computed from the stored records in
// the collector, so every backend answers the same.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "collector/api_params.h"
#include "collector/ownership.h"
#include "storage/flow_store.h"

namespace flowscope {

enum class GraphLevel { Host, Workload, Container, Process };

struct GraphQuery {
  FlowFilter filter;  // from_ns and to_ns set
  GraphLevel level = GraphLevel::Workload;
  uint32_t limit = 50;  // edges; the rest are summed into one "other" edge
};

inline constexpr uint32_t kMaxGraphEdges = 1'000;
// Records read for one graph at most; past it the caller is told to narrow.
inline constexpr uint64_t kMaxGraphRecords = 2'000'000;

Result<GraphQuery> parse_graph_query(const Params& p, uint64_t now_ns);
Result<nlohmann::json> build_graph(FlowStore& store, const GraphQuery& q, const OwnerRules& rules = {});

}  // namespace flowscope
