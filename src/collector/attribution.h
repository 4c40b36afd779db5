// Who is at the other end of a flow, decided when the API is asked, from the
// records stored at that moment (so no answer waits for evidence, and none
// shows a label that a later record could contradict):
//   "joined": the other end's own record (same conversation, the mirrored
//             5-tuple) names it: host, program, unit, container, process.
//             Exact: the agent at that end saw the socket.
//   "owner":  no record of the other end, but the agents' ownership
//             evidence names who held the remote address (and, where one
//             workload served the port, which) at the flow's start, with
//             nothing to contradict it (collector/ownership.h).
//   "none":   neither: the remote end is only an address; "unattributed"
//             says why (no_claim, edge, conflict, pending, shared_address).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "collector/ownership.h"
#include "storage/flow_store.h"

namespace flowscope {

// The name a person looks for: the systemd unit, else the program (the
// thread-group leader's comm), else the thread's comm; "" when none is known.
std::string workload_of(const Flow& f);

// The records of each given conversation, by id (paged through the store),
// that end at or after `since_ns`: every record of a connection ends after it
// began, so callers pass its earliest start less the clock skew, and the
// store reads from there (its time index) rather than every record it holds.
Result<std::vector<FlowRow>> conversation_rows(FlowStore& store, std::vector<uint64_t> ids, uint64_t since_ns = 0);

// Of `rows` (records of one conversation), the latest one of the end other
// than `r`'s; nullopt when only r's end was recorded.
std::optional<FlowRow> other_end(const FlowRow& r, const std::vector<const FlowRow*>& rows);

struct AttributionCounts {
  uint64_t joined = 0, owner = 0, none = 0;
  uint64_t unattributed[5] = {};  // of none, by OwnerVerdict (Owner's slot stays 0)
};

// For each row, a JSON object naming its remote end: "attribution" and the
// remote_* members (or "unattributed" and why).
Result<std::vector<nlohmann::json>> attribute(FlowStore& store, const std::vector<FlowRow>& rows,
                                              AttributionCounts* counts = nullptr, const OwnerRules& rules = {});
// The same for rows held elsewhere.
Result<std::vector<nlohmann::json>> attribute(FlowStore& store, std::span<const FlowRow* const> rows,
                                              AttributionCounts* counts = nullptr, const OwnerRules& rules = {});

// The same as JSON members (",\"attribution\":...") to append to each row's
// flow object.
Result<std::vector<std::string>> attribution_members(FlowStore& store, const std::vector<FlowRow>& rows,
                                                     AttributionCounts* counts = nullptr,
                                                     const OwnerRules& rules = {});

// A flow object (flow_row_json) with members appended.
std::string with_members(std::string object, const std::string& members);

}  // namespace flowscope
