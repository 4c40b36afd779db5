// What the console relies on from the API, over a real socket and a real
// SQLite file: its assets without a token, the drops and exclude_port
// filters, and time series with every bucket answered.
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "collector/http_api.h"
#include "collector/metrics.h"
#include "collector/store_writer.h"
#include "net/cidr.h"
#include "storage/sqlite_store.h"

using namespace flowscope;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

class ConsoleApi : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fs-console-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto s = SqliteStore::open({.path = dir_ + "/flows.db"});
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    now_ = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    std::vector<FlowRow> rows;
    for (int i = 0; i < 4; ++i) {
      FlowRow r;
      r.exporter = "local";
      r.end_ns = now_ - (100 + 10 * i) * kSec;
      r.start_ns = r.end_ns - kSec;
      r.src_ip = *parse_ip("10.0.0.1");
      r.dst_ip = *parse_ip("10.0.0.2");
      r.src_port = static_cast<uint16_t>(40000 + i);
      r.dst_port = i == 3 ? 9740 : 443;
      r.bytes = 100;
      r.host = i % 2 ? "web-1" : "db-1";
      r.comm = i % 2 ? "nginx" : "node";
      if (i == 3) r.close = CloseReason::Refused;
      if (i == 1) r.drops = {{"NO_SOCKET", 2}};
      if (i == 2) r.drops = {{"TCP_CSUM", 1}, {"NO_SOCKET", 1}};
      rows.push_back(r);
    }
    ASSERT_TRUE(store_->insert(rows));
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start(std::optional<std::string> token = {}, std::shared_ptr<Metrics> metrics = nullptr) {
    ApiOptions o;
    o.port = 0;
    o.token = std::move(token);
    auto a = ApiServer::start(o, store_, nullptr, std::move(metrics));
    ASSERT_TRUE(a) << a.error().message;
    api_ = std::move(*a);
  }
  std::pair<int, std::string> get(const std::string& path, httplib::Headers h = {}) {
    httplib::Client c("127.0.0.1", api_->port());
    auto r = c.Get(path, h);
    return r ? std::pair{r->status, r->body} : std::pair{0, std::string()};
  }
  size_t count(const std::string& path) {
    auto [st, body] = get(path);
    EXPECT_EQ(st, 200) << path << ": " << body;
    return st == 200 ? nlohmann::json::parse(body)["count"].get<size_t>() : 0;
  }
  std::string dir_;
  uint64_t now_ = 0;
  std::shared_ptr<SqliteStore> store_;
  std::unique_ptr<ApiServer> api_;
};

TEST_F(ConsoleApi, AssetsLoadWithoutTokenTheApiDoesNot) {
  start("0123456789abcdef-secret");
  for (const char* path : {"/", "/app.js", "/app.css"}) EXPECT_EQ(get(path).first, 200) << path;
  EXPECT_NE(get("/").second.find("/app.js"), std::string::npos);
  EXPECT_EQ(get("/api/flows").first, 401);
  EXPECT_EQ(get("/nothing.js").first, 401);
}

TEST_F(ConsoleApi, DropsAndExcludePortFilters) {
  start();
  EXPECT_EQ(count("/api/flows?drops=any"), 2u);
  EXPECT_EQ(count("/api/flows?drops=NO_SOCKET"), 2u);
  EXPECT_EQ(count("/api/flows?drops=TCP_CSUM"), 1u);
  EXPECT_EQ(count("/api/flows?drops=NETFILTER_DROP"), 0u);
  EXPECT_EQ(count("/api/flows?exclude_port=9740"), 3u);
  EXPECT_EQ(count("/api/flows?exclude_port=443"), 1u);
  EXPECT_EQ(get("/api/flows?drops=x%27%20OR%201").first, 400);
  EXPECT_EQ(get("/api/flows?exclude_port=70000").first, 400);
}

TEST_F(ConsoleApi, TimeseriesAnswersEveryBucket) {
  start();
  auto [st, body] = get("/api/timeseries?from=-10m&interval=1m");
  ASSERT_EQ(st, 200) << body;
  auto j = nlohmann::json::parse(body);
  const auto& pts = j["points"];
  // 600 s in 60 s buckets: 11 bucket starts from `from` through `to`.
  ASSERT_EQ(pts.size(), 11u);
  uint64_t flows = 0, nonzero = 0;
  for (size_t k = 0; k < pts.size(); ++k) {
    EXPECT_EQ(pts[k]["time_ns"].get<uint64_t>(), j["from_ns"].get<uint64_t>() + k * 60 * kSec);
    flows += pts[k]["flows"].get<uint64_t>();
    nonzero += pts[k]["flows"].get<uint64_t>() > 0;
  }
  EXPECT_EQ(flows, 4u);
  EXPECT_LE(nonzero, 2u);  // four flows within 40 s fall in one or two buckets
}

// The groups, metrics and completion the Explore view and its filter bar use.
TEST_F(ConsoleApi, GroupsMetricsAndCompletion) {
  start();
  auto json = [&](const std::string& path) {
    auto [st, body] = get(path);
    EXPECT_EQ(st, 200) << path << ": " << body;
    return st == 200 ? nlohmann::json::parse(body) : nlohmann::json::object();
  };
  auto reasons = json("/api/top?group=drop_reason&by=drops");
  ASSERT_EQ(reasons["top"].size(), 2u);
  EXPECT_EQ(reasons["top"][0]["drop_reason"], "NO_SOCKET");
  EXPECT_EQ(reasons["top"][0]["drops"], 3u);
  EXPECT_EQ(reasons["top"][0]["flows"], 2u);
  auto hosts = json("/api/top?group=host&by=failures");
  ASSERT_EQ(hosts["top"].size(), 2u);
  EXPECT_EQ(hosts["top"][0]["host"], "web-1");
  EXPECT_EQ(hosts["top"][0]["failures"], 1u);
  EXPECT_EQ(json("/api/top?group=close")["top"][0]["close"], "refused");
  EXPECT_EQ(count("/api/flows?host=db-1"), 2u);
  uint64_t failures = 0, drops = 0;
  const auto series = json("/api/timeseries?from=-10m&interval=1m");
  for (const auto& p : series["points"]) {
    failures += p["failures"].get<uint64_t>();
    drops += p["drops"].get<uint64_t>();
  }
  EXPECT_EQ(failures, 1u);
  EXPECT_EQ(drops, 4u);

  auto c = json("/api/complete?field=process&prefix=n");
  EXPECT_EQ(c["values"], nlohmann::json::array({"nginx", "node"}));
  EXPECT_EQ(json("/api/complete?field=process&prefix=ng")["values"], nlohmann::json::array({"nginx"}));
  EXPECT_EQ(json("/api/complete?field=drops&prefix=TCP")["values"], nlohmann::json::array({"TCP_CSUM"}));
  EXPECT_EQ(json("/api/complete?field=host&limit=1")["values"], nlohmann::json::array({"db-1"}));
  EXPECT_EQ(get("/api/complete?prefix=n").first, 400);             // no field
  EXPECT_EQ(get("/api/complete?field=pid").first, 400);            // not completed
  EXPECT_EQ(get("/api/complete?field=host&limit=1000").first, 400);
  EXPECT_EQ(get("/api/top?group=bogus").first, 400);
  EXPECT_EQ(get("/api/top?by=bogus").first, 400);
}

// /metrics carries traffic per workload from the rows the store committed,
// bounded: the first N workloads get series, the rest sum into "other".
TEST_F(ConsoleApi, MetricsCarryBoundedTrafficPerWorkload) {
  auto metrics = std::make_shared<Metrics>();
  auto traffic = std::make_shared<TrafficMetrics>(3, 1);
  metrics->add_snapshot([traffic](FamilyBuilder& b) { traffic->collect(b); });
  start({}, metrics);
  auto writer = std::make_shared<StoreWriter>(store_);
  writer->on_rows([traffic](const std::vector<FlowRow>& rows) { traffic->add(rows); });
  // Six workloads, 1000 bytes each; "w0" also reports a long flow twice
  // (cumulative totals: counted once) that is reset with drops.
  for (int i = 0; i < 6; ++i) {
    FlowRow r;
    r.exporter = "local";
    r.end_ns = now_ - 50 * kSec;
    r.start_ns = r.end_ns - kSec;
    r.src_ip = *parse_ip("10.0.0.1");
    r.dst_ip = *parse_ip("10.0.0.2");
    r.src_port = static_cast<uint16_t>(41000 + i);
    r.dst_port = 80;
    r.bytes = 1000;
    r.comm = "w" + std::to_string(i);
    r.close = i == 4 ? CloseReason::Refused : CloseReason::Fin;
    writer->push(r);
  }
  FlowRow open_rec;
  open_rec.exporter = "local";
  open_rec.start_ns = now_ - 40 * kSec;
  open_rec.end_ns = now_ - 30 * kSec;
  open_rec.src_ip = *parse_ip("10.0.0.1");
  open_rec.dst_ip = *parse_ip("10.0.0.3");
  open_rec.src_port = 42000;
  open_rec.dst_port = 443;
  open_rec.cumulative = true;
  open_rec.interim = true;
  open_rec.bytes = 500;
  open_rec.retrans = 2;
  open_rec.comm = "w0";
  open_rec.close = CloseReason::Active;
  open_rec.drops = {{"NO_SOCKET", 1}};
  writer->push(open_rec);
  FlowRow last = open_rec;
  last.end_ns = now_ - 20 * kSec;
  last.interim = false;
  last.bytes = 800;
  last.retrans = 3;
  last.close = CloseReason::RstReceived;
  last.drops = {{"NO_SOCKET", 2}, {"TCP_CSUM", 5}};
  writer->push(last);
  writer->drain();
  auto [st, text] = get("/metrics");
  ASSERT_EQ(st, 200);
  auto value = [&text](const std::string& series) -> std::string {
    const auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return "missing";
    const auto b = at + series.size() + 2;
    return text.substr(b, text.find('\n', b) - b);
  };
  EXPECT_EQ(value("flowscope_workload_bytes_total{workload=\"w0\"}"), "1800");
  EXPECT_EQ(value("flowscope_workload_connections_total{workload=\"w0\"}"), "2");
  EXPECT_EQ(value("flowscope_workload_retransmits_total{workload=\"w0\"}"), "3");
  EXPECT_EQ(value("flowscope_workload_failed_connections_total{workload=\"w0\"}"), "1");
  EXPECT_EQ(value("flowscope_workload_drops_total{workload=\"w0\",reason=\"NO_SOCKET\"}"), "2");
  EXPECT_EQ(value("flowscope_workload_drops_total{workload=\"w0\",reason=\"other\"}"), "5");
  EXPECT_EQ(value("flowscope_workload_bytes_total{workload=\"w2\"}"), "1000");
  // w3, w4, w5 beyond the bound of three: summed, w4's refusal with them.
  EXPECT_EQ(value("flowscope_workload_bytes_total{workload=\"w3\"}"), "missing");
  EXPECT_EQ(value("flowscope_workload_bytes_total{workload=\"other\"}"), "3000");
  EXPECT_EQ(value("flowscope_workload_failed_connections_total{workload=\"other\"}"), "1");
  writer.reset();
}

}  // namespace
