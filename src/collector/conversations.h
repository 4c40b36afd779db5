// Conversations: the records of one connection seen from both of its ends
// (two hosts with agents, or both sockets of a loopback connection) linked by
// one id, so aggregates count the connection once and a flow's remote end can
// be named from the other end's own record.
//
// Decided at ingest, record by record, before the store: a record of an end
// already seen keeps that end's conversation; a record whose 5-tuple mirrors
// a known end's (same protocol, its src is their dst and the other way round)
// and whose time overlaps that end's, allowing `skew` between the two hosts'
// clocks, joins it as the second end. The first end seen is the counted one;
// the second end's records are marked `mirror` and aggregates skip their
// share (storage/flow_row.h, count_once). A label is never derived here: the
// API reads the other end's record when asked (collector/attribution.h), so
// an answer shows only what some record says, never a guess later evidence
// could contradict. Limits (docs/fleet.md): ends seen more than `linger`
// apart in data time, or after the state was full, are not joined and count
// twice; a connection whose 5-tuple is reused within `skew` of the previous
// one's last record may be joined with it.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "storage/flow_row.h"

namespace flowscope {

struct ConversationOptions {
  uint64_t skew_ns = 5'000'000'000;     // the largest clock difference between two hosts
  uint64_t linger_ns = 300'000'000'000;  // how long a conversation waits for its other end after its last record
  size_t max_conversations = 1'000'000;  // memory bound: past it the oldest are forgotten (and counted)
};

struct ConversationStats {
  uint64_t records = 0;    // records given an id
  uint64_t joined = 0;     // second ends found
  uint64_t skipped = 0;    // records that cannot be joined (unidirectional, third-party)
  uint64_t forgotten = 0;  // conversations dropped from memory before their linger ended (the bound)
  uint64_t open = 0;       // conversations held now
};

class ConversationJoiner {
 public:
  explicit ConversationJoiner(ConversationOptions o = {}) : o_(o) {}
  // Sets r.conversation and r.mirror. Records must come in ingest order.
  void assign(FlowRow& r);
  ConversationStats stats() const;

 private:
  struct End {
    std::string reporter;  // host id, host name or exporter, and domain
    Ip16 ip{};
    uint16_t port = 0;
    uint64_t start_ns = 0;
    uint64_t last_ns = 0;  // latest end_ns of its records
  };
  struct Conv {
    uint64_t id = 0;
    End ends[2];
    uint8_t n = 0;  // ends known (ends[0] is the counted one)
    uint64_t last_ns = 0;
  };
  void sweep();

  ConversationOptions o_;
  // Keyed by the unordered 5-tuple; a few conversations per key at most
  // (the same tuple reused over time).
  std::unordered_map<std::string, std::vector<Conv>> by_tuple_;
  size_t count_ = 0;
  uint64_t watermark_ns_ = 0;  // latest end_ns seen: data time, so replays behave as live traffic
  uint64_t since_sweep_ = 0;
  ConversationStats st_;
};

}  // namespace flowscope
