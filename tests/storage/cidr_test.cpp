#include <gtest/gtest.h>

#include "net/cidr.h"

using namespace flowscope;

TEST(Cidr, ParsesV4Network) {
  auto c = parse_cidr("10.1.0.0/16");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->v4);
  EXPECT_EQ(c->prefix, 16);
  EXPECT_EQ(ip16_to_string(c->first), "10.1.0.0");
  EXPECT_EQ(ip16_to_string(c->last), "10.1.255.255");
  EXPECT_TRUE(c->contains(*parse_ip("10.1.2.3")));
  EXPECT_FALSE(c->contains(*parse_ip("10.2.0.0")));
  EXPECT_FALSE(c->contains(*parse_ip("::a01:203")));  // v4-compatible, not v4-mapped
}

TEST(Cidr, ParsesV6Network) {
  auto c = parse_cidr("fd00:12::/32");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->v4);
  EXPECT_EQ(ip16_to_string(c->first), "fd00:12::");
  EXPECT_EQ(ip16_to_string(c->last), "fd00:12:ffff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_TRUE(c->contains(*parse_ip("fd00:12::2")));
  EXPECT_FALSE(c->contains(*parse_ip("10.0.0.1")));
}

TEST(Cidr, BareAddressIsHostRoute) {
  auto c = parse_cidr("192.0.2.7");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->prefix, 32);
  EXPECT_EQ(c->first, c->last);
  auto c6 = parse_cidr("::1");
  ASSERT_TRUE(c6);
  EXPECT_EQ(c6->prefix, 128);
}

TEST(Cidr, ZeroPrefixCoversFamilyOnly) {
  auto any4 = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(any4);
  EXPECT_TRUE(any4->contains(*parse_ip("255.255.255.255")));
  EXPECT_FALSE(any4->contains(*parse_ip("fd00::1")));
  auto any6 = parse_cidr("::/0");
  ASSERT_TRUE(any6);
  EXPECT_TRUE(any6->contains(*parse_ip("fd00::1")));
}

TEST(Cidr, RejectsBadInput) {
  for (const char* bad : {"", "/", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0.1/8",
                          "fd00::/129", "fd00::1/64", "1.2.3", "1.2.3.4.5", "x", "10.0.0.0/08 ", "' OR 1=1 --",
                          "10.0.0.0/99999999999999999999"}) {
    EXPECT_FALSE(parse_cidr(bad)) << bad;
  }
}

TEST(Cidr, ErrorEchoIsBounded) {
  auto r = parse_cidr(std::string(10000, 'a'));
  ASSERT_FALSE(r);
  EXPECT_LT(r.error().message.size(), 200u);
}
