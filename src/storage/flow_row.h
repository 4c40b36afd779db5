// One stored flow record, general enough for every exporter we ingest:
//
//  - third-party IPFIX/NetFlow exporters (softflowd, routers): unidirectional,
//    src -> dst, delta counters per record, no process or TCP details;
//  - flowscope's agent (in-process or over IPFIX): bidirectional TCP flows
//    with local = src, remote = dst, counters that are totals since the flow
//    started (interim records repeat them), and process, container, cgroup,
//    netns, RTT, retransmits, close reason and drop counts.
//
// Optional fields are std::optional (stored as NULL) so "unknown" never looks
// like zero.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow_record.h"
#include "net/cidr.h"

namespace flowscope {

struct FlowRow {
  int64_t id = 0;             // assigned by the store
  std::string exporter;       // exporter's address, or "local" for the in-process agent
  uint32_t domain = 0;        // IPFIX observation domain
  uint64_t start_ns = 0;      // Unix epoch nanoseconds
  uint64_t end_ns = 0;
  Ip16 src_ip{};              // 16-byte form (IPv4 mapped), see net/cidr.h
  Ip16 dst_ip{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t protocol = 6;
  std::string direction = "unknown";  // "outbound", "inbound" or "unknown"
  // Counters src -> dst and dst -> src (the reverse is 0 for unidirectional flows).
  uint64_t bytes = 0;
  uint64_t packets = 0;
  uint64_t rev_bytes = 0;
  uint64_t rev_packets = 0;
  bool bidirectional = false;
  // true: counters are totals since start_ns (the agent's interim records
  // repeat and grow them); false: counters cover this record only.
  bool cumulative = false;
  bool interim = false;       // the flow was still open when this record was made
  std::optional<uint32_t> retrans;
  std::optional<uint32_t> srtt_us;
  std::optional<uint32_t> rttvar_us;
  std::optional<std::string> close_reason;  // the agent's names: fin, rst_sent, ..., active
  std::optional<uint32_t> pid;
  std::optional<std::string> comm;
  std::optional<uint64_t> cgroup_id;
  std::optional<std::string> cgroup;
  std::optional<std::string> container_id;
  std::optional<uint32_t> netns;
  std::vector<DropCount> drops;

  // Filled by the store on insert: this record's share of the flow's totals
  // (for cumulative records, what grew since the flow's previous record), and
  // whether it is the flow's first record. Aggregates sum these, so a
  // long-lived flow reported many times is neither missed nor counted twice.
  uint64_t delta_bytes = 0;     // both directions
  uint64_t delta_packets = 0;   // both directions
  uint64_t delta_retrans = 0;
  bool first = true;

  int family() const { return ip16_is_v4(src_ip) ? 4 : 6; }
  uint64_t drops_total() const;
};

// The agent's record: local = src, remote = dst, bidirectional, cumulative.
// What any exporter sends: times, addresses, ports, protocol, direction,
// bytes and packets each way, interim. The agent's own fields stay unset.
FlowRow flow_row_basics(const FlowRecord& r, std::string exporter, uint32_t domain);
FlowRow flow_row_from_record(const FlowRecord& r, std::string exporter = "local", uint32_t domain = 0);

// The API's JSON form of a row (one object).
std::string flow_row_json(const FlowRow& r);

}  // namespace flowscope
