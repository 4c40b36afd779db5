// IPFIX encoder/decoder unit tests: round trips, template lifetime and
// withdrawal, data before its template, sequence gaps, hostile input.
#include <arpa/inet.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "flow/fields.h"
#include "ipfix/decoder.h"
#include "ipfix/encoder.h"
#include "ipfix/wire.h"
#include "support/softflowd_log.h"

using namespace flowscope;
using namespace flowscope::ipfix;
using namespace std::chrono_literals;

namespace {

Flow sample(int family, uint16_t lport) {
  Flow r;
  if (family == 4) {
    r.src_ip = *parse_ip("10.1.2.3");
    r.dst_ip = *parse_ip("192.0.2.9");
  } else {
    r.src_ip = *parse_ip("fd00::1");
    r.dst_ip = *parse_ip("2001:db8::42");
  }
  r.src_port = lport;
  r.dst_port = 443;
  r.start_ns = 1'700'000'000'123'000'000ull;
  r.end_ns = 1'700'000'005'456'000'000ull;
  r.direction = Direction::Outbound;
  r.bytes = 10000;
  r.rev_bytes = 500;
  r.packets = 12;
  r.rev_packets = 9;
  r.retrans = 2;
  r.srtt_us = 1234;
  r.rttvar_us = 99;
  r.close = CloseReason::RstReceived;
  r.pid = 4242;
  r.comm = "curl";
  r.cgroup_id = 77;
  r.cgroup = "/system.slice/docker-abc.scope";
  r.container_id = "abc";
  r.netns = 4026531840u;
  r.drops = {{"NETFILTER_DROP", 3}, {"TCP_CSUM", 1}};
  return r;
}

// flowscope's own elements: one RFC 5610 type record each (the field
// table's, and flowscopeOwnershipState).
size_t own_elements() {
  size_t n = 1;
  schema::for_each_field([&](const auto& f) { n += f.ie.pen == schema::kOwnPen; });
  return n;
}

std::vector<DecodedFlow> feed_all(Decoder& d, const std::vector<Message>& msgs, Transport t = Transport::Udp,
                                  const std::string& exp = "x") {
  std::vector<DecodedFlow> out;
  for (const auto& m : msgs) {
    auto r = d.feed(exp, t, m);
    EXPECT_TRUE(r.ok()) << r.error;
    for (auto& f : r.flows) out.push_back(std::move(f));
  }
  return out;
}

void expect_same(const Flow& a, const Flow& b) {
  EXPECT_EQ(a.family(), b.family());
  EXPECT_EQ(a.src_ip, b.src_ip);
  EXPECT_EQ(a.dst_ip, b.dst_ip);
  EXPECT_EQ(a.src_port, b.src_port);
  EXPECT_EQ(a.dst_port, b.dst_port);
  EXPECT_EQ(a.protocol, b.protocol);
  EXPECT_EQ(a.start_ns / 1000000, b.start_ns / 1000000);
  EXPECT_EQ(a.end_ns / 1000000, b.end_ns / 1000000);
  EXPECT_EQ(a.direction, b.direction);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.rev_bytes, b.rev_bytes);
  EXPECT_EQ(a.packets, b.packets);
  EXPECT_EQ(a.rev_packets, b.rev_packets);
  EXPECT_EQ(a.retrans, b.retrans);
  EXPECT_EQ(a.srtt_us, b.srtt_us);
  EXPECT_EQ(a.rttvar_us, b.rttvar_us);
  EXPECT_EQ(a.close, b.close);
  EXPECT_EQ(a.interim, b.interim);
  EXPECT_EQ(a.preexisting, b.preexisting);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.comm, b.comm);
  EXPECT_EQ(a.cgroup_id, b.cgroup_id);
  EXPECT_EQ(a.cgroup, b.cgroup);
  EXPECT_EQ(a.container_id, b.container_id);
  EXPECT_EQ(a.netns, b.netns);
  ASSERT_EQ(a.drops.size(), b.drops.size());
  for (size_t i = 0; i < a.drops.size(); i++) {
    EXPECT_EQ(a.drops[i].reason, b.drops[i].reason);
    EXPECT_EQ(a.drops[i].count, b.drops[i].count);
  }
}

}  // namespace

TEST(IpfixCodec, RoundTripV4AndV6) {
  Encoder enc({.domain = 7});
  Decoder dec;
  std::vector<Flow> in = {sample(4, 1000), sample(6, 2000)};
  in[1].interim = true;
  in[1].close = CloseReason::Active;
  in[1].preexisting = true;
  in[1].container_id.reset();
  in[1].drops.clear();
  in[1].pid.reset();
  in[1].comm.reset();
  auto flows = feed_all(dec, enc.template_messages(1700000000));
  EXPECT_TRUE(flows.empty());
  flows = feed_all(dec, enc.encode(in, 1700000010));
  ASSERT_EQ(flows.size(), 2u);
  for (size_t i = 0; i < 2; i++) {
    expect_same(in[i], flows[i].record);
    EXPECT_TRUE(flows[i].flowscope);
    EXPECT_TRUE(flows[i].has_reverse);
    EXPECT_EQ(flows[i].domain, 7u);
    EXPECT_EQ(flows[i].version, 10);
  }
  EXPECT_EQ(flows[0].end_reason, kEndOfFlow);
  EXPECT_EQ(flows[1].end_reason, kEndActiveTimeout);
  EXPECT_EQ(dec.counters().messages_malformed, 0u);
  EXPECT_EQ(dec.counters().sequence_gaps, 0u);
}

TEST(IpfixCodec, MessagesRespectMaxSizeAndSequenceCountsDataRecords) {
  Encoder enc({.domain = 1, .max_message = 1400});
  Decoder dec;
  auto tm = enc.template_messages(1);
  for (const auto& m : tm) EXPECT_LE(m.size(), 1400u);
  const uint32_t after_templates = enc.sequence();
  EXPECT_EQ(after_templates, own_elements());  // RFC 5610 options records are data records
  std::vector<Flow> in;
  for (int i = 0; i < 100; i++) {
    in.push_back(sample(i % 2 ? 6 : 4, uint16_t(1000 + i)));
    in.back().cgroup = std::string(1000, 'c');  // cut to the table's 384 bytes
  }
  auto msgs = enc.encode(in, 2);
  EXPECT_GT(msgs.size(), 1u);
  EXPECT_EQ(wire::get32(msgs[0].data() + 8), after_templates);
  for (const auto& m : msgs) {
    EXPECT_LE(m.size(), 1400u);
    EXPECT_EQ(wire::get16(m.data() + 2), m.size());
    auto r = dec.feed("x", Transport::Udp, m);
    ASSERT_TRUE(r.ok());
  }
  EXPECT_EQ(enc.sequence(), after_templates + 100);
  {
    // A decoder that has the templates sees consecutive sequence numbers.
    Decoder dec2;
    feed_all(dec2, tm);
    EXPECT_EQ(feed_all(dec2, msgs).size(), 100u);
    EXPECT_EQ(dec2.counters().sequence_gaps, 0u);
  }
  EXPECT_EQ(dec.counters().flows, 0u + 0);  // templates were never fed: all held
  EXPECT_GT(dec.counters().sets_held, 0u);
  auto flows = feed_all(dec, tm);  // templates arrive: held sets decode
  ASSERT_EQ(flows.size(), 100u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(flows[i].record.src_port, 1000 + i);
    EXPECT_EQ(flows[i].record.cgroup->size(), 384u);
  }
  EXPECT_EQ(dec.counters().sets_no_template, 0u);
}

TEST(IpfixCodec, SequenceGapsCountLostRecords) {
  Encoder enc({.domain = 3});
  Decoder dec;
  feed_all(dec, enc.template_messages(1));
  feed_all(dec, enc.encode(std::vector<Flow>{sample(4, 1)}, 1));
  enc.skip(5);  // five records dropped by the exporter
  feed_all(dec, enc.encode(std::vector<Flow>{sample(4, 2)}, 1));
  auto lost = enc.encode(std::vector<Flow>{sample(4, 3), sample(4, 4)}, 1);  // lost on the way
  (void)lost;
  feed_all(dec, enc.encode(std::vector<Flow>{sample(4, 5)}, 1));
  EXPECT_EQ(dec.counters().sequence_gaps, 2u);
  EXPECT_EQ(dec.counters().records_lost, 7u);
  auto st = dec.exporter_stats();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].domain, 3u);
  EXPECT_EQ(st[0].sequence_gaps, 2u);
  EXPECT_EQ(st[0].records_lost, 7u);
  // Domains are separate: another domain from the same exporter starts fresh.
  Encoder enc2({.domain = 4});
  enc2.skip(1000);
  feed_all(dec, enc2.template_messages(1));
  EXPECT_EQ(dec.counters().sequence_gaps, 2u);
}

TEST(IpfixCodec, UdpTemplatesExpireTcpTemplatesDoNot) {
  auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  Encoder enc;
  auto tm = enc.template_messages(1);
  auto data = enc.encode(std::vector<Flow>{sample(4, 1)}, 1);
  for (auto transport : {Transport::Udp, Transport::Tcp}) {
    Decoder dec({.template_lifetime = 30s, .hold_time = 5s});
    for (auto& m : tm) dec.feed("e", transport, m, t0);
    EXPECT_EQ(dec.feed("e", transport, data[0], t0 + 29s).flows.size(), 1u);
    auto r = dec.feed("e", transport, data[0], t0 + 31s);
    if (transport == Transport::Udp) {
      EXPECT_TRUE(r.flows.empty());
      EXPECT_GE(dec.counters().templates_expired, 1u);
      // Held, then dropped and counted when the hold time passes.
      EXPECT_EQ(dec.counters().sets_held, 1u);
      dec.expire(t0 + 40s);
      EXPECT_EQ(dec.counters().sets_no_template, 1u);
    } else {
      EXPECT_EQ(r.flows.size(), 1u);
    }
  }
}

namespace {
Message withdrawal(uint16_t set_id, uint16_t tid, uint32_t domain = 0) {
  Message m;
  wire::put16(m, 10);
  wire::put16(m, 24);
  wire::put32(m, 1);
  wire::put32(m, 0);
  wire::put32(m, domain);
  wire::put16(m, set_id);
  wire::put16(m, 8);
  wire::put16(m, tid);
  wire::put16(m, 0);
  return m;
}
}  // namespace

TEST(IpfixCodec, WithdrawalAppliesOverTcpIgnoredOverUdp) {
  Encoder enc;
  auto tm = enc.template_messages(1);
  auto data = enc.encode(std::vector<Flow>{sample(4, 1)}, 1);
  {
    Decoder dec;
    feed_all(dec, tm, Transport::Udp);
    EXPECT_TRUE(dec.feed("x", Transport::Udp, withdrawal(2, kTemplateV4)).ok());
    EXPECT_EQ(dec.counters().withdrawals_ignored, 1u);
    EXPECT_EQ(dec.feed("x", Transport::Udp, data[0]).flows.size(), 1u);
  }
  {
    Decoder dec;
    feed_all(dec, tm, Transport::Tcp);
    EXPECT_TRUE(dec.feed("x", Transport::Tcp, withdrawal(2, kTemplateV4)).ok());
    EXPECT_EQ(dec.counters().templates_withdrawn, 1u);
    EXPECT_TRUE(dec.feed("x", Transport::Tcp, data[0]).flows.empty());
    // Withdraw-all (template id 2 in a template set), then re-announce.
    feed_all(dec, tm, Transport::Tcp);
    EXPECT_TRUE(dec.feed("x", Transport::Tcp, withdrawal(2, 2)).ok());
    EXPECT_EQ(dec.exporter_stats()[0].templates, 2u);  // the options templates stay (type records, claims)
    EXPECT_TRUE(dec.feed("x", Transport::Tcp, data[0]).flows.empty());
    // A closed session forgets its templates.
    feed_all(dec, tm, Transport::Tcp);
    dec.close_session("x");
    EXPECT_TRUE(dec.exporter_stats().empty());
  }
}

TEST(IpfixCodec, EnterpriseElementsRecognisedByRfc5610Names) {
  // The agent uses PEN 12345; the collector is configured with the default PEN
  // and still decodes the flowscope elements from the in-band type records.
  Encoder enc({.pen = 12345});
  Decoder dec;
  feed_all(dec, enc.template_messages(1));
  auto flows = feed_all(dec, enc.encode(std::vector<Flow>{sample(4, 1)}, 1));
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_TRUE(flows[0].flowscope);
  expect_same(sample(4, 1), flows[0].record);
}

TEST(IpfixCodec, StreamFramerSplitsMessages) {
  Encoder enc({.max_message = 65535});
  std::vector<uint8_t> stream;
  auto msgs = enc.template_messages(1);
  for (auto& m : enc.encode(std::vector<Flow>{sample(4, 1), sample(6, 2)}, 1)) msgs.push_back(m);
  for (auto& m : msgs) stream.insert(stream.end(), m.begin(), m.end());
  StreamFramer fr;
  Decoder dec;
  size_t flows = 0, n = 0;
  for (size_t i = 0; i < stream.size(); i += 7) {  // arbitrary chunks
    fr.append(std::span(stream).subspan(i, std::min<size_t>(7, stream.size() - i)));
    for (auto m = fr.next(); !m.empty(); m = fr.next()) {
      n++;
      auto r = dec.feed("t", Transport::Tcp, m);
      EXPECT_TRUE(r.ok());
      flows += r.flows.size();
    }
  }
  EXPECT_EQ(n, msgs.size());
  EXPECT_EQ(flows, 2u);
  EXPECT_FALSE(fr.broken());
  std::vector<uint8_t> junk = {0, 5, 0, 20};
  fr.append(junk);
  EXPECT_TRUE(fr.next().empty());
  EXPECT_TRUE(fr.broken());
}

// Hostile input: each case must be rejected and counted, never crash.
TEST(IpfixCodec, MalformedMessagesRejectedAndCounted) {
  Encoder enc;
  auto tm = enc.template_messages(1);
  auto good = enc.encode(std::vector<Flow>{sample(4, 1)}, 1)[0];
  struct Case {
    const char* name;
    Message m;
  };
  std::vector<Case> cases;
  cases.push_back({"empty", {}});
  cases.push_back({"truncated header", Message(good.begin(), good.begin() + 10)});
  {
    Message m = good;
    wire::set16(m, 2, uint16_t(m.size() + 10));  // length lies: longer than the datagram
    cases.push_back({"length beyond datagram", m});
  }
  {
    Message m = good;
    wire::set16(m, 2, 8);
    cases.push_back({"length below header", m});
  }
  {
    Message m = good;
    wire::set16(m, 0, 5);
    cases.push_back({"version 5", m});
  }
  {
    Message m = good;
    wire::set16(m, 18, 2);  // set length below the set header
    cases.push_back({"set length 2", m});
  }
  {
    Message m = good;
    wire::set16(m, 18, 0);
    cases.push_back({"zero-length set", m});
  }
  {
    Message m = good;
    wire::set16(m, 18, uint16_t(m.size()));  // set runs past the message
    cases.push_back({"set beyond message", m});
  }
  {
    Message m = good;
    wire::set16(m, 16, 7);  // reserved set id
    cases.push_back({"reserved set id", m});
  }
  {
    Message m;  // template set with a huge field count and no fields
    for (uint16_t v : {10, 28, 0, 1, 0, 0, 0, 0, 0, 0, 2, 12, 300, 60000}) wire::put16(m, v);
    wire::put32(m, 0);
    cases.push_back({"huge template field count", m});
  }
  {
    Message m;  // template with a zero-length field
    for (uint16_t v : {10, 28, 0, 1, 0, 0, 0, 0, 0, 0, 2, 12, 300, 1, 8, 0}) wire::put16(m, v);
    cases.push_back({"zero-length field", m});
  }
  {
    Message m;  // options template with scope count above field count
    for (uint16_t v : {10, 30, 0, 1, 0, 0, 0, 0, 0, 0, 3, 14, 300, 1, 5, 8, 4}) wire::put16(m, v);
    cases.push_back({"scope count above field count", m});
  }
  {
    Message m;  // template id below 256
    for (uint16_t v : {10, 28, 0, 1, 0, 0, 0, 0, 0, 0, 2, 12, 100, 1, 8, 4}) wire::put16(m, v);
    cases.push_back({"template id 100", m});
  }
  for (auto& c : cases) {
    Decoder dec;
    feed_all(dec, tm);
    auto before = dec.counters().messages_malformed;
    auto r = dec.feed("x", Transport::Udp, c.m);
    EXPECT_FALSE(r.ok()) << c.name;
    EXPECT_TRUE(r.flows.empty()) << c.name;
    EXPECT_EQ(dec.counters().messages_malformed, before + 1) << c.name;
    // The decoder still works afterwards.
    EXPECT_EQ(dec.feed("x", Transport::Udp, good).flows.size(), 1u) << c.name;
  }
}

TEST(IpfixCodec, VariableLengthOverrunIsMalformed) {
  Encoder enc;
  auto tm = enc.template_messages(1);
  auto good = enc.encode(std::vector<Flow>{sample(4, 1)}, 1)[0];
  // The comm field's length octet is the one before "curl".
  const std::string_view curl = "curl";
  const auto at = std::search(good.begin(), good.end(), curl.begin(), curl.end());
  ASSERT_NE(at, good.end());
  const size_t comm_len_at = static_cast<size_t>(at - good.begin()) - 1;
  ASSERT_EQ(good[comm_len_at], 4);
  Message m = good;
  m[comm_len_at] = 250;  // runs past the set
  Decoder dec;
  feed_all(dec, tm);
  auto r = dec.feed("x", Transport::Udp, m);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(dec.counters().messages_malformed, 1u);
}

// A message is discarded whole: its template set is well formed, but a data
// record after it overruns its set. The template must not be installed, so
// later data for it waits for a template instead of being decoded with it.
TEST(IpfixCodec, MalformedMessageInstallsNoTemplate) {
  Encoder enc;
  auto good = enc.encode(std::vector<Flow>{sample(4, 1)}, 1)[0];
  Message bad_data = good;
  const std::string_view curl = "curl";
  const auto at = std::search(bad_data.begin(), bad_data.end(), curl.begin(), curl.end());
  ASSERT_NE(at, bad_data.end());
  bad_data[static_cast<size_t>(at - bad_data.begin()) - 1] = 250;  // comm's length runs past the set
  // One message: every template set, then the bad data set.
  Message m(good.begin(), good.begin() + 16);
  for (const auto& t : enc.template_messages(1)) m.insert(m.end(), t.begin() + 16, t.end());
  m.insert(m.end(), bad_data.begin() + 16, bad_data.end());
  wire::set16(m, 2, static_cast<uint16_t>(m.size()));
  Decoder dec;
  auto r = dec.feed("x", Transport::Udp, m);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(dec.counters().messages_malformed, 1u);
  EXPECT_EQ(dec.counters().templates, 0u);
  EXPECT_TRUE(dec.feed("x", Transport::Udp, good).flows.empty()) << "decoded with a template from a discarded message";
  EXPECT_EQ(dec.counters().sets_held, 1u);
  // The same message without the bad record installs its templates.
  Message ok(good.begin(), good.begin() + 16);
  for (const auto& t : enc.template_messages(2)) ok.insert(ok.end(), t.begin() + 16, t.end());
  wire::set16(ok, 2, static_cast<uint16_t>(ok.size()));
  EXPECT_TRUE(dec.feed("x", Transport::Udp, ok).ok());
  EXPECT_GT(dec.counters().templates, 0u);
}

TEST(IpfixCodec, HeldDataIsBounded) {
  Encoder enc;
  auto tm = enc.template_messages(1);
  Decoder dec({.hold_max_bytes = 4096});
  for (int i = 0; i < 100; i++) {
    auto m = enc.encode(std::vector<Flow>{sample(4, uint16_t(i))}, 1);
    EXPECT_TRUE(dec.feed("x", Transport::Udp, m[0]).ok());
  }
  EXPECT_EQ(dec.counters().sets_held, 100u);
  EXPECT_GT(dec.counters().sets_no_template, 50u);
  EXPECT_EQ(dec.counters().sequence_gaps, 0u);  // unknown record counts: no false gaps
  // The newest held sets decode when the templates come; none is lost uncounted.
  auto flows = feed_all(dec, tm);
  EXPECT_EQ(flows.size(), dec.counters().sets_held_decoded);
  EXPECT_EQ(dec.counters().sets_held_decoded + dec.counters().sets_no_template, 100u);
  EXPECT_EQ(flows.back().record.src_port, 99);
}

// softflowd (Debian's package) exported these messages, IPFIX and NetFlow v9,
// from a capture of real traffic; its own debug log (data/*.log) says what it
// exported. The decoder must find the same flows.
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(IpfixCodec, DecodesSoftflowdIpfixAndNetflowV9) {
  for (std::string name : {"softflowd-ipfix", "softflowd-v9"}) {
    SCOPED_TRACE(name);
    auto expected = fstest::parse_softflowd_expired(read_text(std::string(IPFIX_TEST_DATA) + "/" + name + ".log"));
    ASSERT_FALSE(expected.empty());
    Decoder dec;
    auto res = dec.feed("softflowd", Transport::Udp, read_bytes(std::string(IPFIX_CORPUS) + "/" + name + ".bin"));
    ASSERT_TRUE(res.ok()) << res.error;
    // NetFlow v9 carries whole seconds in its header: up to 1 s off.
    const uint64_t tolerance_ms = name == "softflowd-v9" ? 1000 : fstest::kSoftflowdIpfixStartSlackMs;
    for (const auto& e : expected) {
      if (e.proto != 6) continue;  // TCP: both directions, as softflowd exports them
      int found = 0;
      for (const auto& f : res.flows) {
        const auto& r = f.record;
        const bool ab = ip16_to_string(r.src_ip) == e.a && r.src_port == e.pa && ip16_to_string(r.dst_ip) == e.b && r.dst_port == e.pb;
        const bool ba = ip16_to_string(r.src_ip) == e.b && r.src_port == e.pb && ip16_to_string(r.dst_ip) == e.a && r.dst_port == e.pa;
        if (!ab && !ba) continue;
        found++;
        EXPECT_EQ(r.protocol, 6);
        EXPECT_EQ(r.bytes, ab ? e.octets_ab : e.octets_ba);
        EXPECT_EQ(r.packets, ab ? e.packets_ab : e.packets_ba);
        EXPECT_LE(fstest::ms_apart(r.start_ns / 1'000'000, e.start_ms), tolerance_ms);
      }
      EXPECT_EQ(found, 2);
    }
    EXPECT_EQ(dec.counters().messages_malformed, 0u);
  }
}

TEST(IpfixCodec, TemplateMemoryIsBounded) {
  Encoder enc;
  auto tm = enc.template_messages(1);
  auto data = enc.encode(std::vector<Flow>{sample(6, 1)}, 1);
  // Room for the two flow templates (every field with an element, and
  // flowEndReason) and the claim template (14 fields), not for the options
  // one as well (sent first): the least recently used one makes room.
  size_t fields = 1;
  flowscope::schema::for_each_field([&](const auto& f) { fields += f.ie.id != 0; });
  const size_t budget = 2 * (kTemplateCost + fields * kFieldCost) + kTemplateCost + 14 * kFieldCost;
  Decoder dec({.max_template_bytes_per_source = budget});
  feed_all(dec, tm);
  EXPECT_EQ(dec.counters().templates_evicted, 1u);
  EXPECT_EQ(dec.counters().templates_limit, 0u);
  EXPECT_LE(dec.usage().template_bytes, budget);
  EXPECT_EQ(dec.exporter_stats()[0].templates, 3u);
  EXPECT_EQ(dec.feed("x", Transport::Udp, data[0]).flows.size(), 1u);  // the IPv6 template, defined last of the two, kept
  // Withdrawing over TCP gives its bytes back.
  Decoder tcp({.max_template_bytes_per_source = budget});
  feed_all(tcp, tm, Transport::Tcp);
  const size_t before = tcp.usage().template_bytes;
  EXPECT_TRUE(tcp.feed("x", Transport::Tcp, withdrawal(2, kTemplateV6)).ok());
  EXPECT_EQ(tcp.usage().template_bytes, before - (kTemplateCost + fields * kFieldCost));
  EXPECT_EQ(tcp.exporter_stats()[0].templates, 2u);
}

namespace {

OwnershipClaim address_claim(const char* addr, bool held) {
  OwnershipClaim c;
  c.host = "web-1";
  c.host_id = "0123456789abcdef";
  c.addr = *parse_ip(addr);
  c.from_ns = 1'700'000'000'123'000'000ull;
  c.to_ns = 1'700'000'030'456'000'000ull;
  c.held = held;
  return c;
}

OwnershipClaim port_claim(const char* addr, bool held) {
  OwnershipClaim c = address_claim(addr, held);
  c.port = 8443;
  c.protocol = 6;
  c.exe = "nginx";
  c.unit = "nginx.service";
  c.comm = "nginx: worker";
  c.container_id = "abc123";
  c.pid = 4242;
  c.netns = 4026531840u;
  return c;
}

struct Fed {
  std::vector<DecodedFlow> flows;
  std::vector<OwnershipClaim> claims;
};

Fed feed_claims(Decoder& d, const std::vector<Message>& msgs, bool expect_ok = true) {
  Fed out;
  for (const auto& m : msgs) {
    auto r = d.feed("x", Transport::Tcp, m);
    EXPECT_EQ(r.ok(), expect_ok) << r.error;
    for (auto& f : r.flows) out.flows.push_back(std::move(f));
    for (auto& c : r.claims) out.claims.push_back(std::move(c));
  }
  return out;
}

}  // namespace

// Claims (template 260) come back as claims, field for field, never as flows;
// mixed with flows in one stream, they count in the sequence numbers.
TEST(IpfixCodec, OwnershipClaimsRoundTrip) {
  Encoder enc({.domain = 7});
  Decoder dec;
  const std::vector<OwnershipClaim> in = {address_claim("10.1.2.3", true), address_claim("fd00::1", false),
                                          port_claim("192.0.2.7", true), port_claim("2001:db8::9", false)};
  EXPECT_TRUE(feed_claims(dec, enc.template_messages(1700000000)).claims.empty());
  std::vector<ExportRecord> mixed = {sample(4, 1000)};
  for (const auto& c : in) mixed.push_back(c);
  mixed.push_back(sample(6, 2000));
  const uint32_t before = enc.sequence();
  auto got = feed_claims(dec, enc.encode(mixed, 1700000010));
  EXPECT_EQ(enc.sequence() - before, mixed.size());  // claims are data records
  ASSERT_EQ(got.flows.size(), 2u);
  ASSERT_EQ(got.claims.size(), in.size());
  for (size_t i = 0; i < in.size(); i++) {
    OwnershipClaim want = in[i];
    want.from_ns = want.from_ns / 1'000'000 * 1'000'000;  // milliseconds on the wire
    want.to_ns = want.to_ns / 1'000'000 * 1'000'000;
    EXPECT_EQ(got.claims[i], want) << i;
  }
  EXPECT_TRUE(ip16_is_v4(got.claims[0].addr));
  EXPECT_FALSE(ip16_is_v4(got.claims[1].addr));
  EXPECT_EQ(dec.counters().claims, in.size());
  EXPECT_EQ(dec.counters().flows, 2u);
  EXPECT_EQ(dec.counters().claims_unusable, 0u);
  EXPECT_EQ(dec.counters().sequence_gaps, 0u);
  // A further message follows without a gap: the decoder counted the claims.
  feed_claims(dec, enc.encode_claims(in, 1700000020));
  EXPECT_EQ(dec.counters().sequence_gaps, 0u);
  EXPECT_EQ(dec.counters().claims, 2 * in.size());
}

// Broken claims: a state that is neither held nor released, a range that ends
// before it starts, no time at all: counted, not returned, the rest of the
// message kept. A claim record cut short is a malformed message, as for flows.
TEST(IpfixCodec, MalformedClaimsAreRejectedAndCounted) {
  Encoder enc;
  Decoder dec;
  feed_claims(dec, enc.template_messages(1700000000));
  OwnershipClaim reversed = address_claim("10.0.0.1", true);
  reversed.to_ns = reversed.from_ns - 5'000'000'000ull;
  OwnershipClaim no_time = address_claim("10.0.0.2", true);
  no_time.from_ns = no_time.to_ns = 0;
  const std::vector<OwnershipClaim> in = {address_claim("10.0.0.3", true), reversed, no_time};
  auto msgs = enc.encode_claims(in, 1700000010);
  ASSERT_EQ(msgs.size(), 1u);
  auto got = feed_claims(dec, msgs);
  ASSERT_EQ(got.claims.size(), 1u);
  EXPECT_EQ(got.claims[0].addr, *parse_ip("10.0.0.3"));
  EXPECT_EQ(dec.counters().claims_unusable, 2u);

  // The state octet of a one-claim message set to 7. Its offset: header (16),
  // set header (4), two empty strings (2), address (16), port (2), protocol
  // (1), two times (16).
  OwnershipClaim bare = address_claim("10.0.0.4", false);
  bare.host.reset();
  bare.host_id.reset();
  auto one = enc.encode_claims(std::vector<OwnershipClaim>{bare}, 1700000020);
  ASSERT_EQ(one.size(), 1u);
  Message bad = one[0];
  const size_t state_at = 16 + 4 + 2 + 16 + 2 + 1 + 16;
  ASSERT_EQ(bad[state_at], kClaimReleased);
  bad[state_at] = 7;
  got = feed_claims(dec, {bad});
  EXPECT_TRUE(got.claims.empty());
  EXPECT_TRUE(got.flows.empty());
  EXPECT_EQ(dec.counters().claims_unusable, 3u);

  // Cut inside a record longer than the shortest one (else the rest reads as
  // padding); set and message lengths shortened to match.
  auto long_one = enc.encode_claims(std::vector<OwnershipClaim>{port_claim("10.0.0.5", true)}, 1700000030);
  Message cut = long_one[0];
  cut.resize(cut.size() - 6);
  wire::set16(cut, 2, uint16_t(cut.size()));
  wire::set16(cut, 18, uint16_t(cut.size() - 16));
  const uint64_t malformed = dec.counters().messages_malformed;
  got = feed_claims(dec, {cut}, false);
  EXPECT_TRUE(got.claims.empty());
  EXPECT_EQ(dec.counters().messages_malformed, malformed + 1);
}

// An agent with another PEN than the collector's: the claim state element is
// recognised by the name its RFC 5610 type record announces.
TEST(IpfixCodec, ClaimsRecognisedByRfc5610NameUnderAnotherPen) {
  Encoder enc({.pen = 12345});
  Decoder dec;  // the default PEN
  feed_claims(dec, enc.template_messages(1700000000));
  auto got = feed_claims(dec, enc.encode_claims(std::vector<OwnershipClaim>{port_claim("10.9.8.7", true)}, 1700000010));
  ASSERT_EQ(got.claims.size(), 1u);
  EXPECT_EQ(got.claims[0].exe, "nginx");
  EXPECT_TRUE(got.flows.empty());
}
