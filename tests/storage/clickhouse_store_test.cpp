// The ClickHouse store against real servers this binary starts (its own
// config, data directory and loopback ports; tests/support/clickhouse_server.h):
// the FlowStore contract (AnyStore), the same answers as SQLite on the same
// rows, rollups, retention, an outage in the middle of a stream, and start-up
// refusals that must be one clear line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "any_store.h"
#include "storage/clickhouse_store.h"
#include "storage/sqlite_store.h"
#include "support/clickhouse_server.h"
#include "support/ports.h"
#include "support/process.h"

using namespace flowscope;
using namespace fstest_storage;
using std::chrono::milliseconds;

namespace {

// One server for the whole binary; each test gets its own database.
fstest::ClickHouseServer& server() {
  static fstest::ClickHouseServer s;
  return s;
}

ClickHouseOptions options(const std::string& db, uint16_t port = 0) {
  ClickHouseOptions o;
  o.host = "127.0.0.1";
  o.port = port ? port : server().http_port();
  o.database = db;
  o.connect_timeout = milliseconds(1000);
  o.io_timeout = milliseconds(3000);
  o.max_backoff = milliseconds(200);
  o.flush_every = milliseconds(100);
  return o;
}

std::unique_ptr<ClickHouseStore> open_ch(const ClickHouseOptions& o) {
  auto s = ClickHouseStore::open(o);
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return s ? std::move(*s) : nullptr;
}

}  // namespace

namespace fstest_storage {

void AnyStore::SetUp() { database_ = server().fresh_database(); }

std::unique_ptr<FlowStore> AnyStore::open() { return open_ch(options(database_)); }

bool AnyStore::insert(FlowStore& s, std::vector<FlowRow>& rows) {
  auto r = s.insert(rows);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  if (!r) return false;
  auto synced = s.sync(std::chrono::seconds(30));
  EXPECT_TRUE(synced) << (synced ? "" : synced.error().message);
  return synced.has_value();
}

INSTANTIATE_TEST_SUITE_P(ClickHouse, AnyStore, ::testing::Values("clickhouse"));

}  // namespace fstest_storage

namespace {

// A mixed stream: long agent flows reported several times while open, then
// closed; short flows; third-party (unidirectional, non-cumulative) records;
// several exporters, processes, containers and close reasons. Times fall on
// one-minute boundaries' insides so rollups can answer aligned ranges.
std::vector<std::vector<FlowRow>> stream(uint64_t t0) {
  std::vector<std::vector<FlowRow>> batches(4);
  const char* comms[] = {"curl", "nginx", "postgres"};
  const char* containers[] = {"aaaaaaaaaaaaaaaa1111", "bbbbbbbbbbbbbbbb2222"};
  for (int f = 0; f < 40; ++f) {
    const auto start = t0 + static_cast<uint64_t>(f) * 7 * kSec;
    for (int rep = 0; rep < 4; ++rep) {
      const bool last = rep == 3;
      const uint64_t grow = static_cast<uint64_t>(rep + 1);
      FlowRow r = agent_row(f % 2 ? "10.0.0.1" : "fd00::1", static_cast<uint16_t>(40000 + f),
                            f % 3 ? "10.9.0.2" : "10.9.0.3", static_cast<uint16_t>(f % 4 ? 443 : 5432), start,
                            start + grow * 50 * kSec + static_cast<uint64_t>(f) * kSec, 1000 * grow * (f + 1),
                            100 * grow, !last);
      r.comm = comms[f % 3];
      if (f % 5 == 0) r.comm.reset();
      if (f % 2) r.container_id = containers[f % 4 == 1];
      r.retrans = static_cast<uint32_t>(rep * (f % 3));
      r.direction = f % 4 == 0 ? Direction::Inbound : Direction::Outbound;
      if (last && f % 6 == 0) r.close = CloseReason::RstSent;
      if (last && f % 6 == 1) r.close = CloseReason::Refused;
      r.host = f % 3 ? "h1" : "h2";
      if (f % 2) r.netns = 4026531840u + static_cast<uint32_t>(f % 4);
      if (f % 7 == 1) r.drops = {{"NETFILTER_DROP", uint64_t(rep + 1)}};
      if (f % 7 == 3) r.drops = {{"TCP_OFO_DROP", 1}, {"NETFILTER_DROP", 2}};
      batches[static_cast<size_t>(rep)].push_back(r);
    }
    FlowRow s = softflowd_row("192.0.2.10", static_cast<uint16_t>(1000 + f), "10.0.0.1", 53, start, 77 + f);
    s.end_ns = start + 30 * kSec;
    batches[static_cast<size_t>(f % 4)].push_back(s);
  }
  return batches;
}

std::string show(const FlowPage& p) {
  std::string s = p.more ? "more\n" : "\n";
  for (const auto& r : p.flows) s += flow_row_json(r) + "\n";
  return s;
}
std::string show(const std::vector<TopEntry>& v) {
  std::string s;
  for (const auto& e : v) {
    for (const auto& k : e.key) s += k + ",";
    s += fmt::format(" {} {} {} {} {} {} {} {}\n", e.bytes, e.packets, e.flows, e.retrans, e.failures, e.drops,
                     e.bytes_out, e.bytes_in);
  }
  return s;
}
std::string show(const std::vector<SeriesPoint>& v) {
  std::string s;
  for (const auto& p : v)
    s += fmt::format("{} {} {} {} {} {} {} {} {}\n", p.time_ns, p.bytes, p.packets, p.flows, p.retrans, p.failures,
                     p.drops, p.bytes_out, p.bytes_in);
  return s;
}

template <class T>
std::string show(const Result<T>& r) {
  return r ? show(*r) : "error: " + r.error().message;
}

}  // namespace

// The same stream into SQLite and ClickHouse: every query, top and series
// (with and without filters, on rollups or not) gives the same answer.
TEST(ClickHouseStore, SameAnswersAsSqlite) {
  const uint64_t t0 = kT0 - kT0 % (3600 * kSec);  // an hour boundary
  TempDb tmp;
  auto lite = SqliteStore::open({.path = tmp.path()});
  ASSERT_TRUE(lite);
  auto ch = open_ch(options(server().fresh_database()));
  ASSERT_TRUE(ch);
  for (auto batch : stream(t0)) {
    auto copy = batch;
    ASSERT_TRUE((*lite)->insert(batch));
    ASSERT_TRUE(ch->insert(copy));
    for (size_t k = 0; k < batch.size(); ++k) {
      EXPECT_EQ(batch[k].delta_bytes, copy[k].delta_bytes);
      EXPECT_EQ(batch[k].first, copy[k].first);
    }
  }
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));

  std::vector<FlowFilter> filters = {
      {},
      {.from_ns = t0 + 120 * kSec},
      {.from_ns = t0 + 60 * kSec, .to_ns = t0 + 200 * kSec},
      {.addr = *parse_cidr("10.0.0.0/24")},
      {.src = *parse_cidr("fd00::/8")},
      {.port = 5432},
      {.protocol = 17},
      {.direction = "inbound"},
      {.comm = "nginx"},
      {.container = "aaaaaaaaaaaa"},
      {.close_reason = "rst_sent"},
      {.exporter = "local"},
      {.interim = true},
      {.from_ns = t0, .comm = "curl"},
      {.drop_reason = "any"},
      {.drop_reason = "NETFILTER_DROP"},
      {.drop_reason = "TCP_OFO_DROP"},
      {.exclude_port = 443},
      {.host = "h1"},
  };
  for (const auto& f : filters) {
    SCOPED_TRACE(fmt::format("filter #{}", &f - filters.data()));
    for (uint64_t off : {0, 30}) {
      FlowQuery q{.filter = f, .limit = 25, .offset = off};
      EXPECT_EQ(show((*lite)->query(q)), show(ch->query(q)));
    }
    for (auto g : {TopGroup::Src, TopGroup::Dst, TopGroup::Pair, TopGroup::Port, TopGroup::Process,
                   TopGroup::Container, TopGroup::Host, TopGroup::Netns, TopGroup::Close, TopGroup::DropReason})
      for (auto m : {TopMetric::Bytes, TopMetric::Flows, TopMetric::Retrans, TopMetric::Failures, TopMetric::Drops}) {
        TopQuery q{.filter = f, .group = g, .by = m, .limit = 50};
        EXPECT_EQ(show((*lite)->top(q)), show(ch->top(q))) << to_string(g) << " by " << to_string(m);
      }
    for (uint64_t interval : {60 * kSec, 300 * kSec, 3600 * kSec}) {
      SeriesQuery q{.filter = f, .interval_ns = interval};
      q.filter.from_ns = t0;
      q.filter.to_ns = t0 + 2 * 3600 * kSec - 1;
      EXPECT_EQ(show((*lite)->series(q)), show(ch->series(q))) << interval / kSec << " s";
    }
  }
  auto words = [](const Result<std::vector<std::string>>& r) {
    std::string s = r ? "" : "error: " + r.error().message;
    if (r)
      for (const auto& v : *r) s += v + ",";
    return s;
  };
  for (auto field : {CompleteField::Process, CompleteField::Container, CompleteField::Host, CompleteField::Exporter,
                     CompleteField::Close, CompleteField::Direction, CompleteField::DropReason})
    for (const char* prefix : {"", "n", "h", "N", "r"}) {
      CompleteQuery q{.field = field, .prefix = prefix, .from_ns = t0, .limit = 3};
      const auto a = words((*lite)->complete(q));
      EXPECT_EQ(a, words(ch->complete(q))) << to_string(field) << " " << prefix;
      EXPECT_EQ(a.find("error"), std::string::npos) << a;
    }
}

// The coarsest rollup that covers the range answers, and says so; its
// answer is the raw table's.
TEST(ClickHouseStore, RollupsAnswerWhatTheyCoverAndMatchRaw) {
  const uint64_t t0 = kT0 - kT0 % (3600 * kSec);
  const auto db = server().fresh_database();
  auto ch = open_ch(options(db));
  auto o = options(db);
  o.use_rollups = false;
  auto raw = open_ch(o);
  ASSERT_TRUE(ch && raw);
  for (auto batch : stream(t0)) ASSERT_TRUE(ch->insert(batch));
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  // The rollups' retention does not reach back to kT0 (2023) by default.
  auto check = [&](ClickHouseStore& s, const SeriesQuery& q, const char* table) {
    auto got = s.series(q);
    EXPECT_EQ(ClickHouseStore::last_table(), table);
    auto want = raw->series(q);
    EXPECT_EQ(ClickHouseStore::last_table(), "flows");
    EXPECT_EQ(show(got), show(want));
    EXPECT_FALSE(show(got).empty());
  };
  check(*ch, {.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1}, .interval_ns = 3600 * kSec}, "flows");
  auto keep = options(db);
  keep.retention_1m = keep.retention_5m = keep.retention_1h = std::chrono::seconds(0);
  auto all = open_ch(keep);
  ASSERT_TRUE(all);
  check(*all, {.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1}, .interval_ns = 3600 * kSec}, "flows_1h");
  check(*all, {.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1}, .interval_ns = 600 * kSec}, "flows_5m");
  check(*all, {.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1, .comm = "curl"}, .interval_ns = 120 * kSec},
        "flows_1m");
  // Not aligned to a minute, or a filter on a raw-only column: raw.
  check(*all, {.filter = {.from_ns = t0 + kSec, .to_ns = t0 + 7200 * kSec - 1}, .interval_ns = 60 * kSec}, "flows");
  check(*all, {.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1, .port = 443}, .interval_ns = 3600 * kSec},
        "flows");
  // Top by process from the 1 h rollup, by address from raw.
  for (auto g : {TopGroup::Process, TopGroup::Container}) {
    TopQuery q{.filter = {.from_ns = t0}, .group = g, .limit = 10};
    auto got = all->top(q);
    EXPECT_EQ(ClickHouseStore::last_table(), "flows_1h");
    EXPECT_EQ(show(got), show(raw->top(q)));
  }
  (void)all->top({.filter = {.from_ns = t0}, .group = TopGroup::Src});
  EXPECT_EQ(ClickHouseStore::last_table(), "flows");
}

// Retention drops whole day partitions: the raw table's per expire(), the
// rollups' by their own settings.
TEST(ClickHouseStore, RetentionDropsWholeDays) {
  const auto db = server().fresh_database();
  auto ch = open_ch(options(db));
  ASSERT_TRUE(ch);
  const uint64_t day = 86400 * kSec;
  const uint64_t d0 = kT0 - kT0 % day;
  std::vector<FlowRow> batch{softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, d0 + 10 * kSec, 1),
                             softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, d0 + 20 * kSec, 1),
                             softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, d0 + 2 * day + 5 * kSec, 1)};
  ASSERT_TRUE(ch->insert(batch));
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  auto n = ch->expire(d0 + day + 12 * 3600 * kSec);  // mid-day after the first day
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 2u);
  auto p = ch->query({});
  ASSERT_TRUE(p);
  ASSERT_EQ(p->flows.size(), 1u);
  EXPECT_EQ(ch->stats().retention_deleted, 2u);
  // The 1 min rollup's 7 days have long passed for 2023: dropped too; the
  // 1 h rollup keeps a year... also past. Both are empty now.
  EXPECT_EQ(server().query(fmt::format("SELECT count() FROM {}.flows_1m", db)), "0\n");
  EXPECT_EQ(server().query(fmt::format("SELECT count() FROM {}.flows_1h", db)), "0\n");
}

// The server frozen (SIGSTOP) in the middle of a stream: insert() never
// blocks, batches wait and are retried; once the server is back every row
// arrives exactly once. Past the queue's bound rows are dropped and counted.
TEST(ClickHouseStore, OutageLosesNothingWithinTheBoundAndDuplicatesNothing) {
  const auto db = server().fresh_database();
  auto o = options(db);
  o.io_timeout = milliseconds(700);
  o.max_pending_rows = 3000;
  auto ch = open_ch(o);
  ASSERT_TRUE(ch);
  uint64_t sent = 0, refused = 0;
  auto push = [&](int n) {
    std::vector<FlowRow> b;
    for (int k = 0; k < n; ++k, ++sent)
      b.push_back(softflowd_row("10.0.0.1", static_cast<uint16_t>(sent % 60000), "10.0.0.2", 53,
                                kT0 + sent * kSec, 1));
    const auto t = std::chrono::steady_clock::now();
    auto r = ch->insert(b);
    // insert() only encodes and queues: far below the io timeout even when the server is away.
    EXPECT_LT(std::chrono::steady_clock::now() - t, milliseconds(500));
    if (!r) refused += static_cast<uint64_t>(n);
  };
  push(500);
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  // On a loaded machine the first insert itself may have needed a retry:
  // wait for retries of the frozen server's batch, not for any retry.
  const uint64_t retries_before = ch->stats().retries;
  server().signal(SIGSTOP);
  // A small batch first: its request reaches the frozen server whole, so
  // the server stores it when it resumes although the sender gave up on it
  // (a blind retry would store it twice).
  push(200);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ch->stats().retries == retries_before && std::chrono::steady_clock::now() < deadline) {
    auto s = ch->sync(milliseconds(200));
    EXPECT_FALSE(s);  // cannot finish while the server is stopped
  }
  for (int k = 0; k < 8; ++k) push(500);  // 4000 more: what exceeds the bound of 3000 is dropped
  EXPECT_GT(ch->stats().retries, retries_before);
  server().signal(SIGCONT);
  ASSERT_TRUE(ch->sync(std::chrono::seconds(60)));
  const auto st = ch->stats();
  EXPECT_GT(refused, 0u);
  EXPECT_EQ(st.insert_errors, refused);
  const uint64_t stored = std::stoull(server().query(fmt::format("SELECT count() FROM {}.flows", db)));
  const uint64_t distinct = std::stoull(server().query(fmt::format("SELECT uniqExact(id) FROM {}.flows", db)));
  EXPECT_EQ(stored, sent - refused);
  EXPECT_EQ(distinct, stored);  // nothing twice
  EXPECT_EQ(st.rows_inserted, stored);
}

// Start-up refusals: one line each, quickly, no hang.
TEST(ClickHouseStore, BadConfigurationFailsAtOnceWithOneLine) {
  auto expect_fail = [](ClickHouseOptions o, const std::string& needle) {
    const auto t = std::chrono::steady_clock::now();
    auto s = ClickHouseStore::open(o);
    ASSERT_FALSE(s) << needle;
    EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
    EXPECT_EQ(s.error().message.find('\n'), std::string::npos) << s.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - t, std::chrono::seconds(10));
  };
  expect_fail(options("nosuchdb"), "has no database 'nosuchdb'");
  auto o = options(server().fresh_database());
  o.port = fstest::free_loopback_port();
  expect_fail(o, "cannot connect");
  o = options(server().fresh_database());
  o.password = "wrong";
  expect_fail(o, "refused user 'default'");
  o.user = "nobody";
  expect_fail(o, "refused user 'nobody'");
  // A database made by a newer flowscope.
  const auto db = server().fresh_database();
  ASSERT_TRUE(open_ch(options(db)));
  server().query(fmt::format("INSERT INTO {}.schema_migrations VALUES (99, now())", db));
  expect_fail(options(db), "schema version 99, newer than this flowscope");
  // A frozen server: the timeouts end the wait.
  server().signal(SIGSTOP);
  o = options("default");
  o.io_timeout = milliseconds(500);
  auto frozen = ClickHouseStore::open(o);
  server().signal(SIGCONT);
  ASSERT_FALSE(frozen);
}

TEST(ClickHouseStore, MigrationsAreIdempotentAndRecorded) {
  const auto db = server().fresh_database();
  { ASSERT_TRUE(open_ch(options(db))); }
  { ASSERT_TRUE(open_ch(options(db))); }
  EXPECT_EQ(server().query(fmt::format(
                "SELECT groupArray(version) FROM (SELECT version FROM {}.schema_migrations ORDER BY version)", db)),
            "[1,2,3,4]\n");
  EXPECT_EQ(server().query(fmt::format(
                "SELECT type FROM system.columns WHERE database = '{}' AND table = 'flows' AND name = 'src_ip'", db)),
            "FixedString(16)\n");
}

// A database of schema version 3 (no bytes each way) is migrated at start:
// its records get d_bytes_out and d_bytes_in from the column defaults (exact
// for a flow's first record and for third-party deltas), the rollups are
// rebuilt with them, and raw and rollup answers agree.
TEST(ClickHouseStore, BytesEachWayAddedToAnOlderDatabase) {
  const uint64_t h0 = kT0 - kT0 % (3600 * kSec);
  const auto db = server().fresh_database();
  {
    auto ch = open_ch(options(db));
    ASSERT_TRUE(ch);
    std::vector<FlowRow> rows{agent_row("10.0.0.1", 5000, "10.0.0.2", 80, h0, h0 + 90 * kSec, 3000, 300),
                              softflowd_row("10.0.0.9", 53, "10.0.0.1", 40000, h0 + 100 * kSec, 700)};
    ASSERT_TRUE(ch->insert(rows));
    ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  }
  // As version 3 left it.
  server().query(fmt::format("ALTER TABLE {}.flows DROP COLUMN d_bytes_out", db));
  server().query(fmt::format("ALTER TABLE {}.flows DROP COLUMN d_bytes_in", db));
  server().query(fmt::format("DROP TABLE {}.schema_migrations", db));
  server().query(fmt::format("CREATE TABLE {}.schema_migrations (version UInt32, applied DateTime) ENGINE = TinyLog", db));
  server().query(fmt::format("INSERT INTO {}.schema_migrations VALUES (1, now()), (2, now()), (3, now())", db));
  auto keep = options(db);
  keep.retention_1m = keep.retention_5m = keep.retention_1h = std::chrono::seconds(0);
  auto ch = open_ch(keep);
  ASSERT_TRUE(ch);
  EXPECT_EQ(server().query(fmt::format(
                "SELECT groupArray(version) FROM (SELECT version FROM {}.schema_migrations ORDER BY version)", db)),
            "[1,2,3,4]\n");
  const std::string want = "80, 3300 5 1 0 0 0 3000 300\n40000, 700 3 1 0 0 0 700 0\n";
  TopQuery q{.filter = {.from_ns = h0}, .group = TopGroup::Port};
  EXPECT_EQ(show(ch->top(q)), want);
  EXPECT_EQ(ClickHouseStore::last_table(), "flows");
  SeriesQuery sq{.filter = {.from_ns = h0, .to_ns = h0 + 3600 * kSec - 1}, .interval_ns = 3600 * kSec};
  EXPECT_EQ(show(ch->series(sq)), fmt::format("{} 4000 8 2 0 0 0 3700 300\n", h0));
  EXPECT_EQ(ClickHouseStore::last_table(), "flows_1h");
}

// A database made before a field was added to the field table gets its
// column at the next start, and rows with the field round-trip.
TEST(ClickHouseStore, ColumnOfANewFieldIsAddedAtStart) {
  const auto db = server().fresh_database();
  { ASSERT_TRUE(open_ch(options(db))); }
  server().query(fmt::format("ALTER TABLE {}.flows DROP COLUMN exe", db));
  ASSERT_EQ(server().query(fmt::format(
                "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'flows' AND name = 'exe'", db)),
            "0\n");
  auto ch = open_ch(options(db));
  ASSERT_TRUE(ch);
  EXPECT_EQ(server().query(fmt::format(
                "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'flows' AND name = 'exe'", db)),
            "1\n");
  std::vector<FlowRow> rows{agent_row("10.0.0.1", 40000, "10.0.0.2", 443, kT0, kT0 + kSec, 10, 1, false)};
  rows[0].exe = "nginx";
  ASSERT_TRUE(ch->insert(rows));
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  auto page = ch->query({});
  ASSERT_TRUE(page);
  ASSERT_EQ(page->flows.size(), 1u);
  EXPECT_EQ(page->flows[0].exe, "nginx");
}

// A server that says it is 17.x (an HTTP stand-in: the servers at hand are
// all 18.16) is refused at start with one line.
TEST(ClickHouseStore, OlderServerIsRefused) {
  httplib::Server fake;
  fake.Post("/", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.body == "SELECT version()" ? "17.12.3\n" : "1\n", "text/plain");
  });
  const int port = fake.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread t([&] { fake.listen_after_bind(); });
  // bind_to_any_port() listens already: a connection waits in the backlog.
  auto s = ClickHouseStore::open(options("flowscope", static_cast<uint16_t>(port)));
  fake.stop();
  t.join();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message,
            fmt::format("ClickHouse at http://127.0.0.1:{} runs version 17.12.3; flowscope needs 18.16 or later", port));
}

// The version rule itself, on the strings version() returns.
TEST(ClickHouseStoreUrl, VersionsBelow18_16AreRefused) {
  for (const char* ok : {"18.16.1", "18.16.1.0", "19.1.6", "24.3.2.23", "100.0"})
    EXPECT_TRUE(clickhouse_version_supported(ok)) << ok;
  for (const char* old : {"18.14.19", "1.1.54394", "18.1.0", "", "garbage", "18"})
    EXPECT_FALSE(clickhouse_version_supported(old)) << old;
}

TEST(ClickHouseStoreUrl, ParsesAndRefuses) {
  ClickHouseOptions o;
  ASSERT_TRUE(parse_clickhouse_url("clickhouse://db.example:9000/flows", o));
  EXPECT_EQ(o.host, "db.example");
  EXPECT_EQ(o.port, 9000);
  EXPECT_EQ(o.database, "flows");
  ASSERT_TRUE(parse_clickhouse_url("clickhouse://[::1]:8124/x", o));
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 8124);
  for (const char* bad : {"http://h/db", "clickhouse://h:0/db", "clickhouse://h:8123", "clickhouse://h/d;DROP",
                          "clickhouse://:8123/db", "clickhouse://h:99999/db"})
    EXPECT_FALSE(parse_clickhouse_url(bad, o)) << bad;
  TempDb tmp;
  std::ofstream(tmp.path()) << "# flowscope\nuser=writer\npassword=s3cr=t\n";
  EXPECT_FALSE(read_clickhouse_credentials(tmp.path(), o));  // 0644: readable by others
  chmod(tmp.path().c_str(), 0600);
  ASSERT_TRUE(read_clickhouse_credentials(tmp.path(), o));
  EXPECT_EQ(o.user, "writer");
  EXPECT_EQ(o.password, "s3cr=t");
  std::ofstream(tmp.path()) << "writer:secret\n";
  EXPECT_FALSE(read_clickhouse_credentials(tmp.path(), o));
}

// ---------------------------------------------------------------------------
// `flowscope collector --store clickhouse://...` end to end: NetFlow v9 over
// loopback UDP in, rows in ClickHouse and answers from the API out, a frozen
// server in the middle, and start-up refusals as one line and exit 1.

namespace {

void put16(std::string& m, uint16_t v) {
  m += char(v >> 8);
  m += char(v & 0xff);
}
void put32(std::string& m, uint32_t v) {
  put16(m, uint16_t(v >> 16));
  put16(m, uint16_t(v & 0xffff));
}

// A NetFlow v9 message: a template (addresses, ports, protocol, octets,
// packets, first/last switched) and one record 10.8.0.1:sport -> 10.8.0.2:53.
std::string v9_message(uint32_t seq, uint16_t sport) {
  const uint32_t now = static_cast<uint32_t>(std::time(nullptr));
  std::string m;
  put16(m, 9);
  put16(m, 2);
  put32(m, 600'000);  // uptime, ms
  put32(m, now);
  put32(m, seq);
  put32(m, 1);
  const std::vector<std::pair<uint16_t, uint16_t>> fields = {{8, 4}, {12, 4}, {7, 2},  {11, 2},
                                                             {4, 1}, {1, 4}, {2, 4}, {22, 4}, {21, 4}};
  put16(m, 0);
  put16(m, uint16_t(8 + 4 * fields.size()));
  put16(m, 300);
  put16(m, uint16_t(fields.size()));
  for (auto [id, len] : fields) {
    put16(m, id);
    put16(m, len);
  }
  put16(m, 300);
  put16(m, 4 + 29 + 3);
  for (uint8_t b : {10, 8, 0, 1, 10, 8, 0, 2}) m += char(b);
  put16(m, sport);
  put16(m, 53);
  m += char(17);
  put32(m, 100);  // octets
  put32(m, 1);    // packets
  put32(m, 590'000);  // first switched (uptime ms)
  put32(m, 595'000);  // last switched
  m += std::string(3, '\0');
  return m;
}

void send_udp(uint16_t port, const std::string& m) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(s, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  close(s);
}

nlohmann::json api(uint16_t port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(10));
  auto r = c.Get(path);
  return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
}

// Polls `cond` until it holds or `limit` passes.
template <class F>
bool wait_until(F&& cond, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));  // poll interval
  }
  return true;
}

}  // namespace

TEST(ClickHouseCollector, StoresAndAnswersThroughAnOutage) {
  const auto db = server().fresh_database();
  const uint16_t udp = fstest::free_loopback_port(SOCK_DGRAM), http = fstest::free_loopback_port();
  fstest::Process col({FLOWSCOPE_BIN, "collector", "--store",
                       fmt::format("clickhouse://127.0.0.1:{}/{}", server().http_port(), db), "--udp-port",
                       std::to_string(udp), "--no-tcp", "--http-port", std::to_string(http)});
  ASSERT_TRUE(col.wait_for("collector running", std::chrono::seconds(30))) << col.err();
  uint32_t seq = 0;
  for (uint16_t k = 0; k < 200; ++k) send_udp(udp, v9_message(seq++, static_cast<uint16_t>(20000 + k)));
  auto written = [&] {
    auto j = api(http, "/api/exporters");
    return j.is_object() && j.contains("store") ? j["store"]["written"].get<uint64_t>() : 0;
  };
  auto stored = [&] { return std::stoull(server().query(fmt::format("SELECT count() FROM {}.flows", db))); };
  ASSERT_TRUE(wait_until([&] { return written() >= 200 && stored() >= 200; }, std::chrono::seconds(30))) << col.err();
  auto flows = api(http, "/api/flows?limit=1000&from=-1h");
  EXPECT_EQ(flows["count"], 200) << flows.dump().substr(0, 300);
  // Frozen server: decoding goes on (the exporter's records are counted).
  server().signal(SIGSTOP);
  for (uint16_t k = 200; k < 400; ++k) send_udp(udp, v9_message(seq++, static_cast<uint16_t>(20000 + k)));
  auto decoded = [&] {
    auto j = api(http, "/api/exporters");
    if (!j.is_object() || !j.contains("exporters") || j["exporters"].empty()) return uint64_t{0};
    return j["exporters"][0]["flows"].get<uint64_t>();
  };
  EXPECT_TRUE(wait_until([&] { return decoded() >= 400; }, std::chrono::seconds(20)));
  server().signal(SIGCONT);
  ASSERT_TRUE(wait_until([&] { return stored() >= 400; }, std::chrono::seconds(60)));
  EXPECT_EQ(stored(), 400u);
  EXPECT_EQ(std::stoull(server().query(fmt::format("SELECT uniqExact(src_port) FROM {}.flows", db))), 400u);
  auto top = api(http, "/api/top?group=port&by=flows&from=-1h");
  ASSERT_TRUE(top.contains("top")) << top.dump();
  EXPECT_EQ(top["top"][0]["flows"], 400) << top.dump();
  col.signal(SIGINT);
  EXPECT_EQ(col.wait(std::chrono::seconds(30)), 0) << col.err();
}

TEST(ClickHouseCollector, BadStoreIsOneLineAndExitOne) {
  const std::string base = fmt::format("clickhouse://127.0.0.1:{}/", server().http_port());
  TempDb tmp;
  std::ofstream(tmp.path()) << "user=default\npassword=wrong\n";
  chmod(tmp.path().c_str(), 0600);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--store", base + "nosuchdb"}, "has no database 'nosuchdb'"},
      {{"--store", fmt::format("clickhouse://127.0.0.1:{}/x", fstest::free_loopback_port())}, "cannot connect"},
      {{"--store", base + "default", "--store-credentials", tmp.path()}, "refused user 'default'"},
      {{"--store", "clickhouse://127.0.0.1:8123"}, "the database is missing"},
      {{"--store", "postgres://x/y"}, "expected sqlite:PATH or clickhouse://"},
  };
  for (const auto& [args, needle] : cases) {
    std::vector<std::string> argv = {FLOWSCOPE_BIN, "collector", "--udp-port", "0", "--no-tcp", "--http-port", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    fstest::Process p(argv);
    EXPECT_EQ(p.wait(std::chrono::seconds(15)), 1) << needle;
    const std::string err = p.err();
    EXPECT_NE(err.find(needle), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// Two servers forming the 2-shard cluster "flowscope": tables on both, rows
// spread over both through the Distributed table, and the same answers as
// SQLite (rollups included).
TEST(ClickHouseCluster, TwoShardsGiveTheSameAnswersAsSqlite) {
  fstest::ClickHouseServer cluster(2);
  const std::string db = cluster.fresh_database();
  auto o = options(db, cluster.http_port(0));
  o.cluster = "flowscope";
  o.shards = {{"127.0.0.1", cluster.http_port(0)}, {"127.0.0.1", cluster.http_port(1)}};
  o.retention_1m = o.retention_5m = o.retention_1h = std::chrono::seconds(0);
  auto ch = open_ch(o);
  ASSERT_TRUE(ch);
  TempDb tmp;
  auto lite = SqliteStore::open({.path = tmp.path()});
  ASSERT_TRUE(lite);
  const uint64_t t0 = kT0 - kT0 % (3600 * kSec);
  uint64_t total = 0;
  for (auto batch : stream(t0)) {
    auto copy = batch;
    total += batch.size();
    ASSERT_TRUE((*lite)->insert(batch));
    ASSERT_TRUE(ch->insert(copy));
  }
  ASSERT_TRUE(ch->sync(std::chrono::seconds(30)));
  const uint64_t on0 = std::stoull(cluster.query(fmt::format("SELECT count() FROM {}.flows_local", db), 0));
  const uint64_t on1 = std::stoull(cluster.query(fmt::format("SELECT count() FROM {}.flows_local", db), 1));
  EXPECT_GT(on0, 0u);
  EXPECT_GT(on1, 0u);
  EXPECT_EQ(on0 + on1, total);
  EXPECT_EQ(show((*lite)->query({.limit = 500})), show(ch->query({.limit = 500})));
  for (auto g : {TopGroup::Pair, TopGroup::Process}) {
    TopQuery q{.filter = {.from_ns = t0}, .group = g, .limit = 50};
    EXPECT_EQ(show((*lite)->top(q)), show(ch->top(q)));
  }
  SeriesQuery q{.filter = {.from_ns = t0, .to_ns = t0 + 7200 * kSec - 1}, .interval_ns = 600 * kSec};
  EXPECT_EQ(show((*lite)->series(q)), show(ch->series(q)));
  EXPECT_EQ(ClickHouseStore::last_table(), "flows_5m");
  // A second collector start finds both shards migrated.
  ch.reset();
  EXPECT_TRUE(open_ch(o));
}
