// Turning trace events into what people read: per-packet blocks, event lines,
// JSON lines, pcapng comments and a dropwatch-style summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "trace/kallsyms.h"
#include "trace/trace_abi.h"

namespace flowscope::trace {

// Names for what is in an event: tracepoints (by index), drop reasons,
// locations.
class EventNames {
 public:
  EventNames(std::vector<std::string> tracepoints, std::map<int64_t, std::string> reasons, Kallsyms syms,
             int64_t realtime_offset_ns);
  // The tracepoint's name; for a function event (trace --functions) the
  // function with the probe's offset, "nf_hook_slow+0x4".
  std::string tracepoint(const fs_trace_event& ev) const;
  // A function event's function name, "" for other events.
  std::string function(const fs_trace_event& ev) const;
  // Drop reason name ("NO_SOCKET"), "" when the event carries none.
  std::string reason(const fs_trace_event& ev) const;
  // A drop: a reason other than SKB_CONSUMED / SKB_NOT_DROPPED_YET.
  bool is_drop(const fs_trace_event& ev) const;
  std::string location(const fs_trace_event& ev) const;
  int64_t realtime_ns(uint64_t mono_ns) const { return static_cast<int64_t>(mono_ns) + offset_; }

 private:
  std::vector<std::string> tps_;
  std::map<int64_t, std::string> reasons_;
  Kallsyms syms_;
  int64_t offset_;
};

// "12:01:02.123456"
std::string clock_time(int64_t realtime_ns);
// One line per event (--events).
std::string format_event_line(const EventNames& n, const fs_trace_event& ev);
// One JSON object per event (--json).
nlohmann::json event_json(const EventNames& n, const fs_trace_event& ev);

// A packet's events in time order.
struct TracedPacket {
  uint64_t id = 0;
  std::vector<fs_trace_event> events;
  bool freed = false;  // ended by consume_skb/kfree_skb (else by the idle timeout)
};
// Block of lines for a packet (default output).
std::string format_packet_block(const EventNames& n, const TracedPacket& p);
// "netif_receive_skb > ip_rcv... > kfree_skb; drop NO_SOCKET at tcp_v4_rcv+0x1c"
std::string packet_comment(const EventNames& n, const TracedPacket& p);

// Groups events by packet; a packet is complete when it is freed, or when it
// saw no event for `idle` (some skbs are freed without a tracepoint).
class PacketAssembler {
 public:
  PacketAssembler(std::chrono::nanoseconds idle, size_t max_open) : idle_(idle), max_open_(max_open) {}
  // Adds an event; returns the packets completed by it (0 or 1, or the oldest
  // one pushed out when too many are open).
  std::vector<TracedPacket> add(const fs_trace_event& ev);
  // Packets idle since before now_mono_ns - idle (all when flush_all).
  std::vector<TracedPacket> expire(uint64_t now_mono_ns, bool flush_all = false);
  size_t open() const { return open_.size(); }
  uint64_t pushed_out() const { return pushed_out_; }

 private:
  std::chrono::nanoseconds idle_;
  size_t max_open_;
  std::map<uint64_t, TracedPacket> open_;  // by id: ids grow with time
  uint64_t pushed_out_ = 0;
};

// Drops counted by (reason, location, interface) for --drops.
class DropSummary {
 public:
  void add(const EventNames& n, const fs_trace_event& ev);
  // Table sorted by count, largest first.
  std::string render(const std::string& title) const;
  uint64_t total() const { return total_; }

 private:
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> counts_;
  uint64_t total_ = 0;
};

}  // namespace flowscope::trace
