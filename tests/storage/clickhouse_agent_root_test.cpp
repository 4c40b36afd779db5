// The ClickHouse store through a ClickHouse outage, driven by the real
// pipeline: connections made in a network namespace, the agent watching it
// and exporting IPFIX over TCP to `flowscope collector --store
// clickhouse://...`, and the ClickHouse server killed (SIGKILL, as a crash
// or an operator's stop) and started again on the same data directory while
// the connections go on.
//
// Ground truth: the connections the test made, each one flow record of the
// client's end, and the agent's own records and counters. Within the
// collector's queue bound every flow is in the table exactly once; past it,
// what the collector counts as dropped is exactly what the table lacks.
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "support/agent_runner.h"
#include "support/clickhouse_server.h"
#include "support/netns.h"
#include "support/process.h"

using namespace fstest;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Polls `cond` until it holds or `limit` passes.
template <class F>
bool wait_until(F&& cond, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);  // poll interval
  }
  return true;
}

// `flowscope collector --store clickhouse://...` with an IPFIX TCP listener.
class Collector {
 public:
  Collector(const ClickHouseServer& ch, const std::string& db, std::vector<std::string> extra) {
    std::vector<std::string> argv = {FLOWSCOPE_BIN, "collector", "--store",
                                     fmt::format("clickhouse://127.0.0.1:{}/{}", ch.http_port(), db), "--no-udp",
                                     "--tcp-port", "0", "--http-port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<Process>(argv);
    if (!proc_->wait_for("collector running", 30s)) throw std::runtime_error("collector did not start: " + proc_->err());
    std::smatch m;
    const std::string err = proc_->err();
    if (!std::regex_search(err, m, std::regex(R"(udp/(\w+) tcp/(\w+), HTTP API on http://(\S+):(\d+))")))
      throw std::runtime_error("collector's ports not in its log: " + err);
    tcp_port = std::stoi(m[2]);
    http_port = std::stoi(m[4]);
  }
  Json api(const std::string& path) const {
    httplib::Client c("127.0.0.1", http_port);
    c.set_read_timeout(10s);
    auto r = c.Get(path);
    return r && r->status == 200 ? Json::parse(r->body, nullptr, false) : Json();
  }
  // A counter or gauge from /metrics (0 when absent).
  double metric(const std::string& name) const {
    httplib::Client c("127.0.0.1", http_port);
    auto r = c.Get("/metrics");
    if (!r) return -1;
    std::smatch m;
    if (std::regex_search(r->body, m, std::regex("\n" + name + R"( ([0-9.e+]+))"))) return std::stod(m[1]);
    return 0;
  }
  // The store writer's counters in /api/exporters.
  Json store() const {
    Json j = api("/api/exporters");
    return j.is_object() && j.contains("store") ? j["store"] : Json();
  }
  int stop() {
    proc_->signal(SIGINT);
    return proc_->wait(60s);
  }
  Process& process() { return *proc_; }
  int tcp_port = 0, http_port = 0;

 private:
  std::unique_ptr<Process> proc_;
};

uint64_t u(const Json& j, const char* k) { return j.is_object() && j.contains(k) ? j[k].get<uint64_t>() : 0; }

// A steady stream of short TCP connections from namespace a to b, one at a
// time, until stopped; counts those that completed.
class Traffic {
 public:
  explicit Traffic(NsPair& p, int port)
      : server_({"ip", "netns", "exec", p.b.name(), FS_PEER_BIN, "server", "--addr", "::", "--port",
                 std::to_string(port), "--send", "300", "--count", "1000000"}) {
    if (!server_.wait_for("listening", 10s, false)) throw std::runtime_error("peer server: " + server_.err());
    thread_ = std::thread([this, &p, port] {
      while (!stop_) {
        Process c({"ip", "netns", "exec", p.a.name(), FS_PEER_BIN, "client", "--addr", p.b4, "--port",
                   std::to_string(port), "--send", "1200"});
        if (c.wait(20s) == 0)
          ++made_;
        else
          ++failed_;
        // The stream's pace (load shape, not a wait for an event): ~15/s.
        std::this_thread::sleep_for(60ms);
      }
    });
  }
  ~Traffic() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t made() const { return made_; }
  uint64_t failed() const { return failed_; }

 private:
  Process server_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> made_{0}, failed_{0};
};

// (client port, start in ms): one flow. IPFIX carries milliseconds.
using FlowKey = std::pair<uint64_t, uint64_t>;

std::map<FlowKey, int> agent_keys(const std::vector<Json>& flows) {
  std::map<FlowKey, int> out;
  for (const auto& f : flows) ++out[{f["local_port"].get<uint64_t>(), f["start_ns"].get<uint64_t>() / 1'000'000}];
  return out;
}

std::map<FlowKey, int> table_keys(const ClickHouseServer& ch, const std::string& db) {
  std::map<FlowKey, int> out;
  const std::string body =
      ch.query(fmt::format("SELECT src_port, intDiv(start_ns, 1000000) FROM {}.flows FORMAT TabSeparated", db));
  std::istringstream in(body);
  uint64_t port = 0, start = 0;
  while (in >> port >> start) ++out[{port, start}];
  return out;
}

uint64_t table_rows(const ClickHouseServer& ch, const std::string& db) {
  return std::stoull(ch.query(fmt::format("SELECT count() FROM {}.flows", db)));
}

// The agent's final IPFIX counters.
Json agent_final(AgentRunner& agent) {
  auto fin = parse_json_lines(agent.process().err(), "ipfix_final");
  return fin.empty() ? Json() : fin.back()["ipfix"].at(0);
}
// Records the agent did not send.
uint64_t agent_unsent(const Json& j) {
  return j.is_object() ? u(j, "dropped_queue_full") + u(j, "dropped_send_failed") + u(j, "dropped_at_exit") : UINT64_MAX;
}
// Records the collector did not confirm as stored. A flowscope collector
// confirms what its store accepted, so past the store's bound this is not 0.
uint64_t agent_unconfirmed(const Json& j) {
  return j.is_object() ? u(j, "window_evicted") + u(j, "unconfirmed") : UINT64_MAX;
}
// Records the collector decoded from its one exporter.
uint64_t decoded(const Collector& col) {
  const Json j = col.api("/api/exporters");
  return j.is_object() && j.contains("exporters") && j["exporters"].size() == 1 ? u(j["exporters"][0], "flows") : 0;
}

}  // namespace

// Within the bound: the server is away for 30 s while connections go on;
// every flow arrives exactly once after it returns.
TEST(ClickHouseAgentOutage, KilledServerLosesAndDuplicatesNothing) {
  ClickHouseServer ch;
  const std::string db = ch.fresh_database();
  NsPair p("cho");
  Collector col(ch, db, {});
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", col.tcp_port), "--stats", "1"});
  Traffic traffic(p, 5301);
  // Flows reach the table before the outage.
  ASSERT_TRUE(wait_until([&] { return table_rows(ch, db) >= 10; }, 30s)) << col.process().err();
  ch.stop();  // SIGKILL: nothing is flushed, the same as a crash
  const uint64_t before = traffic.made();
  const auto down = Clock::now();
  // The outage itself is a period of time, not a wait for an event.
  std::this_thread::sleep_for(30s);
  const uint64_t during = traffic.made() - before;
  EXPECT_GT(col.metric("flowscope_store_retries_total"), 0) << "the collector never noticed the outage";
  ch.restart();
  fmt::print("outage: {:.1f} s, {} connections during it\n",
             std::chrono::duration<double>(Clock::now() - down).count(), during);
  EXPECT_GE(during, 50u);
  // The stream goes on a little after the server is back.
  const uint64_t back = traffic.made();
  ASSERT_TRUE(wait_until([&] { return traffic.made() >= back + 20; }, 20s));
  traffic.stop();
  EXPECT_EQ(traffic.failed(), 0u);
  ASSERT_EQ(agent.stop(), 0);
  const auto flows = agent.flows();
  EXPECT_EQ(flows.size(), traffic.made()) << "the agent's records are not the connections made";
  const Json fin = agent_final(agent);
  EXPECT_EQ(agent_unsent(fin), 0u) << fin.dump();
  EXPECT_EQ(agent_unconfirmed(fin), 0u) << fin.dump();
  EXPECT_EQ(decoded(col), flows.size());
  // Everything stored, and nothing waits any more (so no late duplicate can come).
  ASSERT_TRUE(wait_until(
      [&] {
        return table_rows(ch, db) >= flows.size() && col.metric("flowscope_store_pending_rows") == 0 &&
               u(col.store(), "queue_depth") == 0;
      },
      60s))
      << table_rows(ch, db) << " of " << flows.size() << " stored; " << col.process().err();
  const Json st = col.store();
  EXPECT_EQ(u(st, "failed"), 0u) << st.dump();
  EXPECT_EQ(u(st, "dropped"), 0u) << st.dump();
  EXPECT_EQ(col.metric("flowscope_store_insert_errors_total"), 0);
  EXPECT_EQ(table_rows(ch, db), flows.size());
  const auto want = agent_keys(flows);
  const auto got = table_keys(ch, db);
  EXPECT_EQ(want.size(), flows.size()) << "two agent records with one key";
  EXPECT_EQ(got, want);
  // The API answers from the same rows.
  const Json top = col.api("/api/top?group=process&by=flows&from=-1h");
  uint64_t api_flows = 0;
  for (const auto& t : top["top"]) api_flows += u(t, "flows");
  EXPECT_EQ(api_flows, flows.size()) << top.dump();
  EXPECT_EQ(col.stop(), 0) << col.process().err();
}

// Past the bound: a collector that holds at most 20 records for the absent
// server drops the rest, counts them, and the count is exactly what the
// table lacks.
TEST(ClickHouseAgentOutage, PastTheBoundDropsAreCountedAndEqualWhatIsMissing) {
  ClickHouseServer ch;
  const std::string db = ch.fresh_database();
  NsPair p("chb");
  Collector col(ch, db, {"--clickhouse-max-pending", "20"});
  AgentRunner agent({"--netns", p.a.path(), "--ipfix", fmt::format("tcp://127.0.0.1:{}", col.tcp_port), "--stats", "1"});
  Traffic traffic(p, 5302);
  ASSERT_TRUE(wait_until([&] { return table_rows(ch, db) >= 5; }, 30s)) << col.process().err();
  ch.stop();
  // Away until the collector has dropped records, and a while longer.
  ASSERT_TRUE(wait_until([&] { return u(col.store(), "failed") > 0; }, 40s)) << col.store().dump();
  const uint64_t dropping = traffic.made();
  ASSERT_TRUE(wait_until([&] { return traffic.made() >= dropping + 15; }, 20s));
  ch.restart();
  const uint64_t back = traffic.made();
  ASSERT_TRUE(wait_until([&] { return traffic.made() >= back + 15; }, 20s));
  traffic.stop();
  EXPECT_EQ(traffic.failed(), 0u);
  ASSERT_EQ(agent.stop(), 0);
  const auto flows = agent.flows();
  EXPECT_EQ(flows.size(), traffic.made());
  // The agent sent everything and the collector decoded it all: the drops are the store's.
  const Json fin = agent_final(agent);
  EXPECT_EQ(agent_unsent(fin), 0u) << fin.dump();
  auto counted = [&] {
    const Json st = col.store();
    return u(st, "failed") + u(st, "dropped");
  };
  ASSERT_TRUE(wait_until(
      [&] {
        return table_rows(ch, db) + counted() >= flows.size() && col.metric("flowscope_store_pending_rows") == 0 &&
               u(col.store(), "queue_depth") == 0;
      },
      60s))
      << table_rows(ch, db) << " stored, " << counted() << " dropped, of " << flows.size();
  EXPECT_EQ(decoded(col), flows.size());
  const uint64_t dropped = counted();
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(col.metric("flowscope_store_insert_errors_total"), static_cast<double>(dropped));
  EXPECT_EQ(table_rows(ch, db), flows.size() - dropped);
  // Nothing twice, and nothing that is not an agent flow.
  const auto want = agent_keys(flows);
  const auto got = table_keys(ch, db);
  uint64_t missing = 0;
  for (const auto& [k, n] : want) {
    auto it = got.find(k);
    if (it == got.end())
      ++missing;
    else
      EXPECT_EQ(it->second, 1) << "stored twice: port " << k.first;
  }
  for (const auto& [k, n] : got) EXPECT_TRUE(want.contains(k)) << "not an agent flow: port " << k.first;
  EXPECT_EQ(missing, dropped);
  EXPECT_EQ(col.stop(), 0) << col.process().err();
}
