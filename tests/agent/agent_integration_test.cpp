// flowscope agent against the kernel's own view: real connections between
// network namespaces, ground truth from the peers themselves (fs_peer), from
// nstat, ss, nft counters and the cgroup filesystem.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "kernel/btf.h"
#include "kernel/features.h"
#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

namespace fstest {
namespace {

using namespace std::chrono_literals;

Json peer_result(Process& p, const std::string& role) {
  std::istringstream in(p.out());
  std::string line;
  while (std::getline(in, line)) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("role", "") == role) return j;
  }
  return Json();
}

// Deadlines stretched on a slow machine (FLOWSCOPE_TEST_SLACK=N; the kernel
// matrix sets it under qemu without KVM). Never a delay: each wait ends at
// its event, the deadline only bounds a failure.
std::chrono::milliseconds slack(std::chrono::milliseconds t) {
  static const int k = [] {
    const char* v = std::getenv("FLOWSCOPE_TEST_SLACK");
    const int n = v ? std::atoi(v) : 1;
    return n > 0 ? n : 1;
  }();
  return t * k;
}

std::unique_ptr<Process> start_server(const NetNs& ns, const std::string& addr, int port, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "server", "--addr", addr,
                                   "--port", std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = std::make_unique<Process>(argv);
  if (!p->wait_for("listening", slack(10s), false)) throw std::runtime_error("server did not start: " + p->err());
  return p;
}

std::unique_ptr<Process> run_client(const NetNs& ns, const std::string& addr, int port, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "client", "--addr", addr,
                                   "--port", std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = std::make_unique<Process>(argv);
  p->wait(slack(60s));
  return p;
}

std::optional<Json> wait_final(AgentRunner& agent, unsigned netns, int local_port, std::chrono::milliseconds t = 5s) {
  auto hits = agent.wait_flows(
      [&](const Json& f) { return f["record"] == "final" && f["netns"] == netns && f["local_port"] == local_port; },
      slack(t));
  if (hits.empty()) return std::nullopt;
  return hits.front();
}

int free_port() {
  static int next = 20000 + (getpid() % 20000);
  return next++;
}

uint64_t nstat(const NetNs& ns, const std::string& counter) {
  std::string out = sh_out(ns.exec() + "nstat -asz " + counter);
  std::smatch m;
  std::regex re(counter + R"(\s+(\d+))");
  if (!std::regex_search(out, m, re)) throw std::runtime_error("nstat: no " + counter + " in: " + out);
  return std::stoull(m[1]);
}

std::string kernel_drop_name(const std::string& wanted) {
  auto btf = flowscope::load_kernel_btf();
  if (!btf) return "";
  for (auto& [v, n] : flowscope::enum_names(btf->get(), "skb_drop_reason", "SKB_DROP_REASON_"))
    if (n == wanted) return n;
  return "";
}

uint64_t drops_named(const Json& f, const std::string& name) {
  return f["drops"].contains(name) ? f["drops"][name].get<uint64_t>() : 0;
}

// Drop reasons come from kfree_skb's reason argument (Linux 5.17): on an older
// kernel the tracepoint has none, the agent leaves that hook off (the features
// table and --stats say so) and no flow may carry a drop.
bool kernel_has_drop_reasons() {
  return flowscope::probe_command(flowscope::KernelProbe::open(), "agent").has("kfree_skb");
}
constexpr const char* kNoDropReasons = "this kernel's skb:kfree_skb carries no drop reason (Linux 5.17 and newer)";
bool carries_no_drops(const Json& f) { return !f.contains("drops") || f["drops"].empty(); }

// --- exact payload bytes ---------------------------------------------------

struct BytesCase {
  bool v6;
  uint64_t up;    // client -> server
  uint64_t down;  // server -> client
};

void PrintTo(const BytesCase& c, std::ostream* os) {
  *os << (c.v6 ? "v6 " : "v4 ") << c.up << " up, " << c.down << " down";
}

class ExactBytes : public ::testing::TestWithParam<BytesCase> {};

TEST_P(ExactBytes, BothEndsMatchWhatThePeersCounted) {
  const auto c = GetParam();
  NsPair net("bytes");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port)});
  const std::string srv_addr = c.v6 ? net.b6 : net.b4;
  auto server = start_server(net.b, srv_addr, port, {"--send", std::to_string(c.down)});
  auto client = run_client(net.a, srv_addr, port, {"--send", std::to_string(c.up)});
  server->wait(slack(10s));
  Json cj = peer_result(*client, "client"), sj = peer_result(*server, "server");
  ASSERT_FALSE(cj.is_null()) << client->out() << client->err();
  ASSERT_FALSE(sj.is_null()) << server->out();
  // The peers' own counts are the truth: what was written was read.
  ASSERT_EQ(cj["sent"], c.up);
  ASSERT_EQ(sj["received"], c.up);
  ASSERT_EQ(cj["received"], c.down);

  auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
  auto sf = wait_final(agent, net.b.inode(), port);
  ASSERT_TRUE(cf) << agent.process().out();
  ASSERT_TRUE(sf) << agent.process().out();
  EXPECT_EQ((*cf)["bytes_sent"], cj["sent"]);
  EXPECT_EQ((*cf)["bytes_received"], cj["received"]);
  EXPECT_EQ((*sf)["bytes_sent"], sj["sent"]);
  EXPECT_EQ((*sf)["bytes_received"], sj["received"]);
  EXPECT_EQ((*cf)["direction"], "outbound");
  EXPECT_EQ((*sf)["direction"], "inbound");
  EXPECT_EQ((*cf)["family"], c.v6 ? 6 : 4);
  EXPECT_EQ((*cf)["local_addr"], c.v6 ? net.a6 : net.a4);
  EXPECT_EQ((*cf)["remote_addr"], srv_addr);
  EXPECT_EQ((*cf)["remote_port"], port);
  EXPECT_EQ((*sf)["remote_port"], cj["local_port"]);
  // A FIN each way, unless the kernel itself counted a reset sent in that
  // end's namespace (its own counter is the truth for the close reason).
  const uint64_t client_rsts = nstat(net.a, "TcpOutRsts"), server_rsts = nstat(net.b, "TcpOutRsts");
  EXPECT_EQ((*cf)["close"], client_rsts ? "rst_sent" : "fin") << "client TcpOutRsts " << client_rsts;
  EXPECT_EQ((*sf)["close"], server_rsts ? "rst_sent" : "fin") << "server TcpOutRsts " << server_rsts;
  EXPECT_GE((*cf)["end_ns"].get<uint64_t>(), (*cf)["start_ns"].get<uint64_t>());
  EXPECT_EQ((*cf)["duration_ns"], (*cf)["end_ns"].get<uint64_t>() - (*cf)["start_ns"].get<uint64_t>());
  EXPECT_GT((*cf)["segs_sent"].get<uint64_t>(), 0u);
  EXPECT_GT((*sf)["segs_received"].get<uint64_t>(), 0u);
  EXPECT_EQ(agent.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, ExactBytes,
                         ::testing::Values(BytesCase{false, 0, 0}, BytesCase{false, 1, 1},
                                           BytesCase{false, 1 << 20, 12345}, BytesCase{false, 12345, 1 << 20},
                                           BytesCase{true, 0, 0}, BytesCase{true, 1, 1},
                                           BytesCase{true, 1 << 20, 12345}, BytesCase{true, 12345, 1 << 20}),
                         [](const auto& i) {
                           return fmt::format("{}_{}up_{}down", i.param.v6 ? "v6" : "v4", i.param.up, i.param.down);
                         });

TEST(Agent, Ipv4OnDualStackSocketIsFamily4) {
  NsPair net("dual");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port)});
  auto server = start_server(net.b, "::", port, {"--send", "10"});
  auto client = run_client(net.a, net.b4, port, {"--send", "20"});
  auto sf = wait_final(agent, net.b.inode(), port);
  ASSERT_TRUE(sf) << agent.process().out();
  EXPECT_EQ((*sf)["family"], 4);
  EXPECT_EQ((*sf)["local_addr"], net.b4);
  EXPECT_EQ((*sf)["remote_addr"], net.a4);
  EXPECT_EQ((*sf)["bytes_received"], 20);
}

// The accepting end's tuple, for every kind of listener: on the LTS kernels
// (6.1, 6.12) an accepted child's first event comes before the kernel fills
// in its ports and addresses, so the record must take them later.
TEST(Agent, InboundTupleIsExactOnEveryFamily) {
  NsPair net("inbound");
  struct Case {
    std::string listen, connect, client_addr;
    int family;
  };
  const Case cases[] = {{net.b4, net.b4, net.a4, 4},
                        {net.b6, net.b6, net.a6, 6},
                        {"::", net.b4, net.a4, 4},
                        {"::", net.b6, net.a6, 6}};
  const int first = free_port();
  for (size_t i = 1; i < std::size(cases); i++) free_port();
  AgentRunner agent({"--netns", std::to_string(net.b.inode())});
  for (size_t i = 0; i < std::size(cases); i++) {
    const Case& c = cases[i];
    const int port = first + static_cast<int>(i);
    SCOPED_TRACE(c.listen + " <- " + c.connect);
    auto server = start_server(net.b, c.listen, port, {"--send", "10"});
    auto client = run_client(net.a, c.connect, port, {"--send", "20"});
    server->wait(slack(10s));
    Json cj = peer_result(*client, "client");
    ASSERT_FALSE(cj.is_null()) << client->out() << client->err();
    auto sf = wait_final(agent, net.b.inode(), port);
    ASSERT_TRUE(sf) << agent.process().out();
    EXPECT_EQ((*sf)["direction"], "inbound");
    EXPECT_EQ((*sf)["family"], c.family);
    EXPECT_EQ((*sf)["local_addr"], c.connect);
    EXPECT_EQ((*sf)["local_port"], port);
    EXPECT_EQ((*sf)["remote_addr"], c.client_addr);
    EXPECT_EQ((*sf)["remote_port"], cj["local_port"]);
    EXPECT_EQ((*sf)["bytes_received"], 20);
    EXPECT_EQ((*sf)["bytes_sent"], 10);
  }
}

// --- loss, retransmits, drops ----------------------------------------------

// Waits for a client (in net.a) / server (in net.b) exchange to end: the
// client's own report and the final records of both ends.
struct Exchange {
  Json client;
  std::optional<Json> cf, sf;
  bool ok() const { return !client.is_null() && cf && sf; }
};

Exchange finish_exchange(AgentRunner& agent, const NsPair& net, Process& server, Process& client, int port) {
  Exchange e;
  server.wait(slack(30s));
  e.client = peer_result(client, "client");
  if (e.client.is_null()) return e;
  e.cf = wait_final(agent, net.a.inode(), e.client["local_port"]);
  e.sf = wait_final(agent, net.b.inode(), port);
  return e;
}

TEST(Agent, RetransmitsAndDropsMatchKernelCounters) {
  NsPair net("loss");
  const int port = free_port();
  // Every 20th packet that reaches the server's port (from the 10th: the
  // handshake passes) is dropped by nftables; the rule's counter is the truth
  // for drops, nstat for retransmits. A counter, not a random draw: with GSO
  // the transfer is only ~100 packets on the veth, and 5% at random dropped
  // none in about one run in forty.
  ASSERT_EQ(sh(net.b.exec() + "nft add table inet fsloss"), 0);
  ASSERT_EQ(sh(net.b.exec() + "nft add chain inet fsloss in '{ type filter hook input priority 0; }'"), 0);
  ASSERT_EQ(sh(net.b.exec() + fmt::format("nft add rule inet fsloss in tcp dport {} numgen inc mod 20 == 10 counter drop", port)), 0);
  AgentRunner agent({"--port", std::to_string(port)});
  auto server = start_server(net.b, net.b4, port, {"--send", "1000"});
  auto client = run_client(net.a, net.b4, port, {"--send", std::to_string(4 << 20)});
  Exchange x = finish_exchange(agent, net, *server, *client, port);
  ASSERT_TRUE(x.ok()) << client->err() << agent.process().out();
  const Json *cf = &*x.cf, *sf = &*x.sf;

  EXPECT_EQ((*cf)["bytes_sent"], 4 << 20);
  EXPECT_EQ((*cf)["retrans_segs"], nstat(net.a, "TcpRetransSegs"));
  EXPECT_EQ((*sf)["retrans_segs"], nstat(net.b, "TcpRetransSegs"));
  EXPECT_GT((*cf)["retrans_segs"].get<uint64_t>(), 0u);

  std::string rules = sh_out(net.b.exec() + "nft list chain inet fsloss in");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(rules, m, std::regex(R"(counter packets (\d+))")));
  const uint64_t nft_dropped = std::stoull(m[1]);
  if (!kernel_has_drop_reasons()) {
    EXPECT_TRUE(carries_no_drops(*cf) && carries_no_drops(*sf)) << "server " << sf->dump() << "\nclient " << cf->dump();
    GTEST_SKIP() << "retransmits checked; drops not: " << kNoDropReasons;
  }
  const std::string reason = kernel_drop_name("NETFILTER_DROP");
  ASSERT_FALSE(reason.empty());
  EXPECT_GT(nft_dropped, 0u);
  EXPECT_EQ(drops_named(*sf, reason) + drops_named(*cf, reason), nft_dropped)
      << "server " << sf->dump() << "\nclient " << cf->dump();
}

// Drops in PREROUTING come before any socket is looked up: the packet has no
// socket, and the agent finds its flow by address. nft's counter is the truth.
// Every 10th packet from the 6th (the handshake passes): always some drops
// (veth aggregates segments, so a transfer is few packets), never a long run
// of losses that stalls it. Resets pass: TCP never retransmits one, and a
// lost reset leaves the peer reading forever.
void nft_prerouting_drops(const NetNs& ns, const std::string& match) {
  EXPECT_EQ(sh(ns.exec() + "nft add table inet fspre"), 0);
  EXPECT_EQ(sh(ns.exec() + "nft add chain inet fspre pre '{ type filter hook prerouting priority 0; }'"), 0);
  EXPECT_EQ(sh(ns.exec() + fmt::format("nft add rule inet fspre pre {} 'tcp flags & rst == 0' numgen inc mod 10 == 5 "
                                       "counter drop",
                                       match)),
            0);
}

uint64_t nft_counter(const NetNs& ns) {
  std::string rules = sh_out(ns.exec() + "nft list chain inet fspre pre");
  std::smatch m;
  if (!std::regex_search(rules, m, std::regex(R"(counter packets (\d+))"))) return 0;
  return std::stoull(m[1]);
}

// A client in net.a sends 2 MiB to a server in net.b while nft drops some of
// it in net.b's prerouting (no socket yet): each drop is counted once, on one
// end or the other.
void expect_each_socketless_drop_once(const NsPair& net, int port, const std::string& server_addr,
                                      std::vector<std::string> client_args) {
  AgentRunner agent({"--port", std::to_string(port)});
  auto server = start_server(net.b, server_addr, port);
  client_args.insert(client_args.begin(), {"--send", std::to_string(2 << 20)});
  auto client = run_client(net.a, server_addr, port, client_args);
  Exchange x = finish_exchange(agent, net, *server, *client, port);
  ASSERT_TRUE(x.ok()) << client->err() << agent.process().out();
  const Json *cf = &*x.cf, *sf = &*x.sf;
  EXPECT_EQ((*cf)["remote_addr"], server_addr);
  const uint64_t dropped = nft_counter(net.b);
  const std::string reason = kernel_drop_name("NETFILTER_DROP");
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(drops_named(*sf, reason) + drops_named(*cf, reason), dropped)
      << "server " << sf->dump() << "\nclient " << cf->dump();
}

// A short connection is not in the agent's tuple index: its socket-less drops
// wait under the packet's addresses and are folded in at close, each once.
TEST(Agent, SocketlessDropsOfAShortFlowAreCountedOnce) {
  if (!kernel_has_drop_reasons()) GTEST_SKIP() << kNoDropReasons;
  NsPair net("sklshort");
  const int port = free_port();
  nft_prerouting_drops(net.b, fmt::format("tcp dport {}", port));
  expect_each_socketless_drop_once(net, port, net.b4, {});
}

// IPv6 segments behind an extension header (destination options): the agent
// finds the TCP ports past it. Only such segments are dropped, so a positive
// nft counter also proves the header was there.
TEST(Agent, SocketlessDropsBehindIpv6ExtensionHeadersAreCounted) {
  if (!kernel_has_drop_reasons()) GTEST_SKIP() << kNoDropReasons;
  NsPair net("sklext6");
  const int port = free_port();
  nft_prerouting_drops(net.b, fmt::format("ip6 nexthdr 60 tcp dport {}", port));
  expect_each_socketless_drop_once(net, port, net.b6, {"--dstopts"});
}

// A long-lived connection is indexed at its first interim record; from then
// on a socket-less drop goes to the end that was to receive the packet.
TEST(Agent, SocketlessDropsOfALongFlowGoToTheReceiver) {
  if (!kernel_has_drop_reasons()) GTEST_SKIP() << kNoDropReasons;
  NsPair net("skllong");
  const int port = free_port();
  // Drops of what the server sends, on the client's side.
  nft_prerouting_drops(net.a, fmt::format("tcp sport {}", port));
  AgentRunner agent({"--port", std::to_string(port), "--active-timeout", "1"});
  // The client holds before the server starts sending: by then both flows
  // have had an interim record. The server (the sender) then resets the
  // connection, so its flow ends first: an unindexed drop would go to it.
  auto server = start_server(net.b, net.b4, port, {"--send", std::to_string(2 << 20), "--hold-ms", "4000", "--rst"});
  auto client = run_client(net.a, net.b4, port, {"--send", "10", "--hold-ms", "2500"});
  Exchange x = finish_exchange(agent, net, *server, *client, port);
  ASSERT_TRUE(x.ok()) << client->err() << agent.process().out();
  const Json *cf = &*x.cf, *sf = &*x.sf;
  EXPECT_EQ(x.client["received"], 2 << 20);
  const uint64_t dropped = nft_counter(net.a);
  const std::string reason = kernel_drop_name("NETFILTER_DROP");
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(drops_named(*cf, reason), dropped) << "client " << cf->dump();
  EXPECT_EQ(drops_named(*sf, reason), 0u) << "server " << sf->dump();
}

// --- RTT against ss ----------------------------------------------------------

TEST(Agent, RttMatchesSsForAnIdleLongLivedFlow) {
  NsPair net("rtt");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port), "--active-timeout", "1"});
  auto server = start_server(net.b, net.b4, port);
  // The client holds the idle connection while the test reads ss; on a slow
  // machine (qemu without KVM) each ss takes long, so the hold is stretched.
  const auto hold = std::to_string(slack(std::chrono::milliseconds(5000)).count());
  std::thread t([&] { run_client(net.a, net.b4, port, {"--send", std::to_string(256 << 10), "--hold-ms", hold}); });
  // Wait until everything sent is acknowledged: from then on the connection
  // idles and takes no new RTT samples, so ss and the agent must agree.
  std::string ss, seen;
  for (int i = 0; i < 100; i++) {
    std::this_thread::sleep_for(100ms);
    ss = sh_out(net.a.exec() + fmt::format("ss -tinH dst {}:{}", net.b4, port));
    if (!ss.empty()) seen = ss;
    if (ss.find("ESTAB") != std::string::npos && ss.find("unacked") == std::string::npos &&
        ss.find("bytes_acked:262145") != std::string::npos)
      break;
  }
  std::this_thread::sleep_for(300ms);
  ss = sh_out(net.a.exec() + fmt::format("ss -tinH dst {}:{}", net.b4, port));
  t.join();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ss, m, std::regex(R"(rtt:([\d.]+)/([\d.]+))"))) << ss << "\nlast seen: " << seen;
  const double ss_rtt_us = std::stod(m[1]) * 1000, ss_var_us = std::stod(m[2]) * 1000;
  auto interim = agent.wait_flows([&](const Json& f) { return f["record"] == "interim" && f["netns"] == net.a.inode(); }, 3s);
  ASSERT_FALSE(interim.empty()) << agent.process().out();
  const Json& f = interim.back();
  EXPECT_NEAR(f["srtt_us"].get<double>(), ss_rtt_us, 0.2 * ss_rtt_us + 1) << ss;
  EXPECT_NEAR(f["rttvar_us"].get<double>(), ss_var_us, 0.2 * ss_var_us + 1) << ss;
}

// --- how connections end -------------------------------------------------------

TEST(Agent, RefusedConnectIsAFlowWithNoSocketDrop) {
  NsPair net("refused");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port)});
  auto client = run_client(net.a, net.b4, port, {"--send", "1"});
  Json cj = peer_result(*client, "client");
  ASSERT_EQ(cj.value("error", ""), "Connection refused") << client->out();
  auto cf = agent.wait_flows([&](const Json& f) { return f["netns"] == net.a.inode(); }, slack(5s));
  ASSERT_EQ(cf.size(), 1u) << agent.process().out();
  EXPECT_EQ(cf[0]["close"], "refused");
  EXPECT_EQ(cf[0]["direction"], "outbound");
  EXPECT_EQ(cf[0]["remote_port"], port);
  EXPECT_NE(cf[0]["local_port"], 0);
  if (!kernel_has_drop_reasons()) {
    EXPECT_TRUE(carries_no_drops(cf[0])) << cf[0].dump();
    GTEST_SKIP() << "close=refused checked; the SYN's drop not: " << kNoDropReasons;
  }
  const std::string reason = kernel_drop_name("NO_SOCKET");
  ASSERT_FALSE(reason.empty());
  EXPECT_EQ(drops_named(cf[0], reason), 1u) << cf[0].dump();
}

TEST(Agent, ResetByPeerAndResetSent) {
  NsPair net("rst");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port)});
  // The server resets after its reply; the client sees rst_received.
  {
    auto server = start_server(net.b, net.b4, port, {"--rst", "--hold-ms", "300"});
    auto client = run_client(net.a, net.b4, port, {"--send", "100", "--hold-ms", "0"});
    server->wait(slack(10s));
    Json cj = peer_result(*client, "client");
    auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
    auto sf = wait_final(agent, net.b.inode(), port);
    ASSERT_TRUE(cf && sf) << agent.process().out();
    EXPECT_EQ((*sf)["close"], "rst_sent");
    EXPECT_EQ((*cf)["close"], "rst_received");
  }
  // The client resets while the server waits for more: rst_sent / rst_received.
  const int port2 = free_port();
  AgentRunner agent2({"--port", std::to_string(port2)});
  auto server = start_server(net.b, net.b4, port2);
  auto client = run_client(net.a, net.b4, port2, {"--send", "100", "--rst", "--hold-ms", "200"});
  server->wait(slack(10s));
  Json cj = peer_result(*client, "client");
  auto cf = wait_final(agent2, net.a.inode(), cj["local_port"]);
  auto sf = wait_final(agent2, net.b.inode(), port2);
  ASSERT_TRUE(cf && sf) << agent2.process().out();
  EXPECT_EQ((*cf)["close"], "rst_sent");
  EXPECT_EQ((*sf)["close"], "rst_received");
  EXPECT_EQ((*sf)["bytes_received"], 100);
}

TEST(Agent, ConnectTimeoutIsAFlow) {
  NsPair net("timeout");
  const int port = free_port();
  ASSERT_EQ(sh(net.b.exec() + "nft add table inet fsto"), 0);
  ASSERT_EQ(sh(net.b.exec() + "nft add chain inet fsto in '{ type filter hook input priority 0; }'"), 0);
  ASSERT_EQ(sh(net.b.exec() + fmt::format("nft add rule inet fsto in tcp dport {} counter drop", port)), 0);
  AgentRunner agent({"--port", std::to_string(port)});
  auto client = run_client(net.a, net.b4, port, {"--syn-retries", "1", "--timeout-ms", "2500"});
  Json cj = peer_result(*client, "client");
  ASSERT_EQ(cj.value("error", ""), "Connection timed out") << client->out();
  auto cf = agent.wait_flows([&](const Json& f) { return f["netns"] == net.a.inode(); }, slack(5s));
  ASSERT_EQ(cf.size(), 1u) << agent.process().out();
  EXPECT_EQ(cf[0]["close"], "timeout");
  EXPECT_NE(cf[0]["local_port"], 0);
  std::string rules = sh_out(net.b.exec() + "nft list chain inet fsto in");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(rules, m, std::regex(R"(counter packets (\d+))")));
  const bool reasons = kernel_has_drop_reasons();
  if (reasons)
    EXPECT_EQ(drops_named(cf[0], kernel_drop_name("NETFILTER_DROP")), std::stoull(m[1])) << cf[0].dump();
  else
    EXPECT_TRUE(carries_no_drops(cf[0])) << cf[0].dump();
  EXPECT_EQ(cf[0]["retrans_segs"], nstat(net.a, "TcpRetransSegs"));  // the SYN's retransmits
  EXPECT_GT(cf[0]["retrans_segs"].get<uint64_t>(), 0u);
  if (!reasons) GTEST_SKIP() << "close=timeout and retransmits checked; the SYNs' drops not: " << kNoDropReasons;
}

// --- attribution ---------------------------------------------------------------

TEST(Agent, AttributesBothEndsToTheirProcessesUnderLoad) {
  NsPair net("owner");
  const int port = free_port();
  // Busy loops on every CPU: a softirq that interrupts them must not hand
  // them the flow.
  std::vector<std::unique_ptr<Process>> burners;
  for (unsigned i = 0; i < std::thread::hardware_concurrency(); i++)
    burners.push_back(std::make_unique<Process>(std::vector<std::string>{"sh", "-c", "while :; do :; done"}));
  AgentRunner agent({"--port", std::to_string(port)});
  auto server = start_server(net.b, net.b4, port, {"--count", "5", "--send", "3000"});
  std::vector<Json> clients;
  for (int i = 0; i < 5; i++) clients.push_back(peer_result(*run_client(net.a, net.b4, port, {"--send", "5000"}), "client"));
  server->wait(slack(10s));
  burners.clear();
  for (const auto& cj : clients) {
    auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
    ASSERT_TRUE(cf) << agent.process().out();
    EXPECT_EQ((*cf)["pid"], cj["pid"]);
    EXPECT_EQ((*cf)["comm"], "fs_peer");
  }
  const Json listening = peer_result(*server, "listening");
  auto sflows = agent.wait_flows([&](const Json& f) { return f["netns"] == net.b.inode() && f["record"] == "final"; }, slack(5s));
  ASSERT_EQ(sflows.size(), 5u);
  for (const auto& sf : sflows) {
    EXPECT_EQ(sf["pid"], listening["pid"]) << sf.dump();
    EXPECT_EQ(sf["comm"], "fs_peer");
  }
}

TEST(Agent, ContainerCgroupGivesContainerIdAndFilters) {
  const std::string root = sh_out("findmnt -n -o TARGET -t cgroup2 | head -1");
  ASSERT_FALSE(root.empty()) << "no cgroup2 mount";
  const std::string mnt = root.substr(0, root.find('\n'));
  const std::string id = "0123456789abcdef0123456789abcdef0123456789abcdef" + fmt::format("{:016x}", getpid());
  const std::string rel = "/fstest.slice/docker-" + id + ".scope";
  std::filesystem::create_directories(mnt + rel);
  struct stat st {};
  ASSERT_EQ(stat((mnt + rel).c_str(), &st), 0);
  NsPair net("cg");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port), "--cgroup", rel});
  auto server = start_server(net.b, net.b4, port, {"--count", "1"});
  // The client runs inside the container's cgroup; the server does not.
  auto client = std::make_unique<Process>(std::vector<std::string>{
      "sh", "-c",
      fmt::format("echo $$ > {}/cgroup.procs && exec ip netns exec {} {} client --addr {} --port {} --send 7", mnt + rel,
                  net.a.name(), FS_PEER_BIN, net.b4, port)});
  client->wait(20s);
  server->wait(slack(10s));
  Json cj = peer_result(*client, "client");
  ASSERT_FALSE(cj.is_null()) << client->err();
  auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
  ASSERT_TRUE(cf) << agent.process().out();
  EXPECT_EQ((*cf)["container_id"], id);
  EXPECT_EQ((*cf)["cgroup"], rel);
  EXPECT_EQ((*cf)["cgroup_id"], st.st_ino);
  agent.stop();
  // --cgroup filtered out the server's flow, which is in another cgroup.
  for (const auto& f : agent.flows()) EXPECT_EQ(f["cgroup"], rel) << f.dump();
  client.reset();
  rmdir((mnt + rel).c_str());
  rmdir((mnt + "/fstest.slice").c_str());
}

// Who a record names: the host (--host, and /etc/machine-id), the thread
// (comm), the program it belongs to (exe: its thread-group leader), and the
// systemd unit its cgroup path names.
TEST(Agent, RecordsNameTheHostTheProgramAndTheUnit) {
  const std::string root = sh_out("findmnt -n -o TARGET -t cgroup2 | head -1");
  ASSERT_FALSE(root.empty()) << "no cgroup2 mount";
  const std::string mnt = root.substr(0, root.find('\n'));
  const std::string rel = fmt::format("/fstest-{}.slice/fstest-web.service", getpid());
  std::filesystem::create_directories(mnt + rel);
  NsPair net("who");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port), "--host", "web-1.example"});
  auto server = start_server(net.b, net.b4, port, {"--count", "1"});
  auto client = std::make_unique<Process>(std::vector<std::string>{
      "sh", "-c",
      fmt::format("echo $$ > {}/cgroup.procs && exec ip netns exec {} {} client --addr {} --port {} --send 7 "
                  "--thread-name Worker_IO",
                  mnt + rel, net.a.name(), FS_PEER_BIN, net.b4, port)});
  client->wait(20s);
  server->wait(10s);
  Json cj = peer_result(*client, "client");
  ASSERT_FALSE(cj.is_null()) << client->err();
  auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
  ASSERT_TRUE(cf) << agent.process().out();
  EXPECT_EQ((*cf)["comm"], "Worker_IO");
  EXPECT_EQ((*cf)["exe"], "fs_peer");
  EXPECT_EQ((*cf)["unit"], "fstest-web.service");
  EXPECT_EQ((*cf)["host"], "web-1.example");
  // A host without one (the kernel matrix's VM) gets no host_id at all.
  const std::string machine_id = sh_out("cat /etc/machine-id 2>/dev/null || true");
  if (machine_id.size() >= 32)
    EXPECT_EQ((*cf)["host_id"], machine_id.substr(0, 32));
  else
    EXPECT_TRUE(!cf->contains("host_id") || (*cf)["host_id"].is_null()) << "no machine id here: none may be made up";
  // The server's end: a listener's program, no unit outside a service cgroup.
  auto sf = agent.wait_flows([&](const Json& f) { return f["netns"] == net.b.inode() && f["record"] == "final"; }, 5s);
  ASSERT_EQ(sf.size(), 1u);
  EXPECT_EQ(sf[0]["exe"], "fs_peer");
  agent.stop();
  client.reset();
  rmdir((mnt + rel).c_str());
  rmdir((mnt + rel.substr(0, rel.rfind('/'))).c_str());
}

TEST(Agent, NetnsAndPidFiltersRunInTheKernel) {
  NsPair net("filt");
  const int port = free_port();
  auto server = start_server(net.b, net.b4, port, {"--count", "2"});
  const Json listening = peer_result(*server, "listening");
  AgentRunner by_ns({"--netns", net.a.path()});
  AgentRunner by_pid({"--pid", std::to_string(listening["pid"].get<int>())});
  for (int i = 0; i < 2; i++) run_client(net.a, net.b4, port, {"--send", "9"});
  server->wait(slack(10s));
  std::this_thread::sleep_for(500ms);
  by_ns.stop();
  by_pid.stop();
  auto ns_flows = by_ns.flows();
  auto pid_flows = by_pid.flows();
  ASSERT_EQ(ns_flows.size(), 2u) << by_ns.process().out();
  for (auto& f : ns_flows) EXPECT_EQ(f["netns"], net.a.inode());
  ASSERT_EQ(pid_flows.size(), 2u) << by_pid.process().out();
  for (auto& f : pid_flows) EXPECT_EQ(f["pid"], listening["pid"]);
}

// --- interim records -------------------------------------------------------------

TEST(Agent, LongFlowYieldsInterimThenFinalAndTotalsAddUp) {
  NsPair net("interim");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port), "--active-timeout", "1"});
  auto server = start_server(net.b, net.b4, port, {"--send", "777"});
  auto client = run_client(net.a, net.b4, port, {"--send", "100000", "--hold-ms", "2600"});
  server->wait(slack(10s));
  Json cj = peer_result(*client, "client");
  auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
  ASSERT_TRUE(cf) << agent.process().out();
  std::vector<Json> interim;
  for (auto& f : agent.flows())
    if (f["record"] == "interim" && f["netns"] == net.a.inode() && f["local_port"] == cj["local_port"]) interim.push_back(f);
  ASSERT_GE(interim.size(), 2u) << agent.process().out();
  uint64_t prev_end = 0;
  for (auto& f : interim) {
    EXPECT_EQ(f["close"], "active");
    EXPECT_EQ(f["start_ns"], (*cf)["start_ns"]);
    EXPECT_GT(f["end_ns"].get<uint64_t>(), prev_end);
    prev_end = f["end_ns"];
    EXPECT_LE(f["bytes_sent"].get<uint64_t>(), (*cf)["bytes_sent"].get<uint64_t>());
    EXPECT_EQ(f["bytes_sent"], 100000);  // all sent before the hold: totals so far
  }
  EXPECT_EQ((*cf)["bytes_sent"], cj["sent"]);
  EXPECT_EQ((*cf)["bytes_received"], cj["received"]);
  EXPECT_GT((*cf)["end_ns"].get<uint64_t>(), interim.back()["end_ns"].get<uint64_t>());
}

// The agent with the programs for kernels before 5.13 (FLOWSCOPE_AGENT_LEGACY=1),
// or nullptr with `why` set when this kernel refuses their map-element
// iterator (EPERM at load: seen on a sandboxed 6.18 that refuses some
// tracing program types). The kernel matrix runs them where the kernel
// allows it (5.10, 6.1, 6.12).
std::unique_ptr<AgentRunner> legacy_agent(std::vector<std::string> args, std::string& why) {
  setenv("FLOWSCOPE_AGENT_LEGACY", "1", 1);
  std::unique_ptr<AgentRunner> agent;
  try {
    agent = std::make_unique<AgentRunner>(std::move(args));
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    if (msg.find("prog 'dump_flows_legacy': BPF program load failed: Operation not permitted") == std::string::npos) {
      unsetenv("FLOWSCOPE_AGENT_LEGACY");
      throw;
    }
    why = "this kernel refuses the legacy programs' map-element iterator (EPERM)";
  }
  unsetenv("FLOWSCOPE_AGENT_LEGACY");
  return agent;
}

// The programs for kernels before 5.13, run here (FLOWSCOPE_AGENT_LEGACY=1):
// interim records from the map iterator, the final record exact, the program
// name read with CO-RE probes, the inbound end bound at accept() through the
// acceptor map, and a flow still open at exit reported once.
TEST(Agent, LegacyProgramsGiveTheSameRecords) {
  NsPair net("legacy");
  const int port = free_port();
  std::string why;
  auto started = legacy_agent({"--port", std::to_string(port), "--active-timeout", "1"}, why);
  if (!started) GTEST_SKIP() << why;
  AgentRunner& agent = *started;
  auto server = start_server(net.b, net.b4, port, {"--send", "777"});
  auto client = run_client(net.a, net.b4, port, {"--send", "100000", "--hold-ms", "2600"});
  Json cj = peer_result(*client, "client");
  ASSERT_FALSE(cj.is_null()) << client->err();
  auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
  ASSERT_TRUE(cf) << agent.process().out() << agent.process().err();
  EXPECT_EQ((*cf)["bytes_sent"], cj["sent"]);
  EXPECT_EQ((*cf)["bytes_received"], cj["received"]);
  EXPECT_EQ((*cf)["pid"], cj["pid"]);
  EXPECT_EQ((*cf)["exe"], "fs_peer");
  size_t interim = 0;
  for (auto& f : agent.flows())
    if (f["record"] == "interim" && f["netns"] == net.a.inode() && f["local_port"] == cj["local_port"]) {
      interim++;
      EXPECT_EQ(f["bytes_sent"], 100000) << f.dump();
    }
  EXPECT_GE(interim, 2u) << agent.process().out();
  const Json listening = peer_result(*server, "listening");
  auto sf = agent.wait_flows([&](const Json& f) { return f["netns"] == net.b.inode() && f["record"] == "final"; }, slack(5s));
  ASSERT_EQ(sf.size(), 1u) << agent.process().out();
  EXPECT_EQ(sf[0]["pid"], listening["pid"]);
  EXPECT_EQ(sf[0]["bytes_received"], 100000);
}

// A process that accept()s on a socket inherited from the one that listened:
// the accepted flow belongs to the acceptor, not to the listener that owned
// it until accept() returned (the legacy programs bind it through the
// acceptor map, the modern ones in place).
class AcceptorProcess : public ::testing::TestWithParam<bool> {};

TEST_P(AcceptorProcess, OwnsTheAcceptedFlow) {
  const bool legacy = GetParam();
  NsPair net(legacy ? "acclegacy" : "accmodern");
  const int port = free_port();
  std::string why;
  auto started = legacy ? legacy_agent({"--port", std::to_string(port)}, why)
                        : std::make_unique<AgentRunner>(std::vector<std::string>{"--port", std::to_string(port)});
  if (!started) GTEST_SKIP() << why;
  AgentRunner& agent = *started;
  auto server = start_server(net.b, net.b4, port, {"--fork-accept", "--count", "2", "--send", "3000"});
  std::vector<Json> clients;
  for (int i = 0; i < 2; i++) clients.push_back(peer_result(*run_client(net.a, net.b4, port, {"--send", "5000"}), "client"));
  ASSERT_EQ(server->wait(slack(10s)), 0) << server->err();
  const Json listening = peer_result(*server, "listening");
  const Json accepted = peer_result(*server, "server");
  ASSERT_FALSE(accepted.is_null()) << server->out();
  ASSERT_NE(accepted["pid"], listening["pid"]) << "the server did not fork";
  for (const auto& cj : clients) {
    auto cf = wait_final(agent, net.a.inode(), cj["local_port"]);
    ASSERT_TRUE(cf) << agent.process().out();
    EXPECT_EQ((*cf)["pid"], cj["pid"]);
  }
  // The accepting end of each client's connection, by the client's port.
  for (const auto& cj : clients) {
    auto sf = agent.wait_flows(
        [&](const Json& f) {
          return f["netns"] == net.b.inode() && f["record"] == "final" && f["remote_port"] == cj["local_port"];
        },
        slack(5s));
    ASSERT_EQ(sf.size(), 1u) << agent.process().out();
    EXPECT_EQ(sf[0]["pid"], accepted["pid"]) << sf[0].dump();
    EXPECT_NE(sf[0]["pid"], listening["pid"]);
    EXPECT_EQ(sf[0]["comm"], "fs_peer");
    EXPECT_EQ(sf[0]["bytes_received"], 5000);
    EXPECT_EQ(sf[0]["bytes_sent"], 3000);
  }
}

INSTANTIATE_TEST_SUITE_P(Agent, AcceptorProcess, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "legacy" : "modern"; });

// Each flow open at exit leaves exactly one record with the legacy exit claim.
TEST(Agent, LegacyProgramsReportOpenFlowsOnceAtShutdown) {
  NsPair net("legexit");
  const int port = free_port();
  std::string why;
  auto started = legacy_agent({"--port", std::to_string(port)}, why);
  if (!started) GTEST_SKIP() << why;
  AgentRunner& agent = *started;
  auto server = start_server(net.b, net.b4, port);
  std::thread t([&] { run_client(net.a, net.b4, port, {"--send", "4242", "--hold-ms", "3000"}); });
  const std::string ss = net.b.exec() + fmt::format("ss -Htn state established '( sport = :{} )'", port);
  for (int i = 0; i < 100 && sh_out(ss).empty(); i++) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(sh_out(ss).empty()) << "the client never connected";
  EXPECT_EQ(agent.stop(), 0);
  t.join();
  auto flows = agent.flows();
  ASSERT_EQ(flows.size(), 2u) << agent.process().out();
  for (auto& f : flows) EXPECT_EQ(f["record"], "interim");
}

TEST(Agent, OpenFlowsAreReportedAtShutdown) {
  NsPair net("shutdown");
  const int port = free_port();
  AgentRunner agent({"--port", std::to_string(port)});
  auto server = start_server(net.b, net.b4, port);
  std::thread t([&] { run_client(net.a, net.b4, port, {"--send", "4242", "--hold-ms", "3000"}); });
  // Stop while the connection is open (not after a fixed sleep: on a loaded
  // machine the client may take a while to start).
  const std::string ss = net.b.exec() + fmt::format("ss -Htn state established '( sport = :{} )'", port);
  for (int i = 0; i < 100 && sh_out(ss).empty(); i++) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(sh_out(ss).empty()) << "the client never connected";
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(agent.stop(), 0);
  t.join();
  auto flows = agent.flows();
  ASSERT_EQ(flows.size(), 2u) << agent.process().out();
  for (auto& f : flows) EXPECT_EQ(f["record"], "interim");
}

// --- overload is counted -----------------------------------------------------------

// Every --stats line names the optional hooks this kernel lacks, exactly those
// the features table finds missing (none on a complete kernel: an empty list).
TEST(Agent, StatsNameTheFeaturesThisKernelLacks) {
  NetNs ns("featoff");
  AgentRunner agent({"--netns", ns.path(), "--stats", "0.2"});
  ASSERT_TRUE(agent.process().wait_for("\"type\":\"stats\"", 20s)) << agent.process().err();
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty());
  ASSERT_TRUE(stats.front().contains("features_off")) << stats.front().dump();
  std::set<std::string> off, expected;
  for (const auto& id : stats.front()["features_off"]) off.insert(id.get<std::string>());
  const auto report = flowscope::probe_command(flowscope::KernelProbe::open(), "agent");
  for (const auto& r : report.rows)
    if (!r.required && r.needed && !r.present) expected.insert(r.id);
  EXPECT_EQ(off, expected);
  EXPECT_EQ(agent.stop(), 0);
}

TEST(Agent, RingBufferOverflowIsCounted) {
  // In a namespace of its own, filtered in the kernel before tracking: the
  // accounting below must not see connections made elsewhere on the host.
  NetNs ns("overflow");
  const int port = free_port();
  uint64_t lost = 0;
  for (int attempt = 0; attempt < 3 && lost == 0; attempt++) {
    AgentRunner agent({"--netns", ns.path(), "--ringbuf-size", "4096", "--stats", "0.2"});
    Process burst({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "burst", "--addr", "127.0.0.1", "--port",
                   std::to_string(port + attempt), "--count", "3000", "--threads", "4"});
    ASSERT_EQ(burst.wait(60s), 0) << burst.err();
    std::this_thread::sleep_for(500ms);
    agent.stop();
    auto stats = agent.stats();
    ASSERT_FALSE(stats.empty()) << agent.process().err();
    const Json& s = stats.back();
    lost = s["ringbuf_full"];
    // Every flow is accounted for: each one tracked produced exactly one
    // record (final at close, interim at exit if still open) that was
    // received, filtered or lost.
    EXPECT_EQ(s["flows_emitted"], s["records_received"]);
    // (A flow whose close the kernel skipped and whose socket was reused is
    // counted in close_missed.)
    EXPECT_EQ(s["flows_created"].get<uint64_t>(),
              s["flows_emitted"].get<uint64_t>() + s["flows_filtered"].get<uint64_t>() + s["ringbuf_full"].get<uint64_t>() +
                  s["close_missed"].get<uint64_t>() + s["unreported_at_exit"].get<uint64_t>())
        << s.dump();
    EXPECT_EQ(s["lost"], s["ringbuf_full"].get<uint64_t>() + s["flow_map_full"].get<uint64_t>() +
                             s["close_missed"].get<uint64_t>() + s["unreported_at_exit"].get<uint64_t>());
    EXPECT_EQ(agent.flows().size(), s["records_received"].get<uint64_t>());
  }
  EXPECT_GT(lost, 0u) << "a 4 KiB ring buffer never overflowed under a burst";
}

// --- bad situations -------------------------------------------------------------------

TEST(AgentErrors, ClearOneLineErrors) {
  {
    Process p({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FLOWSCOPE_BIN, "agent"});
    EXPECT_EQ(p.wait(10s), 1);
    EXPECT_NE(p.err().find("missing capability CAP_BPF"), std::string::npos) << p.err();
  }
  {
    Process p({FLOWSCOPE_BIN, "agent", "--netns", "/var/run/netns/does-not-exist"});
    EXPECT_EQ(p.wait(10s), 1);
    EXPECT_NE(p.err().find("does-not-exist"), std::string::npos) << p.err();
    const std::string err = p.err();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  {
    Process p({FLOWSCOPE_BIN, "agent", "--no-such-option"});
    EXPECT_NE(p.wait(10s), 0);
    EXPECT_NE(p.err().find("no-such-option"), std::string::npos) << p.err();
  }
}

}  // namespace
}  // namespace fstest

namespace fstest {
namespace {

TEST(Agent, ConnectionsOpenBeforeStartAreReported) {
  NsPair net("pre");
  const int port = free_port();
  auto server = start_server(net.b, net.b4, port, {"--send", "321"});
  std::thread t([&] { run_client(net.a, net.b4, port, {"--send", "1234", "--hold-ms", "6000"}); });
  std::this_thread::sleep_for(1000ms);  // established and idle before the agent exists
  AgentRunner agent({"--port", std::to_string(port), "--active-timeout", "1"});
  t.join();
  server->wait(slack(10s));
  const Json sj = peer_result(*server, "server");
  auto sf = wait_final(agent, net.b.inode(), port);
  ASSERT_TRUE(sf) << agent.process().out();
  EXPECT_TRUE((*sf)["preexisting"].get<bool>());
  EXPECT_EQ((*sf)["direction"], "inbound");
  EXPECT_EQ((*sf)["bytes_received"], sj["received"]);
  EXPECT_EQ((*sf)["bytes_sent"], sj["sent"]);
  auto interim = agent.wait_flows([&](const Json& f) { return f["record"] == "interim" && f["netns"] == net.b.inode(); }, 1s);
  EXPECT_FALSE(interim.empty()) << "an idle connection opened before start-up gets interim records";
  auto cflows = agent.wait_flows([&](const Json& f) { return f["record"] == "final" && f["netns"] == net.a.inode(); }, 2s);
  ASSERT_EQ(cflows.size(), 1u);
  EXPECT_EQ(cflows[0]["direction"], "outbound");
  EXPECT_EQ(cflows[0]["bytes_sent"], 1234);
  EXPECT_EQ(cflows[0]["bytes_received"], 321);
}

}  // namespace
}  // namespace fstest

namespace fstest {
namespace {

// The periodic sweep of interim records never overflows the ring: it stops
// when the ring is nearly full and resumes once user space has drained it.
TEST(Agent, InterimSweepOfManyFlowsFitsATinyRingBuffer) {
  NsPair net("sweep");
  const int port = free_port();
  constexpr int kConns = 100;
  auto server = start_server(net.b, net.b4, port, {"--count", std::to_string(kConns)});
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < kConns; i++)
    clients.push_back(std::make_unique<Process>(std::vector<std::string>{
        "ip", "netns", "exec", net.a.name(), FS_PEER_BIN, "client", "--addr", net.b4, "--port", std::to_string(port),
        "--send", "1", "--hold-ms", std::to_string(slack(30s).count())}));
  // All connected and idle before the agent starts (100 processes may take a
  // while to start on a loaded machine, longer under qemu without KVM: the
  // deadline is stretched like every other).
  const std::string ss = net.b.exec() + fmt::format("ss -Htn state established '( sport = :{} )' | wc -l", port);
  const auto connected_by = std::chrono::steady_clock::now() + slack(20s);
  while (std::stoi(sh_out(ss)) < kConns && std::chrono::steady_clock::now() < connected_by)
    std::this_thread::sleep_for(100ms);
  ASSERT_EQ(std::stoi(sh_out(ss)), kConns) << "not every client connected";
  std::this_thread::sleep_for(200ms);
  AgentRunner agent({"--port", std::to_string(port), "--active-timeout", "1", "--ringbuf-size", "4096", "--stats", "1"});
  std::set<std::tuple<uint64_t, uint64_t, uint64_t>> seen;
  const auto swept_by = std::chrono::steady_clock::now() + slack(6s);
  while (seen.size() < 2u * kConns && std::chrono::steady_clock::now() < swept_by) {
    std::this_thread::sleep_for(100ms);
    for (const auto& f : agent.flows())
      if (f["record"] == "interim")
        seen.insert({f["netns"].get<uint64_t>(), f["local_port"].get<uint64_t>(), f["remote_port"].get<uint64_t>()});
  }
  agent.stop();
  EXPECT_EQ(seen.size(), 2u * kConns) << "both ends of every connection get an interim record";
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty());
  EXPECT_EQ(stats.back()["ringbuf_full"], 0) << stats.back().dump();
}

}  // namespace
}  // namespace fstest
