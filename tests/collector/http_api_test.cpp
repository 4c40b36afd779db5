// The HTTP API over a real socket on loopback and a real SQLite file; with
// FLOWSCOPE_TEST_STORE=clickhouse the same tests on a ClickHouse server the
// binary starts (ctest: collector_api_on_clickhouse).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <httplib.h>

#include "net/cidr.h"
#include "collector/http_api.h"
#include "storage/clickhouse_store.h"
#include "storage/sqlite_store.h"
#include "support/clickhouse_server.h"

using namespace flowscope;
using nlohmann::json;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

class ApiFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fs-api-XXXXXX";
    dir_ = mkdtemp(tmpl);
    if (const char* b = getenv("FLOWSCOPE_TEST_STORE"); b && std::string(b) == "clickhouse") {
      static fstest::ClickHouseServer server;
      auto s = ClickHouseStore::open(
          {.host = "127.0.0.1", .port = server.http_port(), .database = server.fresh_database()});
      ASSERT_TRUE(s) << s.error().message;
      store_ = std::move(*s);
    } else {
      auto s = SqliteStore::open({.path = dir_ + "/flows.db"});
      ASSERT_TRUE(s) << s.error().message;
      store_ = std::move(*s);
    }
    now_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
    std::vector<FlowRow> rows;
    for (int i = 0; i < 30; ++i) {
      FlowRow r;
      r.exporter = "local";
      r.start_ns = now_ - 600 * kSec + i * kSec;
      r.end_ns = r.start_ns + kSec;
      r.src_ip = *parse_ip(i % 2 ? "10.9.0.1" : "fd00:9::1");
      r.dst_ip = *parse_ip(i % 2 ? "10.9.0.2" : "fd00:9::2");
      r.src_port = static_cast<uint16_t>(30000 + i);
      r.dst_port = 443;
      r.bytes = 100 * (i + 1);
      r.rev_bytes = 10 * (i + 1);
      r.cumulative = true;
      r.bidirectional = true;
      r.comm = i < 10 ? "curl" : "wget";
      r.pid = 1000 + i;
      r.retrans = i == 5 ? 7 : 0;
      r.close = CloseReason::Fin;
      rows.push_back(r);
    }
    ASSERT_TRUE(store_->insert(rows));
    ASSERT_TRUE(store_->sync(std::chrono::seconds(30)));
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start(ApiOptions o = {}) {
    o.port = 0;
    auto a = ApiServer::start(
        o, store_,
        [this](const ExporterPage& p) {
          last_page_ = p;
          return json{{"exporters", json::array()}};
        },
        nullptr);
    ASSERT_TRUE(a) << a.error().message;
    api_ = std::move(*a);
    client_ = std::make_unique<httplib::Client>(o.host, api_->port());
  }
  std::pair<int, json> get(const std::string& path, const httplib::Headers& h = {}) {
    auto r = client_->Get(path, h);
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

  std::string dir_;
  uint64_t now_ = 0;
  std::shared_ptr<FlowStore> store_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<httplib::Client> client_;
  ExporterPage last_page_;
};

}  // namespace

TEST_F(ApiFixture, FlowsSearchAndPaging) {
  start();
  auto [st, j] = get("/api/flows?addr=10.9.0.0/16&limit=10");
  ASSERT_EQ(st, 200);
  EXPECT_EQ(j["count"], 10);
  EXPECT_EQ(j["more"], true);
  EXPECT_EQ(j["next_offset"], 10);
  for (auto& f : j["flows"]) EXPECT_EQ(f["src_addr"], "10.9.0.1");
  auto [st2, j2] = get("/api/flows?addr=10.9.0.0/16&limit=10&offset=10");
  ASSERT_EQ(st2, 200);
  EXPECT_EQ(j2["count"], 5);
  EXPECT_EQ(j2["more"], false);
  auto [st3, j3] = get("/api/flows?addr=fd00:9::/32&process=curl");
  ASSERT_EQ(st3, 200);
  EXPECT_EQ(j3["count"], 5);
}

TEST_F(ApiFixture, TopAndTimeseries) {
  start();
  auto [st, j] = get("/api/top?group=process&by=flows");
  ASSERT_EQ(st, 200);
  ASSERT_EQ(j["top"].size(), 2u);
  EXPECT_EQ(j["top"][0]["process"], "wget");
  EXPECT_EQ(j["top"][0]["flows"], 20);
  // Bytes each way (sent is src -> dst), and their sum: rows 11..30 and 1..10.
  EXPECT_EQ(j["top"][0]["bytes_out"], 100 * (30 * 31 / 2 - 55));
  EXPECT_EQ(j["top"][0]["bytes_in"], 10 * (30 * 31 / 2 - 55));
  EXPECT_EQ(j["top"][0]["bytes"], 110 * (30 * 31 / 2 - 55));
  EXPECT_EQ(j["top"][1]["process"], "curl");
  EXPECT_EQ(j["top"][1]["bytes_out"], 100 * 55);
  EXPECT_EQ(j["top"][1]["bytes_in"], 10 * 55);
  auto [st2, j2] = get("/api/top?group=src&by=retransmits&limit=1");
  ASSERT_EQ(st2, 200);
  EXPECT_EQ(j2["top"][0]["src"], "10.9.0.1");
  EXPECT_EQ(j2["top"][0]["retransmits"], 7);
  // By source network: odd rows from 10.9.0.1, even ones from fd00:9::1.
  auto [stc, jc] = get("/api/top?group=src_cidr&cidr4=8&cidr6=16");
  ASSERT_EQ(stc, 200) << jc.dump();
  ASSERT_EQ(jc["top"].size(), 2u);
  EXPECT_EQ(jc["top"][0]["src_cidr"], "10.0.0.0/8");
  EXPECT_EQ(jc["top"][0]["bytes_out"], 100 * 240);
  EXPECT_EQ(jc["top"][0]["flows"], 15);
  EXPECT_EQ(jc["top"][1]["src_cidr"], "fd00::/16");
  EXPECT_EQ(jc["top"][1]["bytes_in"], 10 * 225);
  auto [st3, j3] = get("/api/timeseries?from=-20m&interval=5m");
  ASSERT_EQ(st3, 200);
  uint64_t flows = 0, bytes = 0, out = 0, in = 0;
  for (auto& p : j3["points"]) {
    flows += p["flows"].get<uint64_t>();
    bytes += p["bytes"].get<uint64_t>();
    out += p["bytes_out"].get<uint64_t>();
    in += p["bytes_in"].get<uint64_t>();
    EXPECT_EQ(p["bytes"], p["bytes_out"].get<uint64_t>() + p["bytes_in"].get<uint64_t>());
  }
  EXPECT_EQ(flows, 30u);
  EXPECT_EQ(bytes, 110u * 30 * 31 / 2);
  EXPECT_EQ(out, 100u * 30 * 31 / 2);
  EXPECT_EQ(in, 10u * 30 * 31 / 2);
}

TEST_F(ApiFixture, HostileParametersGet400Json) {
  start();
  for (const char* path :
       {"/api/flows?limit=100000000", "/api/flows?addr=10.0.0.0/33", "/api/flows?addr=%27%20OR%201%3D1--",
        "/api/flows?port=99999", "/api/flows?from=yesterday", "/api/flows?limit=1%3B%20DROP%20TABLE%20flows",
        "/api/flows?bogus=1", "/api/top?group=src%3BDROP", "/api/top?limit=100000",
        "/api/timeseries?from=-365d&interval=1s", "/api/exporters?x=1", "/api/exporters?limit=0",
        "/api/exporters?limit=1001", "/api/exporters?after=a&after=b", "/api/flows?from=18446744074",
        "/api/flows?from=-1h&to=-2h", "/api/top?from=2100-01-01T00:00:00Z"}) {
    auto [st, j] = get(path);
    EXPECT_EQ(st, 400) << path;
    EXPECT_TRUE(j.is_object() && j.contains("error")) << path;
  }
  // SQL metacharacters inside a valid text filter are data: no rows, no error,
  // and the table is still there.
  auto [st, j] = get("/api/flows?process=x%27%3B%20DROP%20TABLE%20flows%3B%20--");
  EXPECT_EQ(st, 200);
  EXPECT_EQ(j["count"], 0);
  auto [st2, j2] = get("/api/flows?limit=1");
  EXPECT_EQ(st2, 200);
  EXPECT_EQ(j2["count"], 1);
}

TEST_F(ApiFixture, MetricsInPrometheusTextFormat) {
  start();
  get("/api/flows?limit=1");
  get("/api/flows?limit=0");
  auto r = client_->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_NE(r->body.find("# TYPE flowscope_http_requests_total counter"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find(R"(flowscope_http_requests_total{code="200",endpoint="/api/flows"} 1)"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find(R"(flowscope_http_requests_total{code="400",endpoint="/api/flows"} 1)"), std::string::npos)
      << r->body;
}

TEST_F(ApiFixture, UnknownPathIs404Json) {
  start();
  auto [st, j] = get("/api/nope");
  EXPECT_EQ(st, 404);
  EXPECT_TRUE(j.contains("error"));
}

TEST_F(ApiFixture, TokenRequiredWhenConfigured) {
  ApiOptions o;
  o.token = "0123456789abcdef-secret";
  start(o);
  EXPECT_EQ(get("/api/flows").first, 401);
  EXPECT_EQ(get("/metrics").first, 401);
  EXPECT_EQ(get("/api/flows", {{"Authorization", "Bearer wrong-token-xxxxxxx"}}).first, 401);
  EXPECT_EQ(get("/api/flows", {{"Authorization", "Basic 0123456789abcdef-secret"}}).first, 401);
  EXPECT_EQ(get("/api/flows", {{"Authorization", "Bearer 0123456789abcdef-secret"}}).first, 200);
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_EQ(get("/api/flows", {{"Authorization", "bearer 0123456789abcdef-secret"}}).first, 200);
  EXPECT_EQ(get("/api/flows", {{"Authorization", "BEARER 0123456789abcdef-secret"}}).first, 200);
  EXPECT_EQ(get("/healthz").first, 200);
}

TEST(ApiServer, RefusesNonLoopbackWithoutToken) {
  ApiOptions o;
  o.host = "0.0.0.0";
  o.port = 0;
  auto a = ApiServer::start(o, nullptr, nullptr, nullptr);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("token"), std::string::npos);
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("::"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
}

TEST(ApiServer, TokenFileChecks) {
  char tmpl[] = "/tmp/fs-token-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/token";
  std::ofstream(path) << "  0123456789abcdef-secret\n";
  chmod(path.c_str(), 0644);
  EXPECT_FALSE(read_token_file(path));  // readable by others
  chmod(path.c_str(), 0600);
  auto t = read_token_file(path);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(*t, "0123456789abcdef-secret");
  std::ofstream(path) << "short\n";
  EXPECT_FALSE(read_token_file(path));
  EXPECT_FALSE(read_token_file(dir + "/missing"));
  std::filesystem::remove_all(dir);
}

TEST_F(ApiFixture, ExportersArePaged) {
  start();
  auto [st, j] = get("/api/exporters");
  ASSERT_EQ(st, 200);
  EXPECT_EQ(last_page_.after, "");
  EXPECT_EQ(last_page_.limit, 100u);
  ASSERT_EQ(get("/api/exporters?after=10.0.0.9&limit=1000").first, 200);
  EXPECT_EQ(last_page_.after, "10.0.0.9");
  EXPECT_EQ(last_page_.limit, 1000u);
}

TEST(ApiAuth, BearerSchemeWithoutCaseAndExactToken) {
  const std::string tok = "0123456789abcdef-secret";
  for (const char* ok : {"Bearer 0123456789abcdef-secret", "bearer 0123456789abcdef-secret",
                         "bEaReR   0123456789abcdef-secret", "Bearer 0123456789abcdef-secret "})
    EXPECT_TRUE(bearer_matches(ok, tok)) << ok;
  for (const char* bad : {"", "Bearer", "Bearer ", "Bearer0123456789abcdef-secret", "Basic 0123456789abcdef-secret",
                          "Bearer 0123456789abcdef-secreT", "Bearer 0123456789abcdef-secret-and-more",
                          "Bearer 0123456789abcdef-secre", "Bearers 0123456789abcdef-secret"})
    EXPECT_FALSE(bearer_matches(bad, tok)) << bad;
}

TEST(ApiAuth, HostHeaderMustNameLoopbackOrAnAllowedName) {
  const std::vector<std::string> none, allowed = {"flows.internal"};
  for (const char* ok : {"", "localhost", "localhost:9740", "LocalHost:80", "localhost.", "127.0.0.1",
                         "127.0.0.1:9740", "127.1.2.3", "[::1]", "[::1]:9740"})
    EXPECT_TRUE(host_header_allowed(ok, none)) << ok;
  for (const char* bad : {"evil.example", "evil.example:9740", "localhost.evil.example", "127.0.0.1.evil.example",
                          "10.0.0.1", "[::2]:80", "::1", "[::1", "[127.0.0.1]", "localhost:", "localhost:99999x",
                          "localhost:80:80", "0.0.0.0", "flows.internal"})
    EXPECT_FALSE(host_header_allowed(bad, none)) << bad;
  EXPECT_TRUE(host_header_allowed("flows.internal", allowed));
  EXPECT_TRUE(host_header_allowed("FLOWS.internal:9740", allowed));
  EXPECT_FALSE(host_header_allowed("flows.internal.evil", allowed));
}
