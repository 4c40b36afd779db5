// Validation of the API's query parameters: every hostile input is refused
// with a message, nothing reaches the store.
#include <gtest/gtest.h>

#include "collector/api_params.h"

using namespace flowscope;

namespace {
constexpr uint64_t kNow = 1'795'000'000'000'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;
}  // namespace

TEST(ApiParams, Times) {
  EXPECT_EQ(*parse_time("now", kNow), kNow);
  EXPECT_EQ(*parse_time("-15m", kNow), kNow - 900 * kSec);
  EXPECT_EQ(*parse_time("-2h", kNow), kNow - 7200 * kSec);
  EXPECT_EQ(*parse_time("-1.5s", kNow), kNow - 1500'000'000ull);
  EXPECT_EQ(*parse_time("1700000000", kNow), 1700000000ull * kSec);
  EXPECT_EQ(*parse_time("1700000000.25", kNow), 1700000000ull * kSec + 250'000'000ull);
  EXPECT_EQ(*parse_time("2023-11-14T22:13:20Z", kNow), 1700000000ull * kSec);
  EXPECT_EQ(*parse_time("2023-11-14T23:13:20.5+01:00", kNow), 1700000000ull * kSec + 500'000'000ull);
  for (const char* bad : {"", "yesterday", "-", "-5x", "1e9", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20",
                          "2023-11-14", "17000000000000000000000", "1.", "1.0000000001", "-99999999999d",
                          "2023-11-14T22:13:20Z' OR 1=1"}) {
    EXPECT_FALSE(parse_time(bad, kNow)) << bad;
  }
}

TEST(ApiParams, FlowQueryDefaultsAndFilters) {
  auto q = parse_flow_query({}, kNow);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->limit, kDefaultFlowLimit);
  EXPECT_EQ(q->offset, 0u);
  EXPECT_FALSE(q->filter.from_ns);

  q = parse_flow_query({{"addr", "10.1.0.0/16"},
                        {"port", "443"},
                        {"protocol", "tcp"},
                        {"direction", "outbound"},
                        {"process", "curl"},
                        {"pid", "42"},
                        {"container", "0123456789ab"},
                        {"close", "rst_received"},
                        {"from", "-1h"},
                        {"to", "now"},
                        {"limit", "500"},
                        {"offset", "1000"},
                        {"record", "final"}},
                       kNow);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->filter.addr->to_string(), "10.1.0.0/16");
  EXPECT_EQ(*q->filter.port, 443);
  EXPECT_EQ(*q->filter.protocol, 6);
  EXPECT_EQ(*q->filter.comm, "curl");
  EXPECT_EQ(*q->filter.pid, 42u);
  EXPECT_EQ(*q->filter.close_reason, "rst_received");
  EXPECT_EQ(*q->filter.from_ns, kNow - 3600 * kSec);
  EXPECT_EQ(*q->filter.to_ns, kNow);
  EXPECT_EQ(*q->filter.interim, false);
  EXPECT_EQ(q->limit, 500u);
  EXPECT_EQ(q->offset, 1000u);
}

TEST(ApiParams, HostileFlowQueriesAreRefused) {
  const Params bad[] = {
      {{"limit", "100000000000"}},
      {{"limit", "10001"}},
      {{"limit", "0"}},
      {{"limit", "-1"}},
      {{"limit", "1; DROP TABLE flows"}},
      {{"offset", "99999999999999"}},
      {{"addr", "10.0.0.0/33"}},
      {{"addr", "not-an-ip"}},
      {{"addr", "' OR '1'='1"}},
      {{"src", "fd00::/200"}},
      {{"port", "65536"}},
      {{"port", "80 OR 1=1"}},
      {{"protocol", "tcp'--"}},
      {{"protocol", "256"}},
      {{"direction", "sideways"}},
      {{"pid", "4294967296"}},
      {{"container", "abc'; --"}},
      {{"container", std::string(200, 'a')}},
      {{"close", "fin' OR 'x'='x"}},
      {{"process", std::string(100, 'x')}},
      {{"process", ""}},
      {{"from", "tomorrow"}},
      {{"from", "-1h"}, {"to", "-2h"}},
      {{"record", "both"}},
      {{"unknown", "1"}},
      {{"limit", "1"}, {"limit", "2"}},
      {{"process", "a"}, {"comm", "b"}},
  };
  for (const auto& p : bad) {
    auto q = parse_flow_query(p, kNow);
    EXPECT_FALSE(q) << p.begin()->first << "=" << p.begin()->second;
    if (!q) {
      EXPECT_FALSE(q.error().message.empty());
      EXPECT_LT(q.error().message.size(), 300u);
    }
  }
}

TEST(ApiParams, SqlMetacharactersInTextFiltersAreData) {
  // A process name may contain anything printable: it is accepted and bound
  // as a value (the store test shows it matches nothing).
  auto q = parse_flow_query({{"process", "x' OR 1=1 --"}}, kNow);
  ASSERT_TRUE(q);
  EXPECT_EQ(*q->filter.comm, "x' OR 1=1 --");
}

TEST(ApiParams, TopQuery) {
  auto q = parse_top_query({{"group", "pair"}, {"by", "retransmits"}, {"limit", "5"}}, kNow);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->group, TopGroup::Pair);
  EXPECT_EQ(q->by, TopMetric::Retrans);
  EXPECT_EQ(q->limit, 5u);
  EXPECT_EQ(*q->filter.to_ns, kNow);
  EXPECT_EQ(*q->filter.from_ns, kNow - 3600 * kSec);
  for (const Params& p : {Params{{"group", "src_ip"}}, Params{{"group", "src; DROP TABLE flows"}},
                          Params{{"by", "packets"}}, Params{{"limit", "1001"}}, Params{{"offset", "1"}}}) {
    EXPECT_FALSE(parse_top_query(p, kNow)) << p.begin()->first << "=" << p.begin()->second;
  }
}

TEST(ApiParams, TopByNetwork) {
  auto d = parse_top_query({{"group", "dst_cidr"}}, kNow);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->group, TopGroup::DstCidr);
  EXPECT_EQ(d->cidr4, 24);
  EXPECT_EQ(d->cidr6, 64);
  auto q = parse_top_query({{"group", "src_cidr"}, {"cidr4", "16"}, {"cidr6", "128"}}, kNow);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->group, TopGroup::SrcCidr);
  EXPECT_EQ(q->cidr4, 16);
  EXPECT_EQ(q->cidr6, 128);
  auto other = parse_top_query({{"group", "src"}, {"cidr4", "16"}}, kNow);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().message, "parameter 'cidr4' needs group=src_cidr or group=dst_cidr");
  for (const Params& p : {Params{{"group", "src_cidr"}, {"cidr4", "33"}}, Params{{"group", "src_cidr"}, {"cidr6", "129"}},
                          Params{{"group", "dst_cidr"}, {"cidr4", "/24"}}, Params{{"group", "dst_cidr"}, {"cidr6", "-1"}}})
    EXPECT_FALSE(parse_top_query(p, kNow)) << p.rbegin()->first << "=" << p.rbegin()->second;
}

TEST(ApiParams, SeriesQuery) {
  auto q = parse_series_query({{"from", "-1h"}, {"interval", "5m"}}, kNow);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->interval_ns, 300 * kSec);
  auto d = parse_series_query({}, kNow);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->interval_ns, 60 * kSec);  // an hour in about 60 points
  for (const Params& p : {Params{{"interval", "0"}}, Params{{"interval", "0.5s"}}, Params{{"interval", "1y"}},
                          Params{{"from", "-30d"}, {"interval", "1s"}}, Params{{"interval", "1m'"}}}) {
    EXPECT_FALSE(parse_series_query(p, kNow)) << p.begin()->first << "=" << p.begin()->second;
  }
}

// Times are signed 64-bit nanoseconds in the store: anything later is refused,
// never wrapped into the past (which would make a far `from` match everything).
TEST(ApiParams, TimesPastInt64NanosecondsAreRefused) {
  EXPECT_EQ(*parse_time("9223372036", kNow), 9223372036ull * kSec);
  EXPECT_EQ(*parse_time("9223372036.854775807", kNow), static_cast<uint64_t>(INT64_MAX));
  for (const char* bad : {"9223372036.854775808", "9223372037", "18446744073", "18446744074", "9999999999999",
                          "2262-04-11T23:47:17Z", "9999-12-31T23:59:59Z", "2300-01-01T00:00:00+01:00"}) {
    auto t = parse_time(bad, kNow);
    EXPECT_FALSE(t) << bad << " -> " << (t ? *t : 0);
  }
  EXPECT_TRUE(parse_time("2262-04-11T23:47:16Z", kNow));
  auto q = parse_flow_query({{"from", "18446744074"}}, kNow);
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().message.find("'from'"), std::string::npos) << q.error().message;
}

TEST(ApiParams, FromAfterToIsRefusedEverywhere) {
  const Params reversed = {{"from", "-1h"}, {"to", "-2h"}};
  EXPECT_FALSE(parse_flow_query(reversed, kNow));
  EXPECT_FALSE(parse_top_query(reversed, kNow));
  EXPECT_FALSE(parse_series_query(reversed, kNow));
  // Only `from`, in the future: `to` defaults to now, so it is after `to`.
  const Params future = {{"from", "2100-01-01T00:00:00Z"}};
  auto t = parse_top_query(future, kNow);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("after"), std::string::npos);
  EXPECT_FALSE(parse_series_query(future, kNow));
  EXPECT_TRUE(parse_flow_query({{"from", "-1h"}, {"to", "-1h"}}, kNow));  // an instant is a range
}
