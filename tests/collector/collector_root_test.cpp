// Root integration tests: real traffic in network namespaces, the real agent
// exporting IPFIX to a real `flowscope collector`, softflowd as a third-party
// exporter, and the HTTP API as the only window on what was stored.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "support/agent_runner.h"
#include "support/softflowd_log.h"
#include "support/netns.h"
#include "support/process.h"
#include "base/fd.h"
#include "hostile_ipfix.h"
#include "api_abuse.h"
#include "storage/sqlite_store.h"

using namespace fstest;
using namespace std::chrono_literals;
using flowscope::Fd;

// The collector's peak memory under the hostile floods, as the README states it.
constexpr size_t kHostilePeakRssMiB = 256;

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
  // The agent prints a batch at most ~100 ms after IPFIX may already have
  // delivered it: wait for all four JSON records before comparing.
  for (int i = 0; i < 100 && agent.flows().size() < 4; i++) std::this_thread::sleep_for(50ms);
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

namespace {

// The agent's IPFIX counters: from its last periodic stats line, or from the
// final one it prints after its exporter closed.
Json ipfix_stats(const AgentRunner& agent) {
  auto st = agent.stats();
  return st.empty() ? Json() : st.back()["ipfix"].at(0);
}
Json ipfix_final(AgentRunner& agent) {
  auto fin = parse_json_lines(agent.process().err(), "ipfix_final");
  return fin.empty() ? Json() : fin.back()["ipfix"].at(0);
}
uint64_t u(const Json& j, const char* k) { return j.is_object() && j.contains(k) ? j[k].get<uint64_t>() : 0; }

// Everything the agent counted as not delivered or not confirmed.
uint64_t counted_undelivered(const Json& fin) {
  return u(fin, "window_evicted") + u(fin, "unconfirmed") + u(fin, "dropped_queue_full") +
         u(fin, "dropped_send_failed") + u(fin, "dropped_at_exit");
}

// Stops the agent (it emits what is open, sends what is queued and waits for
// the collector's acknowledgements); its flows, and its final IPFIX counters.
Json stop_agent(AgentRunner& agent, std::vector<Json>& flows) {
  EXPECT_EQ(agent.stop(), 0);
  flows = agent.flows();
  return ipfix_final(agent);
}

// Polls the agent's periodic stats until `pred` holds.
bool wait_ipfix(const AgentRunner& agent, const std::function<bool(const Json&)>& pred, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Json j = ipfix_stats(agent); j.is_object() && pred(j)) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// A TCP relay between an agent and its collector that a test can cut, and
// whose collector-to-agent direction (the acknowledgements) it can swallow.
class Relay {
 public:
  explicit Relay(int upstream) : upstream_(upstream) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_, 4) != 0)
      throw std::runtime_error("relay: bind/listen failed");
    socklen_t len = sizeof a;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (::pipe2(ctl_, O_CLOEXEC) != 0) throw std::runtime_error("relay: pipe");
    thread_ = std::thread([this] { run(); });
  }
  ~Relay() {
    stop_ = true;
    (void)!::write(ctl_[1], "x", 1);
    thread_.join();
    ::close(listen_);
    ::close(ctl_[0]);
    ::close(ctl_[1]);
  }
  int port() const { return port_; }
  void pass_acks(bool on) { pass_acks_ = on; }
  // Closes the current pair of connections; returns once they are closed.
  // Acknowledgements pass from then on if `then_pass_acks` (set by the relay
  // between the close and the next connection, so none from the old
  // connection slips through and none on the new one is lost).
  void cut(bool then_pass_acks) {
    const uint64_t before = cuts_;
    pass_after_cut_ = then_pass_acks;
    cut_ = true;
    (void)!::write(ctl_[1], "x", 1);
    while (cuts_ == before) std::this_thread::sleep_for(10ms);
  }
  uint64_t connections() const { return connections_; }

 private:
  void run() {
    while (!stop_) {
      pollfd pa[2] = {{listen_, POLLIN, 0}, {ctl_[0], POLLIN, 0}};
      if (::poll(pa, 2, -1) <= 0) continue;
      drain_ctl();
      if (!(pa[0].revents & POLLIN)) continue;
      int down = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (down < 0) continue;
      int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(uint16_t(upstream_));
      if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        ::close(down);
        continue;
      }
      connections_++;
      pump(down, up);
      ::close(up);
      ::close(down);
      if (cut_) pass_acks_ = pass_after_cut_.load();
      cut_ = false;
      cuts_++;
    }
  }
  void drain_ctl() {
    char b[64];
    pollfd p{ctl_[0], POLLIN, 0};
    while (::poll(&p, 1, 0) == 1) (void)!::read(ctl_[0], b, sizeof b);
  }
  void pump(int down, int up) {
    char buf[65536];
    for (;;) {
      pollfd pa[3] = {{down, POLLIN, 0}, {up, POLLIN, 0}, {ctl_[0], POLLIN, 0}};
      if (::poll(pa, 3, -1) <= 0) continue;
      drain_ctl();
      if (stop_ || cut_) return;
      if (pa[0].revents) {
        ssize_t n = ::read(down, buf, sizeof buf);
        if (n <= 0 || ::send(up, buf, size_t(n), MSG_NOSIGNAL) != n) return;
      }
      if (pa[1].revents) {
        ssize_t n = ::read(up, buf, sizeof buf);
        if (n <= 0) return;
        if (pass_acks_ && ::send(down, buf, size_t(n), MSG_NOSIGNAL) != n) return;
      }
    }
  }

  int upstream_;
  int listen_ = -1, port_ = 0;
  int ctl_[2] = {-1, -1};
  std::atomic<bool> stop_{false}, cut_{false}, pass_acks_{true}, pass_after_cut_{true};
  std::atomic<uint64_t> cuts_{0}, connections_{0};
  std::thread thread_;
};

// Every agent flow stored exactly once, every stored row an agent flow.
void expect_each_once(const std::vector<Json>& flows, const std::vector<Json>& stored) {
  size_t found = 0;
  for (const auto& a : flows) {
    int n = 0;
    for (const auto& s : stored) n += same_flow(a, s);
    EXPECT_LE(n, 1) << "duplicated: " << a.dump();
    found += n > 0;
  }
  EXPECT_EQ(found, flows.size()) << "agent flows missing from the store";
  EXPECT_EQ(stored.size(), found) << "rows that are no agent flow";
}

}  // namespace

// The collector receives everything, but its acknowledgements are lost and
// the connection is cut: the agent sends its window again, and the
// collector stores none of it twice.
TEST(Delivery, ResentAfterACutConnectionIsStoredOnce) {
  TempDir dir;
  NsPair p("dv");
  CollectorProc col(dir.path() + "/flows.db", {"--no-udp", "--tcp-port", "0", "--http-port", "0"});
  Relay relay(col.tcp_port);
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", relay.port()), "--stats",
                     "0.2"});
  make_traffic(p, 5210, 4);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_acked") >= 4 && u(j, "window_records") == 0; },
                         20s))
      << agent.process().err();
  relay.pass_acks(false);
  make_traffic(p, 5211, 5);
  // Stored, but the agent cannot know: its window holds them.
  ASSERT_EQ(wait_api_flows(col.http_port, "exporter=127.0.0.1", 9, 20s).size(), 9u);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "window_records") >= 5; }, 20s));
  relay.cut(/*then_pass_acks=*/true);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_replayed") >= 5 && u(j, "window_records") == 0; },
                         30s))
      << agent.process().err();
  make_traffic(p, 5212, 3);
  std::vector<Json> flows;
  const Json fin = stop_agent(agent, flows);
  ASSERT_TRUE(fin.is_object()) << agent.process().err();
  EXPECT_EQ(counted_undelivered(fin), 0u) << fin.dump();
  EXPECT_TRUE(fin["acknowledged"].get<bool>());
  EXPECT_GE(relay.connections(), 2u);
  auto stored = wait_api_flows(col.http_port, "exporter=127.0.0.1", flows.size(), 20s);
  expect_each_once(flows, stored);
  // Everything resent had arrived before: all of it was a duplicate.
  auto [st, ex] = http_get("127.0.0.1", col.http_port, "/api/exporters");
  ASSERT_EQ(st, 200);
  EXPECT_EQ(ex["delivery"]["records_duplicate"].get<uint64_t>(), u(fin, "records_replayed")) << ex["delivery"].dump();
  EXPECT_EQ(ex["exporters"][0]["records_lost"], 0);
  EXPECT_EQ(col.stop(), 0);
}

// The collector is killed (-9) with records in its socket buffer that it
// never read; restarted on the same database, it gets them again from the
// agent's window, and what it had already stored is not stored twice.
TEST(Delivery, CollectorKilledMidStreamLosesNothingWithinTheWindow) {
  TempDir dir;
  NsPair p("dk");
  const std::string db = dir.path() + "/flows.db";
  auto col = std::make_unique<CollectorProc>(db, std::vector<std::string>{"--no-udp", "--tcp-port", "0", "--http-port", "0"});
  const int tcp_port = col->tcp_port;
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", tcp_port), "--stats", "0.2"});
  make_traffic(p, 5213, 4);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_acked") >= 4 && u(j, "window_records") == 0; },
                         20s))
      << agent.process().err();
  // Frozen, the collector reads nothing; the agent's records wait in the
  // collector's socket buffer, unacknowledged. Then it dies.
  col->process().signal(SIGSTOP);
  make_traffic(p, 5214, 6);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_sent") >= 10 && u(j, "window_records") >= 6; },
                         20s));
  col->process().signal(SIGKILL);
  col->process().wait(10s);
  col.reset();
  col = std::make_unique<CollectorProc>(
      db, std::vector<std::string>{"--no-udp", "--tcp-port", std::to_string(tcp_port), "--http-port", "0"});
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_replayed") >= 6 && u(j, "window_records") == 0; },
                         40s))
      << agent.process().err();
  make_traffic(p, 5215, 3);
  std::vector<Json> flows;
  const Json fin = stop_agent(agent, flows);
  ASSERT_TRUE(fin.is_object()) << agent.process().err();
  EXPECT_EQ(counted_undelivered(fin), 0u) << fin.dump();
  auto stored = wait_api_flows(col->http_port, "exporter=127.0.0.1", flows.size(), 20s);
  expect_each_once(flows, stored);
  EXPECT_EQ(col->stop(), 0);
}

// Past the window, what may be lost is counted by the agent, exactly.
TEST(Delivery, BeyondTheWindowWhatIsMissingIsCounted) {
  TempDir dir;
  NsPair p("dw");
  const std::string db = dir.path() + "/flows.db";
  auto col = std::make_unique<CollectorProc>(db, std::vector<std::string>{"--no-udp", "--tcp-port", "0", "--http-port", "0"});
  const int tcp_port = col->tcp_port;
  // Flows only: the count below compares the agent's loss counters (which
  // count every data record) with the flows stored.
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", tcp_port), "--stats", "0.2",
                     "--ipfix-replay-window", "1", "--no-ownership-claims"});
  make_traffic(p, 5216, 2);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_acked") >= 2 && u(j, "window_records") == 0; },
                         20s))
      << agent.process().err();
  col->process().signal(SIGSTOP);
  // Two rounds, each sent before the next: the second pushes the first out
  // of the one-record window.
  make_traffic(p, 5217, 3);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_sent") >= 5; }, 20s));
  make_traffic(p, 5218, 3);
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "records_sent") >= 8; }, 20s));
  col->process().signal(SIGKILL);
  col->process().wait(10s);
  col.reset();
  col = std::make_unique<CollectorProc>(
      db, std::vector<std::string>{"--no-udp", "--tcp-port", std::to_string(tcp_port), "--http-port", "0"});
  ASSERT_TRUE(wait_ipfix(agent, [](const Json& j) { return u(j, "connects") >= 2 && u(j, "window_records") == 0; }, 40s))
      << agent.process().err();
  std::vector<Json> flows;
  const Json fin = stop_agent(agent, flows);
  ASSERT_TRUE(fin.is_object()) << agent.process().err();
  const uint64_t counted = counted_undelivered(fin);
  EXPECT_GE(u(fin, "window_evicted"), 3u) << fin.dump();
  auto stored = wait_api_flows(col->http_port, "exporter=127.0.0.1", flows.size() - counted, 20s);
  size_t found = 0;
  for (const auto& a : flows) {
    int n = 0;
    for (const auto& s : stored) n += same_flow(a, s);
    EXPECT_LE(n, 1) << "duplicated: " << a.dump();
    found += n > 0;
  }
  EXPECT_EQ(stored.size(), found);
  // The frozen collector lost everything it had not read: exactly what the
  // agent counted as unconfirmed.
  EXPECT_EQ(found + counted, flows.size()) << fin.dump();
  EXPECT_EQ(col->stop(), 0);
}

namespace {

Fd bound_socket(const char* src, int type) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, src, &a.sin_addr);
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return fd;
}

bool send_udp(const Fd& fd, int port, const std::vector<uint8_t>& m) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uint16_t(port));
  return ::sendto(fd.get(), m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) == ssize_t(m.size());
}

Fd tcp_to(const char* src, int port) {
  Fd fd = bound_socket(src, SOCK_STREAM);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uint16_t(port));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return fd;
}

// Peak resident memory of a process (VmHWM), in bytes.
size_t peak_rss(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

}  // namespace

// The hostile world, against the real processes: while senders from other
// loopback addresses open 10^5 UDP sessions, define 10^6 templates and hold
// every TCP slot with idle, stalled and slowloris connections, a real agent
// exports its flows over TCP. Every one of them is stored exactly once, and
// the collector's peak memory stays under the bound the README states.
TEST(HostileWorld, AgentFlowsAreStoredExactlyOnceWhileFloodsRun) {
  TempDir dir;
  NsPair p("hw");
  CollectorProc col(dir.path() + "/flows.db", {"--udp-port", "0", "--tcp-port", "0", "--http-port", "0",
                                               "--max-tcp-connections", "64", "--max-tcp-connections-per-source", "16"});
  // Every TCP slot taken: four hostile addresses, 16 connections each:
  // idle ones, ones that announced a 65,535-byte message and stalled, and
  // slowloris senders (a byte at a time).
  std::vector<Fd> hostile_tcp;
  for (int a = 0; a < 4; a++) {
    const std::string src = fmt::format("127.0.0.{}", 10 + a);
    for (int i = 0; i < 16; i++) {
      Fd fd = tcp_to(src.c_str(), col.tcp_port);
      ASSERT_TRUE(fd) << "hostile connection " << src << " #" << i;
      if (i % 3 == 1) {
        const uint8_t h[4] = {0, 10, 0xff, 0xff};  // version 10, length 65,535
        ::send(fd.get(), h, sizeof h, MSG_NOSIGNAL);
      }
      hostile_tcp.push_back(std::move(fd));
    }
  }
  std::atomic<bool> stop{false};
  std::thread slowloris([&] {
    // A valid header announcing 65,535 bytes, then zeros: a byte per
    // connection every 200 ms, never a framing error.
    const uint8_t header[4] = {0, 10, 0xff, 0xff};
    for (size_t at = 0; !stop; at++) {
      const uint8_t byte = at < sizeof header ? header[at] : 0;
      for (size_t i = 2; i < hostile_tcp.size(); i += 3) ::send(hostile_tcp[i].get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      pollfd none{-1, 0, 0};
      ::poll(&none, 0, 200);
    }
  });
  // UDP: 10^5 sessions (100 source ports x 1,000 domains), then 10^6
  // one-field templates (1,000 datagrams of 1,000), from 127.0.0.2; round
  // after round until the agent's traffic is over.
  std::atomic<bool> traffic_done{false};
  std::atomic<uint64_t> rounds{0};
  std::thread udp_flood([&] {
    std::vector<Fd> socks;
    for (int i = 0; i < 100; i++) socks.push_back(bound_socket("127.0.0.2", SOCK_DGRAM));
    while (!traffic_done || rounds == 0) {
      for (uint32_t d = 0; d < 1000; d++)
        for (auto& s : socks) send_udp(s, col.udp_port, one_field_templates(d, 256, 1));
      for (uint32_t i = 0; i < 1000; i++)
        send_udp(socks[i % socks.size()], col.udp_port, one_field_templates(7, uint16_t(256 + (i % 60) * 1000), 1000));
      rounds++;
    }
  });
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", col.tcp_port), "--stats", "0.5"});
  make_traffic(p, 5220, 12);
  traffic_done = true;
  udp_flood.join();
  RecordProperty("udp_flood_rounds", std::to_string(rounds.load()));
  std::vector<Json> flows;
  const Json fin = stop_agent(agent, flows);
  stop = true;
  slowloris.join();
  ASSERT_GE(flows.size(), 12u);
  EXPECT_EQ(counted_undelivered(fin), 0u) << fin.dump();
  auto stored = wait_api_flows(col.http_port, "exporter=127.0.0.1", flows.size(), 20s);
  expect_each_once(flows, stored);
  // The floods happened and were bounded.
  auto [st, ex] = http_get("127.0.0.1", col.http_port, "/api/exporters?limit=1000");
  ASSERT_EQ(st, 200);
  uint64_t hostile_messages = 0, evicted = 0;
  for (const auto& e : ex["exporters"])
    if (e["exporter"] == "127.0.0.2") {
      hostile_messages = e["messages"].get<uint64_t>();
      evicted = e["domains_evicted"].get<uint64_t>() + e["templates_evicted"].get<uint64_t>();
    }
  EXPECT_GT(hostile_messages, 10'000u) << ex.dump();
  EXPECT_GT(evicted, 0u);
  EXPECT_GE(ex["receivers"]["tcp_evicted"].get<uint64_t>() + ex["receivers"]["tcp_refused_limit"].get<uint64_t>(), 1u);
  const size_t rss = peak_rss(col.process().pid());
  std::printf("collector peak RSS under the floods: %.1f MiB\n", double(rss) / (1 << 20));
  RecordProperty("collector_peak_rss_mib", std::to_string(rss >> 20));
  EXPECT_LT(rss, size_t(kHostilePeakRssMiB) << 20) << "the README states this bound";
  EXPECT_EQ(col.stop(), 0);
}

// The hostile world's HTTP side, against the real collector: while 8, then
// 64, clients send their request heads a byte a second and 8 heavy queries
// run over a store of 200,000 flows, a real agent exports over TCP. /healthz
// answers every poll in under 100 ms, and every agent flow is stored once.
TEST(HostileWorld, AgentFlowsAreStoredExactlyOnceWhileTheApiIsAbused) {
  TempDir dir;
  const std::string db = dir.path() + "/flows.db";
  {
    auto store = flowscope::SqliteStore::open({.path = db});
    ASSERT_TRUE(store) << store.error().message;
    const std::string seeded = seed_heavy_rows(**store, 200'000);
    ASSERT_TRUE(seeded.empty()) << seeded;
  }
  NsPair p("ha");
  CollectorProc col(db, {"--udp-port", "0", "--tcp-port", "0", "--http-port", "0"});
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", col.tcp_port), "--stats", "0.5"});
  int port = 5230;
  for (const int slow : {8, 64}) {
    std::atomic<bool> over{false};
    auto abuse = std::async(std::launch::async, [&] {
      auto o = slow_clients_and_heavy_queries(static_cast<uint16_t>(col.http_port), slow, 60s);
      over = true;
      return o;
    });
    // Connections all through the abuse, so the agent exports while it lasts.
    int rounds = 0;
    while (!over) {
      make_traffic(p, port++, 3);
      ++rounds;
    }
    const AbuseOutcome o = abuse.get();
    std::printf("%d slow clients, %d traffic rounds: %s\n", slow, rounds, o.summary().c_str());
    EXPECT_EQ(o.bad, 0) << o.summary();
    EXPECT_LT(o.worst_s, 0.100) << o.summary();
    EXPECT_EQ(o.cut_off, slow) << "slow clients still connected past the header deadline";
    EXPECT_EQ(o.heavy.count(0) + o.heavy.count(-1), 0u) << o.summary();
    for (auto [st, n] : o.heavy) EXPECT_TRUE(st == 200 || st == 503) << o.summary();
  }
  std::vector<Json> flows;
  const Json fin = stop_agent(agent, flows);
  ASSERT_GE(flows.size(), 6u);
  EXPECT_EQ(counted_undelivered(fin), 0u) << fin.dump();
  auto stored = wait_api_flows(col.http_port, "exporter=127.0.0.1", flows.size(), 30s);
  expect_each_once(flows, stored);
  const size_t rss = peak_rss(col.process().pid());
  std::printf("collector peak RSS under the API abuse: %.1f MiB\n", double(rss) / (1 << 20));
  RecordProperty("collector_peak_rss_mib", std::to_string(rss >> 20));
  EXPECT_LT(rss, size_t(kHostilePeakRssMiB) << 20) << "the README states this bound";
  EXPECT_EQ(col.stop(), 0);
}

namespace {

Json curl_in(const NetNs& ns, const std::string& url, const std::string& extra = "") {
  return Json::parse(sh_out(ns.exec() + "curl -s " + extra + " '" + url + "'"), nullptr, false);
}


}  // namespace

// softflowd, a third-party exporter from Debian, watches real traffic on a
// veth and exports IPFIX to the collector; the stored flows must be the ones
// softflowd says it exported, with its byte and packet counts.
TEST(Softflowd, IpfixFromRealTrafficIsStoredAsExported) {
  if (sh("command -v softflowd >/dev/null && command -v softflowctl >/dev/null") != 0)
    GTEST_FAIL() << "softflowd is not installed (scripts/setup.sh installs it)";
  TempDir dir;
  NsPair p("sf");
  CollectorProc col(dir.path() + "/flows.db", {"--udp-port", "0", "--no-tcp", "--http-port", "0"}, p.b.name());
  ASSERT_GT(col.udp_port, 0);
  const std::string ctl = dir.path() + "/softflowd.ctl";
  Process sf({"ip", "netns", "exec", p.b.name(), "softflowd", "-i", "eth0", "-n",
              fmt::format("127.0.0.1:{}", col.udp_port), "-v", "10", "-D", "-c", ctl});
  ASSERT_TRUE(sf.wait_for("starting data collection", 10s, false) || sf.wait_for("starting data collection", 1s))
      << sf.out() << sf.err();
  std::this_thread::sleep_for(300ms);
  make_traffic(p, 5301, 6);
  // softflowd reads packets in blocks from a TPACKET_V3 ring: push a bulk
  // transfer (another port) through so the blocks holding the test
  // connections are handed over, then make it export everything.
  {
    Process server({"ip", "netns", "exec", p.b.name(), FS_PEER_BIN, "server", "--addr", p.b4, "--port", "5399"});
    ASSERT_TRUE(server.wait_for("listening", 10s, false));
    Process bulk({"ip", "netns", "exec", p.a.name(), FS_PEER_BIN, "client", "--addr", p.b4, "--port", "5399", "--send",
                  "8000000"});
    EXPECT_EQ(bulk.wait(30s), 0);
    server.wait(10s);
  }
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(sh(p.b.exec() + "softflowctl -c " + ctl + " expire-all >/dev/null"), 0);
  // softflowd's own statistics: how many records it exported.
  uint64_t records = 0;
  for (int i = 0; i < 50 && records == 0; ++i) {
    std::this_thread::sleep_for(200ms);
    const std::string st = sh_out(p.b.exec() + "softflowctl -c " + ctl + " statistics");
    std::smatch m;
    if (std::regex_search(st, m, std::regex(R"(Flows exported: \d+ \((\d+) records\))"))) records = std::stoull(m[1]);
  }
  ASSERT_GT(records, 0u);
  auto expired = fstest::parse_softflowd_expired(sf.out() + sf.err());
  std::vector<SoftflowdFlow> tcp;
  for (const auto& e : expired)
    if (e.proto == 6 && (e.pa == 5301 || e.pb == 5301)) tcp.push_back(e);
  ASSERT_EQ(tcp.size(), 6u) << sf.out();

  // Wait until the collector has every record softflowd exported.
  const std::string api = fmt::format("http://127.0.0.1:{}", col.http_port);
  Json ex;
  for (int i = 0; i < 100; ++i) {
    ex = curl_in(p.b, api + "/api/exporters");
    if (!ex["exporters"].empty() && ex["exporters"][0]["flows"].get<uint64_t>() >= records) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(ex["exporters"].size(), 1u) << ex.dump();
  EXPECT_EQ(ex["exporters"][0]["flows"].get<uint64_t>(), records) << ex.dump();
  EXPECT_EQ(ex["exporters"][0]["malformed"], 0);
  EXPECT_EQ(ex["exporters"][0]["sequence_gaps"], 0);
  EXPECT_EQ(ex["exporters"][0]["sessions"][0]["version"], 10);

  Json stored = curl_in(p.b, api + "/api/flows?port=5301&protocol=tcp&limit=1000");
  ASSERT_TRUE(stored.contains("flows")) << stored.dump();
  // softflowd exports each direction as its own record: 2 per connection.
  EXPECT_EQ(stored["flows"].size(), 2 * tcp.size());
  for (const auto& e : tcp) {
    SCOPED_TRACE(fmt::format("[{}]:{} <> [{}]:{}", e.a, e.pa, e.b, e.pb));
    for (bool ab : {true, false}) {
      int found = 0;
      for (const auto& s : stored["flows"]) {
        if (s["src_addr"] != (ab ? e.a : e.b) || s["src_port"] != (ab ? e.pa : e.pb) ||
            s["dst_addr"] != (ab ? e.b : e.a) || s["dst_port"] != (ab ? e.pb : e.pa))
          continue;
        ++found;
        EXPECT_EQ(s["bytes"].get<uint64_t>(), ab ? e.octets_ab : e.octets_ba);
        EXPECT_EQ(s["packets"].get<uint64_t>(), ab ? e.packets_ab : e.packets_ba);
        EXPECT_EQ(s["protocol"], 6);
        EXPECT_EQ(s["exporter"], "127.0.0.1");
        // Nothing softflowd does not know is invented.
        EXPECT_TRUE(s["pid"].is_null());
        EXPECT_TRUE(s["retrans_segs"].is_null());
        EXPECT_TRUE(s["close"].is_null());
        EXPECT_LE(fstest::ms_apart(s["start_ns"].get<uint64_t>() / 1'000'000, e.start_ms),
                  fstest::kSoftflowdIpfixStartSlackMs);
      }
      EXPECT_EQ(found, 1) << (ab ? "a->b" : "b->a");
    }
  }
  sf.signal(SIGTERM);
  sf.wait(10s);
  EXPECT_EQ(col.stop(), 0);
}

// Bound to an address other than loopback (inside a test namespace), the API
// refuses to start without a token and, with one, answers only to it.
TEST(ApiSecurity, NonLoopbackBindRequiresToken) {
  TempDir dir;
  NsPair p("sec");
  {
    Process noToken({"ip", "netns", "exec", p.b.name(), FLOWSCOPE_BIN, "collector", "--db", dir.path() + "/x.db",
                     "--no-udp", "--no-tcp", "--http-addr", p.b4, "--http-port", "0"});
    EXPECT_NE(noToken.wait(20s), 0);
    EXPECT_NE(noToken.err().find("--token-file"), std::string::npos) << noToken.err();
  }
  {
    // IPFIX beyond loopback needs an allow-list.
    Process noAllow({"ip", "netns", "exec", p.b.name(), FLOWSCOPE_BIN, "collector", "--db", dir.path() + "/x.db",
                     "--ipfix-addr", p.b4, "--udp-port", "0", "--tcp-port", "0", "--http-port", "0"});
    EXPECT_NE(noAllow.wait(20s), 0);
    EXPECT_NE(noAllow.err().find("--allow"), std::string::npos) << noAllow.err();
  }
  const std::string token = "test-token-0123456789abcdef";
  const std::string token_file = dir.path() + "/token";
  std::ofstream(token_file) << token << "\n";
  chmod(token_file.c_str(), 0600);
  CollectorProc col(dir.path() + "/flows.db",
                    {"--ipfix-addr", p.b4, "--allow", p.a4 + "/32", "--udp-port", "0", "--tcp-port", "0", "--http-addr",
                     p.b4, "--http-port", "0", "--token-file", token_file},
                    p.b.name());
  const std::string api = fmt::format("http://{}:{}", p.b4, col.http_port);
  // From the other namespace, over the veth.
  auto status = [&](const std::string& path, const std::string& hdr) {
    return sh_out(p.a.exec() + "curl -s -o /dev/null -w '%{http_code}' " + hdr + " '" + api + path + "'");
  };
  EXPECT_EQ(status("/api/flows", ""), "401");
  EXPECT_EQ(status("/api/flows", "-H 'Authorization: Bearer wrong-token-0123456789'"), "401");
  EXPECT_EQ(status("/metrics", ""), "401");
  EXPECT_EQ(status("/healthz", ""), "200");
  const std::string auth = "-H 'Authorization: Bearer " + token + "'";
  EXPECT_EQ(status("/api/flows", auth), "200");
  EXPECT_EQ(status("/metrics", auth), "200");
  // Hostile parameters get a clear 400 with a JSON error.
  for (const char* bad : {"/api/flows?limit=99999999999", "/api/flows?addr=10.0.0.0/99",
                          "/api/flows?addr=%27%3B%20DROP%20TABLE%20flows%3B--", "/api/flows?from=last%20tuesday",
                          "/api/top?group=src%20UNION%20SELECT%201", "/api/timeseries?interval=-5"}) {
    EXPECT_EQ(status(bad, auth), "400") << bad;
    Json j = curl_in(p.a, api + bad, auth);
    EXPECT_TRUE(j.contains("error")) << bad << " " << j.dump();
  }
  // Exporters outside --allow are counted and dropped: b itself is not listed.
  sh(p.b.exec() + fmt::format("bash -c 'printf \"\\000\\012\\000\\020xxxxxxxxxxxx\" > /dev/udp/{}/{}'", p.b4, col.udp_port));
  Json ex;
  for (int i = 0; i < 50; ++i) {
    ex = curl_in(p.a, api + "/api/exporters", auth);
    if (ex["receivers"]["rejected_datagrams"].get<uint64_t>() > 0) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_GE(ex["receivers"]["rejected_datagrams"].get<uint64_t>(), 1u) << ex.dump();
  EXPECT_TRUE(ex["exporters"].empty());
  EXPECT_EQ(col.stop(), 0);
}

// `flowscope run`: agent, store and API in one process. What the API returns
// is what fs_peer measured on its own sockets.
TEST(RunCommand, StoresTheAgentsFlowsAndServesThem) {
  TempDir dir;
  NsPair p("run");
  Process run({FLOWSCOPE_BIN, "run", "--db", dir.path() + "/flows.db", "--http-port", "0", "--netns", p.a.path()});
  ASSERT_TRUE(run.wait_for("flowscope running", 20s)) << run.err();
  std::smatch m;
  const std::string err = run.err();
  ASSERT_TRUE(std::regex_search(err, m, std::regex(R"(HTTP API on http://127\.0\.0\.1:(\d+))"))) << err;
  const int http_port = std::stoi(m[1]);

  Process server({"ip", "netns", "exec", p.b.name(), FS_PEER_BIN, "server", "--addr", "::", "--port", "5401", "--send",
                  "4321", "--count", "3"});
  ASSERT_TRUE(server.wait_for("listening", 10s, false));
  std::vector<Json> clients;
  for (int i = 0; i < 3; ++i) {
    Process c({"ip", "netns", "exec", p.a.name(), FS_PEER_BIN, "client", "--addr", i == 1 ? p.b6 : p.b4, "--port",
               "5401", "--send", std::to_string(20000 * (i + 1))});
    ASSERT_EQ(c.wait(20s), 0) << c.err();
    const std::string out = c.out();
    clients.push_back(Json::parse(out.substr(0, out.find('\n')), nullptr, false));
    ASSERT_TRUE(clients.back().contains("local_port")) << out;
  }
  EXPECT_EQ(server.wait(20s), 0);
  auto stored = wait_api_flows(http_port, "port=5401", 3, 15s);
  ASSERT_EQ(stored.size(), 3u);
  for (const auto& c : clients) {
    int found = 0;
    for (const auto& s : stored) {
      if (s["src_port"] != c["local_port"]) continue;
      ++found;
      EXPECT_EQ(s["bytes"], c["sent"]);
      EXPECT_EQ(s["rev_bytes"], c["received"]);
      EXPECT_EQ(s["pid"], c["pid"]);
      EXPECT_EQ(s["comm"], "fs_peer");
      EXPECT_EQ(s["direction"], "outbound");
      EXPECT_EQ(s["close"], "fin");
      EXPECT_EQ(s["exporter"], "local");
    }
    EXPECT_EQ(found, 1) << c.dump();
  }
  auto [st, top] = http_get("127.0.0.1", http_port, "/api/top?group=port&by=bytes&port=5401");
  ASSERT_EQ(st, 200);
  ASSERT_EQ(top["top"].size(), 1u);
  EXPECT_EQ(top["top"][0]["port"], 5401);
  EXPECT_EQ(top["top"][0]["flows"], 3);
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(30s), 0) << run.err();
}
