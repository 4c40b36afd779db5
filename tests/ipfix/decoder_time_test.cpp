// The decoder's times: NetFlow v9 fields numbered above 127 (the IPFIX
// registry, as nfdump's nfreplay sends flowStart/EndMilliseconds), and records
// with no usable time, which take the export time and are counted instead of
// being stored at 1970. Messages are built field by field here; the
// end-to-end check against nfdump's own tools is in
// tests/collector/nfdump_replay_test.cpp.
#include <arpa/inet.h>

#include <gtest/gtest.h>

#include "ipfix/decoder.h"
#include "ipfix/wire.h"

using namespace flowscope;
using namespace flowscope::ipfix;
using namespace flowscope::ipfix::wire;

namespace {

struct F {
  uint16_t id, len;
};

// One message: a template set and a data set with one record whose fields
// are `values` (big-endian, each `len` octets), after IPv4 addresses, ports
// and protocol.
std::vector<uint8_t> message(uint16_t version, uint32_t export_time, std::vector<F> extra,
                             std::vector<uint64_t> values, uint32_t uptime_ms = 0) {
  std::vector<F> fields = {{iana::sourceIPv4Address, 4}, {iana::destinationIPv4Address, 4},
                           {iana::sourceTransportPort, 2}, {iana::destinationTransportPort, 2},
                           {iana::protocolIdentifier, 1}, {iana::octetDeltaCount, 8},
                           {iana::packetDeltaCount, 8}};
  fields.insert(fields.end(), extra.begin(), extra.end());
  std::vector<uint8_t> m;
  put16(m, version);
  put16(m, 0);  // IPFIX: length; v9: record count (set below)
  if (version == kVersionNetflow9) put32(m, uptime_ms);
  put32(m, export_time);
  put32(m, 0);  // sequence
  put32(m, 1);  // domain / source id
  const size_t tset = m.size();
  put16(m, version == kVersionNetflow9 ? 0 : kSetTemplate);
  put16(m, 0);
  put16(m, 300);
  put16(m, uint16_t(fields.size()));
  for (auto f : fields) {
    put16(m, f.id);
    put16(m, f.len);
  }
  set16(m, tset + 2, uint16_t(m.size() - tset));
  const size_t dset = m.size();
  put16(m, 300);
  put16(m, 0);
  for (uint8_t b : {10, 0, 0, 1, 10, 0, 0, 2}) put8(m, b);
  put16(m, 40000);
  put16(m, 80);
  put8(m, 6);
  put64(m, 1234);
  put64(m, 5);
  for (size_t i = 0; i < extra.size(); i++) {
    for (int k = extra[i].len - 1; k >= 0; k--) put8(m, uint8_t(values[i] >> (8 * k)));
  }
  set16(m, dset + 2, uint16_t(m.size() - dset));
  set16(m, 2, version == kVersionNetflow9 ? 2 : uint16_t(m.size()));
  return m;
}

constexpr uint32_t kExport = 1'790'000'000;  // 2026-09-21
constexpr uint64_t kStartMs = 1'789'999'990'123, kEndMs = 1'789'999'995'456;

DecodedFlow one_flow(Decoder& d, const std::vector<uint8_t>& m) {
  auto r = d.feed("x", Transport::Udp, m);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.flows.size(), 1u);
  return r.flows.empty() ? DecodedFlow{} : r.flows[0];
}

}  // namespace

TEST(DecoderTime, NetflowV9MillisecondTimesAbove127AreRead) {
  Decoder d;
  auto f = one_flow(d, message(kVersionNetflow9, kExport,
                               {{iana::flowStartMilliseconds, 8}, {iana::flowEndMilliseconds, 8}}, {kStartMs, kEndMs}));
  EXPECT_EQ(f.version, 9);
  EXPECT_EQ(f.record.start_ns, kStartMs * 1'000'000);
  EXPECT_EQ(f.record.end_ns, kEndMs * 1'000'000);
  EXPECT_EQ(f.record.bytes, 1234u);
  EXPECT_EQ(f.record.packets, 5u);
  EXPECT_EQ(d.counters().records_time_fallback, 0u);
}

TEST(DecoderTime, NetflowV9OtherIanaElementsAbove127AreRead) {
  Decoder d;
  // flowEndReason (136) and flowStart/EndSeconds (150/151); octetTotalCount
  // (85) was read before too, as a control.
  auto f = one_flow(d, message(kVersionNetflow9, kExport,
                               {{iana::flowEndReason, 1}, {iana::flowStartSeconds, 4}, {iana::flowEndSeconds, 4}},
                               {kEndActiveTimeout, kExport - 10, kExport - 5}));
  EXPECT_EQ(f.end_reason, kEndActiveTimeout);
  EXPECT_TRUE(f.record.interim);
  EXPECT_EQ(f.record.start_ns, uint64_t(kExport - 10) * 1'000'000'000);
  EXPECT_EQ(f.record.end_ns, uint64_t(kExport - 5) * 1'000'000'000);
}

TEST(DecoderTime, NetflowV9VendorTypesAreSkipped) {
  Decoder d;
  // 32768 + 152 is not flowStartMilliseconds in v9.
  auto f = one_flow(d, message(kVersionNetflow9, kExport, {{0x8000 | iana::flowStartMilliseconds, 8},
                                                           {iana::flowEndMilliseconds, 8}},
                               {kStartMs, kEndMs}));
  EXPECT_EQ(f.record.start_ns, kEndMs * 1'000'000);  // the end, for both
  EXPECT_EQ(f.record.end_ns, kEndMs * 1'000'000);
  EXPECT_EQ(d.counters().records_time_fallback, 1u);
}

TEST(DecoderTime, NoTimeTakesTheExportTimeAndIsCounted) {
  for (uint16_t version : {kVersionIpfix, kVersionNetflow9}) {
    SCOPED_TRACE(version);
    Decoder d;
    auto f = one_flow(d, message(version, kExport, {}, {}));
    EXPECT_EQ(f.record.start_ns, uint64_t(kExport) * 1'000'000'000);
    EXPECT_EQ(f.record.end_ns, uint64_t(kExport) * 1'000'000'000);
    EXPECT_EQ(d.counters().records_time_fallback, 1u);
    EXPECT_EQ(d.counters().records_no_time, 0u);
  }
}

TEST(DecoderTime, RelativeTimesWithoutBootTimeTakeTheExportTime) {
  // IPFIX flowStart/EndSysUpTime with no systemInitTimeMilliseconds: not a time.
  Decoder d;
  auto f = one_flow(d, message(kVersionIpfix, kExport, {{iana::flowStartSysUpTime, 4}, {iana::flowEndSysUpTime, 4}},
                               {1000, 2000}));
  EXPECT_EQ(f.record.start_ns, uint64_t(kExport) * 1'000'000'000);
  EXPECT_EQ(f.record.end_ns, uint64_t(kExport) * 1'000'000'000);
  EXPECT_EQ(d.counters().records_time_fallback, 1u);
}

TEST(DecoderTime, OneMissingEndTakesTheOther) {
  Decoder d;
  auto f = one_flow(d, message(kVersionIpfix, kExport, {{iana::flowEndMilliseconds, 8}}, {kEndMs}));
  EXPECT_EQ(f.record.start_ns, kEndMs * 1'000'000);
  EXPECT_EQ(f.record.end_ns, kEndMs * 1'000'000);
  f = one_flow(d, message(kVersionIpfix, kExport, {{iana::flowStartMilliseconds, 8}}, {kStartMs}));
  EXPECT_EQ(f.record.start_ns, kStartMs * 1'000'000);
  EXPECT_EQ(f.record.end_ns, kStartMs * 1'000'000);
  EXPECT_EQ(d.counters().records_time_fallback, 2u);
}

TEST(DecoderTime, NoTimeAndNoExportTimeIsCountedAndNotReturned) {
  Decoder d;
  auto r = d.feed("x", Transport::Udp, message(kVersionNetflow9, 0, {}, {}));
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.flows.empty());
  EXPECT_EQ(d.counters().records_no_time, 1u);
  EXPECT_EQ(d.counters().records_unusable, 1u);
  EXPECT_EQ(d.counters().records_time_fallback, 0u);
  EXPECT_EQ(d.counters().data_records, 1u);
  // A record with its own times needs no export time.
  auto f = one_flow(d, message(kVersionNetflow9, 0, {{iana::flowStartMilliseconds, 8}, {iana::flowEndMilliseconds, 8}},
                               {kStartMs, kEndMs}));
  EXPECT_EQ(f.record.start_ns, kStartMs * 1'000'000);
  EXPECT_EQ(d.counters().records_no_time, 1u);
}
