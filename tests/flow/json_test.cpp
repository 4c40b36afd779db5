#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "net/cidr.h"
#include "flow/json.h"

namespace flowscope {
namespace {

TEST(Json, EveryFieldOfTheSchema) {
  Flow r;
  r.start_ns = 10;
  r.end_ns = 25;
  r.src_ip = *parse_ip("fd00::1");
  r.dst_ip = *parse_ip("fd00::2");
  r.src_port = 1;
  r.dst_port = 2;
  r.direction = Direction::Inbound;
  r.bytes = 3;
  r.rev_bytes = 4;
  r.close = CloseReason::RstSent;
  r.pid = 42;
  r.comm = "a\"b\\c\n\x01\xff";
  r.cgroup_id = 7;
  r.cgroup = "/x";
  r.container_id = "abc";
  r.netns = 9;
  r.drops = {{"NO_SOCKET", 2}};
  std::string line;
  append_json_line(line, r);
  ASSERT_EQ(line.back(), '\n');
  auto j = nlohmann::json::parse(line);
  for (const char* f : {"type", "record", "start_ns", "end_ns", "duration_ns", "family", "local_addr", "local_port",
                        "remote_addr", "remote_port", "direction", "bytes_sent", "bytes_received", "segs_sent",
                        "segs_received", "retrans_segs", "srtt_us", "rttvar_us", "close", "pid", "comm", "cgroup_id",
                        "cgroup", "container_id", "netns", "drops", "preexisting", "protocol"}) {
    EXPECT_TRUE(j.contains(f)) << f;
  }
  EXPECT_EQ(j["record"], "final");
  EXPECT_EQ(j["duration_ns"], 15);
  EXPECT_EQ(j["direction"], "inbound");
  EXPECT_EQ(j["close"], "rst_sent");
  EXPECT_EQ(j["comm"], "a\"b\\c\n\x01\xc3\xbf");  // bytes >= 0x7f escaped as code points
  EXPECT_EQ(j["drops"]["NO_SOCKET"], 2);
}

// The line is written into room computed beforehand: the longest numbers and
// strings that escape every byte must fit (ASan checks the writes in CI).
TEST(Json, WorstCaseLineFitsItsRoom) {
  constexpr uint64_t kMax = ~0ull;
  Flow r;
  r.start_ns = 0;
  r.end_ns = kMax;
  r.src_ip = *parse_ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  r.dst_ip = r.src_ip;
  r.src_port = r.dst_port = 65535;
  r.bytes = r.rev_bytes = kMax;
  r.packets = r.rev_packets = kMax;
  r.retrans = r.srtt_us = r.rttvar_us = ~0u;
  r.pid = ~0u;
  r.comm = std::string(16, '\x01');
  r.cgroup_id = kMax;
  r.cgroup = std::string(4096, '\x1f');
  r.container_id = std::string(64, '"');
  r.netns = ~0u;
  r.preexisting = true;
  for (int i = 0; i < 8; i++) r.drops.push_back({std::string(40, '\xff') + std::to_string(i), kMax});
  std::string line = "prefix ";
  append_json_line(line, r);
  ASSERT_EQ(line.rfind("prefix ", 0), 0u);
  auto j = nlohmann::json::parse(line.substr(7));
  EXPECT_EQ(j["end_ns"], kMax);
  EXPECT_EQ(j["cgroup"], *r.cgroup);
  EXPECT_EQ(j["container_id"], *r.container_id);
  EXPECT_EQ(j["drops"].size(), 8u);
  EXPECT_EQ(j["preexisting"], true);
  std::string quoted;
  append_json_string(quoted, *r.cgroup);
  EXPECT_EQ(nlohmann::json::parse(quoted), *r.cgroup);
}

TEST(Json, UnknownOwnerIsNull) {
  Flow r;
  r.interim = true;
  r.close = CloseReason::Active;
  std::string line;
  append_json_line(line, r);
  auto j = nlohmann::json::parse(line);
  EXPECT_TRUE(j["pid"].is_null());
  EXPECT_TRUE(j["comm"].is_null());
  EXPECT_TRUE(j["cgroup"].is_null());
  EXPECT_TRUE(j["container_id"].is_null());
  EXPECT_EQ(j["record"], "interim");
  EXPECT_EQ(j["close"], "active");
}

}  // namespace
}  // namespace flowscope
