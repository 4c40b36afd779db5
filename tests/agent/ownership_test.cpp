// Ownership evidence from a real agent (root: BPF, throwaway namespaces). The
// agent watches the addresses of the namespace it observes (--netns) and
// names the workload behind every port its inbound flows show served; the
// test changes the namespace's addresses with `ip` and checks the claims
// against the moments it made the changes.
#include <chrono>
#include <cstdint>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

namespace fstest {
namespace {

using namespace std::chrono_literals;

std::chrono::milliseconds slack(std::chrono::milliseconds t) {
  static const int k = [] {
    const char* v = std::getenv("FLOWSCOPE_TEST_SLACK");
    const int n = v ? std::atoi(v) : 1;
    return n > 0 ? n : 1;
  }();
  return t * k;
}

uint64_t unix_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

uint64_t u(const Json& j, const char* k) { return j[k].get<uint64_t>(); }

constexpr uint64_t kPrompt = 1'000'000'000;  // a removal is claimed within a second

bool is_address(const Json& c, const std::string& addr) { return c["addr"] == addr && c["port"] == 0; }

}  // namespace

TEST(Ownership, AddressesAreHeldExtendedAndReleased) {
  NsPair net("own");
  AgentRunner agent({"--netns", net.b.path(), "--active-timeout", "1"});

  // Present at start: held from the first tick on.
  for (const auto& a : {net.b4, net.b6}) {
    auto held = agent.wait_claims([&](const Json& c) { return is_address(c, a) && c["held"] == true; }, slack(5s));
    ASSERT_FALSE(held.empty()) << a << "\n" << agent.process().out();
  }

  // Added: a held claim beginning when it was added, extended by heartbeats.
  const std::string added4 = "198.51.100.77", added6 = "2001:db8:77::1";
  const uint64_t t_add = unix_ns();
  ASSERT_EQ(sh(net.b.exec() + "ip addr add " + added4 + "/32 dev eth0"), 0);
  ASSERT_EQ(sh(net.b.exec() + "ip -6 addr add " + added6 + "/128 dev eth0 nodad"), 0);
  const uint64_t t_added = unix_ns();
  for (const auto& a : {added4, added6}) {
    auto first = agent.wait_claims([&](const Json& c) { return is_address(c, a) && c["held"] == true; }, slack(5s));
    ASSERT_FALSE(first.empty()) << a << "\n" << agent.process().out();
    const uint64_t from = u(first[0], "from_ns");
    EXPECT_GE(from, t_add) << first[0].dump();
    EXPECT_LE(from, t_added + kPrompt) << first[0].dump();
    EXPECT_EQ(first[0]["host"], agent.claims()[0]["host"]);
    // The next heartbeat: same start, later end.
    auto later = agent.wait_claims(
        [&](const Json& c) { return is_address(c, a) && c["held"] == true && u(c, "to_ns") > u(first[0], "to_ns"); },
        slack(5s));
    ASSERT_FALSE(later.empty()) << a;
    EXPECT_EQ(u(later[0], "from_ns"), from);
  }

  // Removed: released at once (not at the next tick), ending the same range.
  const uint64_t t_del = unix_ns();
  ASSERT_EQ(sh(net.b.exec() + "ip addr del " + added4 + "/32 dev eth0"), 0);
  const uint64_t t_deleted = unix_ns();
  auto released =
      agent.wait_claims([&](const Json& c) { return is_address(c, added4) && c["held"] == false; }, slack(5s));
  ASSERT_EQ(released.size(), 1u) << agent.process().out();
  EXPECT_GE(u(released[0], "to_ns"), t_del) << released[0].dump();
  EXPECT_LE(u(released[0], "to_ns"), t_deleted + kPrompt) << released[0].dump();
  EXPECT_GE(u(released[0], "from_ns"), t_add);
  EXPECT_LE(u(released[0], "from_ns"), t_added + kPrompt);

  // Addresses that name no single host are never claimed.
  for (const auto& c : agent.claims()) {
    const std::string a = c["addr"];
    EXPECT_FALSE(a == "127.0.0.1" || a == "::1" || a.starts_with("fe80:")) << c.dump();
  }

  // Stop: every address still held is released at the stop.
  const uint64_t t_stop = unix_ns();
  EXPECT_EQ(agent.stop(), 0);
  for (const auto& a : {net.b4, net.b6, added6}) {
    int n = 0;
    for (const auto& c : agent.claims())
      if (is_address(c, a) && c["held"] == false) {
        n++;
        EXPECT_GE(u(c, "to_ns"), t_stop) << c.dump();
      }
    EXPECT_EQ(n, 1) << a << "\n" << agent.process().out();
  }
  // Released once only: not again at stop.
  int again = 0;
  for (const auto& c : agent.claims()) again += is_address(c, added4) && c["held"] == false;
  EXPECT_EQ(again, 1);
}

TEST(Ownership, AnInboundConnectionClaimsThePortForItsServer) {
  NsPair net("ownp");
  AgentRunner agent({"--netns", net.b.path(), "--active-timeout", "1"});
  const int port = 21000 + getpid() % 20000;
  Process server({"ip", "netns", "exec", net.b.name(), FS_PEER_BIN, "server", "--addr", net.b4, "--port",
                  std::to_string(port)});
  ASSERT_TRUE(server.wait_for("listening", slack(10s), false)) << server.err();
  const uint64_t t_connect = unix_ns();
  Process client({"ip", "netns", "exec", net.a.name(), FS_PEER_BIN, "client", "--addr", net.b4, "--port",
                  std::to_string(port), "--send", "100"});
  EXPECT_EQ(client.wait(slack(30s)), 0) << client.err();
  const uint64_t t_done = unix_ns();

  auto claims =
      agent.wait_claims([&](const Json& c) { return c["addr"] == net.b4 && c["port"] == port; }, slack(10s));
  ASSERT_FALSE(claims.empty()) << agent.process().out();
  const Json& c = claims[0];
  EXPECT_EQ(c["protocol"], 6);
  EXPECT_EQ(c["held"], true);
  EXPECT_EQ(c["exe"], "fs_peer") << c.dump();
  EXPECT_EQ(c["netns"], net.b.inode());
  EXPECT_TRUE(c["pid"].is_number()) << c.dump();
  // The range is the connection's: inside the client's run (flow times come
  // from the kernel's monotonic clock mapped once to Unix time: a margin for
  // the mapping).
  EXPECT_GE(u(c, "from_ns") + 50'000'000, t_connect) << c.dump();
  EXPECT_LE(u(c, "to_ns"), t_done + kPrompt) << c.dump();
  EXPECT_LE(u(c, "from_ns"), u(c, "to_ns"));
  // Only the served port is claimed.
  for (const auto& o : agent.claims()) {
    if (o["port"] != 0) {
      EXPECT_EQ(o["port"], port) << o.dump();
    }
  }
  EXPECT_EQ(agent.stop(), 0);
}

}  // namespace fstest
