// The one definition of every flow field: its name in the agent's JSON lines,
// in the API, in storage, on the IPFIX wire (with the RFC 5610 description a
// collector learns it from), its NetFlow v9 equivalent and one line of
// documentation. The JSON line writer, the IPFIX templates, encoder and the
// decoder's enterprise elements, the SQLite schema, binder and reader, the
// API's JSON and docs/schema.md are all generated from this table, so adding
// a field is one entry here plus its capture (docs/architecture.md).
//
// The table is a tuple, not an array: each entry keeps its member's C++ type,
// so the generated code is as fast as code written by hand (for_each_field
// unrolls at compile time; there is no dispatch per field).
#pragma once

#include <cstdint>
#include <string_view>
#include <tuple>

#include "flow/flow.h"
#include "ipfix/ie.h"

namespace flowscope::schema {

enum class Sql : uint8_t { Integer, Text, Blob };

// Marks an IPFIX element as flowscope's own, under the PEN the operator
// configures (ipfix::kDefaultPen unless --ipfix-pen says otherwise).
inline constexpr uint32_t kOwnPen = 1;

// An IPFIX information element (RFC 7011/7012; RFC 5610 for the type record).
struct Ie {
  uint16_t id = 0;     // 0: the field has no element of its own
  uint32_t pen = 0;    // 0: IANA; kOwnPen; or another PEN (29305: RFC 5103 reverse elements)
  std::string_view name;  // IANA name, or the enterprise element's RFC 5610 name
  ipfix::DataType type = ipfix::DataType::octetArray;
  ipfix::Semantics semantics = ipfix::Semantics::default_;
  ipfix::Units units = ipfix::Units::none;
  uint16_t length = 0;    // on the wire; ipfix::kVarLen for strings
  uint16_t max_text = 0;  // strings: the longest value sent (keeps records far below any MTU)
  uint16_t id_v6 = 0;     // addresses: the IPv6 element (id is the IPv4 one)
  std::string_view name_v6;
};

// Representation hints where the C++ type alone does not say it.
enum Hint : uint8_t {
  kPlain = 0,
  kRecordKind = 1,     // bool shown as "interim" / "final"
  kZeroIsUnknown = 2,  // on the IPFIX wire 0 or "" means "not known" (decoded as nullopt)
};

template <class T>
struct Field {
  T Flow::*member;
  std::string_view name;    // the field's name in docs and code
  std::string_view json;    // key in the agent's JSON lines; "": not in them
  std::string_view api;     // key in the API's flow objects
  std::string_view column;  // storage column
  Sql sql;
  Ie ie;
  std::string_view v9;      // the NetFlow v9 field (RFC 3954) that carries it, "" if none
  std::string_view doc;
  uint8_t hints = kPlain;
  using Type = T;
};

// Deduces Field<T> from the member pointer (clang before 17 does not deduce
// template arguments of aggregates without a guide).
template <class T>
Field(T Flow::*, std::string_view, std::string_view, std::string_view, std::string_view, Sql, Ie, std::string_view,
      std::string_view) -> Field<T>;
template <class T>
Field(T Flow::*, std::string_view, std::string_view, std::string_view, std::string_view, Sql, Ie, std::string_view,
      std::string_view, uint8_t) -> Field<T>;

using ipfix::DataType;
using ipfix::Semantics;
using ipfix::Units;
constexpr uint16_t kVar = ipfix::kVarLen;

// Table order is the storage column order and the order on the IPFIX wire.
inline constexpr auto kFields = std::tuple{
    Field{&Flow::exporter, "exporter", "", "exporter", "exporter", Sql::Text, {}, "",
          "Who reported the flow: the exporter's address, or \"local\" for the in-process agent"},
    Field{&Flow::domain, "domain", "", "domain", "domain", Sql::Integer, {}, "source id (header)",
          "IPFIX observation domain id from the message header (NetFlow v9: source id)"},
    Field{&Flow::host, "host", "host", "host", "host", Sql::Text,
          {20, kOwnPen, "flowscopeHostName", DataType::string, Semantics::default_, Units::none, kVar, 64}, "",
          "The host the agent runs on (--host, default the host name)", kZeroIsUnknown},
    Field{&Flow::host_id, "host_id", "host_id", "host_id", "host_id", Sql::Text,
          {21, kOwnPen, "flowscopeHostId", DataType::string, Semantics::default_, Units::none, kVar, 64}, "",
          "Stable id of that host (/etc/machine-id), unchanged when it is renamed or readdressed", kZeroIsUnknown},
    Field{&Flow::start_ns, "start_ns", "start_ns", "start_ns", "start_ns", Sql::Integer,
          {152, 0, "flowStartMilliseconds", DataType::dateTimeMilliseconds, Semantics::default_, Units::none, 8},
          "FIRST_SWITCHED (22), or 152",
          "Flow start, Unix epoch nanoseconds (milliseconds on the IPFIX wire)"},
    Field{&Flow::end_ns, "end_ns", "end_ns", "end_ns", "end_ns", Sql::Integer,
          {153, 0, "flowEndMilliseconds", DataType::dateTimeMilliseconds, Semantics::default_, Units::none, 8},
          "LAST_SWITCHED (21), or 153",
          "Time of the record (last activity, close, or interim report), Unix epoch nanoseconds"},
    Field{&Flow::src_ip, "src_ip", "local_addr", "src_addr", "src_ip", Sql::Blob,
          {8, 0, "sourceIPv4Address", DataType::ipv4Address, Semantics::default_, Units::none, 4, 0, 27,
           "sourceIPv6Address"},
          "IPV4_SRC_ADDR (8), IPV6_SRC_ADDR (27)",
          "Source address; for the agent the local end (16 bytes in storage, IPv4 mapped)"},
    Field{&Flow::dst_ip, "dst_ip", "remote_addr", "dst_addr", "dst_ip", Sql::Blob,
          {12, 0, "destinationIPv4Address", DataType::ipv4Address, Semantics::default_, Units::none, 4, 0, 28,
           "destinationIPv6Address"},
          "IPV4_DST_ADDR (12), IPV6_DST_ADDR (28)", "Destination address; for the agent the remote end"},
    Field{&Flow::src_port, "src_port", "local_port", "src_port", "src_port", Sql::Integer,
          {7, 0, "sourceTransportPort", DataType::unsigned16, Semantics::identifier, Units::none, 2},
          "L4_SRC_PORT (7)", "Source port; for the agent the local port"},
    Field{&Flow::dst_port, "dst_port", "remote_port", "dst_port", "dst_port", Sql::Integer,
          {11, 0, "destinationTransportPort", DataType::unsigned16, Semantics::identifier, Units::none, 2},
          "L4_DST_PORT (11)", "Destination port; for the agent the remote port"},
    Field{&Flow::protocol, "protocol", "protocol", "protocol", "protocol", Sql::Integer,
          {4, 0, "protocolIdentifier", DataType::unsigned8, Semantics::identifier, Units::none, 1},
          "PROTOCOL (4)", "IANA protocol number (the agent: always 6, TCP)"},
    Field{&Flow::direction, "direction", "direction", "direction", "direction", Sql::Text,
          {61, 0, "flowDirection", DataType::unsigned8, Semantics::identifier, Units::none, 1}, "DIRECTION (61)",
          "Who opened the connection: outbound (this host), inbound, or unknown (IPFIX: 1 egress, 0 ingress, "
          "255 unknown)"},
    Field{&Flow::bytes, "bytes", "bytes_sent", "bytes", "bytes", Sql::Integer,
          {85, 0, "octetTotalCount", DataType::unsigned64, Semantics::totalCounter, Units::octets, 8},
          "IN_BYTES (1)",
          "Bytes src -> dst; the agent counts payload the peer acknowledged (SYN and FIN taken out)"},
    Field{&Flow::packets, "packets", "segs_sent", "packets", "packets", Sql::Integer,
          {86, 0, "packetTotalCount", DataType::unsigned64, Semantics::totalCounter, Units::packets, 8},
          "IN_PKTS (2)", "Packets src -> dst (the agent: TCP segments sent)"},
    Field{&Flow::rev_bytes, "rev_bytes", "bytes_received", "rev_bytes", "rev_bytes", Sql::Integer,
          {85, ipfix::kReversePen, "reverseOctetTotalCount", DataType::unsigned64, Semantics::totalCounter,
           Units::octets, 8},
          "OUT_BYTES (23)", "Bytes dst -> src (the agent: payload received in order); 0 if unidirectional"},
    Field{&Flow::rev_packets, "rev_packets", "segs_received", "rev_packets", "rev_packets", Sql::Integer,
          {86, ipfix::kReversePen, "reversePacketTotalCount", DataType::unsigned64, Semantics::totalCounter,
           Units::packets, 8},
          "OUT_PKTS (24)", "Packets dst -> src (the agent: TCP segments received)"},
    Field{&Flow::bidirectional, "bidirectional", "", "bidirectional", "bidirectional", Sql::Integer, {}, "",
          "The record measured both directions (rev_* are counts, not absent)"},
    Field{&Flow::cumulative, "cumulative", "", "cumulative", "cumulative", Sql::Integer, {}, "",
          "Counters are totals since start_ns (flowscope agents) rather than this record's share"},
    Field{&Flow::interim, "interim", "record", "record", "interim", Sql::Integer,
          {12, kOwnPen, "flowscopeInterimRecord", DataType::boolean, Semantics::default_, Units::none, 1}, "",
          "\"interim\" for a report of a flow still open, \"final\" for its last record", kRecordKind},
    Field{&Flow::retrans, "retrans", "retrans_segs", "retrans_segs", "retrans", Sql::Integer,
          {3, kOwnPen, "flowscopeRetransmittedSegments", DataType::unsigned32, Semantics::totalCounter,
           Units::packets, 4},
          "", "TCP segments retransmitted by the local side"},
    Field{&Flow::srtt_us, "srtt_us", "srtt_us", "srtt_us", "srtt_us", Sql::Integer,
          {1, kOwnPen, "flowscopeSrttMicroseconds", DataType::unsigned32, Semantics::quantity, Units::microseconds,
           4},
          "", "Smoothed TCP round-trip time, microseconds"},
    Field{&Flow::rttvar_us, "rttvar_us", "rttvar_us", "rttvar_us", "rttvar_us", Sql::Integer,
          {2, kOwnPen, "flowscopeRttvarMicroseconds", DataType::unsigned32, Semantics::quantity,
           Units::microseconds, 4},
          "", "TCP round-trip time variation, microseconds"},
    Field{&Flow::close, "close", "close", "close", "close_reason", Sql::Text,
          {10, kOwnPen, "flowscopeCloseReason", DataType::string, Semantics::default_, Units::none, kVar, 32}, "",
          "How the connection ended: active (still open), fin, rst_sent, rst_received, refused, timeout"},
    Field{&Flow::pid, "pid", "pid", "pid", "pid", Sql::Integer,
          {4, kOwnPen, "flowscopeProcessId", DataType::unsigned32, Semantics::identifier, Units::none, 4}, "",
          "Process id owning the socket (IPFIX: 0 if unknown)", kZeroIsUnknown},
    Field{&Flow::comm, "comm", "comm", "comm", "comm", Sql::Text,
          {5, kOwnPen, "flowscopeProcessName", DataType::string, Semantics::default_, Units::none, kVar, 16}, "",
          "Command name (comm) of the owning thread", kZeroIsUnknown},
    Field{&Flow::exe, "exe", "exe", "exe", "exe", Sql::Text,
          {22, kOwnPen, "flowscopeProgramName", DataType::string, Semantics::default_, Units::none, kVar, 16}, "",
          "The owning program: comm of the process's thread-group leader (a thread may be named for its job)",
          kZeroIsUnknown},
    Field{&Flow::cgroup_id, "cgroup_id", "cgroup_id", "cgroup_id", "cgroup_id", Sql::Integer,
          {6, kOwnPen, "flowscopeCgroupId", DataType::unsigned64, Semantics::identifier, Units::none, 8}, "",
          "cgroup v2 id of the owning process", kZeroIsUnknown},
    Field{&Flow::cgroup, "cgroup", "cgroup", "cgroup", "cgroup", Sql::Text,
          {7, kOwnPen, "flowscopeCgroupPath", DataType::string, Semantics::default_, Units::none, kVar, 384}, "",
          "cgroup v2 path of the owning process, under the cgroup2 mount", kZeroIsUnknown},
    Field{&Flow::container_id, "container_id", "container_id", "container_id", "container_id", Sql::Text,
          {8, kOwnPen, "flowscopeContainerId", DataType::string, Semantics::default_, Units::none, kVar, 128}, "",
          "Container id derived from the cgroup path (docker, containerd, cri-o, podman)", kZeroIsUnknown},
    Field{&Flow::unit, "unit", "unit", "unit", "unit", Sql::Text,
          {23, kOwnPen, "flowscopeSystemdUnit", DataType::string, Semantics::default_, Units::none, kVar, 128}, "",
          "systemd unit or scope the owning process runs in, from its cgroup path (nginx.service)", kZeroIsUnknown},
    Field{&Flow::netns, "netns", "netns", "netns", "netns", Sql::Integer,
          {9, kOwnPen, "flowscopeNetnsInode", DataType::unsigned32, Semantics::identifier, Units::none, 4}, "",
          "Network namespace inode", kZeroIsUnknown},
    Field{&Flow::drops, "drops", "drops", "drops", "drops", Sql::Text,
          {11, kOwnPen, "flowscopeDropCounts", DataType::string, Semantics::default_, Units::none, kVar, 256}, "",
          "Kernel packet drops of this flow by reason (IPFIX: \"REASON=count,...\"; storage: a JSON object)"},
    Field{&Flow::preexisting, "preexisting", "preexisting", "preexisting", "preexisting", Sql::Integer,
          {13, kOwnPen, "flowscopePreexistingFlow", DataType::boolean, Semantics::default_, Units::none, 1}, "",
          "The agent did not see the connection open: it was open before the agent started, or the kernel skipped "
          "the event that opened it (the agent's `starts_missed`); start_ns is when it was first seen"},
    Field{&Flow::conversation, "conversation", "", "conversation", "conversation", Sql::Integer, {}, "",
          "The connection's id, shared by the records of both of its ends (set by the collector, docs/fleet.md)"},
    Field{&Flow::mirror, "mirror", "", "mirror", "mirror", Sql::Integer, {}, "",
          "This end's records repeat a connection whose other end is counted: aggregates count it once"},
};

inline constexpr size_t kFieldCount = std::tuple_size_v<std::remove_cv_t<decltype(kFields)>>;

// Calls f(field) for every entry, in table order, unrolled at compile time.
template <class F>
constexpr void for_each_field(F&& f) {
  std::apply([&](const auto&... field) { (f(field), ...); }, kFields);
}

// Calls f(index, field) for every entry.
template <class F>
constexpr void for_each_field_indexed(F&& f) {
  [&]<size_t... I>(std::index_sequence<I...>) { (f(std::integral_constant<size_t, I>{}, std::get<I>(kFields)), ...); }(
      std::make_index_sequence<kFieldCount>{});
}

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
inline constexpr bool is_optional_v = is_optional<T>::value;

// The docs' schema section (docs/schema.md), made from the table.
std::string schema_markdown();

}  // namespace flowscope::schema
