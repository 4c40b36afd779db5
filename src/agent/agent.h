// The flow agent: loads agent.bpf.c, turns its ring-buffer records into
// Flows and hands them to sinks (JSON lines, IPFIX, ...).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "base/result.h"

namespace flowscope {

struct AgentOptions {
  std::chrono::milliseconds active_timeout{60'000};
  uint32_t max_flows = 262144;
  uint32_t ringbuf_bytes = 8 << 20;  // ~43k records: absorbs the close of a process holding many connections
  std::optional<std::string> netns;   // path or inode
  uint16_t port = 0;
  uint32_t pid = 0;
  std::optional<std::string> cgroup;  // path (absolute or under the cgroup2 mount) or id
  std::chrono::milliseconds stats_interval{0};  // 0: no periodic stats
  bool verbose = false;
  bool unspecified_drops = false;  // attribute kfree_skb frees without a reason too
  // Ownership evidence beside the flows (agent/claims.h, docs/ipfix.md
  // "Ownership claims"); false: none is made or sent.
  bool ownership_claims = true;
  // Who reports: on every record, so a collector of many agents knows each
  // record's host (unset: not sent).
  std::optional<std::string> host;
  std::optional<std::string> host_id;
};

// Counters from the kernel side and from user space, for --stats and metrics.
struct AgentStats {
  uint64_t state_events = 0;
  uint64_t flows_created = 0;
  uint64_t flows_closed = 0;
  uint64_t flows_emitted = 0;
  uint64_t flows_filtered = 0;
  uint64_t flow_map_full = 0;
  uint64_t ringbuf_full = 0;
  uint64_t tuple_map_full = 0;
  uint64_t drops_seen = 0;
  uint64_t drops_attributed = 0;
  uint64_t drops_unspecified = 0;
  uint64_t drops_purged_empty = 0;
  uint64_t attributed_accept = 0;
  uint64_t resets = 0;
  uint64_t records_received = 0;  // read from the ring buffer by user space
  uint64_t open_flows = 0;
  uint64_t max_flows = 0;
  uint64_t bpf_map_bytes = 0;  // kernel memory of all the agent's maps, as the kernel accounts it
  uint64_t unreported_at_exit = 0;  // flows open at exit the final sweep could not report
  uint64_t close_missed = 0;        // flows whose close the kernel skipped, their socket since reused
  uint64_t children_discarded = 0;  // a second child of one handshake, closed by the kernel: not a record
  uint64_t starts_missed = 0;       // flows first seen after their skipped start: reported as preexisting
  uint64_t nested_events = 0;       // state changes on_state was skipped for and on_state_nested handled
  uint64_t recursion_misses = 0;    // other events the kernel skipped: a program already ran on that CPU
  uint64_t claims_written = 0;      // ownership claims handed to the sinks (agent/claims.h)
  uint64_t addresses_held = 0;      // local addresses claimed now
  uint64_t lost() const { return flow_map_full + ringbuf_full + unreported_at_exit + close_missed; }
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> create(const AgentOptions& opts);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  void add_sink(std::shared_ptr<FlowSink> sink);
  // Runs until `stop` becomes true; then stops tracking new flows, reports
  // each still-open flow once (interim, or final if it closes first), detaches
  // and returns. Flows it could not report are counted in unreported_at_exit.
  Result<void> run(const std::atomic<bool>& stop);
  AgentStats stats() const;
  // After attaching: gives up for good every capability the run loop does not
  // need (see the README). Call it before any other thread exists. Returns
  // the names of those kept.
  Result<std::string> drop_capabilities();
  // What start-up probing turned off, one line each.
  const std::vector<std::string>& degraded() const;

  struct Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

std::string stats_json(const AgentStats& s, uint64_t time_ns);

}  // namespace flowscope
