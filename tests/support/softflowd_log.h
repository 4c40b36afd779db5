// softflowd's own account of what it exported: with -D it prints one line per
// expired flow, the ground truth for tests that ingest its IPFIX/NetFlow.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <string>
#include <vector>

namespace fstest {

struct SoftflowdFlow {
  std::string a, b;
  uint16_t pa = 0, pb = 0;
  int proto = 0;
  uint64_t octets_ab = 0, packets_ab = 0, octets_ba = 0, packets_ba = 0;
  uint64_t start_ms = 0;
};

// "EXPIRED: seq:2 [10.99.0.1]:45524 <> [10.99.0.2]:47002 proto:6 octets>:10372
//  packets>:7 octets<:768 packets<:5 start:2026-11-25T12:27:45.718 ..."
inline std::vector<SoftflowdFlow> parse_softflowd_expired(const std::string& log) {
  std::vector<SoftflowdFlow> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    SoftflowdFlow s;
    char a[64] = {}, b[64] = {}, start[32] = {};
    unsigned pa = 0, pb = 0;
    unsigned long long oab = 0, pab = 0, oba = 0, pba = 0;
    if (std::sscanf(line.c_str(),
                    "EXPIRED: seq:%*u [%63[^]]]:%u <> [%63[^]]]:%u proto:%d octets>:%llu packets>:%llu octets<:%llu "
                    "packets<:%llu start:%31s",
                    a, &pa, b, &pb, &s.proto, &oab, &pab, &oba, &pba, start) != 10)
      continue;
    s.a = a;
    s.b = b;
    s.pa = uint16_t(pa);
    s.pb = uint16_t(pb);
    s.octets_ab = oab;
    s.packets_ab = pab;
    s.octets_ba = oba;
    s.packets_ba = pba;
    std::tm tm{};
    const char* rest = strptime(start, "%Y-%m-%dT%H:%M:%S", &tm);
    s.start_ms = uint64_t(timegm(&tm)) * 1000 + (rest && *rest == '.' ? std::strtoul(rest + 1, nullptr, 10) : 0);
    out.push_back(s);
  }
  return out;
}

// softflowd's IPFIX carries the start as systemInitTimeMilliseconds plus
// flowStartSysUpTime, each truncated to the millisecond on its own, and its
// log truncates a third time: the two accounts differ by up to 2 ms.
inline constexpr uint64_t kSoftflowdIpfixStartSlackMs = 2;

inline uint64_t ms_apart(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

}  // namespace fstest
