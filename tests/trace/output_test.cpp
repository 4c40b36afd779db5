// pcapng writer read back by libpcap, packet decoding, grouping of events.
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "trace/output.h"
#include "trace/packet.h"
#include "trace/pcapng.h"

namespace {

using namespace flowscope::trace;

std::vector<uint8_t> tcp_syn() {
  std::vector<uint8_t> b(40, 0);
  b[0] = 0x45;
  b[3] = 40;
  b[8] = 64;
  b[9] = 6;
  const uint8_t src[4] = {10, 1, 0, 1}, dst[4] = {10, 1, 0, 2};
  std::memcpy(&b[12], src, 4);
  std::memcpy(&b[16], dst, 4);
  b[20] = 0x9c;
  b[21] = 0x40;  // 40000
  b[23] = 9;     // discard
  b[32] = 0x50;
  b[33] = 0x02;
  return b;
}

TEST(Packet, DecodesTcp) {
  auto b = tcp_syn();
  PacketInfo pi = decode_packet(b.data(), b.size());
  EXPECT_EQ(pi.ip_version, 4);
  EXPECT_EQ(pi.summary(), "10.1.0.1:40000 > 10.1.0.2:9 TCP [S]");
  EXPECT_EQ(decode_packet(b.data(), 10).ip_version, 0);  // truncated
}

TEST(Pcapng, LibpcapReadsWhatWeWrite) {
  char path[] = "/tmp/fs-pcapng-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto pkt = tcp_syn();
  {
    auto w = PcapngWriter::open(path, FS_TRACE_SNAP);
    ASSERT_TRUE(w) << w.error().message;
    ASSERT_TRUE(w->write(1700000000123456789ull, pkt.data(), 40, 40, "path: a > b; drop NO_SOCKET"));
    ASSERT_TRUE(w->write(1700000001000000000ull, pkt.data(), 24, 40, "path: c"));  // odd length: padded
    ASSERT_TRUE(w->flush());
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, err);
  ASSERT_NE(p, nullptr) << err;
  EXPECT_EQ(pcap_datalink(p), DLT_RAW);
  pcap_pkthdr* h;
  const u_char* data;
  ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
  EXPECT_EQ(h->caplen, 40u);
  EXPECT_EQ(h->ts.tv_sec, 1700000000);
  EXPECT_EQ(h->ts.tv_usec, 123456789);  // nanoseconds with NANO precision
  EXPECT_EQ(std::memcmp(data, pkt.data(), 40), 0);
  ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
  EXPECT_EQ(h->caplen, 24u);
  EXPECT_EQ(h->len, 40u);
  EXPECT_EQ(pcap_next_ex(p, &h, &data), PCAP_ERROR_BREAK);
  pcap_close(p);
  unlink(path);
}

fs_trace_event event(uint64_t id, uint32_t tp, uint64_t ts, uint16_t flags = 0, uint32_t reason = 0) {
  fs_trace_event ev{};
  ev.pkt_id = id;
  ev.tp = tp;
  ev.ts_ns = ts;
  ev.flags = flags;
  ev.reason = reason;
  std::strcpy(ev.ifname, "eth0");
  auto b = tcp_syn();
  std::memcpy(ev.pkt, b.data(), b.size());
  ev.cap_len = static_cast<uint16_t>(b.size());
  return ev;
}

TEST(Assembler, CompletesAtFreeInTimeOrder) {
  EventNames n({"netif_receive_skb", "ip_local", "kfree_skb"}, {{2, "NO_SOCKET"}, {0, "SKB_NOT_DROPPED_YET"}}, Kallsyms{}, 0);
  PacketAssembler as(std::chrono::seconds(2), 100);
  EXPECT_TRUE(as.add(event(1, 1, 200)).empty());
  EXPECT_TRUE(as.add(event(1, 0, 100)).empty());  // arrived late from another CPU
  EXPECT_TRUE(as.add(event(2, 0, 150)).empty());
  auto done = as.add(event(1, 2, 300, FS_TEV_FREE | FS_TEV_HAS_REASON, 2));
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].events.size(), 3u);
  EXPECT_EQ(done[0].events[0].ts_ns, 100u);
  EXPECT_TRUE(done[0].freed);
  EXPECT_EQ(packet_comment(n, done[0]), "path: netif_receive_skb@eth0 > ip_local@eth0 > kfree_skb@eth0; drop NO_SOCKET");
  const std::string block = format_packet_block(n, done[0]);
  EXPECT_NE(block.find("DROP NO_SOCKET"), std::string::npos) << block;
  // Packet 2 never freed: ends by the idle timeout.
  EXPECT_TRUE(as.expire(150 + 1000000000ull).empty());
  auto idle = as.expire(150 + 3000000000ull);
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_FALSE(idle[0].freed);
}

TEST(Assembler, BoundedOpenPackets) {
  PacketAssembler as(std::chrono::seconds(2), 2);
  as.add(event(1, 0, 1));
  as.add(event(2, 0, 2));
  auto out = as.add(event(3, 0, 3));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 1u);
  EXPECT_EQ(as.pushed_out(), 1u);
  EXPECT_EQ(as.open(), 2u);
}

TEST(Drops, SummaryCountsDropsOnly) {
  EventNames n({"kfree_skb"}, {{2, "NO_SOCKET"}, {1, "SKB_CONSUMED"}}, Kallsyms{}, 0);
  DropSummary d;
  d.add(n, event(1, 0, 1, FS_TEV_FREE | FS_TEV_HAS_REASON, 2));
  d.add(n, event(2, 0, 2, FS_TEV_FREE | FS_TEV_HAS_REASON, 2));
  d.add(n, event(3, 0, 3, FS_TEV_FREE | FS_TEV_HAS_REASON, 1));
  EXPECT_EQ(d.total(), 2u);
  EXPECT_NE(d.render("t").find("NO_SOCKET"), std::string::npos);
}

}  // namespace
