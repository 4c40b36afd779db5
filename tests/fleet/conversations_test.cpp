// The joiner: which records are the same connection seen from its two ends.
#include "collector/conversations.h"

#include <gtest/gtest.h>

#include "net/cidr.h"

using namespace flowscope;

namespace {

constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;

FlowRow end_row(const char* host, const char* src, uint16_t sport, const char* dst, uint16_t dport, uint64_t start,
                uint64_t end, Direction dir, bool interim = false) {
  FlowRow r;
  r.exporter = "192.0.2.10";
  r.host = host;
  r.start_ns = start;
  r.end_ns = end;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.direction = dir;
  r.bidirectional = true;
  r.cumulative = true;
  r.interim = interim;
  return r;
}

FlowRow client(uint64_t start, uint64_t end, bool interim = false) {
  return end_row("h1", "10.0.0.1", 40000, "10.0.0.2", 80, start, end, Direction::Outbound, interim);
}
FlowRow server(uint64_t start, uint64_t end, bool interim = false) {
  return end_row("h2", "10.0.0.2", 80, "10.0.0.1", 40000, start, end, Direction::Inbound, interim);
}

}  // namespace

TEST(Conversations, BothEndsShareOneIdAndTheSecondIsTheMirror) {
  ConversationJoiner j;
  FlowRow a1 = client(kT0, kT0 + 10 * kSec, true);
  FlowRow b = server(kT0 + 2 * kSec, kT0 + 12 * kSec);  // the server's clock 2 s ahead
  FlowRow a2 = client(kT0, kT0 + 11 * kSec);
  j.assign(a1);
  j.assign(b);
  j.assign(a2);
  ASSERT_TRUE(a1.conversation && b.conversation && a2.conversation);
  EXPECT_EQ(*a1.conversation, *b.conversation);
  EXPECT_EQ(*a1.conversation, *a2.conversation);
  EXPECT_FALSE(a1.mirror.value_or(false));
  EXPECT_TRUE(b.mirror.value_or(false));
  EXPECT_FALSE(a2.mirror.value_or(false));  // the counted end stays the counted end
  EXPECT_EQ(j.stats().joined, 1u);
}

TEST(Conversations, TheFirstEndSeenIsCountedWhicheverItIs) {
  ConversationJoiner j;
  FlowRow b = server(kT0, kT0 + kSec);
  FlowRow a = client(kT0, kT0 + kSec);
  j.assign(b);
  j.assign(a);
  EXPECT_EQ(b.conversation, a.conversation);
  EXPECT_FALSE(b.mirror.value_or(false));
  EXPECT_TRUE(a.mirror.value_or(false));
}

TEST(Conversations, EndsFurtherApartThanTheSkewAreNotJoined) {
  ConversationJoiner j({.skew_ns = 5 * kSec});
  FlowRow a = client(kT0, kT0 + kSec);
  FlowRow near = server(kT0 + 6 * kSec - 1, kT0 + 7 * kSec);  // starts within 5 s of a's last record
  j.assign(a);
  j.assign(near);
  EXPECT_EQ(a.conversation, near.conversation);

  ConversationJoiner k({.skew_ns = 5 * kSec});
  FlowRow a2 = client(kT0, kT0 + kSec);
  FlowRow far = server(kT0 + 6 * kSec + 1, kT0 + 7 * kSec);
  k.assign(a2);
  k.assign(far);
  EXPECT_NE(a2.conversation, far.conversation);
  EXPECT_FALSE(far.mirror.value_or(false));  // not joined: counted on its own, never labelled by a
}

TEST(Conversations, AReusedTupleIsANewConversation) {
  ConversationJoiner j;
  FlowRow a = client(kT0, kT0 + kSec);
  FlowRow b = server(kT0, kT0 + kSec);
  FlowRow a_again = client(kT0 + 100 * kSec, kT0 + 101 * kSec);
  FlowRow b_again = server(kT0 + 100 * kSec, kT0 + 101 * kSec);
  for (FlowRow* r : {&a, &b, &a_again, &b_again}) j.assign(*r);
  EXPECT_EQ(a.conversation, b.conversation);
  EXPECT_EQ(a_again.conversation, b_again.conversation);
  EXPECT_NE(a.conversation, a_again.conversation);
  EXPECT_TRUE(b_again.mirror.value_or(false));
  EXPECT_FALSE(a_again.mirror.value_or(false));
}

TEST(Conversations, LoopbackEndsOnOneHostJoin) {
  ConversationJoiner j;
  FlowRow a = end_row("h1", "127.0.0.1", 40000, "127.0.0.1", 8080, kT0, kT0 + kSec, Direction::Outbound);
  FlowRow b = end_row("h1", "127.0.0.1", 8080, "127.0.0.1", 40000, kT0, kT0 + kSec, Direction::Inbound);
  j.assign(a);
  j.assign(b);
  EXPECT_EQ(a.conversation, b.conversation);
  EXPECT_TRUE(b.mirror.value_or(false));
}

TEST(Conversations, OneWayRecordsAreHalvesAndNotJoined) {
  ConversationJoiner j;
  FlowRow fwd = client(kT0, kT0 + kSec), rev = server(kT0, kT0 + kSec);
  fwd.bidirectional = rev.bidirectional = false;
  j.assign(fwd);
  j.assign(rev);
  EXPECT_FALSE(fwd.conversation);
  EXPECT_FALSE(rev.mirror.value_or(false));
  EXPECT_EQ(j.stats().skipped, 2u);
}

TEST(Conversations, ThirdViewOfAJoinedTupleStartsItsOwn) {
  // Two ends are all a connection has: a third record claiming the server's
  // side (another host reusing the address at the same time) is not joined.
  ConversationJoiner j;
  FlowRow a = client(kT0, kT0 + kSec), b = server(kT0, kT0 + kSec);
  FlowRow c = end_row("h3", "10.0.0.2", 80, "10.0.0.1", 40000, kT0, kT0 + kSec, Direction::Inbound);
  for (FlowRow* r : {&a, &b, &c}) j.assign(*r);
  EXPECT_NE(c.conversation, a.conversation);
  EXPECT_FALSE(c.mirror.value_or(false));
}

TEST(Conversations, MemoryIsBoundedAndForgettingIsCounted) {
  ConversationJoiner j({.max_conversations = 100});
  for (uint16_t p = 1; p <= 1000; ++p) {
    FlowRow r = end_row("h1", "10.0.0.1", p, "10.0.0.2", 80, kT0 + p, kT0 + p + 1, Direction::Outbound);
    j.assign(r);
  }
  EXPECT_LE(j.stats().open, 100u);
  EXPECT_GE(j.stats().forgotten, 900u);
}

TEST(Conversations, EndedConversationsAreDroppedAfterTheirLinger) {
  ConversationJoiner j({.linger_ns = 10 * kSec});
  FlowRow old = client(kT0, kT0 + kSec);
  j.assign(old);
  // 5000 later records move data time on by far more than the linger.
  for (uint16_t p = 1; p <= 5000; ++p) {
    FlowRow r = end_row("h1", "10.0.1.1", p, "10.0.1.2", 80, kT0 + 100 * kSec, kT0 + 100 * kSec + p, Direction::Outbound);
    j.assign(r);
  }
  FlowRow late = server(kT0, kT0 + kSec);  // its other end arrives 100 s of data time later
  j.assign(late);
  EXPECT_NE(late.conversation, old.conversation);
  EXPECT_EQ(j.stats().forgotten, 0u);  // lingering out is not forgetting
}
