#include "collector/ownership.h"

#include <algorithm>
#include <map>
#include <optional>

namespace flowscope {

const char* to_string(OwnerVerdict v) {
  switch (v) {
    case OwnerVerdict::Owner: return "owner";
    case OwnerVerdict::NoClaim: return "no_claim";
    case OwnerVerdict::Edge: return "edge";
    case OwnerVerdict::Conflict: return "conflict";
    case OwnerVerdict::Pending: return "pending";
  }
  return "?";
}

namespace {

std::string key_of(const OwnershipClaim& c) { return claimant_key(c.host.value_or(""), c.host_id.value_or("")); }

// Whether the union of `ranges` covers [lo, hi].
bool covers(std::vector<std::pair<uint64_t, uint64_t>> ranges, uint64_t lo, uint64_t hi) {
  std::sort(ranges.begin(), ranges.end());
  uint64_t reached = lo;
  for (const auto& [from, to] : ranges) {
    if (from > reached) break;
    reached = std::max(reached, to);
    if (reached >= hi) return true;
  }
  return reached >= hi;
}

bool same_workload(const OwnershipClaim& a, const OwnershipClaim& b) {
  return a.exe == b.exe && a.unit == b.unit && a.comm == b.comm && a.container_id == b.container_id &&
         a.netns == b.netns;
}

}  // namespace

OwnerDecision decide_owner(std::span<const OwnershipClaim> claims, std::span<const Claimant> claimants,
                           const Ip16& addr, uint16_t port, uint8_t protocol, uint64_t t, const OwnerRules& rules) {
  const uint64_t lo = t > rules.skew_ns ? t - rules.skew_ns : 0;
  const uint64_t hi = t + rules.skew_ns;
  OwnerDecision d;
  // Address claims overlapping the window, per agent.
  std::map<std::string, std::vector<const OwnershipClaim*>> by_agent;
  for (const auto& c : claims)
    if (c.addr == addr && c.port == 0 && c.from_ns <= hi && c.to_ns >= lo) by_agent[key_of(c)].push_back(&c);
  // Anyone who may still say something about the window must have said it.
  for (const auto& a : claimants) {
    if (a.stopped || a.reported_to_ns >= hi) continue;
    if (a.reported_to_ns + rules.linger_ns < t) continue;
    d.verdict = OwnerVerdict::Pending;
    return d;
  }
  if (by_agent.empty()) return d;
  if (by_agent.size() > 1) {
    d.verdict = OwnerVerdict::Conflict;
    return d;
  }
  const auto& [agent, mine] = *by_agent.begin();
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto* c : mine) ranges.emplace_back(c->from_ns, c->to_ns);
  if (!covers(std::move(ranges), lo, hi)) {
    d.verdict = OwnerVerdict::Edge;
    return d;
  }
  d.verdict = OwnerVerdict::Owner;
  d.host = mine.front();
  // The port's workload: the owner's port claims around t, if they agree.
  if (port == 0) return d;
  const OwnershipClaim* w = nullptr;
  for (const auto& c : claims) {
    if (c.addr != addr || c.port != port || c.protocol != protocol || key_of(c) != agent) continue;
    if (c.from_ns > hi || c.to_ns < lo) continue;
    if (w && !same_workload(*w, c)) return d;  // two workloads: name the host only
    if (w && w->pid != c.pid) d.one_pid = false;  // workers of one workload: no pid
    if (!w) w = &c;
  }
  d.workload = w;
  return d;
}

}  // namespace flowscope
