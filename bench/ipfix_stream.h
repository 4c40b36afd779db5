// The synthetic IPFIX stream of the collector benchmark, shared by
// fs_ipfix_gen (sends it) and fs_ingest (feeds it to the collector's
// decode and store path in-process, for profiling).
//
// Every message:
//
//   +--------------------------------------------------------------+
//   | header: version=10 | length | export time | sequence | domain|  16 bytes
//   +--------------------------------------------------------------+
//   | [template set: id 2, template 256 with 9 fields]             |  first message,
//   +--------------------------------------------------------------+  then every 100 (UDP)
//   | data set: id 256 | length | K records of 45 bytes            |
//   +--------------------------------------------------------------+
//
// Record: sourceIPv4Address(8) destinationIPv4Address(12) sourceTransportPort(7)
// destinationTransportPort(11) protocolIdentifier(4) octetDeltaCount(1)
// packetDeltaCount(2) flowStartMilliseconds(152) flowEndMilliseconds(153).
// The sequence number counts data records sent before the message (§3.1).
// Addresses and ports vary per record so no two flows are alike.
#pragma once

#include <cstdint>
#include <iterator>
#include <vector>

namespace fsbench {

struct IpfixWriter {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) {
    u8(uint8_t(v >> 8));
    u8(uint8_t(v));
  }
  void u32(uint32_t v) {
    u16(uint16_t(v >> 16));
    u16(uint16_t(v));
  }
  void u64(uint64_t v) {
    u32(uint32_t(v >> 32));
    u32(uint32_t(v));
  }
  void put16(size_t at, uint16_t v) {
    b[at] = uint8_t(v >> 8);
    b[at + 1] = uint8_t(v);
  }
};

constexpr uint16_t kIpfixTemplateId = 256;
constexpr uint16_t kIpfixFields[][2] = {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}, {152, 8}, {153, 8}};

// The message carrying records first..first+n-1, into w.b.
inline void ipfix_message(IpfixWriter& w, uint64_t first, uint64_t n, uint64_t now_ms, bool with_template) {
  w.b.clear();
  w.u16(10);
  w.u16(0);  // length, patched below
  w.u32(uint32_t(now_ms / 1000));
  w.u32(uint32_t(first));
  w.u32(1);  // observation domain
  if (with_template) {
    const size_t set = w.b.size();
    w.u16(2);
    w.u16(0);
    w.u16(kIpfixTemplateId);
    w.u16(uint16_t(std::size(kIpfixFields)));
    for (auto& f : kIpfixFields) {
      w.u16(f[0]);
      w.u16(f[1]);
    }
    w.put16(set + 2, uint16_t(w.b.size() - set));
  }
  const size_t set = w.b.size();
  w.u16(kIpfixTemplateId);
  w.u16(0);
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t k = first + i;
    w.u32(0x0a000000u | uint32_t(k & 0xffffff));  // 10.x.y.z
    w.u32(0x0a800001u);                           // 10.128.0.1
    w.u16(uint16_t(1024 + k % 60000));
    w.u16(443);
    w.u8(6);
    w.u64(1000 + k % 100000);
    w.u64(10 + k % 100);
    w.u64(now_ms - 5000 + k % 1000);
    w.u64(now_ms);
  }
  w.put16(set + 2, uint16_t(w.b.size() - set));
  w.put16(2, uint16_t(w.b.size()));
}

}  // namespace fsbench
