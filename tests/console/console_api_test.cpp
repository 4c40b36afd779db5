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
  void start(std::optional<std::string> token = {}) {
    ApiOptions o;
    o.port = 0;
    o.token = std::move(token);
    auto a = ApiServer::start(o, store_, nullptr, nullptr);
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

}  // namespace
