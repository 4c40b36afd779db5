// nfdump's own tools against `flowscope collector`, on loopback:
//
//   pcap with known flows --nfpcapd--> nfcapd file --nfreplay -v 9--> collector --> /api/flows
//                                          |
//                                          +--nfdump -o csv / -o json--> what must be stored
//
// nfpcapd (nfdump's pcap-to-nfcapd converter) writes the file, nfreplay sends
// it as NetFlow v9 the way nfdump users feed other collectors: times as
// flowStartMilliseconds/flowEndMilliseconds (types 152/153), counts as 64-bit
// deltas. The stored flows must be the ones nfdump prints: same flows, bytes,
// packets, start and end to the millisecond v9 carries.
//
// Also: records without times, sent by hand, take the export time or are
// counted, as /api/exporters and /metrics show. No root needed.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "nfdump_support.h"
#include "support/process.h"

using namespace fstest;
using namespace fstest::nfdump;
using namespace std::chrono_literals;

namespace {

// --- A pcap file with known flows (Ethernet, IPv4/IPv6, TCP/UDP) -----------

struct Pkt {
  uint64_t ts_us;
  int family;
  std::string src, dst;
  uint16_t sport, dport;
  uint8_t proto;
  size_t payload;
};

void put16be(std::string& b, uint16_t v) {
  b += char(v >> 8);
  b += char(v & 0xff);
}
void put32be(std::string& b, uint32_t v) {
  put16be(b, uint16_t(v >> 16));
  put16be(b, uint16_t(v));
}
void put32le(std::string& b, uint32_t v) {
  for (int i = 0; i < 4; i++) b += char((v >> (8 * i)) & 0xff);
}

uint16_t checksum(const std::string& b) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < b.size(); i += 2) s += (uint8_t(b[i]) << 8) | uint8_t(b[i + 1]);
  if (b.size() % 2) s += uint8_t(b.back()) << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

std::string frame(const Pkt& p) {
  std::string l4;
  if (p.proto == 6) {
    put16be(l4, p.sport);
    put16be(l4, p.dport);
    put32be(l4, 1);                // seq
    put32be(l4, 1);                // ack
    l4 += char(0x50);              // data offset 5
    l4 += char(0x18);              // PSH ACK
    put16be(l4, 65535);            // window
    put32be(l4, 0);                // checksum, urgent (not checked by the tools)
  } else {
    put16be(l4, p.sport);
    put16be(l4, p.dport);
    put16be(l4, uint16_t(8 + p.payload));
    put16be(l4, 0);
  }
  l4 += std::string(p.payload, 'x');
  std::string ip;
  if (p.family == 4) {
    ip += char(0x45);
    ip += char(0);
    put16be(ip, uint16_t(20 + l4.size()));
    put32be(ip, 0x00014000);  // id 1, don't fragment
    ip += char(64);
    ip += char(p.proto);
    put16be(ip, 0);
    in_addr a{}, b{};
    inet_pton(AF_INET, p.src.c_str(), &a);
    inet_pton(AF_INET, p.dst.c_str(), &b);
    ip.append(reinterpret_cast<const char*>(&a), 4);
    ip.append(reinterpret_cast<const char*>(&b), 4);
    const uint16_t c = checksum(ip);
    ip[10] = char(c >> 8);
    ip[11] = char(c & 0xff);
  } else {
    put32be(ip, 0x60000000);
    put16be(ip, uint16_t(l4.size()));
    ip += char(p.proto);
    ip += char(64);
    in6_addr a{}, b{};
    inet_pton(AF_INET6, p.src.c_str(), &a);
    inet_pton(AF_INET6, p.dst.c_str(), &b);
    ip.append(reinterpret_cast<const char*>(&a), 16);
    ip.append(reinterpret_cast<const char*>(&b), 16);
  }
  std::string eth(6, char(2));
  eth += std::string(6, char(4));
  put16be(eth, p.family == 4 ? 0x0800 : 0x86dd);
  return eth + ip + l4;
}

void write_pcap(const std::string& path, std::vector<Pkt> pkts) {
  std::sort(pkts.begin(), pkts.end(), [](const Pkt& a, const Pkt& b) { return a.ts_us < b.ts_us; });
  std::string out;
  put32le(out, 0xa1b2c3d4);
  put32le(out, 2 | (4u << 16));  // version 2.4
  put32le(out, 0);
  put32le(out, 0);
  put32le(out, 65535);
  put32le(out, 1);  // DLT_EN10MB
  for (const auto& p : pkts) {
    const std::string f = frame(p);
    put32le(out, uint32_t(p.ts_us / 1'000'000));
    put32le(out, uint32_t(p.ts_us % 1'000'000));
    put32le(out, uint32_t(f.size()));
    put32le(out, uint32_t(f.size()));
    out += f;
  }
  std::ofstream(path, std::ios::binary) << out;
}

}  // namespace

TEST(NfdumpReplay, NetflowV9FromNfreplayIsStoredAsNfdumpPrintsIt) {
  std::string missing;
  if (!have_nfdump_tools(missing)) GTEST_FAIL() << missing << " is not installed (scripts/setup.sh installs nfdump)";
  TempDir dir;
  // Flows ten minutes ago, inside one of nfpcapd's 5-minute files, with
  // millisecond offsets (v9's precision) and sizes all different.
  const uint64_t now_s = uint64_t(std::time(nullptr));
  const uint64_t t0_us = ((now_s - 600) / 300 * 300 + 20) * 1'000'000;
  std::vector<Pkt> pkts;
  for (int i = 0; i < 4; i++) {
    for (int k = 0; k < 3 + i; k++) {
      const uint64_t t = t0_us + uint64_t(i) * 3'000'000 + uint64_t(k) * 137'000 + uint64_t(i) * 11'000;
      pkts.push_back({t, 4, "10.9.0.1", "10.9.0.2", uint16_t(40000 + i), 80, 6, size_t(100 * (i + 1) + k)});
      // The server's answers: a flow of their own in NetFlow.
      if (k % 2 == 0) pkts.push_back({t + 5'000, 4, "10.9.0.2", "10.9.0.1", 80, uint16_t(40000 + i), 6, 1000});
    }
  }
  pkts.push_back({t0_us + 14'500'000, 4, "10.9.0.3", "10.9.0.4", 5353, 53, 17, 33});
  pkts.push_back({t0_us + 15'250'000, 4, "10.9.0.3", "10.9.0.4", 5353, 53, 17, 44});
  for (int k = 0; k < 4; k++)
    pkts.push_back({t0_us + 16'000'000 + uint64_t(k) * 333'000, 6, "fd00:9::1", "fd00:9::2", 41000, 443, 6, 555});
  const std::string pcap = dir.path() + "/flows.pcap";
  write_pcap(pcap, pkts);

  // nfpcapd: the pcap into nfcapd files.
  const std::string capdir = dir.path() + "/nfcapd";
  std::filesystem::create_directories(capdir);
  Process conv({"nfpcapd", "-r", pcap, "-w", capdir});
  ASSERT_EQ(conv.wait(60s), 0) << conv.out() << conv.err();
  const auto files = nfcapd_files(capdir);
  ASSERT_FALSE(files.empty()) << conv.out() << conv.err();

  // nfpcapd makes a flow of each DNS packet.
  const auto want = nfdump_flows(files);
  // The pcap's own account: 4 client flows, 4 server flows, 2 DNS, 1 IPv6.
  ASSERT_EQ(want.size(), 11u);
  const NfFlow& c3 = want.find(key("10.9.0.1", 40003, "10.9.0.2", 80, 6))->second;
  EXPECT_EQ(c3.packets, 6u);
  EXPECT_EQ(c3.first_ms, t0_us / 1000 + 9'033);

  replay_and_compare(files, want, dir.path() + "/flows.db");
}

namespace {

// A NetFlow v9 message: template 300 (IPv4 addresses, ports, protocol,
// octets, packets; no time) and one record.
std::string v9_without_times(uint32_t export_time, uint32_t seq, uint16_t sport) {
  std::string m;
  put16be(m, 9);
  put16be(m, 2);       // records: template and data
  put32be(m, 123456);  // uptime
  put32be(m, export_time);
  put32be(m, seq);
  put32be(m, 1);  // source id
  const std::vector<std::pair<uint16_t, uint16_t>> fields = {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}};
  put16be(m, 0);  // template flowset
  put16be(m, uint16_t(8 + 4 * fields.size()));
  put16be(m, 300);
  put16be(m, uint16_t(fields.size()));
  for (auto [id, len] : fields) {
    put16be(m, id);
    put16be(m, len);
  }
  put16be(m, 300);
  put16be(m, 4 + 29 + 3);  // record plus padding to 4 octets
  for (uint8_t b : {10, 8, 0, 1, 10, 8, 0, 2}) m += char(b);
  put16be(m, sport);
  put16be(m, 53);
  m += char(17);
  put32be(m, 0);
  put32be(m, 99);  // octets
  put32be(m, 0);
  put32be(m, 1);  // packets
  m += std::string(3, '\0');
  return m;
}

void send_udp(int port, const std::string& m) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(s, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  close(s);
}

}  // namespace

// A record without times is stored at its message's export time and counted;
// with an export time of 0 as well it is counted and not stored. Both counts
// show in /api/exporters and /metrics.
TEST(CollectorTimes, RecordsWithoutTimesTakeTheExportTimeOrAreCounted) {
  TempDir dir;
  Collector col(dir.path() + "/flows.db");
  const uint32_t export_time = uint32_t(std::time(nullptr)) - 30;
  send_udp(col.udp_port, v9_without_times(export_time, 0, 5001));
  send_udp(col.udp_port, v9_without_times(0, 1, 5002));
  Json ex;
  for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(50ms)) {
    ex = http_get(col.http_port, "/api/exporters").second;
    if (ex.contains("store") && ex["store"]["written"].get<uint64_t>() >= 1 &&
        ex["decoder"]["records_no_time"].get<uint64_t>() >= 1)
      break;
  }
  ASSERT_EQ(ex["exporters"].size(), 1u) << ex.dump();
  EXPECT_EQ(ex["exporters"][0]["records_time_fallback"], 1) << ex.dump();
  EXPECT_EQ(ex["exporters"][0]["records_no_time"], 1) << ex.dump();
  EXPECT_EQ(ex["decoder"]["records_time_fallback"], 1) << ex.dump();
  EXPECT_EQ(ex["decoder"]["records_no_time"], 1) << ex.dump();
  EXPECT_EQ(ex["decoder"]["malformed"], 0) << ex.dump();

  auto [st, got] = http_get(col.http_port, "/api/flows?from=-1h&limit=100");
  ASSERT_EQ(st, 200);
  ASSERT_EQ(got["flows"].size(), 1u) << got.dump();
  const Json& f = got["flows"][0];
  EXPECT_EQ(f["src_port"], 5001);
  EXPECT_EQ(f["bytes"], 99);
  EXPECT_EQ(f["start_ns"].get<uint64_t>(), uint64_t(export_time) * 1'000'000'000);
  EXPECT_EQ(f["end_ns"].get<uint64_t>(), uint64_t(export_time) * 1'000'000'000);
  // And nothing at 1970.
  auto [st2, all] = http_get(col.http_port, "/api/flows?limit=100");
  ASSERT_EQ(st2, 200);
  EXPECT_EQ(all["flows"].size(), 1u) << all.dump();

  httplib::Client c("127.0.0.1", col.http_port);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("flowscope_ipfix_records_time_fallback_total 1\n"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("flowscope_ipfix_records_no_time_total 1\n"), std::string::npos) << m->body;
  EXPECT_EQ(col.stop(), 0) << col.proc->err();
}
