#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "flow/json.h"

namespace flowscope {
namespace {

TEST(Json, EveryFieldOfTheSchema) {
  FlowRecord r;
  r.start_ns = 10;
  r.end_ns = 25;
  r.family = 6;
  r.local_addr = "fd00::1";
  r.remote_addr = "fd00::2";
  r.local_port = 1;
  r.remote_port = 2;
  r.direction = Direction::Inbound;
  r.bytes_sent = 3;
  r.bytes_received = 4;
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
                        "cgroup", "container_id", "netns", "drops"}) {
    EXPECT_TRUE(j.contains(f)) << f;
  }
  EXPECT_EQ(j["record"], "final");
  EXPECT_EQ(j["duration_ns"], 15);
  EXPECT_EQ(j["direction"], "inbound");
  EXPECT_EQ(j["close"], "rst_sent");
  EXPECT_EQ(j["comm"], "a\"b\\c\n\x01\xc3\xbf");  // bytes >= 0x7f escaped as code points
  EXPECT_EQ(j["drops"]["NO_SOCKET"], 2);
}

TEST(Json, UnknownOwnerIsNull) {
  FlowRecord r;
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
