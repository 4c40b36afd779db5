// The SQLite store against a real database in a temporary file.
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "flow/fields.h"
#include "storage/sqlite_store.h"
#include "store_test_util.h"

using namespace flowscope;
using namespace fstest_storage;

namespace {

std::unique_ptr<SqliteStore> open_store(const TempDb& db) {
  auto s = SqliteStore::open({.path = db.path()});
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return std::move(*s);
}

}  // namespace

// A database written by a flowscope whose schema lacked later fields opens,
// gains their columns, and keeps its rows.
TEST(SqliteStore, OlderSchemaGainsNewColumns) {
  TempDb tmp;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(tmp.path().c_str(), &db), SQLITE_OK);
    // Schema version 1, as released.
    const char* v1 = R"sql(
CREATE TABLE flows (id INTEGER PRIMARY KEY, exporter TEXT NOT NULL, domain INTEGER NOT NULL,
  start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, src_ip BLOB NOT NULL, dst_ip BLOB NOT NULL,
  src_port INTEGER NOT NULL, dst_port INTEGER NOT NULL, protocol INTEGER NOT NULL, direction TEXT NOT NULL,
  bytes INTEGER NOT NULL, packets INTEGER NOT NULL, rev_bytes INTEGER NOT NULL, rev_packets INTEGER NOT NULL,
  bidirectional INTEGER NOT NULL, cumulative INTEGER NOT NULL, interim INTEGER NOT NULL, retrans INTEGER,
  srtt_us INTEGER, rttvar_us INTEGER, close_reason TEXT, pid INTEGER, comm TEXT, cgroup_id INTEGER, cgroup TEXT,
  container_id TEXT, netns INTEGER, drops TEXT, drops_total INTEGER NOT NULL, d_bytes INTEGER NOT NULL,
  d_packets INTEGER NOT NULL, d_retrans INTEGER NOT NULL, first INTEGER NOT NULL);
INSERT INTO flows VALUES (1, '10.0.0.9', 0, 1700000000000000000, 1700000001000000000,
  x'00000000000000000000ffff0a000001', x'00000000000000000000ffff0a000002', 1, 2, 17, 'unknown',
  100, 1, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 100, 1, 0, 1);
PRAGMA user_version = 1;)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = open_store(tmp);
  auto p = store->query({});
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->flows.size(), 1u);
  EXPECT_EQ(p->flows[0].bytes, 100u);
  EXPECT_EQ(p->flows[0].protocol, 17);
  EXPECT_FALSE(p->flows[0].preexisting);
  std::vector<FlowRow> batch{agent_row("10.0.0.1", 1, "10.0.0.2", 2, kT0, kT0 + kSec, 5, 6)};
  batch[0].preexisting = true;
  ASSERT_TRUE(store->insert(batch));
  p = store->query({});
  ASSERT_TRUE(p);
  ASSERT_EQ(p->flows.size(), 2u);
  EXPECT_TRUE(p->flows[0].preexisting);
}

TEST(SqliteStore, RetentionDeletesOldFlows) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch{
      softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, kT0, 1),
      softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, kT0 + 100 * kSec, 1),
  };
  ASSERT_TRUE(store->insert(batch));
  auto n = store->expire(kT0 + 50 * kSec);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  auto p = store->query({});
  ASSERT_TRUE(p);
  ASSERT_EQ(p->flows.size(), 1u);
  EXPECT_EQ(p->flows[0].start_ns, kT0 + 100 * kSec);
  EXPECT_EQ(store->stats().retention_deleted, 1u);
  EXPECT_EQ(store->stats().rows, 1u);
}

// A collector restart (an upgrade) while a long flow is open: its next record
// counts only its growth, as it would have without the restart.
TEST(SqliteStore, OpenFlowTotalsSurviveARestart) {
  TempDb tmp;
  {
    auto store = open_store(tmp);
    std::vector<FlowRow> batch{
        long_flow(60, 1000, 100, true),
        agent_row("10.0.0.1", 5001, "10.0.0.2", 80, kT0, kT0 + 60 * kSec, 10, 1, true),
    };
    ASSERT_TRUE(store->insert(batch));
    std::vector<FlowRow> closed{agent_row("10.0.0.1", 5001, "10.0.0.2", 80, kT0, kT0 + 70 * kSec, 20, 2)};
    ASSERT_TRUE(store->insert(closed));
  }
  {
    auto store = open_store(tmp);
    std::vector<FlowRow> next{
        long_flow(120, 3000, 300, true),
        // Closed before the restart: no totals kept, a record now is a new flow.
        agent_row("10.0.0.1", 5001, "10.0.0.2", 80, kT0, kT0 + 130 * kSec, 30, 3, true),
    };
    ASSERT_TRUE(store->insert(next));
    EXPECT_FALSE(next[0].first);
    EXPECT_EQ(next[0].delta_bytes, 2200u);
    EXPECT_TRUE(next[1].first);
    EXPECT_EQ(next[1].delta_bytes, 33u);
  }
  // What the second shutdown saved: both flows, at their latest totals.
  auto saved = [&] {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(tmp.path().c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), sum(bytes + rev_bytes) FROM open_flows", -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    const std::pair<int64_t, int64_t> r(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
  };
  EXPECT_EQ(saved(), std::pair(int64_t{2}, int64_t{3300 + 33}));
  auto store = open_store(tmp);
  // Read back once: a start after a crash (no save) must not resume from them.
  EXPECT_EQ(saved(), std::pair(int64_t{0}, int64_t{0}));
  std::vector<FlowRow> after{long_flow(180, 4000, 400, false)};
  ASSERT_TRUE(store->insert(after));
  EXPECT_FALSE(after[0].first);
  EXPECT_EQ(after[0].delta_bytes, 1100u);
}

TEST(SqliteStore, RefusesNonDatabaseFile) {
  TempDb tmp;
  {
    FILE* f = fopen(tmp.path().c_str(), "w");
    ASSERT_TRUE(f);
    fputs("this is not a database, just some text that is long enough to have a header...........", f);
    fclose(f);
  }
  auto s = SqliteStore::open({.path = tmp.path()});
  EXPECT_FALSE(s);
}

