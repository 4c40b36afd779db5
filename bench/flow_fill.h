// Synthetic stored flows for the query benchmarks (fs_store_query,
// fs_api_latency): one generator and one fill loop, so both measure the same
// kind of store. Rows look like a busy fleet's: 2,000 local addresses talking
// to 50,000 remote ones on a handful of service ports, from 6 programs on two
// hosts, a few refused or reset, about 1% with kernel drops, ending evenly
// over `span_ns` before now.
//
// Built without text formatting or parsing per row: at 10M rows the
// generator would otherwise cost as much as a fast store's insert.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/result.h"
#include "net/ip16.h"
#include "storage/flow_store.h"

namespace fsbench {

struct FillOptions {
  uint64_t rows = 0;
  uint64_t span_ns = 0;     // the flows end evenly over this long before now
  size_t batch_rows = 10'000;  // rows per FlowStore::insert
  unsigned exporters = 0;   // 0: every row from "local" (the in-process agent); n: "host0".."host<n-1>"
};

inline flowscope::Ip16 v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  const uint8_t q[4] = {a, b, c, d};
  return flowscope::ip16_from_v4(q);
}

// Row `i` of `o.rows`; `now_ns` is the end of the last one.
inline flowscope::FlowRow synthetic_flow(uint64_t i, const FillOptions& o, uint64_t now_ns,
                                         const std::vector<std::string>& exporters) {
  using namespace flowscope;
  static const char* const comms[] = {"curl", "nginx", "postgres", "sshd", "java", "python3"};
  static const uint16_t ports[] = {443, 80, 5432, 22, 8080, 53};
  constexpr uint64_t kSec = 1'000'000'000ull;
  FlowRow r;
  r.exporter = exporters[i % exporters.size()];
  r.end_ns = now_ns - o.span_ns + o.span_ns / o.rows * i;
  r.start_ns = r.end_ns - (i % 30) * kSec;
  const uint32_t local = static_cast<uint32_t>(i % 2000), remote = static_cast<uint32_t>((i * 7919) % 50000);
  r.src_ip = v4(10, 1, static_cast<uint8_t>(local >> 8), static_cast<uint8_t>(local & 255));
  r.dst_ip = v4(172, 16, static_cast<uint8_t>(remote >> 8), static_cast<uint8_t>(remote & 255));
  r.src_port = static_cast<uint16_t>(32768 + i % 28000);
  r.dst_port = ports[i % 6];
  r.direction = Direction::Outbound;
  r.bytes = 200 + (i * 131) % 100000;
  r.packets = 2 + i % 100;
  r.rev_bytes = 100 + (i * 17) % 5000;
  r.rev_packets = 1 + i % 50;
  r.comm = comms[i % 6];
  r.pid = static_cast<uint32_t>(1000 + i % 500);
  r.close = i % 50 == 0 ? CloseReason::Refused : i % 70 == 0 ? CloseReason::RstReceived : CloseReason::Fin;
  if (i % 97 == 0) r.drops = {{i % 2 ? "NO_SOCKET" : "NETFILTER_DROP", 1 + i % 3}};
  r.host = i % 3 ? "bench-a" : "bench-b";
  return r;
}

// Inserts o.rows synthetic flows in batches of o.batch_rows, then waits for
// the store to have them all (FlowStore::sync).
inline flowscope::Result<void> fill(flowscope::FlowStore& store, const FillOptions& o) {
  std::vector<std::string> exporters;
  for (unsigned k = 0; k < o.exporters; ++k) exporters.push_back(fmt::format("host{}", k));
  if (exporters.empty()) exporters.push_back("local");
  const uint64_t now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  std::vector<flowscope::FlowRow> batch;
  batch.reserve(o.batch_rows);
  for (uint64_t i = 0; i < o.rows; ++i) {
    batch.push_back(synthetic_flow(i, o, now, exporters));
    if (batch.size() == o.batch_rows || i + 1 == o.rows) {
      if (auto ok = store.insert(batch); !ok) return ok;
      batch.clear();
    }
  }
  return store.sync(std::chrono::minutes(10));
}

}  // namespace fsbench
