// Top-N by the other end of each flow: `/api/top?group=remote_workload` or
// `group=remote_host`. The remote end is named as the fleet view names it
// (collector/attribution.h: the other end's own record, else the agents'
// ownership evidence), else it is its address. No store column holds this
// (a label is decided when asked, from the evidence stored by then), so the
// collector computes it from the records in range, for every backend alike,
// counting what /api/top counts: each record's share, each connection once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "collector/api_params.h"
#include "collector/ownership.h"
#include "storage/flow_store.h"

namespace flowscope {

enum class RemoteLevel { Workload, Host };
const char* to_string(RemoteLevel l);  // the group's name: remote_workload, remote_host

struct RemoteTopQuery {
  TopQuery top;  // filter, metric and limit (its group is not used)
  RemoteLevel level = RemoteLevel::Workload;
  uint64_t interval_ns = 0;  // each entry's time series, in buckets from `from`
};

// Records read for one answer at most; past it the caller is told to narrow.
inline constexpr uint64_t kMaxRemoteTopRecords = 2'000'000;

// Whether `p` asks for a remote group (then parse it with the function below).
bool is_remote_top(const Params& p);
// /api/top's parameters with group=remote_workload|remote_host, plus
// `interval` as /api/timeseries takes it (default: about 60 points).
Result<RemoteTopQuery> parse_remote_top_query(const Params& p, uint64_t now_ns);

struct RemoteTopEntry {
  std::string key;  // the workload or host, or the remote address
  bool attributed = false;
  TopEntry total;
  std::vector<SeriesPoint> points;  // zero-filled, one per bucket
};

Result<std::vector<RemoteTopEntry>> remote_top(FlowStore& store, const RemoteTopQuery& q, const OwnerRules& rules = {});

}  // namespace flowscope
