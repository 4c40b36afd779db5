// The agent under stress and misuse, as root: SIGTERM in the middle of a
// burst, a flow map too small for the connections open at once, and the
// command line mistakes an operator makes. Ground truth is what the peers
// themselves did (fs_peer's per-connection log), never the agent's own view.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <sstream>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

namespace fstest {
namespace {

using namespace std::chrono_literals;

int free_port() {
  static int next = 40000 + (getpid() % 10000);
  return next++;
}

uint64_t mono_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec);
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + needle.size())) n++;
  return n;
}

// Polls `cond` until it holds or the deadline passes.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// A SIGTERM in the middle of a burst: every connection that was connected
// (client side) or accepted (server side) before the signal has a record,
// final or interim, unless the agent counted it as lost.
TEST(AgentShutdown, EveryConnectionMadeBeforeSigtermHasARecord) {
  NetNs ns("sigterm");
  // A wide port range: the burst leaves many sockets in TIME_WAIT.
  ASSERT_EQ(sh(ns.exec() + "sysctl -qw net.ipv4.ip_local_port_range='1024 65000'"), 0);
  const int port = free_port();
  AgentRunner agent({"--netns", ns.path(), "--stats", "3600"});
  Process burst({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "burst", "--addr", "127.0.0.1", "--port",
                 std::to_string(port), "--count", "20000", "--threads", "4", "--log"});
  // Mid-burst: the agent has written a few thousand records and the burst goes on.
  ASSERT_TRUE(wait_until([&] { return count_of(agent.process().out(), "\"type\":\"flow\"") >= 3000 || !burst.running(); }, 60s));
  ASSERT_TRUE(burst.running()) << "the burst ended before the agent was stopped";
  const uint64_t t_sig = mono_ns();
  agent.process().signal(SIGTERM);
  ASSERT_EQ(agent.process().wait(60s), 0) << agent.process().err();
  ASSERT_EQ(burst.wait(120s), 0) << burst.err();

  const unsigned ino = ns.inode();
  std::set<uint64_t> out_ports, in_ports;  // client ports seen from each side
  std::set<std::pair<uint64_t, uint64_t>> out_conns;  // (port, start): one per connection
  uint64_t unknown_direction = 0;  // a record whose opening was skipped still says which side it is
  for (const auto& f : agent.flows()) {
    if (f["netns"] != ino) continue;
    if (f["direction"] != "outbound" && f["direction"] != "inbound") unknown_direction++;
    if (f["direction"] == "outbound" && f["remote_port"] == port) {
      out_ports.insert(f["local_port"].get<uint64_t>());
      out_conns.insert({f["local_port"].get<uint64_t>(), f["start_ns"].get<uint64_t>()});
    } else if (f["direction"] == "inbound" && f["local_port"] == port) {
      in_ports.insert(f["remote_port"].get<uint64_t>());
    }
  }
  uint64_t before = 0, after = 0, missing_out = 0, accepted_before = 0, missing_in = 0;
  std::vector<uint64_t> missing_ports;  // either side's client port, to show what became of it
  std::istringstream in(burst.out());
  std::string line;
  while (std::getline(in, line)) {
    Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("t")) continue;
    const bool early = j["t"].get<uint64_t>() < t_sig;
    if (j["role"] == "conn") {
      (early ? before : after)++;
      if (early && !out_ports.count(j["port"].get<uint64_t>())) {
        missing_out++;
        missing_ports.push_back(j["port"].get<uint64_t>());
      }
    } else if (j["role"] == "accepted" && early) {
      accepted_before++;
      if (!in_ports.count(j["port"].get<uint64_t>())) {
        missing_in++;
        missing_ports.push_back(j["port"].get<uint64_t>());
      }
    }
  }
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty()) << agent.process().err();
  const Json& s = stats.back();
  const uint64_t lost = s["lost"];
  fmt::print("connected before SIGTERM {} (after {}), accepted before {}; missing {} outbound, {} inbound; lost {}\n",
             before, after, accepted_before, missing_out, missing_in, lost);
  // Flows the kernel side tracked, each with exactly one record at exit
  // (final if it closed first, else interim) or counted as lost.
  const int64_t unaccounted = s["flows_created"].get<int64_t>() - s["flows_emitted"].get<int64_t>() -
                              s["flows_filtered"].get<int64_t>() - s["children_discarded"].get<int64_t>() -
                              int64_t(lost);
  fmt::print("flows created without a record or count: {} (close_missed {}, recursion_misses {})\n", unaccounted,
             s["close_missed"].get<uint64_t>(), s["recursion_misses"].get<uint64_t>());
  ASSERT_GT(before, 1000u);
  ASSERT_GT(after, 0u) << "SIGTERM came after the burst";
  std::string about_missing;  // on failure: the records naming a missing connection's client port
  if (missing_out + missing_in > lost) missing_ports.resize(std::min<size_t>(missing_ports.size(), 10));
  else missing_ports.clear();
  for (uint64_t p : missing_ports) {
    about_missing += fmt::format("client port {}:\n", p);
    for (const auto& f : agent.flows())
      if (f.value("remote_port", 0u) == p || f.value("local_port", 0u) == p) about_missing += f.dump() + "\n";
  }
  EXPECT_LE(missing_out + missing_in, lost) << s.dump() << "\n" << about_missing;
  EXPECT_EQ(unaccounted, 0) << s.dump();
  EXPECT_EQ(unknown_direction, 0u) << s.dump();
  EXPECT_GE(out_conns.size() + lost, before);
  // Every record written was read and printed.
  EXPECT_EQ(s["flows_emitted"], s["records_received"]) << s.dump();
  EXPECT_EQ(agent.flows().size(), s["records_received"].get<uint64_t>());
}

// --max-flows at its minimum and more sockets open at once than it holds: the
// flows the map could not hold are counted, and none comes out later under a
// false label (preexisting, direction unknown, start at its close).
TEST(AgentMapFull, FlowsTheMapCouldNotHoldAreCountedNotMislabelled) {
  NetNs ns("full");
  const int port = free_port();
  constexpr int kConns = 700;  // 1,400 sockets against a map of 1,024
  constexpr int kBytes = 10;
  AgentRunner agent({"--netns", ns.path(), "--max-flows", "1024", "--stats", "3600"});
  Process burst({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "burst", "--addr", "127.0.0.1", "--port",
                 std::to_string(port), "--count", std::to_string(kConns), "--threads", "4", "--hold-open", "--send",
                 std::to_string(kBytes)});
  ASSERT_EQ(burst.wait(120s), 0) << burst.err();
  ASSERT_NE(burst.out().find(fmt::format("\"connections\":{}", kConns)), std::string::npos) << burst.out();
  // Every socket closed (TIME_WAIT is no longer a socket the agent follows).
  const std::string open = ns.exec() + "ss -Htan exclude time-wait | wc -l";
  ASSERT_TRUE(wait_until([&] { return std::stoi(sh_out(open)) == 0; }, 30s)) << sh_out(ns.exec() + "ss -tan");
  ASSERT_EQ(agent.stop(), 0);
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty()) << agent.process().err();
  const Json& s = stats.back();
  const uint64_t full = s["flow_map_full"];
  ASSERT_GT(full, 0u) << "the map held every socket: " << s.dump();

  // A record is right when it is what the connection was. The kernel may
  // skip an event while an agent program already runs on that CPU
  // (recursion_misses): a skipped start or close spoils at most one record
  // each, which is allowed for, never more.
  const unsigned ino = ns.inode();
  auto right = [&](const Json& f) {
    if (f["record"] != "final" || f["preexisting"].get<bool>() || f["close"] != "fin" || f["pid"].is_null()) return false;
    if (f["direction"] == "outbound")
      return f["remote_port"] == port && f["bytes_sent"] == kBytes && f["bytes_received"] == 0;
    return f["direction"] == "inbound" && f["local_port"] == port && f["bytes_received"] == kBytes && f["bytes_sent"] == 0;
  };
  uint64_t records = 0, wrong = 0;
  for (const auto& f : agent.flows()) {
    if (f["netns"] != ino) continue;
    records++;
    if (!right(f)) {
      wrong++;
      fmt::print("wrong record: {}\n", f.dump());
    }
  }
  const uint64_t skipped = s["recursion_misses"], close_missed = s["close_missed"];
  fmt::print("{} sockets: {} records ({} wrong), {} counted in flow_map_full, {} close_missed; recursion_misses {}\n",
             2 * kConns, records, wrong, full, close_missed, skipped);
  EXPECT_LE(wrong, skipped) << s.dump();
  // Each socket is either recorded or counted, once.
  EXPECT_EQ(records + full + close_missed, 2u * kConns) << s.dump();
  EXPECT_EQ(s["lost"], full + close_missed) << s.dump();
}

uint64_t status_mask(pid_t pid, const std::string& key) {
  std::istringstream in(read_file(fmt::format("/proc/{}/status", pid)));
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(key + ":")) return std::stoull(line.substr(key.size() + 1), nullptr, 16);
  throw std::runtime_error("no " + key + " in /proc/PID/status");
}

// Once attached the agent holds no capability beyond what bpf() on its own
// descriptors needs (none on Linux 6.5+; CAP_BPF or CAP_SYS_ADMIN before), in
// no set, and still reports flows, including the sweep at exit.
TEST(AgentCapabilities, DroppedAfterAttachingAndTheAgentStillWorks) {
  NetNs ns("caps");
  const int port = free_port();
  AgentRunner agent({"--netns", ns.path()});
  const pid_t pid = agent.process().pid();
  const uint64_t allowed = (1ull << 39) | (1ull << 21);  // CAP_BPF, CAP_SYS_ADMIN
  const uint64_t eff = status_mask(pid, "CapEff");
  EXPECT_EQ(eff & ~allowed, 0u) << std::hex << eff;
  EXPECT_EQ(status_mask(pid, "CapPrm"), eff);
  EXPECT_EQ(status_mask(pid, "CapBnd"), eff);
  EXPECT_EQ(status_mask(pid, "CapInh"), 0u);
  EXPECT_EQ(status_mask(pid, "CapAmb"), 0u);
  // One connection closed, one held open through the exit.
  Process server({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "server", "--addr", "127.0.0.1", "--port",
                  std::to_string(port), "--count", "2"});
  ASSERT_TRUE(server.wait_for("listening", 10s, false)) << server.err();
  Process c1({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "client", "--addr", "127.0.0.1", "--port",
              std::to_string(port), "--send", "5"});
  ASSERT_EQ(c1.wait(20s), 0) << c1.err();
  Process c2({"ip", "netns", "exec", ns.name(), FS_PEER_BIN, "client", "--addr", "127.0.0.1", "--port",
              std::to_string(port), "--send", "7", "--hold-ms", "20000"});
  const std::string est = ns.exec() + fmt::format("ss -Htn state established '( dport = :{} )' | wc -l", port);
  ASSERT_TRUE(wait_until([&] { return std::stoi(sh_out(est)) == 1; }, 20s));
  ASSERT_FALSE(agent.wait_flows([&](const Json& f) { return f["record"] == "final" && f["remote_port"] == port; }, 10s).empty())
      << agent.process().out();
  EXPECT_EQ(agent.stop(), 0) << agent.process().err();
  size_t interim = 0;
  for (const auto& f : agent.flows()) interim += f["record"] == "interim";
  EXPECT_EQ(interim, 2u) << agent.process().out();  // both ends of the held connection
}

// `flowscope agent -v` runs with debug logs (libbpf's included).
TEST(AgentCli, VerboseAfterTheSubcommandGivesDebugLogs) {
  NetNs ns("verbose");
  AgentRunner agent({"-v", "--netns", ns.path()});
  EXPECT_EQ(agent.stop(), 0);
  EXPECT_NE(agent.process().err().find("debug:"), std::string::npos) << agent.process().err();
}

// An inode that names no network namespace is an error, not an agent that
// silently reports nothing.
TEST(AgentCli, UnknownNamespaceInodeIsAOneLineError) {
  Process p({FLOWSCOPE_BIN, "agent", "--netns", "12345"});
  EXPECT_EQ(p.wait(20s), 1);
  const std::string err = p.err();
  EXPECT_NE(err.find("network namespace 12345: no such namespace"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(p.out(), "");
  // An existing one given by inode still works.
  NetNs ns("byino");
  AgentRunner agent({"--netns", std::to_string(ns.inode())});
  EXPECT_EQ(agent.stop(), 0);
}

}  // namespace
}  // namespace fstest
