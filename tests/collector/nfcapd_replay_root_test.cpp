// A real exporter into nfdump's nfcapd, nfcapd's file replayed into the
// collector with `nfreplay -v 9`: the stored flows must be the ones
// `nfdump -r FILE -o csv` prints (flows, bytes, packets, start and end to the
// millisecond). The exporter is the flowscope agent (IPFIX over UDP) watching
// real connections on loopback. Root (BPF).
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/ports.h"

#include "nfdump_support.h"
#include "support/agent_runner.h"
#include "support/process.h"

using namespace fstest;
using namespace fstest::nfdump;
using namespace std::chrono_literals;

namespace {

}  // namespace

TEST(NfcapdReplay, AgentFlowsThroughNfcapdAndNfreplayAreStoredAsNfdumpPrintsThem) {
  std::string missing;
  if (!have_nfdump_tools(missing)) GTEST_FAIL() << missing << " is not installed (scripts/setup.sh installs nfdump)";
  TempDir dir;
  const std::string capdir = dir.path() + "/nfcapd";
  std::filesystem::create_directories(capdir);
  const uint16_t nfcapd_port = free_loopback_port(SOCK_DGRAM);
  const uint16_t port = free_loopback_port(SOCK_STREAM);
  Process nfcapd({"nfcapd", "-w", capdir, "-p", std::to_string(nfcapd_port), "-b", "127.0.0.1"});
  ASSERT_TRUE(nfcapd.wait_for("Startup", 10s) || nfcapd.wait_for("Startup", 1s, false)) << nfcapd.err();

  AgentRunner agent({"--ipfix", fmt::format("udp://127.0.0.1:{}", nfcapd_port), "--port", std::to_string(port)});
  {
    Process server({FS_PEER_BIN, "server", "--addr", "::", "--port", std::to_string(port), "--send", "777", "--count",
                    "4"});
    ASSERT_TRUE(server.wait_for("listening", 5s, false)) << server.err();
    for (int i = 0; i < 4; i++) {
      Process client({FS_PEER_BIN, "client", "--addr", i % 2 ? "::1" : "127.0.0.1", "--port", std::to_string(port),
                      "--send", std::to_string(1000 * (i + 1) + 11)});
      ASSERT_EQ(client.wait(10s), 0) << client.err();
    }
    ASSERT_EQ(server.wait(10s), 0) << server.err();
  }
  // Both ends of each connection are on this host: 8 final records.
  auto finals = [&](const Json& f) {
    return f["record"] == "final" && (f["local_port"] == port || f["remote_port"] == port);
  };
  auto flows = agent.wait_flows(finals, 10s);
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       flows.size() < 8 && std::chrono::steady_clock::now() < deadline;)
    flows = agent.wait_flows(finals, 1s);
  ASSERT_EQ(flows.size(), 8u);
  ASSERT_EQ(agent.stop(), 0);  // the exporter sends what it holds before exiting
  // nfcapd writes its file when it stops.
  nfcapd.signal(SIGTERM);
  ASSERT_EQ(nfcapd.wait(20s), 0) << nfcapd.err();
  const auto files = nfcapd_files(capdir);
  ASSERT_FALSE(files.empty()) << nfcapd.err();

  // nfdump has every agent record (the port filter leaves only these).
  const auto want = nfdump_flows(files);
  ASSERT_EQ(want.size(), flows.size());
  for (const auto& f : flows) {
    const auto k = key(f["local_addr"], f["local_port"], f["remote_addr"], f["remote_port"], 6);
    ASSERT_EQ(want.count(k), 1u) << k;
    EXPECT_EQ(want.find(k)->second.bytes, f["bytes_sent"].get<uint64_t>()) << k;
  }
  replay_and_compare(files, want, dir.path() + "/flows.db");
}
