// Ownership evidence: which host (and, for a port, which workload) held a
// local address over a time range, as an agent saw it. Agents send claims
// beside their flows (docs/ipfix.md, template 260); the collector keeps them
// as time ranges and names a flow's remote end by the owner at the flow's
// start (collector/ownership.h), or leaves it unattributed.
//
// A claim covers [from_ns, to_ns]. `held` says the agent still held the
// address at to_ns (its next claim will extend the range); a released claim
// ends the range at to_ns: the address was removed, or the agent stopped.
// port 0 claims the whole address for the host; a non-zero port claims that
// TCP/UDP port of the address for the workload that served it. A released
// claim of the unspecified address (all zero) is the agent's stop marker: it
// claims nothing more until it starts again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "net/ip16.h"

namespace flowscope {

struct OwnershipClaim {
  std::string exporter;                // who sent it (set by the collector)
  std::optional<std::string> host;     // the claiming agent's host name
  std::optional<std::string> host_id;  // and its stable id
  Ip16 addr{};
  uint16_t port = 0;     // 0: the address itself
  uint8_t protocol = 0;  // with a port: 6 or 17
  uint64_t from_ns = 0;  // Unix epoch nanoseconds
  uint64_t to_ns = 0;
  bool held = true;  // still held at to_ns; false: released at to_ns
  // With a port: the workload serving it (the fields mean what the flow's do).
  std::optional<std::string> exe;
  std::optional<std::string> unit;
  std::optional<std::string> comm;
  std::optional<std::string> container_id;
  std::optional<uint32_t> pid;
  std::optional<uint32_t> netns;

  bool operator==(const OwnershipClaim&) const = default;
};

}  // namespace flowscope
