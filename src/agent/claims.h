// The agent's ownership evidence (flow/ownership.h), kept between report
// ticks. Pure bookkeeping, no kernel: the agent feeds it address changes
// (agent/address_watch.h) and its own flows, and writes what it returns.
//
//   Addresses: an address seen begins a range at that moment (the agent's
//   start for those present then); each tick() repeats a held claim
//   [since, now] for every address held, a heartbeat that extends the range;
//   a removal returns a released claim at once; stop() releases them all.
//   Ports: every inbound TCP flow (interim or final) is evidence that its
//   workload served (local address, local port) over [start, end]. Flows are
//   folded per (address, port, protocol, workload) into one held claim per
//   tick, with the earliest start and the latest end.
//   Loopback, link-local and unspecified addresses name no single host and
//   are never claimed.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "flow/flow.h"
#include "flow/ownership.h"

namespace flowscope {

class ClaimTracker {
 public:
  ClaimTracker(std::optional<std::string> host, std::optional<std::string> host_id)
      : host_(std::move(host)), host_id_(std::move(host_id)) {}

  // Address added at now_ns (Unix ns); nothing if already held.
  void address_added(const Ip16& addr, uint64_t now_ns);
  // Removed at now_ns: its released claim, or nothing if it was not held.
  std::optional<OwnershipClaim> address_removed(const Ip16& addr, uint64_t now_ns);
  // An agent flow; kept if it is evidence of a served port.
  void observe(const Flow& f);
  // Held claims for every address held and every port served since the last tick.
  std::vector<OwnershipClaim> tick(uint64_t now_ns);
  // The agent stops: ports served since the last tick (held), then every
  // address released at now_ns, then the stop marker.
  std::vector<OwnershipClaim> stop(uint64_t now_ns);
  size_t addresses() const { return since_.size(); }

 private:
  OwnershipClaim base(const Ip16& addr) const;
  void take_ports(std::vector<OwnershipClaim>& out);

  using PortKey = std::tuple<Ip16, uint16_t, uint8_t, std::optional<std::string>, std::optional<std::string>,
                             std::optional<std::string>, std::optional<std::string>, std::optional<uint32_t>,
                             std::optional<uint32_t>>;  // addr, port, protocol, exe, unit, comm, container, pid, netns
  std::optional<std::string> host_, host_id_;
  std::map<Ip16, uint64_t> since_;
  std::map<PortKey, std::pair<uint64_t, uint64_t>> ports_;  // -> earliest start, latest end
};

}  // namespace flowscope
