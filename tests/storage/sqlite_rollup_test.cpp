// The SQLite store's per-minute rollup: top() and series() read it where the
// range and filter allow, and answer exactly what the flows answer (a store
// with the rollup off is the reference), through merges, reopening and
// retention.
#include <sqlite3.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "storage/sqlite_store.h"
#include "store_test_util.h"

using namespace fstest_storage;

namespace {

constexpr uint64_t kMin = 60 * kSec;

// Two hours of records ending at uneven times: cumulative agent flows
// reported while open and at close, third-party deltas, both ports below
// 32768 on some, hosts, containers, drops, failures.
std::vector<std::vector<FlowRow>> stream(uint64_t t0) {
  std::vector<std::vector<FlowRow>> batches(12);
  const char* comms[] = {"curl", "nginx", "postgres", "java"};
  for (int f = 0; f < 240; ++f) {
    const uint64_t start = t0 + static_cast<uint64_t>(f) * 29 * kSec + static_cast<uint64_t>(f % 7) * 1'234'567;
    const int reps = 1 + f % 3;
    for (int rep = 0; rep < reps; ++rep) {
      const bool last = rep == reps - 1;
      const auto grow = static_cast<uint64_t>(rep + 1);
      FlowRow r = agent_row(f % 2 ? "10.0.0.1" : "fd00::1", static_cast<uint16_t>(f % 5 ? 40000 + f : 2000 + f),
                            f % 3 ? "10.9.0.2" : "10.9.0.3", static_cast<uint16_t>(f % 4 ? 443 : 5432), start,
                            start + grow * 70 * kSec + static_cast<uint64_t>(f) * 333'333, 1000 * grow * (f + 1),
                            100 * grow, !last);
      r.comm = comms[f % 4];
      if (f % 9 == 0) r.comm.reset();
      if (f % 2) r.container_id = f % 4 == 1 ? "aaaaaaaaaaaaaaaa1111" : "bbbbbbbbbbbbbbbb2222";
      r.host = f % 3 ? "h1" : "h2";
      r.netns = 4026531840u + static_cast<uint32_t>(f % 2);
      r.retrans = static_cast<uint32_t>(rep * (f % 3));
      r.direction = f % 4 == 0 ? Direction::Inbound : Direction::Outbound;
      r.protocol = f % 11 == 0 ? 17 : 6;
      if (last && f % 6 == 0) r.close = CloseReason::RstSent;
      if (last && f % 6 == 1) r.close = CloseReason::Refused;
      if (f % 7 == 1) r.drops = {{"NETFILTER_DROP", uint64_t(rep + 1)}};
      if (f % 7 == 3) r.drops = {{"TCP_OFO_DROP", 1}, {"NETFILTER_DROP", 2}};
      batches[static_cast<size_t>((f / 20 + rep) % 12)].push_back(r);
    }
    FlowRow s = softflowd_row("192.0.2.10", static_cast<uint16_t>(1000 + f), "10.0.0.1", 53, start, 77 + f);
    s.end_ns = start + 30 * kSec;
    batches[static_cast<size_t>(f / 20)].push_back(s);
  }
  return batches;
}

std::string show(const Result<std::vector<TopEntry>>& r) {
  if (!r) return "error: " + r.error().message;
  std::string s;
  for (const auto& e : *r) {
    for (const auto& k : e.key) s += k + ",";
    s += fmt::format(" {} {} {} {} {} {} {} {}\n", e.bytes, e.packets, e.flows, e.retrans, e.failures, e.drops,
                     e.bytes_out, e.bytes_in);
  }
  return s;
}

std::string show(const Result<std::vector<SeriesPoint>>& r) {
  if (!r) return "error: " + r.error().message;
  std::string s;
  for (const auto& p : *r)
    s += fmt::format("{} {} {} {} {} {} {} {} {}\n", p.time_ns, p.bytes, p.packets, p.flows, p.retrans, p.failures,
                     p.drops, p.bytes_out, p.bytes_in);
  return s;
}

std::string show(const Result<std::vector<std::string>>& r) {
  if (!r) return "error: " + r.error().message;
  std::string s;
  for (const auto& v : *r) s += v + ",";
  return s;
}

struct Stores {
  TempDb a, b;
  std::unique_ptr<SqliteStore> rolled, raw;
  void open() {
    rolled.reset();
    raw.reset();
    rolled = std::move(*SqliteStore::open({.path = a.path()}));
    raw = std::move(*SqliteStore::open({.path = b.path(), .use_rollups = false}));
  }
  void insert(std::vector<FlowRow> batch) {
    auto copy = batch;
    ASSERT_TRUE(rolled->insert(batch));
    ASSERT_TRUE(raw->insert(copy));
  }
};

// Compares every group, metric and filter over ranges that do and do not
// fall on minutes; returns how many answers came from the rollup.
int compare(Stores& s, uint64_t t0) {
  int rolled = 0;
  const std::vector<FlowFilter> filters = {
      {},
      {.port = 443},
      {.port = 2010},  // below 32768 on both ends
      {.port = 40001},  // may be ephemeral: the flows answer
      {.protocol = 17},
      {.direction = "inbound"},
      {.comm = "nginx"},
      {.container = "aaaaaaaaaaaa"},
      {.close_reason = "rst_sent"},
      {.exporter = "local"},
      {.host = "h2"},
      {.interim = false},
      {.drop_reason = "any"},
      {.drop_reason = "TCP_OFO_DROP"},
      {.exclude_port = 443},
      {.comm = "curl", .exclude_port = 53},
      {.addr = *parse_cidr("10.0.0.0/24")},
  };
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {t0, t0 + 2 * 3600 * kSec},                              // on minutes
      {t0 + 17 * kSec, t0 + 45 * kMin + 3 * kSec},             // off minutes at both ends
      {t0 + 30 * kMin, t0 + 30 * kMin + 59 * kSec},            // less than a minute
      {t0 - kMin, t0 + 10 * 3600 * kSec},                      // past the end
      {t0 + 61 * kMin, t0 + 62 * kMin - 1},                    // one whole minute
  };
  for (const auto& f0 : filters) {
    for (const auto& [from, to] : ranges) {
      FlowFilter f = f0;
      f.from_ns = from;
      f.to_ns = to;
      SCOPED_TRACE(fmt::format("filter #{} range +{}s..+{}s", &f0 - filters.data(), (from - t0) / kSec,
                               (to - t0) / kSec));
      for (auto g : {TopGroup::Src, TopGroup::Pair, TopGroup::Port, TopGroup::Process, TopGroup::Container,
                     TopGroup::Host, TopGroup::Netns, TopGroup::Close, TopGroup::DropReason})
        for (auto m : {TopMetric::Bytes, TopMetric::Flows, TopMetric::Retrans, TopMetric::Failures, TopMetric::Drops}) {
          TopQuery q{.filter = f, .group = g, .by = m, .limit = 7};
          const auto a = show(s.rolled->top(q));
          rolled += SqliteStore::last_used_rollup();
          EXPECT_EQ(a, show(s.raw->top(q))) << to_string(g) << " by " << to_string(m);
        }
      for (uint64_t interval : {60 * kSec, 300 * kSec, 3600 * kSec, 90 * kSec}) {
        SeriesQuery q{.filter = f, .interval_ns = interval};
        const auto a = show(s.rolled->series(q));
        rolled += SqliteStore::last_used_rollup();
        EXPECT_EQ(a, show(s.raw->series(q))) << interval / kSec << " s";
      }
    }
  }
  for (auto field : {CompleteField::Process, CompleteField::Container, CompleteField::Host, CompleteField::Close,
                     CompleteField::Direction, CompleteField::Exporter})
    for (uint64_t from : {t0, t0 + 37 * kMin + 5 * kSec, t0 + 200 * kMin})
      for (const char* prefix : {"", "n", "h", "c"}) {
        CompleteQuery q{.field = field, .prefix = prefix, .from_ns = from, .limit = 3};
        EXPECT_EQ(show(s.rolled->complete(q)), show(s.raw->complete(q))) << to_string(field) << " " << prefix;
      }
  return rolled;
}

}  // namespace

TEST(SqliteRollup, AnswersEqualTheFlows) {
  const uint64_t t0 = kT0 - kT0 % (3600 * kSec);
  Stores s;
  s.open();
  auto batches = stream(t0);
  // Half, then reopen (the rollup's rows are merged at the first insert
  // after a start), then the rest.
  for (size_t k = 0; k < batches.size(); ++k) {
    if (k == batches.size() / 2) s.open();
    s.insert(batches[k]);
  }
  EXPECT_GT(compare(s, t0), 1000);
  // Retention: whole minutes go from both tables.
  ASSERT_TRUE(s.rolled->expire(t0 + 40 * kMin + 17 * kSec));
  ASSERT_TRUE(s.raw->expire(t0 + 40 * kMin + 17 * kSec));
  compare(s, t0);
}

// A database from before the rollup gets it built from its flows at start.
TEST(SqliteRollup, BuiltForAnExistingDatabase) {
  const uint64_t t0 = kT0 - kT0 % (3600 * kSec);
  Stores s;
  s.open();
  for (auto& b : stream(t0)) s.insert(b);
  s.rolled.reset();
  {
    // As a flowscope before the rollup left it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(s.a.path().c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "DROP TABLE flows_1m; PRAGMA user_version = 2;", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  s.open();
  EXPECT_GT(compare(s, t0), 1000);
}

// A database from before bytes were kept each way (version 3): its records
// get them at start, split in the proportion of their totals each way (exact
// for a flow's first record and for records that are their own share), and
// the rollup is rebuilt with them.
TEST(SqliteRollup, BytesEachWayAddedToAnOlderDatabase) {
  const uint64_t m0 = kT0 - kT0 % kMin;
  TempDb tmp;
  {
    auto s = SqliteStore::open({.path = tmp.path()});
    ASSERT_TRUE(s);
    std::vector<FlowRow> rows{agent_row("10.0.0.1", 5000, "10.0.0.2", 80, m0, m0 + 90 * kSec, 3000, 300),
                              softflowd_row("10.0.0.9", 53, "10.0.0.1", 40000, m0 + 100 * kSec, 700)};
    ASSERT_TRUE((*s)->insert(rows));
  }
  {
    // As a flowscope of version 3 left it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(tmp.path().c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db,
                           "ALTER TABLE flows DROP COLUMN d_bytes_out; ALTER TABLE flows DROP COLUMN d_bytes_in; "
                           "ALTER TABLE open_flows DROP COLUMN rev_bytes; DROP TABLE flows_1m; "
                           "CREATE TABLE flows_1m (minute INTEGER); PRAGMA user_version = 3;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = SqliteStore::open({.path = tmp.path()});
  ASSERT_TRUE(s) << s.error().message;
  for (bool rollup : {true, false}) {
    FlowFilter range{.from_ns = m0, .to_ns = m0 + 5 * kMin - 1};
    if (!rollup) range.addr = *parse_cidr("0.0.0.0/0");  // a column only the flows have
    auto top = (*s)->top({.filter = range, .group = TopGroup::Port});
    ASSERT_TRUE(top) << top.error().message;
    EXPECT_EQ(SqliteStore::last_used_rollup(), rollup);
    EXPECT_EQ(show(top), "80, 3300 5 1 0 0 0 3000 300\n40000, 700 3 1 0 0 0 700 0\n");
  }
}
