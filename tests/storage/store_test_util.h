// What the storage tests share: a temporary directory and the rows they store.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "net/cidr.h"
#include "storage/flow_row.h"

using namespace flowscope;

namespace fstest_storage {

class TempDb {
 public:
  TempDb() {
    char tmpl[] = "/tmp/fs-storage-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~TempDb() { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/flows.db"; }

 private:
  std::string dir_;
};

constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;

inline FlowRow agent_row(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint64_t start, uint64_t end,
                  uint64_t sent, uint64_t recv, bool interim = false) {
  FlowRow r;
  r.exporter = "local";
  r.start_ns = start;
  r.end_ns = end;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.direction = Direction::Outbound;
  r.bytes = sent;
  r.packets = sent / 1000 + 1;
  r.rev_bytes = recv;
  r.rev_packets = recv / 1000 + 1;
  r.bidirectional = true;
  r.cumulative = true;
  r.interim = interim;
  r.retrans = 0;
  r.srtt_us = 120;
  r.rttvar_us = 30;
  r.close = interim ? CloseReason::Active : CloseReason::Fin;
  r.pid = 42;
  r.comm = "curl";
  return r;
}

// The long flow the delta tests follow: 10.0.0.1:5000 > 10.0.0.2:80 from kT0,
// reported at kT0 + end_s.
inline FlowRow long_flow(uint64_t end_s, uint64_t sent, uint64_t recv, bool interim) {
  return agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + end_s * kSec, sent, recv, interim);
}

inline FlowRow softflowd_row(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint64_t t, uint64_t bytes) {
  FlowRow r;
  r.exporter = "192.0.2.1";
  r.domain = 7;
  r.start_ns = t;
  r.end_ns = t + kSec;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.protocol = 17;
  r.bytes = bytes;
  r.packets = 3;
  return r;
}

}  // namespace fstest_storage
