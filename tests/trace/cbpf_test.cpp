// The cBPF interpreter that runs inside the kernel (bpf/cbpf.h), built for the
// host, against libpcap's own bpf_filter() on crafted packets: every filter
// expression of the table must give the same verdict on every packet.
#include <pcap/pcap.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "trace/filter.h"

namespace {

using flowscope::trace::compile_filter;
using flowscope::trace::filter_bytes_needed;
using flowscope::trace::parse_mark;
using flowscope::trace::run_filter;

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}

// IPv4 header (20 bytes + options) + L4 header + payload.
Bytes ipv4(uint8_t proto, const uint8_t src[4], const uint8_t dst[4], size_t l4len, size_t opts = 0,
           uint16_t frag = 0, uint8_t ttl = 64) {
  const size_t ihl = 20 + opts;
  Bytes b(ihl + l4len, 0);
  b[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
  put16(b, 2, static_cast<uint16_t>(b.size()));
  put16(b, 6, frag);
  b[8] = ttl;
  b[9] = proto;
  std::memcpy(&b[12], src, 4);
  std::memcpy(&b[16], dst, 4);
  for (size_t i = 0; i < opts; i++) b[20 + i] = 1;  // NOPs
  return b;
}

Bytes ipv6(uint8_t next, const uint8_t src_last, const uint8_t dst_last, size_t l4len) {
  Bytes b(40 + l4len, 0);
  b[0] = 0x60;
  put16(b, 4, static_cast<uint16_t>(l4len));
  b[6] = next;
  b[7] = 64;
  b[8] = 0xfd;
  b[23] = src_last;
  b[24] = 0xfd;
  b[39] = dst_last;
  return b;
}

void ports(Bytes& b, size_t l4, uint16_t sp, uint16_t dp) {
  put16(b, l4, sp);
  put16(b, l4 + 2, dp);
}

std::vector<std::pair<std::string, Bytes>> packets() {
  const uint8_t a[4] = {10, 0, 0, 1}, c[4] = {10, 0, 0, 2}, d[4] = {192, 168, 7, 9};
  std::vector<std::pair<std::string, Bytes>> v;
  {
    Bytes b = ipv4(6, a, c, 20);
    ports(b, 20, 40000, 443);
    b[20 + 12] = 0x50;
    b[20 + 13] = 0x02;  // SYN
    v.emplace_back("tcp syn 10.0.0.1:40000 > 10.0.0.2:443", b);
  }
  {
    Bytes b = ipv4(6, c, a, 20 + 100);
    ports(b, 20, 443, 40000);
    b[20 + 12] = 0x50;
    b[20 + 13] = 0x18;  // PSH ACK
    v.emplace_back("tcp data 10.0.0.2:443 > 10.0.0.1:40000", b);
  }
  {
    Bytes b = ipv4(6, a, d, 20, 8);  // IP options: the TCP header moves
    ports(b, 28, 5555, 80);
    b[28 + 12] = 0x50;
    b[28 + 13] = 0x04;  // RST
    v.emplace_back("tcp rst with ip options", b);
  }
  {
    Bytes b = ipv4(17, a, c, 8 + 32);
    ports(b, 20, 5353, 53);
    v.emplace_back("udp 53", b);
  }
  {
    Bytes b = ipv4(17, d, a, 8 + 32, 0, 0x00b9);  // later fragment: no UDP header
    ports(b, 20, 5353, 53);
    v.emplace_back("udp fragment", b);
  }
  {
    Bytes b = ipv4(1, a, c, 8 + 56, 0, 0, 1);
    b[20] = 8;  // echo request
    v.emplace_back("icmp echo ttl 1", b);
  }
  {
    Bytes b = ipv6(6, 1, 2, 20);
    ports(b, 40, 40001, 80);
    b[40 + 13] = 0x02;
    v.emplace_back("tcp6 syn", b);
  }
  {
    Bytes b = ipv6(17, 2, 1, 8 + 10);
    ports(b, 40, 9999, 7001);
    v.emplace_back("udp6", b);
  }
  {
    Bytes b = ipv6(58, 1, 2, 8);
    b[40] = 128;
    v.emplace_back("icmp6 echo", b);
  }
  {
    Bytes b = ipv4(6, a, c, 20 + 260);  // longer than the bytes a filter sees
    ports(b, 20, 40002, 443);
    b[20 + 12] = 0x50;
    b[20 + 13] = 0x18;
    for (size_t i = 40; i < b.size(); i++) b[i] = static_cast<uint8_t>(i * 7);
    v.emplace_back("tcp long payload", b);
  }
  v.emplace_back("not ip", Bytes{0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01});
  return v;
}

const char* kExpressions[] = {
    "",
    "tcp",
    "udp",
    "icmp",
    "ip6",
    "icmp6",
    "host 10.0.0.2",
    "src host 10.0.0.1 and dst host 10.0.0.2",
    "net 192.168.0.0/16",
    "tcp port 443",
    "tcp dst port 80",
    "udp and port 53",
    "port 53 or port 443",
    "portrange 7000-7100",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-rst) != 0",
    "tcp[13] == 0x18",
    "ip[8] == 1",
    "ip[8] < 64",
    "len > 100",
    "less 60",
    "greater 100",
    "ip6 and tcp and dst port 80",
    "ip6 host fd00::2",
    "not tcp",
    "not (tcp or udp)",
    "ip[6:2] & 0x1fff != 0",
    "icmp[icmptype] == icmp-echo",
    "ip6[40] == 128",
    "tcp and (port 443 or port 80) and not host 192.168.7.9",
    "udp[8:2] = 0",
    "ip[0] & 0xf > 5",
    "(ip[2:2] - ((ip[0]&0xf)<<2)) > 50",
    "ip proto 17",
    "ip6 proto 17",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0",
    "ip[2:2] % 7 == 3",
    "ip[2:2] / 3 == 20",
    "tcp[100:4] = 0x1c232a31",
    "ip[200] == 0x38",
    "ip[ip[0] & 0xf] == 0",
    "tcp[tcp[12] >> 4] != 1",
};

TEST(CbpfInterpreter, AgreesWithLibpcapBpfFilter) {
  int compared = 0;
  for (const char* expr : kExpressions) {
    auto prog = compile_filter(expr);
    ASSERT_TRUE(prog) << expr << ": " << prog.error().message;
    // libpcap's own program for the same expression, same link type.
    pcap_t* p = pcap_open_dead(DLT_RAW, 262144);
    bpf_program bp{};
    ASSERT_EQ(pcap_compile(p, &bp, expr, 1, PCAP_NETMASK_UNKNOWN), 0) << expr;
    for (const auto& [name, pkt] : packets()) {
      // Full packet, and cut short (a filter reading past the bytes we copy
      // must reject, as bpf_filter does with a short buffer).
      for (uint32_t cap : {static_cast<uint32_t>(pkt.size()), std::min<uint32_t>(24, static_cast<uint32_t>(pkt.size()))}) {
        const uint32_t wire = static_cast<uint32_t>(pkt.size());
        const bool want = bp.bf_len == 0 || bpf_filter(bp.bf_insns, pkt.data(), wire, cap) != 0;
        const bool got = run_filter(*prog, pkt.data(), cap, wire) != 0;
        EXPECT_EQ(got, want) << "expression \"" << expr << "\" packet \"" << name << "\" caplen " << cap;
        compared++;
      }
    }
    pcap_freecode(&bp);
    pcap_close(p);
  }
  EXPECT_GT(compared, 500);
}

// The kernel copies only filter_bytes_needed() bytes for the filter: the
// verdict must be the one the full copy gives, on every packet and length.
TEST(CbpfInterpreter, CopyingOnlyTheBytesTheFilterReachesGivesTheSameVerdict) {
  int compared = 0;
  for (const char* expr : kExpressions) {
    auto prog = compile_filter(expr);
    ASSERT_TRUE(prog) << expr;
    const uint32_t need = filter_bytes_needed(*prog);
    EXPECT_LE(need, static_cast<uint32_t>(FS_CBPF_PKT_MAX)) << expr;
    for (const auto& [name, pkt] : packets()) {
      const uint32_t wire = static_cast<uint32_t>(pkt.size());
      const uint32_t full = std::min<uint32_t>(wire, FS_CBPF_PKT_MAX);
      for (uint32_t cap = 0; cap <= full; cap++) {
        const bool want = run_filter(*prog, pkt.data(), cap, wire) != 0;
        const bool got = run_filter(*prog, pkt.data(), std::min(cap, need), wire) != 0;
        ASSERT_EQ(got, want) << "expression \"" << expr << "\" packet \"" << name << "\" caplen " << cap << " bound " << need;
        compared++;
      }
    }
  }
  EXPECT_GT(compared, 10000);
}

TEST(CbpfInterpreter, ByteBoundsOfCommonFilters) {
  auto need = [](const char* e) { return filter_bytes_needed(*compile_filter(e)); };
  EXPECT_EQ(need(""), 0u);
  EXPECT_EQ(need("ip[8] == 1"), 9u);
  // Ports behind an IPv4 header of at most 60 bytes.
  EXPECT_LE(need("tcp port 9"), 64u);
  EXPECT_GE(need("tcp port 9"), 64u);
  EXPECT_LE(need("tcp and host 10.0.0.2 and port 443"), 64u);
  EXPECT_GE(need("ip[200] == 1"), 201u);
  // An offset read from the packet: anything up to the copy limit.
  EXPECT_EQ(need("tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0"), 60u + 60u + 4u);
}

TEST(CbpfInterpreter, BadExpressionNamesItAndLibpcapReason) {
  auto prog = compile_filter("tcp and prot 80");
  ASSERT_FALSE(prog);
  EXPECT_NE(prog.error().message.find("\"tcp and prot 80\""), std::string::npos) << prog.error().message;
  EXPECT_NE(prog.error().message.find("syntax error"), std::string::npos) << prog.error().message;
}

TEST(CbpfInterpreter, EmptyExpressionMatchesEverything) {
  auto prog = compile_filter("  ");
  ASSERT_TRUE(prog);
  EXPECT_TRUE(prog->empty());
  const uint8_t junk[4] = {1, 2, 3, 4};
  EXPECT_EQ(run_filter(*prog, junk, 4, 4), 1u);
}

TEST(CbpfInterpreter, InvalidProgramsRejectSafely) {
  // Jump past the end, division by zero, load out of bounds: no match, no crash.
  std::vector<fs_cbpf_insn> jump_off_end = {{0x05, 0, 0, 100}, {0x06, 0, 0, 1}};
  std::vector<fs_cbpf_insn> div_zero = {{0x00, 0, 0, 5}, {0x34, 0, 0, 0}, {0x06, 0, 0, 1}};
  std::vector<fs_cbpf_insn> load_far = {{0x20, 0, 0, 0xfffffffe}, {0x06, 0, 0, 1}};
  std::vector<fs_cbpf_insn> no_return = {{0x00, 0, 0, 5}};
  const uint8_t pkt[64] = {0x45};
  for (const auto* prog : {&jump_off_end, &div_zero, &load_far, &no_return}) EXPECT_EQ(run_filter(*prog, pkt, 64, 64), 0u);
}

TEST(Mark, ParsesValueAndMask) {
  auto m = parse_mark("0x10/0xf0");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->first, 0x10u);
  EXPECT_EQ(m->second, 0xf0u);
  auto plain = parse_mark("7");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->second, 0xffffffffu);
  EXPECT_FALSE(parse_mark("abc"));
  EXPECT_FALSE(parse_mark("1/0"));
  EXPECT_FALSE(parse_mark("-1"));
}

}  // namespace
