// The neutral flow: what every producer (the agent, any IPFIX or NetFlow v9
// exporter) and every consumer (JSON lines, IPFIX export, storage, the API)
// agree a flow is. It knows nothing of the kernel: the agent converts its BPF
// record into a Flow (agent/kernel_record.h), the IPFIX decoder converts
// messages into Flows.
//
// Orientation: src is the side the record was made on and dst the other one.
// For the agent that is local -> remote; for third-party exporters it is
// source -> destination as they report it. Counters src -> dst are `bytes` and
// `packets`, the other way `rev_bytes` and `rev_packets` (0 for unidirectional
// records).
//
// A field an exporter does not send is std::nullopt, never 0: "unknown" must
// not read as "none". Every field is defined once, with its names and wire
// forms, in flow/fields.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flow/ownership.h"
#include "net/ip16.h"

namespace flowscope {

enum class Direction : uint8_t { Unknown, Outbound, Inbound };
enum class CloseReason : uint8_t { Active, Fin, RstSent, RstReceived, Refused, Timeout };

const char* to_string(Direction d);
const char* to_string(CloseReason c);
std::optional<Direction> direction_from_string(std::string_view s);
std::optional<CloseReason> close_reason_from_string(std::string_view s);

struct DropCount {
  std::string reason;  // kernel name without SKB_DROP_REASON_, e.g. "NETFILTER_DROP"
  uint64_t count = 0;
  bool operator==(const DropCount&) const = default;
};

struct Flow {
  std::string exporter;  // who reported it: exporter address, or "local" for the in-process agent
  std::optional<std::string> host;     // the reporting agent's host name
  std::optional<std::string> host_id;  // and its stable id (/etc/machine-id)
  uint32_t domain = 0;   // IPFIX observation domain (NetFlow v9: source id)
  uint64_t start_ns = 0;  // Unix epoch nanoseconds
  uint64_t end_ns = 0;
  Ip16 src_ip{};  // 16-byte form, IPv4 mapped (net/ip16.h)
  Ip16 dst_ip{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t protocol = 6;  // IANA protocol number
  Direction direction = Direction::Unknown;
  uint64_t bytes = 0;  // payload bytes src -> dst (the agent: acknowledged by the peer)
  uint64_t packets = 0;
  uint64_t rev_bytes = 0;  // dst -> src (the agent: received in order)
  uint64_t rev_packets = 0;
  bool bidirectional = false;  // rev_* are measured, not just absent
  // true: counters are totals since start_ns (the agent's interim records
  // repeat and grow them); false: counters cover this record only.
  bool cumulative = false;
  bool interim = false;      // the flow was still open when this record was made
  bool preexisting = false;  // its opening was not seen (before the agent, or skipped): start_ns is when first seen
  std::optional<uint32_t> retrans;
  std::optional<uint32_t> srtt_us;
  std::optional<uint32_t> rttvar_us;
  std::optional<CloseReason> close;
  std::optional<uint32_t> pid;
  std::optional<std::string> comm;
  std::optional<std::string> exe;   // the program: comm of the thread-group leader
  std::optional<std::string> unit;  // systemd unit or scope from the cgroup path
  std::optional<uint64_t> cgroup_id;
  std::optional<std::string> cgroup;
  std::optional<std::string> container_id;
  std::optional<uint32_t> netns;
  std::vector<DropCount> drops;
  // Set by the collector (collector/conversations.h): the connection this
  // record belongs to, the same id on the records of both of its ends; and
  // whether this end's records are the second seen of a connection whose
  // first end is counted already (aggregates skip their share).
  std::optional<uint64_t> conversation;
  std::optional<bool> mirror;

  int family() const { return ip16_is_v4(src_ip) ? 4 : 6; }
  uint64_t duration_ns() const { return end_ns > start_ns ? end_ns - start_ns : 0; }
  uint64_t drops_total() const;
};

// Where flows go: JSON lines, IPFIX export, the store.
class FlowSink {
 public:
  virtual ~FlowSink() = default;
  virtual void write(const Flow& f) = 0;
  // Ownership evidence (flow/ownership.h); sinks that cannot carry it ignore it.
  virtual void write_claim(const OwnershipClaim&) {}
  // Called after each batch of records and at shutdown.
  virtual void flush() {}
  // Extra counters for the agent's --stats line, as JSON object members
  // without the braces ("name":value,...); empty if none.
  virtual std::string stats_fields() const { return {}; }
};

}  // namespace flowscope
