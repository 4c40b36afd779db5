// The agent without root: started as user nobody with exactly the
// capabilities flowscope-agent.service grants (its CapabilityBoundingSet= line
// is the list), it loads, attaches and records a real loopback connection with
// its exact byte counts; with one of them missing it stops with a line naming
// the missing capability.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/agent_runner.h"
#include "support/process.h"

namespace fstest {
namespace {

using namespace std::chrono_literals;

constexpr int kNobody = 65534;

// Capability names as the unit file spells them (CAP_BPF ...).
std::vector<std::string> unit_capabilities() {
  std::ifstream in(FS_AGENT_UNIT);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("CapabilityBoundingSet=")) continue;
    std::istringstream words(line.substr(line.find('=') + 1));
    std::vector<std::string> caps;
    for (std::string w; words >> w;) caps.push_back(w);
    return caps;
  }
  return {};
}

// CAP_DAC_READ_SEARCH -> dac_read_search, as setpriv wants it.
std::string setpriv_name(const std::string& cap) {
  std::string s = cap.substr(4);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

int cap_number(const std::string& cap) {
  static const std::map<std::string, int> kNumbers = {
      {"CAP_NET_ADMIN", 12}, {"CAP_SYS_ADMIN", 21},  {"CAP_SYS_PTRACE", 19}, {"CAP_DAC_READ_SEARCH", 2},
      {"CAP_PERFMON", 38},   {"CAP_BPF", 39},        {"CAP_SYS_RESOURCE", 24}};
  auto it = kNumbers.find(cap);
  if (it == kNumbers.end()) throw std::runtime_error("unknown capability " + cap);
  return it->second;
}

// The flowscope binary copied where user nobody can execute it (the build
// tree may sit under a directory only root can enter).
class AgentCaps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (to switch to nobody with chosen capabilities)";
    std::ifstream last("/proc/sys/kernel/cap_last_cap");
    int cap_last = 0;
    last >> cap_last;
    if (cap_last < 39) GTEST_SKIP() << "kernel without CAP_BPF/CAP_PERFMON (before Linux 5.8)";
    caps_ = unit_capabilities();
    ASSERT_FALSE(caps_.empty()) << "no CapabilityBoundingSet= in " << FS_AGENT_UNIT;
    char tmpl[] = "/tmp/fstest-caps-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    bin_ = dir_ + "/flowscope";
    std::filesystem::copy_file(FLOWSCOPE_BIN, bin_);
    chmod(bin_.c_str(), 0755);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::vector<std::string> argv_with(const std::vector<std::string>& caps, const std::vector<std::string>& args) const {
    std::string set = "-all";
    for (const auto& c : caps) set += ",+" + setpriv_name(c);
    std::vector<std::string> argv = {"setpriv",
                                     fmt::format("--reuid={}", kNobody),
                                     fmt::format("--regid={}", kNobody),
                                     "--clear-groups",
                                     "--inh-caps=" + set,
                                     "--ambient-caps=" + set,
                                     "--bounding-set=" + set,
                                     bin_,
                                     "agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  std::vector<std::string> caps_;
  std::string dir_, bin_;
};

// The port fs_peer's server printed in its {"role":"listening"} line.
int listening_port(const std::string& out) {
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("role", "") == "listening") return j.value("port", 0);
  }
  return 0;
}

// One field of /proc/PID/status, e.g. "CapEff".
std::string proc_status(pid_t pid, const std::string& key) {
  std::istringstream in(read_file(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(key + ":")) return line.substr(key.size() + 1);
  return "";
}

TEST_F(AgentCaps, RecordsALoopbackConnectionWithTheUnitsCapabilitiesOnly) {
  // The server takes any free port; the agent then follows only that port.
  Process server({FS_PEER_BIN, "server", "--addr", "127.0.0.1", "--port", "0", "--send", "700"});
  ASSERT_TRUE(server.wait_for("listening", 10s, false)) << server.err();
  const int port = listening_port(server.out());
  ASSERT_GT(port, 0) << server.out();
  Process agent(argv_with(caps_, {"--port", std::to_string(port)}));
  ASSERT_TRUE(agent.wait_for("agent running", 20s)) << agent.err();

  // The agent really runs as nobody with at most these capabilities (after
  // attaching it drops those it no longer needs, so fewer is right too).
  uint64_t want = 0;
  for (const auto& c : caps_) want |= uint64_t{1} << cap_number(c);
  const uint64_t eff = std::stoull(proc_status(agent.pid(), "CapEff"), nullptr, 16);
  const uint64_t bnd = std::stoull(proc_status(agent.pid(), "CapBnd"), nullptr, 16);
  EXPECT_EQ(eff & ~want, 0u) << std::hex << eff;
  EXPECT_EQ(bnd & ~want, 0u) << std::hex << bnd;
  std::istringstream uids(proc_status(agent.pid(), "Uid"));
  int ruid = -1, euid = -1;
  uids >> ruid >> euid;
  EXPECT_EQ(ruid, kNobody);
  EXPECT_EQ(euid, kNobody);

  Process client({FS_PEER_BIN, "client", "--addr", "127.0.0.1", "--port", std::to_string(port), "--send", "12345"});
  ASSERT_EQ(client.wait(30s), 0) << client.err();
  ASSERT_EQ(server.wait(30s), 0) << server.err();
  Json cj;
  std::istringstream lines(client.out());
  for (std::string line; std::getline(lines, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("role", "") == "client") cj = j;
  }
  ASSERT_FALSE(cj.is_null()) << client.out();
  ASSERT_EQ(cj["sent"], 12345);
  ASSERT_EQ(cj["received"], 700);

  // Both ends of the connection, with the byte counts the peers counted.
  std::optional<Json> out, in;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((!out || !in) && std::chrono::steady_clock::now() < deadline) {
    for (auto& f : parse_json_lines(agent.out(), "flow")) {
      if (f["record"] != "final") continue;
      if (f["local_port"] == cj["local_port"] && f["remote_port"] == port) out = f;
      if (f["local_port"] == port && f["remote_port"] == cj["local_port"]) in = f;
    }
    if (!out || !in) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(out) << agent.out() << agent.err();
  ASSERT_TRUE(in) << agent.out() << agent.err();
  EXPECT_EQ((*out)["direction"], "outbound");
  EXPECT_EQ((*out)["bytes_sent"], 12345);
  EXPECT_EQ((*out)["bytes_received"], 700);
  EXPECT_EQ((*in)["direction"], "inbound");
  EXPECT_EQ((*in)["bytes_sent"], 700);
  EXPECT_EQ((*in)["bytes_received"], 12345);
  EXPECT_EQ((*out)["pid"], client.pid());

  // SIGTERM, as systemd stops it: a clean exit.
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(20s), 0) << agent.err();
}

// Each capability the start-up check knows about, taken away in turn.
class AgentMissingCap : public AgentCaps, public ::testing::WithParamInterface<std::string> {};

TEST_P(AgentMissingCap, FailsWithALineNamingIt) {
  const std::string missing = GetParam();
  ASSERT_NE(std::find(caps_.begin(), caps_.end(), missing), caps_.end()) << missing << " is not in the unit";
  std::vector<std::string> fewer;
  for (const auto& c : caps_)
    if (c != missing) fewer.push_back(c);
  Process agent(argv_with(fewer, {"--port", "9"}));
  EXPECT_EQ(agent.wait(20s), 1) << agent.err();
  EXPECT_NE(agent.err().find("missing capability " + missing), std::string::npos) << agent.err();
  EXPECT_EQ(agent.err().find("agent running"), std::string::npos) << agent.err();
}

INSTANTIATE_TEST_SUITE_P(Caps, AgentMissingCap, ::testing::Values("CAP_BPF", "CAP_PERFMON"),
                         [](const auto& info) { return info.param.substr(4); });

}  // namespace
}  // namespace fstest
