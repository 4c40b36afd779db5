// The HTTP API under abuse, over real sockets on loopback: slow clients,
// heavy queries, oversized requests, foreign Host headers, a busy port.
// /healthz must stay fast while all of it happens.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "net/cidr.h"
#include "collector/collector.h"
#include "collector/http_api.h"
#include "collector/store_writer.h"
#include "ipfix/encoder.h"
#include "support/process.h"
#include "api_abuse.h"
#include "storage/sqlite_store.h"

using namespace flowscope;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using fstest::healthz;
using fstest::RawConn;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

uint64_t wall_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

// One store with many rows for every test here: a GROUP BY over the pairs
// takes a good fraction of a second, so queries are really heavy.
class HeavyApi : public ::testing::Test {
 protected:
  static constexpr int kRows = 100'000;

  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/fs-api-abuse-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    auto s = SqliteStore::open({.path = *dir_ + "/flows.db"});
    ASSERT_TRUE(s) << s.error().message;
    store_ = new std::shared_ptr<SqliteStore>(std::move(*s));
    const auto seeded = fstest::seed_heavy_rows(**store_, kRows);
    ASSERT_TRUE(seeded.empty()) << seeded;
  }
  static void TearDownTestSuite() {
    delete store_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  void start(ApiOptions o) {
    o.port = 0;
    auto a = ApiServer::start(o, *store_, nullptr, nullptr);
    ASSERT_TRUE(a) << a.error().message;
    api_ = std::move(*a);
  }

  static std::string* dir_;
  static std::shared_ptr<SqliteStore>* store_;
  std::unique_ptr<ApiServer> api_;
};

std::string* HeavyApi::dir_ = nullptr;
std::shared_ptr<SqliteStore>* HeavyApi::store_ = nullptr;

constexpr const char* kHeavy = fstest::kHeavyQuery;

// N clients send their request head at one byte a second, and 8 heavy
// queries run, while /healthz is polled: every poll answers 200, and the
// slowest under 100 ms. The slow clients are cut off at the header deadline.
void expect_healthz_fast_under_abuse(std::unique_ptr<ApiServer>& api, int slow) {
  const auto o = fstest::slow_clients_and_heavy_queries(api->port(), slow);
  std::printf("%d slow clients: %s\n", slow, o.summary().c_str());
  EXPECT_EQ(o.bad, 0);
  EXPECT_LT(o.worst_s, 0.100) << "slowest /healthz " << o.worst_s * 1000 << " ms";
  EXPECT_GE(o.polls, 20);
  EXPECT_EQ(o.cut_off, slow) << "slow clients still connected past the header deadline";
  // Each heavy query got an answer: its rows, or 503 (busy or time limit).
  EXPECT_EQ(o.heavy.count(0) + o.heavy.count(-1), 0u);
  for (auto [st, n] : o.heavy) EXPECT_TRUE(st == 200 || st == 503) << st;
}

}  // namespace

TEST_F(HeavyApi, EightSlowClientsAndHeavyQueriesLeaveHealthzFast) {
  ApiOptions o;
  o.limits.header_timeout = 2s;
  o.limits.query_timeout = 5s;
  start(o);
  expect_healthz_fast_under_abuse(api_, 8);
}

TEST_F(HeavyApi, SixtyFourSlowClientsAndHeavyQueriesLeaveHealthzFast) {
  ApiOptions o;
  o.limits.header_timeout = 2s;
  o.limits.query_timeout = 5s;
  start(o);
  expect_healthz_fast_under_abuse(api_, 64);
}

// A query past its time limit is stopped and answered 503 with a reason.
TEST_F(HeavyApi, QueryPastTheTimeLimitIs503) {
  ApiOptions o;
  o.limits.query_timeout = 1ms;  // the deadline counts from arrival: passed before SQLite starts
  start(o);
  httplib::Client c("127.0.0.1", api_->port());
  c.set_read_timeout(30);
  for (const char* path : {kHeavy, "/api/timeseries?from=-1h&interval=1s", "/api/flows?addr=10.0.0.0/8&offset=150000"}) {
    const auto t0 = Clock::now();
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 503) << path << ": " << r->body;
    EXPECT_NE(json::parse(r->body, nullptr, false).value("error", "").find("time limit"), std::string::npos) << r->body;
    // Stopped, not run to the end (a whole GROUP BY here takes far longer).
    EXPECT_LT(Clock::now() - t0, 5s);
  }
  // The same store answers when the query fits its limit.
  auto r = c.Get("/api/flows?limit=5");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// A client that does not read its answer holds it in the server's memory:
// past the bound, new queries are answered 503 until it is gone.
TEST_F(HeavyApi, AnswersWaitingForSlowReadersAreBounded) {
  ApiOptions o;
  o.limits.max_held_bytes = 1;
  start(o);
  const uint16_t port = api_->port();
  auto held = [port] {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    if (!r) return -1.0;
    const auto at = r->body.find("\nflowscope_http_held_bytes ");
    return at == std::string::npos ? -1.0 : std::stod(r->body.substr(at + 27));
  };
  auto reader = std::make_unique<RawConn>(port, 4096);
  ASSERT_TRUE(reader->send_all("GET /api/flows?limit=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto deadline = Clock::now() + 20s;
  double h = 0;
  while (Clock::now() < deadline && (h = held()) <= 0) std::this_thread::sleep_for(10ms);  // bounded poll
  ASSERT_GT(h, 4'000'000) << "the page should be larger than the socket buffers";
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/api/flows?limit=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("wait for their clients"), std::string::npos) << r->body;
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  reader.reset();  // the slow client goes: its answer is freed
  deadline = Clock::now() + 20s;
  while (Clock::now() < deadline && held() != 0) std::this_thread::sleep_for(10ms);  // bounded poll
  EXPECT_EQ(held(), 0);
  r = c.Get("/api/flows?limit=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

namespace {

// A store whose top() blocks until released: holds the query pool's slots
// for as long as the test wants, to see what the next query gets.
class BlockingStore : public FlowStore {
 public:
  Result<void> insert(std::vector<FlowRow>&) override { return {}; }
  Result<FlowPage> query(const FlowQuery&) override { return FlowPage{}; }
  Result<std::vector<TopEntry>> top(const TopQuery&) override {
    std::unique_lock lk(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait_for(lk, 20s, [&] { return released_; });
    return std::vector<TopEntry>{};
  }
  Result<std::vector<SeriesPoint>> series(const SeriesQuery&) override { return std::vector<SeriesPoint>{}; }
  Result<uint64_t> expire(uint64_t) override { return 0; }
  StoreStats stats() override { return {}; }

  bool wait_entered(int n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 10s, [&] { return entered_ >= n; });
  }
  void release() {
    std::lock_guard lk(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
};

}  // namespace

// With every worker and queue place taken, a query is answered 503 "busy"
// at once, and /healthz and /metrics still answer.
TEST(ApiAbuse, FullQueryPoolAnswersBusy) {
  auto store = std::make_shared<BlockingStore>();
  ApiOptions o;
  o.port = 0;
  o.limits.query_workers = 2;
  o.limits.query_queue = 1;
  auto api = ApiServer::start(o, store, nullptr, nullptr);
  ASSERT_TRUE(api) << api.error().message;
  const uint16_t port = (*api)->port();
  auto get = [port](const std::string& path, int timeout_s = 30) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(timeout_s);
    auto r = c.Get(path);
    return r ? std::pair{r->status, r->body} : std::pair{0, std::string()};
  };
  std::vector<std::future<int>> held;
  for (int k = 0; k < 2; ++k) held.push_back(std::async(std::launch::async, [&] { return get("/api/top").first; }));
  ASSERT_TRUE(store->wait_entered(2));
  // Both workers are held. The queue's one place goes to whichever query
  // comes next: this one, or one of the probes below (which then waits
  // until its client gives up). Either way a probe soon finds the pool full.
  auto queued = std::async(std::launch::async, [&] { return get("/api/top").first; });
  std::pair<int, std::string> busy;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline && (busy = get("/api/top", 2)).first != 503) {
  }
  EXPECT_EQ(busy.first, 503);
  EXPECT_NE(busy.second.find("busy"), std::string::npos) << busy.second;
  EXPECT_EQ(get("/healthz").first, 200);
  EXPECT_EQ(get("/metrics").first, 200);
  store->release();
  for (auto& f : held) EXPECT_EQ(f.get(), 200);
  const int q = queued.get();
  EXPECT_TRUE(q == 200 || q == 503) << q;
}

TEST(ApiAbuse, BusyPortIsAClearErrorNotASharedPort) {
  ApiOptions o;
  o.port = 0;
  auto first = ApiServer::start(o, nullptr, nullptr, nullptr);
  ASSERT_TRUE(first) << first.error().message;
  o.port = (*first)->port();
  auto second = ApiServer::start(o, nullptr, nullptr, nullptr);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EADDRINUSE);
  EXPECT_NE(second.error().message.find("already in use"), std::string::npos) << second.error().message;
}

// Two collectors on one HTTP port: the second stops at start with one line
// that says why, and the first keeps answering.
TEST(ApiAbuse, SecondCollectorOnABusyHttpPortFailsAtStart) {
  char tmpl[] = "/tmp/fs-api-port-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  fstest::Process first({FLOWSCOPE_BIN, "collector", "--db", dir + "/a.db", "--udp-port", "0", "--tcp-port", "0",
                         "--http-port", "0"});
  ASSERT_TRUE(first.wait_for("collector running", 20s)) << first.err();
  const std::string err = first.err();
  const auto at = err.find("HTTP API on http://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << err;
  const int port = std::stoi(err.substr(at + std::strlen("HTTP API on http://127.0.0.1:")));
  fstest::Process second({FLOWSCOPE_BIN, "collector", "--db", dir + "/b.db", "--udp-port", "0", "--tcp-port", "0",
                          "--http-port", std::to_string(port)});
  EXPECT_EQ(second.wait(20s), 1);
  EXPECT_NE(second.err().find("already in use"), std::string::npos) << second.err();
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  first.signal(SIGINT);
  EXPECT_EQ(first.wait(30s), 0);
  std::filesystem::remove_all(dir);
}

TEST(ApiAbuse, RequestHeadLimits) {
  ApiOptions o;
  o.port = 0;
  auto api = ApiServer::start(o, nullptr, nullptr, nullptr);
  ASSERT_TRUE(api) << api.error().message;
  const uint16_t port = (*api)->port();
  auto ask = [port](const std::string& request) {
    RawConn c(port);
    EXPECT_TRUE(c.connected());
    c.send_all(request);
    return c.read_until_close(10s);
  };
  EXPECT_EQ(status_of(ask("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")), 200);
  // Many small header fields: refused by count.
  std::string many = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  for (int k = 0; k < 100; ++k) many += fmt::format("X-F{}: v\r\n", k);
  EXPECT_EQ(status_of(ask(many + "\r\n")), 431);
  // One header larger than a connection's memory: refused by size (MHD
  // answers 431 or closes; it never serves the request).
  const std::string big = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: " +
                          std::string(64 * 1024, 'b') + "\r\n\r\n";
  const int big_status = status_of(ask(big));
  EXPECT_TRUE(big_status == 431 || big_status == 0 || big_status == 413) << big_status;
  // A request line longer than a connection's memory.
  const int uri_status =
      status_of(ask("GET /api/flows?process=" + std::string(64 * 1024, 'u') + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_TRUE(uri_status == 414 || uri_status == 431 || uri_status == 0) << uri_status;
  EXPECT_EQ(status_of(ask("POST /api/flows HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")),
            405);
}

// DNS rebinding: a page that re-points its own name at 127.0.0.1 reaches the
// API with its own name in Host. Without a token, only loopback names and
// --allow-host names are answered.
TEST(ApiAbuse, HostGuardOnTheUnauthenticatedApi) {
  ApiOptions o;
  o.port = 0;
  o.allowed_hosts = {"flows.lan"};
  auto api = ApiServer::start(o, nullptr, [](const ExporterPage&) { return json::object(); }, nullptr);
  ASSERT_TRUE(api) << api.error().message;
  const uint16_t port = (*api)->port();
  auto status = [port](const std::string& host, const std::string& path = "/api/exporters") {
    RawConn c(port);
    c.send_all("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    const std::string r = c.read_until_close(10s);
    if (status_of(r) == 421) {
      EXPECT_NE(r.find("--allow-host"), std::string::npos) << r;
    }
    return status_of(r);
  };
  EXPECT_EQ(status("localhost:" + std::to_string(port)), 200);
  EXPECT_EQ(status("127.0.0.1:" + std::to_string(port)), 200);
  EXPECT_EQ(status("[::1]:" + std::to_string(port)), 200);
  EXPECT_EQ(status("flows.lan:" + std::to_string(port)), 200);
  EXPECT_EQ(status("attacker.example:" + std::to_string(port)), 421);
  EXPECT_EQ(status("attacker.example"), 421);
  EXPECT_EQ(status("attacker.example", "/metrics"), 421);
  // With a token the guard is off: a browser cannot send the token itself.
  o.token = "0123456789abcdef-secret";
  auto with_token = ApiServer::start(o, nullptr, [](const ExporterPage&) { return json::object(); }, nullptr);
  ASSERT_TRUE(with_token);
  RawConn c((*with_token)->port());
  c.send_all("GET /api/exporters HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: bearer "
             "0123456789abcdef-secret\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(c.read_until_close(10s)), 200);
}

// /api/exporters (and /metrics) take the collector's locks: while one is
// stuck behind them, /healthz and store queries still answer.
TEST(ApiAbuse, StuckExportersListDoesNotStallHealthz) {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;
  ApiOptions o;
  o.port = 0;
  auto api = ApiServer::start(
      o, std::make_shared<BlockingStore>(),
      [&](const ExporterPage&) {
        std::unique_lock lk(mu);
        entered = true;
        cv.notify_all();
        cv.wait_for(lk, 20s, [&] { return released; });
        return json{{"exporters", json::array()}};
      },
      nullptr);
  ASSERT_TRUE(api) << api.error().message;
  const uint16_t port = (*api)->port();
  auto stuck = std::async(std::launch::async, [port] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30);
    auto r = c.Get("/api/exporters");
    return r ? r->status : 0;
  });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, 10s, [&] { return entered; }));
  }
  auto [status, seconds] = healthz(port);
  EXPECT_EQ(status, 200);
  EXPECT_LT(seconds, 1.0);
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/api/flows?limit=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  {
    std::lock_guard lk(mu);
    released = true;
  }
  cv.notify_all();
  EXPECT_EQ(stuck.get(), 200);
}

// Many exporters (UDP from 250 loopback addresses): /api/exporters gives them
// a page at a time in address order, each exactly once, and /metrics keeps
// series for the 20 busiest plus one aggregate.
TEST(ApiAbuse, ManyExportersArePagedAndMetricsStayBounded) {
  char tmpl[] = "/tmp/fs-api-exp-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto store = SqliteStore::open({.path = dir + "/flows.db"});
  ASSERT_TRUE(store) << store.error().message;
  std::shared_ptr<SqliteStore> st = std::move(*store);
  auto writer = std::make_shared<StoreWriter>(st);
  CollectorOptions co;
  co.udp_port = 0;
  co.tcp = false;
  auto col = Collector::start(co, writer);
  ASSERT_TRUE(col) << col.error().message;
  const uint16_t udp_port = (*col)->udp_port();
  ipfix::Encoder enc;
  const auto templates = enc.template_messages(static_cast<uint32_t>(wall_ns() / kSec));
  constexpr int kExporters = 250;
  // Every exporter sends one message, the last 20 three: they are the
  // busiest. Sent in batches, each waited for, so the socket buffer (small
  // without root) never overflows.
  auto received = [&] { return (*col)->exporters_json("", 1)["receivers"]["udp_datagrams"].get<uint64_t>(); };
  uint64_t sent = 0;
  json first;
  for (int k = 0; k < kExporters; ++k) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in src{}, dst{};
    src.sin_family = dst.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000100u + static_cast<uint32_t>(k));  // 127.0.1.k, still loopback
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons(udp_port);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src), 0) << std::strerror(errno);
    for (int m = 0; m < (k >= kExporters - 20 ? 3 : 1); ++m, ++sent)
      ASSERT_GT(sendto(fd, templates[0].data(), templates[0].size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst),
                0);
    close(fd);
    if (k % 25 == 24) {
      const auto deadline = Clock::now() + 20s;
      while (received() < sent && Clock::now() < deadline) std::this_thread::sleep_for(5ms);  // bounded poll
      ASSERT_EQ(received(), sent);
    }
  }
  {
    const auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline &&
           (first = (*col)->exporters_json("", 100))["decoder"]["messages"].get<uint64_t>() < sent)
      std::this_thread::sleep_for(5ms);  // bounded poll for the decoder to catch up
  }
  ASSERT_EQ(first["decoder"]["messages"].get<uint64_t>(), sent);
  ASSERT_EQ(first["exporters_total"], kExporters) << first.dump();
  std::vector<std::string> seen;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    json j = (*col)->exporters_json(after, 100);
    for (auto& e : j["exporters"]) seen.push_back(e["exporter"]);
    if (!j.contains("next_after")) break;
    EXPECT_EQ(j["exporters"].size(), 100u);
    after = j["next_after"];
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kExporters));
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());

  FamilyBuilder b;
  (*col)->collect_metrics(b);
  size_t series = 0;
  double total = 0, other = -1;
  std::set<std::string> named;
  for (const auto& f : b.take()) {
    if (f.name != "flowscope_exporter_messages_total") continue;
    for (const auto& m : f.metric) {
      ++series;
      total += m.counter.value;
      if (m.label.at(0).value == "_other") other = m.counter.value;
      else named.insert(m.label.at(0).value);
    }
  }
  EXPECT_EQ(series, 21u);  // the 20 busiest, plus the rest summed
  EXPECT_EQ(total, static_cast<double>(first["decoder"]["messages"].get<uint64_t>()));
  EXPECT_GT(other, 0);
  for (int k = kExporters - 20; k < kExporters; ++k)
    EXPECT_TRUE(named.contains(fmt::format("127.0.1.{}", k))) << k;  // the busiest, each by name
  EXPECT_EQ(other, kExporters - 20.0);                              // one message each
  col->reset();
  writer.reset();
  st.reset();
  std::filesystem::remove_all(dir);
}
