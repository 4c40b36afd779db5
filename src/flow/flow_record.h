// A TCP flow as flowscope reports it, decoded from the kernel's raw record.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flow/kernel_abi.h"

namespace flowscope {

enum class Direction : uint8_t { Unknown, Outbound, Inbound };
enum class CloseReason : uint8_t { Active, Fin, RstSent, RstReceived, Refused, Timeout };

const char* to_string(Direction d);
const char* to_string(CloseReason c);

struct DropCount {
  std::string reason;  // kernel name without SKB_DROP_REASON_, e.g. "NETFILTER_DROP"
  uint64_t count = 0;
};

struct FlowRecord {
  bool interim = false;
  bool preexisting = false;  // opened before the agent started; start_ns is when we first saw it
  uint64_t start_ns = 0;     // Unix epoch nanoseconds
  uint64_t end_ns = 0;
  int family = 4;            // 4 or 6; IPv4-mapped IPv6 is reported as 4
  std::array<uint8_t, 16> local_ip{};  // 4 bytes used for family 4
  std::array<uint8_t, 16> remote_ip{};
  std::string local_addr;
  std::string remote_addr;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  Direction direction = Direction::Unknown;
  uint64_t bytes_sent = 0;      // payload bytes the peer acknowledged
  uint64_t bytes_received = 0;  // payload bytes received in order
  uint32_t segs_sent = 0;
  uint32_t segs_received = 0;
  uint32_t retrans_segs = 0;
  uint32_t srtt_us = 0;
  uint32_t rttvar_us = 0;
  CloseReason close = CloseReason::Fin;
  uint32_t pid = 0;  // 0: unknown
  std::string comm;
  uint64_t cgroup_id = 0;
  std::string cgroup;                       // filled by the cgroup resolver
  std::optional<std::string> container_id;  // filled by the cgroup resolver
  uint32_t netns = 0;
  std::vector<DropCount> drops;
  // IANA protocol number. The agent only sees TCP; flows decoded from other
  // IPFIX exporters can be anything (not part of the agent's JSON).
  uint8_t protocol = 6;

  uint64_t duration_ns() const { return end_ns > start_ns ? end_ns - start_ns : 0; }
};

using DropReasonNames = std::map<int64_t, std::string>;

// Pure decoding of a kernel record: payload bytes (SYN/FIN taken out), close
// reason, addresses, times. Cgroup path and container id are left empty.
FlowRecord decode_flow(const fs_flow& k, int64_t mono_to_real_ns, const DropReasonNames& names);

// The close reason implied by the kernel's flags, last state and socket error.
CloseReason close_reason(const fs_flow& k);

}  // namespace flowscope
