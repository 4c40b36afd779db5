// pcapng writer read back by libpcap, packet decoding, grouping of events.
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "trace/output.h"
#include "trace/packet.h"
#include "trace/pcapng.h"
#include "support/netns.h"

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

// IPv6 behind extension headers, the way a real stack sends them; tshark's
// dissection of the same bytes is the truth for what the transport header is.
std::vector<uint8_t> ipv6(uint8_t next, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b(40, 0);
  b[0] = 0x60;
  b[4] = static_cast<uint8_t>(payload.size() >> 8);
  b[5] = static_cast<uint8_t>(payload.size());
  b[6] = next;
  b[7] = 64;
  b[8] = 0xfd;
  b[23] = 1;  // fd00::1
  b[24] = 0xfd;
  b[39] = 2;  // fd00::2
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(Packet, Ipv6ExtensionHeadersDecodeAsTsharkDoes) {
  const std::vector<uint8_t> udp{0x14, 0xe9, 0, 53, 0, 12, 0, 0, 'a', 'b', 'c', 'd'};  // 5353 > 53
  const std::vector<uint8_t> syn{0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 4, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> psh{0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 4, 0, 0, 0, 0, 0, 'h', 'i'};
  const std::vector<uint8_t> echo{128, 0, 0, 0, 0, 1, 0, 1};
  struct Case {
    std::vector<uint8_t> pkt;
    size_t caplen;
  };
  std::vector<Case> cases;
  auto add = [&](std::vector<uint8_t> p, size_t cut = 0) {
    const size_t n = p.size();
    cases.push_back({std::move(p), cut ? cut : n});
  };
  add(ipv6(0, cat({{60, 0, 1, 4, 0, 0, 0, 0}, {17, 0, 1, 4, 0, 0, 0, 0}, udp})));  // hop-by-hop, dest. options
  add(ipv6(44, cat({{6, 0, 0, 1, 0, 0, 0x12, 0x34}, syn})));                       // first fragment
  add(ipv6(51, cat({{6, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, std::vector<uint8_t>(12, 0), psh})));  // AH
  add(ipv6(44, cat({{17, 0, 0x03, 0x20, 0, 0, 0x12, 0x34}, udp})));               // later fragment
  add(ipv6(43, cat({{58, 0, 253, 0, 0, 0, 0, 0}, echo})));                         // routing header
  add(ipv6(0, cat({{60, 0, 1, 4, 0, 0, 0, 0}, {17, 0, 1, 4, 0, 0, 0, 0}, udp})), 52);  // chain cut short
  add(tcp_syn());

  char path[] = "/tmp/fs-ext6-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    auto w = PcapngWriter::open(path, FS_TRACE_SNAP);
    ASSERT_TRUE(w) << w.error().message;
    for (const auto& c : cases)
      ASSERT_TRUE(w->write(1700000000000000000ull, c.pkt.data(), static_cast<uint32_t>(c.caplen),
                           static_cast<uint32_t>(c.pkt.size()), ""));
    ASSERT_TRUE(w->flush());
  }
  const std::string out = fstest::sh_out(
      std::string("tshark -r ") + path +
      " -o ipv6.defragment:FALSE -T fields -E separator=, -e tcp.srcport -e tcp.dstport -e tcp.flags"
      " -e udp.srcport -e udp.dstport -e icmpv6.type -e icmpv6.code 2>/dev/null");
  unlink(path);
  std::istringstream lines(out);
  std::string line;
  for (size_t i = 0; i < cases.size(); i++) {
    ASSERT_TRUE(std::getline(lines, line)) << "tshark printed " << i << " lines:\n" << out;
    const PacketInfo pi = decode_packet(cases[i].pkt.data(), cases[i].caplen);
    std::string ours;
    auto field = [&](bool set, auto v) { ours += (set ? fmt::format("{}", v) : std::string()) + ","; };
    const bool tcp = pi.has_ports && pi.proto == 6, udp_ = pi.has_ports && pi.proto == 17;
    field(tcp, pi.sport);
    field(tcp, pi.dport);
    field(tcp, fmt::format("0x{:04x}", pi.tcp_flags));
    field(udp_, pi.sport);
    field(udp_, pi.dport);
    field(pi.icmp_type >= 0, pi.icmp_type);
    ours += pi.icmp_code >= 0 ? std::to_string(pi.icmp_code) : "";
    EXPECT_EQ(ours, line) << "packet " << i << ": " << pi.summary();
  }
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

// trace --functions: a function event is named by the function and the
// probe's offset in it, from kallsyms; its JSON has "function", no location.
TEST(Output, FunctionEventsNamedFromKallsyms) {
  const std::string path = fmt::format("/tmp/fs-kallsyms-{}", getpid());
  {
    std::ofstream f(path);
    f << "ffffffff81000000 T ip_rcv\nffffffff81000100 t nft_do_chain_inet\t[nf_tables]\nffffffff81000200 T kfree_skb\n";
  }
  EventNames n({"kfree_skb"}, {{2, "NETFILTER_DROP"}}, Kallsyms::load(path), 0);
  unlink(path.c_str());
  fs_trace_event ev = event(1, FS_TP_FUNC, 100, FS_TEV_FUNC);
  ev.location = 0xffffffff81000104;
  EXPECT_EQ(n.tracepoint(ev), "nft_do_chain_inet+0x4");
  const auto j = event_json(n, ev);
  EXPECT_EQ(j["function"], "nft_do_chain_inet");
  EXPECT_EQ(j["tracepoint"], "nft_do_chain_inet+0x4");
  EXPECT_FALSE(j.contains("location"));
  fs_trace_event drop = event(1, 0, 200, FS_TEV_FREE | FS_TEV_HAS_REASON, 2);
  drop.location = 0xffffffff81000000 + 0x30;
  PacketAssembler as(std::chrono::seconds(2), 100);
  EXPECT_TRUE(as.add(ev).empty());
  auto done = as.add(drop);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(packet_comment(n, done[0]),
            "path: nft_do_chain_inet+0x4@eth0 > kfree_skb@eth0; drop NETFILTER_DROP at ip_rcv+0x30");
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
