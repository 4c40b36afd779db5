// decode_flow (the agent's kernel record to a Flow): the kernel's sequence-space counters become payload bytes.
// Expected values come from the kernel behaviour recorded in FIELD-NOTES
// (client sent 10000 / received 500: bytes_acked 10002, bytes_received 501;
// server: bytes_acked 501, bytes_received 10001).
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "agent/kernel_record.h"

namespace flowscope {
namespace {

fs_flow base(uint8_t direction) {
  fs_flow k{};
  k.direction = direction;
  k.kind = FS_KIND_FINAL;
  k.tuple.family = AF_INET;
  inet_pton(AF_INET, "10.1.0.1", k.tuple.local_addr);
  inet_pton(AF_INET, "10.1.0.2", k.tuple.remote_addr);
  k.tuple.local_port = 40000;
  k.tuple.remote_port = 80;
  k.start_ns = 1000;
  k.end_ns = 5000;
  return k;
}

TEST(DecodeFlow, ClientPayloadTakesOutSynAndFin) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  k.bytes_acked = 10002;
  k.bytes_received = 501;
  k.flags = FS_F_ESTABLISHED | FS_F_SYN_ACKED | FS_F_FIN_SENT | FS_F_FIN_ACKED | FS_F_FIN_RECEIVED;
  k.last_state = TCP_FIN_WAIT2;
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.bytes, 10000u);
  EXPECT_EQ(r.rev_bytes, 500u);
  EXPECT_EQ(r.close, CloseReason::Fin);
  EXPECT_EQ(r.direction, Direction::Outbound);
}

TEST(DecodeFlow, ServerPayloadHasNoSyn) {
  fs_flow k = base(FS_DIR_INBOUND);
  k.bytes_acked = 501;
  k.bytes_received = 10001;
  k.flags = FS_F_ESTABLISHED | FS_F_FIN_SENT | FS_F_FIN_ACKED | FS_F_FIN_RECEIVED;
  k.last_state = TCP_LAST_ACK;
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.bytes, 500u);
  EXPECT_EQ(r.rev_bytes, 10000u);
}

TEST(DecodeFlow, UnackedFinIsNotSubtracted) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  k.bytes_acked = 101;  // SYN + 100 bytes; our FIN never acked
  k.flags = FS_F_ESTABLISHED | FS_F_SYN_ACKED | FS_F_FIN_SENT;
  EXPECT_EQ(decode_flow(k, 0, {}).bytes, 100u);
}

TEST(DecodeFlow, ZeroBytesNeverUnderflow) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  k.flags = FS_F_SYN_ACKED | FS_F_FIN_ACKED | FS_F_FIN_RECEIVED;
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(r.rev_bytes, 0u);
}

TEST(DecodeFlow, RttUnitsFollowTcpInfo) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  k.srtt_us = 800;  // x8
  k.mdev_us = 400;  // x4 for tcpi_rttvar
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.srtt_us, 100u);
  EXPECT_EQ(r.rttvar_us, 100u);
  k.srtt_us = 0;  // no sample: the initial mdev is meaningless
  EXPECT_EQ(decode_flow(k, 0, {}).rttvar_us, 0u);
}

TEST(DecodeFlow, V4MappedIsReportedAsV4) {
  fs_flow k = base(FS_DIR_INBOUND);
  k.tuple.family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.0.2.7", k.tuple.local_addr);
  inet_pton(AF_INET6, "::ffff:192.0.2.9", k.tuple.remote_addr);
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.family(), 4);
  EXPECT_EQ(ip16_to_string(r.src_ip), "192.0.2.7");
  EXPECT_EQ(ip16_to_string(r.dst_ip), "192.0.2.9");
}

// The agent formats IPv4 addresses itself (speed); libc's inet_ntop is the
// reference, over every value each octet can take.
TEST(DecodeFlow, Ipv4TextMatchesInetNtop) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  for (unsigned v = 0; v < 256; v++) {
    const uint8_t la[4] = {uint8_t(v), uint8_t(255 - v), uint8_t(v * 7), uint8_t(v / 3)};
    const uint8_t ra[4] = {uint8_t(v / 10), uint8_t(v), 0, 255};
    std::memcpy(k.tuple.local_addr, la, 4);
    std::memcpy(k.tuple.remote_addr, ra, 4);
    Flow r = decode_flow(k, 0, {});
    // ip16_format is the JSON lines' fast path; inet_ntop the reference.
    char l[INET_ADDRSTRLEN], rr[INET_ADDRSTRLEN], out[INET6_ADDRSTRLEN];
    ASSERT_EQ(std::string(out, ip16_format(r.src_ip, out)), inet_ntop(AF_INET, la, l, sizeof(l)));
    ASSERT_EQ(std::string(out, ip16_format(r.dst_ip, out)), inet_ntop(AF_INET, ra, rr, sizeof(rr)));
  }
}

TEST(DecodeFlow, RealV6StaysV6) {
  fs_flow k = base(FS_DIR_INBOUND);
  k.tuple.family = AF_INET6;
  inet_pton(AF_INET6, "fd00:1::1", k.tuple.local_addr);
  inet_pton(AF_INET6, "fd00:1::2", k.tuple.remote_addr);
  Flow r = decode_flow(k, 0, {});
  EXPECT_EQ(r.family(), 6);
  EXPECT_EQ(ip16_to_string(r.src_ip), "fd00:1::1");
}

TEST(DecodeFlow, TimesShiftToEpoch) {
  fs_flow k = base(FS_DIR_OUTBOUND);
  Flow r = decode_flow(k, 1'700'000'000'000'000'000, {});
  EXPECT_EQ(r.start_ns, 1'700'000'000'000'001'000u);
  EXPECT_EQ(r.duration_ns(), 4000u);
}

TEST(DecodeFlow, DropNamesFromTable) {
  fs_flow k = base(FS_DIR_INBOUND);
  k.drops[0] = {.reason = 3 + 1, .count = 7};  // slots store reason + 1
  k.drops[1] = {.reason = 99 + 1, .count = 1};
  k.drops_other = 2;
  Flow r = decode_flow(k, 0, {{3, "NETFILTER_DROP"}});
  ASSERT_EQ(r.drops.size(), 3u);
  EXPECT_EQ(r.drops[0].reason, "NETFILTER_DROP");
  EXPECT_EQ(r.drops[0].count, 7u);
  EXPECT_EQ(r.drops[1].reason, "reason_99");
  EXPECT_EQ(r.drops[2].reason, "other");
}

struct CloseCase {
  const char* name;
  uint32_t flags;
  uint8_t last_state;
  uint32_t sk_err;
  uint8_t kind;
  CloseReason want;
};

void PrintTo(const CloseCase& c, std::ostream* os) { *os << c.name; }

class CloseReasonTest : public ::testing::TestWithParam<CloseCase> {};

TEST_P(CloseReasonTest, Maps) {
  const auto& c = GetParam();
  fs_flow k = base(FS_DIR_OUTBOUND);
  k.flags = c.flags;
  k.last_state = c.last_state;
  k.sk_err = c.sk_err;
  k.kind = c.kind;
  EXPECT_EQ(close_reason(k), c.want) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, CloseReasonTest,
    ::testing::Values(
        CloseCase{"normal", FS_F_FIN_SENT, TCP_FIN_WAIT2, 0, FS_KIND_FINAL, CloseReason::Fin},
        CloseCase{"refused", FS_F_RST_RECEIVED, TCP_SYN_SENT, ECONNREFUSED, FS_KIND_FINAL, CloseReason::Refused},
        CloseCase{"reset by peer", FS_F_RST_RECEIVED, TCP_ESTABLISHED, ECONNRESET, FS_KIND_FINAL, CloseReason::RstReceived},
        CloseCase{"reset in close_wait", FS_F_RST_RECEIVED, TCP_CLOSE_WAIT, EPIPE, FS_KIND_FINAL, CloseReason::RstReceived},
        CloseCase{"we reset", FS_F_RST_SENT, TCP_ESTABLISHED, 0, FS_KIND_FINAL, CloseReason::RstSent},
        CloseCase{"abort with linger 0", 0, TCP_ESTABLISHED, 0, FS_KIND_FINAL, CloseReason::RstSent},
        CloseCase{"abort after peer fin", FS_F_FIN_RECEIVED, TCP_CLOSE_WAIT, 0, FS_KIND_FINAL, CloseReason::RstSent},
        CloseCase{"passive close", FS_F_FIN_SENT | FS_F_FIN_ACKED, TCP_LAST_ACK, 0, FS_KIND_FINAL, CloseReason::Fin},
        CloseCase{"simultaneous close", FS_F_FIN_SENT, TCP_CLOSING, 0, FS_KIND_FINAL, CloseReason::Fin},
        CloseCase{"syn timeout", 0, TCP_SYN_SENT, ETIMEDOUT, FS_KIND_FINAL, CloseReason::Timeout},
        CloseCase{"established timeout", 0, TCP_ESTABLISHED, ETIMEDOUT, FS_KIND_FINAL, CloseReason::Timeout},
        CloseCase{"interim", FS_F_RST_SENT, TCP_ESTABLISHED, 0, FS_KIND_INTERIM, CloseReason::Active}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (auto& ch : n)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

}  // namespace
}  // namespace flowscope
