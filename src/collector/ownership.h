// Who owned an address at a moment, from the agents' time-ranged claims
// (flow/ownership.h). The rule is "a wrong label is worse than none": an
// owner is named only when exactly one agent claimed the address over the
// whole window [t - skew, t + skew], no other agent claimed any part of it,
// and every agent that could still send a contradicting claim has reported
// past the window. Anything else leaves the remote end unattributed, with
// the reason counted.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "flow/ownership.h"
#include "storage/flow_store.h"

namespace flowscope {

struct OwnerRules {
  // How far two hosts' clocks may differ (the same bound as the joins').
  uint64_t skew_ns = 5'000'000'000;
  // An agent silent for this long before a moment is not waited for: it
  // stopped or lost its connection, and its claims about that moment, if
  // any, would arrive past every bound the agent itself keeps.
  uint64_t linger_ns = 600'000'000'000;
};

enum class OwnerVerdict {
  Owner,     // one agent held the address over the whole window
  NoClaim,   // nobody claims it (no agent there)
  Edge,      // its claimant's range starts or ends inside the window
  Conflict,  // two agents claim it in the window
  Pending,   // an agent has not reported past the window yet
};
const char* to_string(OwnerVerdict v);

struct OwnerDecision {
  OwnerVerdict verdict = OwnerVerdict::NoClaim;
  const OwnershipClaim* host = nullptr;  // the address claim (Owner only)
  // The workload serving the port at t, when the owner's port claims agree
  // on one; nullptr otherwise (the host is still named).
  const OwnershipClaim* workload = nullptr;
  bool one_pid = true;  // the workload's claims name one process
};

// `claims`: every claim about `addr` overlapping the window (any port);
// `claimants`: the agents known (those silent for `linger` before t are
// not waited for). Pointers in the result point into `claims`.
OwnerDecision decide_owner(std::span<const OwnershipClaim> claims, std::span<const Claimant> claimants,
                           const Ip16& addr, uint16_t port, uint8_t protocol, uint64_t t, const OwnerRules& rules = {});

// Claim identity: the agent that made it.
inline std::string claimant_key(const std::string& host, const std::string& host_id) { return host_id + "/" + host; }

}  // namespace flowscope
