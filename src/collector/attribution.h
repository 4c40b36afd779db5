// Who is at the other end of a flow, decided when the API is asked, from the
// records stored at that moment (so no answer waits for evidence, and none
// shows a label that a later record could contradict):
//   "joined": the other end's own record (same conversation, the mirrored
//             5-tuple) names it: host, program, unit, container, process.
//             Exact: the agent at that end saw the socket.
//   "none":   no record of the other end; the remote end is only an address.
// Ownership by address ranges ("owner") is not derived: an address alone
// never names a workload here (docs/fleet.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/flow_store.h"

namespace flowscope {

// The name a person looks for: the systemd unit, else the program (the
// thread-group leader's comm), else the thread's comm; "" when none is known.
std::string workload_of(const Flow& f);

// The records of each given conversation, by id (paged through the store).
Result<std::vector<FlowRow>> conversation_rows(FlowStore& store, std::vector<uint64_t> ids);

// Of `rows` (records of one conversation), the latest one of the end other
// than `r`'s; nullopt when only r's end was recorded.
std::optional<FlowRow> other_end(const FlowRow& r, const std::vector<const FlowRow*>& rows);

// For each row, the JSON members (",\"attribution\":...") naming its remote
// end, to append to its flow object.
Result<std::vector<std::string>> attribution_members(FlowStore& store, const std::vector<FlowRow>& rows);

// A flow object (flow_row_json) with members appended.
std::string with_members(std::string object, const std::string& members);

}  // namespace flowscope
