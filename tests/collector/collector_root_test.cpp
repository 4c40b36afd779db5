// Root integration tests: real traffic in network namespaces, the real agent
// exporting IPFIX to a real `flowscope collector`, softflowd as a third-party
// exporter, and the HTTP API as the only window on what was stored.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

using namespace fstest;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/fs-collector-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// `flowscope collector` as a child process, optionally inside a namespace.
class CollectorProc {
 public:
  CollectorProc(const std::string& db, std::vector<std::string> extra, const std::string& netns = "") {
    std::vector<std::string> argv;
    if (!netns.empty()) argv = {"ip", "netns", "exec", netns};
    argv.insert(argv.end(), {FLOWSCOPE_BIN, "collector", "--db", db});
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<Process>(argv);
    if (!proc_->wait_for("collector running", 20s)) throw std::runtime_error("collector did not start: " + proc_->err());
    std::smatch m;
    const std::string err = proc_->err();
    if (std::regex_search(err, m, std::regex(R"(udp/(\w+) tcp/(\w+), HTTP API on http://(\S+):(\d+))"))) {
      udp_port = m[1] == "off" ? 0 : std::stoi(m[1]);
      tcp_port = m[2] == "off" ? 0 : std::stoi(m[2]);
      http_host = m[3];
      http_port = std::stoi(m[4]);
    }
  }
  int stop() {
    proc_->signal(SIGINT);
    return proc_->wait(30s);
  }
  Process& process() { return *proc_; }
  int udp_port = 0, tcp_port = 0, http_port = 0;
  std::string http_host;

 private:
  std::unique_ptr<Process> proc_;
};

std::pair<int, Json> http_get(const std::string& host, int port, const std::string& path,
                              const httplib::Headers& h = {}) {
  httplib::Client c(host, port);
  c.set_connection_timeout(5);
  auto r = c.Get(path, h);
  if (!r) return {0, Json()};
  return {r->status, Json::parse(r->body, nullptr, false)};
}

// All stored flows matching `query` (paging through the API).
std::vector<Json> api_flows(int port, const std::string& query) {
  std::vector<Json> out;
  for (int offset = 0;; offset += 1000) {
    auto [st, j] = http_get("127.0.0.1", port, fmt::format("/api/flows?{}&limit=1000&offset={}", query, offset));
    if (st != 200) throw std::runtime_error("API answered " + std::to_string(st) + ": " + j.dump());
    for (auto& f : j["flows"]) out.push_back(f);
    if (!j["more"].get<bool>()) return out;
  }
}

std::vector<Json> wait_api_flows(int port, const std::string& query, size_t want, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto got = api_flows(port, query);
    if (got.size() >= want || std::chrono::steady_clock::now() >= deadline) return got;
    std::this_thread::sleep_for(100ms);
  }
}

// Real TCP connections from namespace a to b: v4 and v6, different sizes,
// one reset. Returns when all are done.
void make_traffic(NsPair& p, int port, int n) {
  Process server({"ip", "netns", "exec", p.b.name(), FS_PEER_BIN, "server", "--addr", "::", "--port",
                  std::to_string(port), "--send", "777", "--count", std::to_string(n)});
  ASSERT_TRUE(server.wait_for("listening", 10s, false)) << server.err();
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = {"ip", "netns", "exec", p.a.name(), FS_PEER_BIN, "client", "--addr",
                                     i % 3 == 2 ? p.b6 : p.b4, "--port", std::to_string(port), "--send",
                                     std::to_string(1000 * (i + 1))};
    if (i % 4 == 3) argv.push_back("--rst");
    Process client(argv);
    EXPECT_EQ(client.wait(20s), 0) << client.err();
  }
  EXPECT_EQ(server.wait(20s), 0) << server.err();
}

uint64_t ms(const Json& ns) { return ns.get<uint64_t>() / 1'000'000; }

// The stored row that is this agent JSON record, field by field. IPFIX
// carries times in milliseconds.
bool same_flow(const Json& a, const Json& s) {
  return s["src_addr"] == a["local_addr"] && s["src_port"] == a["local_port"] && s["dst_addr"] == a["remote_addr"] &&
         s["dst_port"] == a["remote_port"] && ms(s["start_ns"]) == ms(a["start_ns"]) && s["record"] == a["record"] &&
         ms(s["end_ns"]) == ms(a["end_ns"]);
}

void expect_fields_equal(const Json& a, const Json& s) {
  SCOPED_TRACE(a.dump());
  EXPECT_EQ(s["family"], a["family"]);
  EXPECT_EQ(s["protocol"], 6);
  EXPECT_EQ(s["direction"], a["direction"]);
  EXPECT_EQ(s["bytes"], a["bytes_sent"]);
  EXPECT_EQ(s["rev_bytes"], a["bytes_received"]);
  EXPECT_EQ(s["packets"], a["segs_sent"]);
  EXPECT_EQ(s["rev_packets"], a["segs_received"]);
  EXPECT_EQ(s["retrans_segs"], a["retrans_segs"]);
  EXPECT_EQ(s["srtt_us"], a["srtt_us"]);
  EXPECT_EQ(s["rttvar_us"], a["rttvar_us"]);
  EXPECT_EQ(s["close"], a["close"]);
  EXPECT_EQ(s["pid"], a["pid"]);
  EXPECT_EQ(s["comm"], a["comm"]);
  EXPECT_EQ(s["cgroup_id"], a["cgroup_id"]);
  EXPECT_EQ(s["cgroup"], a["cgroup"]);
  EXPECT_EQ(s["container_id"], a["container_id"]);
  EXPECT_EQ(s["netns"], a["netns"]);
  EXPECT_EQ(s["drops"], a["drops"]);
}

// Every agent record stored exactly once, with the same values.
void expect_exact_match(const std::vector<Json>& agent, const std::vector<Json>& stored) {
  EXPECT_EQ(stored.size(), agent.size());
  for (const auto& a : agent) {
    int n = 0;
    for (const auto& s : stored) {
      if (!same_flow(a, s)) continue;
      if (++n == 1) expect_fields_equal(a, s);
    }
    EXPECT_EQ(n, 1) << "agent flow stored " << n << " times: " << a.dump();
  }
}

}  // namespace

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, AgentToCollectorToApi) {
  const std::string transport = GetParam();
  TempDir dir;
  NsPair p("rt");
  CollectorProc col(dir.path() + "/flows.db",
                    {"--udp-port", "0", "--tcp-port", "0", "--http-port", "0", transport == "udp" ? "--no-tcp" : "--no-udp"});
  const int port = transport == "udp" ? col.udp_port : col.tcp_port;
  ASSERT_GT(port, 0);
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("{}://127.0.0.1:{}", transport, port), "--stats", "1"});
  make_traffic(p, 5201, 8);
  // Records still in the kernel or the exporter's queue leave at shutdown.
  agent.wait_flows([](const Json&) { return false; }, 1500ms);
  ASSERT_EQ(agent.stop(), 0);
  const auto flows = agent.flows();
  ASSERT_GE(flows.size(), 8u);
  auto stored = wait_api_flows(col.http_port, "exporter=127.0.0.1", flows.size(), 15s);
  expect_exact_match(flows, stored);
  // The collector's ingest statistics agree with what arrived.
  auto [st, ex] = http_get("127.0.0.1", col.http_port, "/api/exporters");
  ASSERT_EQ(st, 200);
  ASSERT_EQ(ex["exporters"].size(), 1u) << ex.dump();
  EXPECT_EQ(ex["exporters"][0]["flows"], stored.size());
  EXPECT_EQ(ex["exporters"][0]["malformed"], 0);
  EXPECT_EQ(ex["exporters"][0]["sequence_gaps"], 0);
  EXPECT_EQ(ex["exporters"][0]["records_lost"], 0);
  EXPECT_EQ(ex["store"]["dropped"], 0);
  // And /api/top sums them the same way.
  auto [st2, top] = http_get("127.0.0.1", col.http_port, "/api/top?group=src&by=flows&from=-10m");
  ASSERT_EQ(st2, 200);
  uint64_t top_flows = 0;
  for (auto& t : top["top"]) top_flows += t["flows"].get<uint64_t>();
  EXPECT_EQ(top_flows, flows.size());
  EXPECT_EQ(col.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, RoundTrip, ::testing::Values("udp", "tcp"));

TEST(CollectorRestart, TcpExporterReconnectsAndNothingIsLostUncounted) {
  TempDir dir;
  NsPair p("rs");
  const std::string db = dir.path() + "/flows.db";
  auto col = std::make_unique<CollectorProc>(db, std::vector<std::string>{"--no-udp", "--tcp-port", "0", "--http-port", "0"});
  const int tcp_port = col->tcp_port;
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", tcp_port), "--stats", "1"});
  make_traffic(p, 5202, 4);
  ASSERT_GE(agent.wait_flows([](const Json&) { return false; }, 0ms).size(), 0u);
  // Wait until the first batch is stored, then restart the collector.
  auto first = agent.flows();
  auto stored = wait_api_flows(col->http_port, "exporter=127.0.0.1", first.size(), 15s);
  ASSERT_EQ(stored.size(), first.size());
  ASSERT_EQ(col->stop(), 0);
  col.reset();
  // While it is away: flows the agent must queue (or count as dropped).
  make_traffic(p, 5203, 4);
  std::this_thread::sleep_for(500ms);
  col = std::make_unique<CollectorProc>(
      db, std::vector<std::string>{"--no-udp", "--tcp-port", std::to_string(tcp_port), "--http-port", "0"});
  // The agent reconnects (with back-off) and sends templates again.
  ASSERT_TRUE(col->process().wait_for("connected", 30s)) << col->process().err();
  make_traffic(p, 5204, 4);
  agent.wait_flows([](const Json&) { return false; }, 1500ms);
  ASSERT_EQ(agent.stop(), 0);
  const auto flows = agent.flows();
  ASSERT_GE(flows.size(), 12u);
  // What the agent says it dropped (queue full, send failures, at exit).
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty());
  const Json& ip = stats.back()["ipfix"].at(0);
  const uint64_t dropped = ip["dropped_queue_full"].get<uint64_t>() + ip["dropped_send_failed"].get<uint64_t>() +
                           ip["dropped_at_exit"].get<uint64_t>();
  EXPECT_GE(ip["connects"].get<uint64_t>(), 2u);
  EXPECT_GE(ip["template_sends"].get<uint64_t>(), 2u);
  stored = wait_api_flows(col->http_port, "exporter=127.0.0.1", flows.size() - dropped, 20s);
  // No duplicates; every agent flow stored once unless the agent counted it dropped.
  size_t found = 0;
  for (const auto& a : flows) {
    int n = 0;
    for (const auto& s : stored)
      if (same_flow(a, s)) {
        if (++n == 1) expect_fields_equal(a, s);
      }
    EXPECT_LE(n, 1) << "duplicated: " << a.dump();
    found += n > 0;
  }
  EXPECT_EQ(stored.size(), found) << "rows that are no agent flow";
  EXPECT_EQ(found + dropped, flows.size()) << ip.dump();
  // The new collector saw a fresh session: templates again, no false gaps.
  auto [st, ex] = http_get("127.0.0.1", col->http_port, "/api/exporters");
  ASSERT_EQ(st, 200);
  ASSERT_EQ(ex["exporters"].size(), 1u);
  EXPECT_GE(ex["exporters"][0]["templates_received"].get<uint64_t>(), 2u);
  EXPECT_EQ(ex["exporters"][0]["malformed"], 0);
  EXPECT_EQ(col->stop(), 0);
}
