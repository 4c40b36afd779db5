// IPFIX encoder/decoder unit tests: round trips, template lifetime and
// withdrawal, data before its template, sequence gaps, hostile input.
#include <arpa/inet.h>

#include <gtest/gtest.h>

#include "ipfix/decoder.h"
#include "ipfix/encoder.h"
#include "ipfix/wire.h"

using namespace flowscope;
using namespace flowscope::ipfix;
using namespace std::chrono_literals;

namespace {

FlowRecord sample(int family, uint16_t lport) {
  FlowRecord r;
  r.family = family;
  if (family == 4) {
    inet_pton(AF_INET, "10.1.2.3", r.local_ip.data());
    inet_pton(AF_INET, "192.0.2.9", r.remote_ip.data());
    r.local_addr = "10.1.2.3";
    r.remote_addr = "192.0.2.9";
  } else {
    inet_pton(AF_INET6, "fd00::1", r.local_ip.data());
    inet_pton(AF_INET6, "2001:db8::42", r.remote_ip.data());
    r.local_addr = "fd00::1";
    r.remote_addr = "2001:db8::42";
  }
  r.local_port = lport;
  r.remote_port = 443;
  r.start_ns = 1'700'000'000'123'000'000ull;
  r.end_ns = 1'700'000'005'456'000'000ull;
  r.direction = Direction::Outbound;
  r.bytes_sent = 10000;
  r.bytes_received = 500;
  r.segs_sent = 12;
  r.segs_received = 9;
  r.retrans_segs = 2;
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

void expect_same(const FlowRecord& a, const FlowRecord& b) {
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.local_addr, b.local_addr);
  EXPECT_EQ(a.remote_addr, b.remote_addr);
  EXPECT_EQ(a.local_ip, b.local_ip);
  EXPECT_EQ(a.local_port, b.local_port);
  EXPECT_EQ(a.remote_port, b.remote_port);
  EXPECT_EQ(a.protocol, b.protocol);
  EXPECT_EQ(a.start_ns / 1000000, b.start_ns / 1000000);
  EXPECT_EQ(a.end_ns / 1000000, b.end_ns / 1000000);
  EXPECT_EQ(a.direction, b.direction);
  EXPECT_EQ(a.bytes_sent, b.bytes_sent);
  EXPECT_EQ(a.bytes_received, b.bytes_received);
  EXPECT_EQ(a.segs_sent, b.segs_sent);
  EXPECT_EQ(a.segs_received, b.segs_received);
  EXPECT_EQ(a.retrans_segs, b.retrans_segs);
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
  std::vector<FlowRecord> in = {sample(4, 1000), sample(6, 2000)};
  in[1].interim = true;
  in[1].close = CloseReason::Active;
  in[1].preexisting = true;
  in[1].container_id.reset();
  in[1].drops.clear();
  in[1].pid = 0;
  in[1].comm.clear();
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
