// The agent's claim bookkeeping (agent/claims.h), without a kernel.
#include <gtest/gtest.h>

#include "agent/claims.h"
#include "net/cidr.h"

using namespace flowscope;

namespace {

Flow inbound(const char* local, uint16_t port, uint64_t start, uint64_t end, const char* exe) {
  Flow f;
  f.src_ip = *parse_ip(local);
  f.dst_ip = *parse_ip("192.0.2.200");
  f.src_port = port;
  f.dst_port = 40000;
  f.protocol = 6;
  f.direction = Direction::Inbound;
  f.start_ns = start;
  f.end_ns = end;
  f.exe = exe;
  f.pid = 10;
  f.netns = 99;
  return f;
}

}  // namespace

TEST(ClaimTracker, AddressRangesBeginExtendAndEnd) {
  ClaimTracker t("h", "id");
  const Ip16 a = *parse_ip("10.0.0.1");
  t.address_added(a, 100);
  t.address_added(a, 150);  // again (a dump after lost notifications): same range
  t.address_added(*parse_ip("127.0.0.1"), 100);
  t.address_added(*parse_ip("::1"), 100);
  t.address_added(*parse_ip("fe80::1"), 100);
  auto c = t.tick(200);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].addr, a);
  EXPECT_EQ(c[0].from_ns, 100u);
  EXPECT_EQ(c[0].to_ns, 200u);
  EXPECT_TRUE(c[0].held);
  EXPECT_EQ(c[0].host, "h");
  EXPECT_EQ(c[0].port, 0);
  c = t.tick(300);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].from_ns, 100u);
  EXPECT_EQ(c[0].to_ns, 300u);
  auto r = t.address_removed(a, 350);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->held);
  EXPECT_EQ(r->from_ns, 100u);
  EXPECT_EQ(r->to_ns, 350u);
  EXPECT_FALSE(t.address_removed(a, 360));
  EXPECT_TRUE(t.tick(400).empty());
}

TEST(ClaimTracker, StopReleasesEveryAddress) {
  ClaimTracker t(std::nullopt, std::nullopt);
  t.address_added(*parse_ip("10.0.0.1"), 100);
  t.address_added(*parse_ip("2001:db8::1"), 120);
  auto c = t.stop(500);
  ASSERT_EQ(c.size(), 3u);  // both addresses, then the stop marker
  for (const auto& x : c) {
    EXPECT_FALSE(x.held);
    EXPECT_EQ(x.to_ns, 500u);
  }
  EXPECT_EQ(c.back().addr, Ip16{});
  EXPECT_TRUE(t.tick(600).empty());
}

TEST(ClaimTracker, InboundFlowsFoldIntoOnePortClaimPerWorkload) {
  ClaimTracker t("h", std::nullopt);
  t.observe(inbound("10.0.0.1", 80, 1000, 2000, "nginx"));
  t.observe(inbound("10.0.0.1", 80, 500, 1500, "nginx"));
  t.observe(inbound("10.0.0.1", 80, 1200, 3000, "nginx"));
  t.observe(inbound("10.0.0.1", 80, 1200, 1300, "apache2"));  // another workload: its own claim
  t.observe(inbound("127.0.0.1", 80, 1000, 2000, "nginx"));   // loopback: no claim
  Flow out = inbound("10.0.0.1", 45000, 1000, 2000, "curl");
  out.direction = Direction::Outbound;  // the client side serves nothing
  t.observe(out);
  Flow udp = inbound("10.0.0.1", 53, 1000, 2000, "dnsd");
  udp.protocol = 17;
  t.observe(udp);
  auto c = t.tick(4000);
  ASSERT_EQ(c.size(), 2u);
  for (const auto& x : c) {
    EXPECT_EQ(x.port, 80);
    EXPECT_EQ(x.protocol, 6);
    EXPECT_TRUE(x.held);
    EXPECT_EQ(x.pid, 10u);
    EXPECT_EQ(x.netns, 99u);
    if (x.exe == "nginx") {
      EXPECT_EQ(x.from_ns, 500u);
      EXPECT_EQ(x.to_ns, 3000u);
    } else {
      EXPECT_EQ(x.exe, "apache2");
      EXPECT_EQ(x.from_ns, 1200u);
      EXPECT_EQ(x.to_ns, 1300u);
    }
  }
  EXPECT_TRUE(t.tick(5000).empty());  // ports are per tick
}
