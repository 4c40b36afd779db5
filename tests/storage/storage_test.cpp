// The SQLite store against a real database in a temporary file.
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "flow/fields.h"
#include "storage/sqlite_store.h"

using namespace flowscope;

namespace {

class TempDb {
 public:
  TempDb() {
    char tmpl[] = "/tmp/fs-storage-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~TempDb() { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/flows.db"; }

 private:
  std::string dir_;
};

constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;

FlowRow agent_row(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint64_t start, uint64_t end,
                  uint64_t sent, uint64_t recv, bool interim = false) {
  FlowRow r;
  r.exporter = "local";
  r.start_ns = start;
  r.end_ns = end;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.direction = Direction::Outbound;
  r.bytes = sent;
  r.packets = sent / 1000 + 1;
  r.rev_bytes = recv;
  r.rev_packets = recv / 1000 + 1;
  r.bidirectional = true;
  r.cumulative = true;
  r.interim = interim;
  r.retrans = 0;
  r.srtt_us = 120;
  r.rttvar_us = 30;
  r.close = interim ? CloseReason::Active : CloseReason::Fin;
  r.pid = 42;
  r.comm = "curl";
  return r;
}

// The long flow the delta tests follow: 10.0.0.1:5000 > 10.0.0.2:80 from kT0,
// reported at kT0 + end_s.
FlowRow long_flow(uint64_t end_s, uint64_t sent, uint64_t recv, bool interim) {
  return agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + end_s * kSec, sent, recv, interim);
}

FlowRow softflowd_row(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint64_t t, uint64_t bytes) {
  FlowRow r;
  r.exporter = "192.0.2.1";
  r.domain = 7;
  r.start_ns = t;
  r.end_ns = t + kSec;
  r.src_ip = *parse_ip(src);
  r.dst_ip = *parse_ip(dst);
  r.src_port = sport;
  r.dst_port = dport;
  r.protocol = 17;
  r.bytes = bytes;
  r.packets = 3;
  return r;
}

std::unique_ptr<SqliteStore> open_store(const TempDb& db) {
  auto s = SqliteStore::open({.path = db.path()});
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return std::move(*s);
}

}  // namespace

TEST(SqliteStore, RoundTripsEveryField) {
  TempDb tmp;
  auto store = open_store(tmp);
  FlowRow r = agent_row("fd00:1::1", 40000, "fd00:1::2", 443, kT0, kT0 + kSec, 10000, 500);
  r.cgroup_id = 1234;
  r.cgroup = "/system.slice/x.service";
  r.container_id = std::string(64, 'a');
  r.netns = 4026531840u;
  r.retrans = 3;
  r.drops = {{"NETFILTER_DROP", 2}, {"TCP_CSUM", 1}};
  r.preexisting = true;
  std::vector<FlowRow> batch{r};
  ASSERT_TRUE(store->insert(batch));
  EXPECT_GT(batch[0].id, 0);
  auto page = store->query({});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->flows.size(), 1u);
  const FlowRow& g = page->flows[0];
  EXPECT_EQ(g.id, batch[0].id);
  EXPECT_EQ(g.exporter, "local");
  EXPECT_EQ(g.start_ns, r.start_ns);
  EXPECT_EQ(g.end_ns, r.end_ns);
  EXPECT_EQ(g.src_ip, r.src_ip);
  EXPECT_EQ(g.dst_ip, r.dst_ip);
  EXPECT_EQ(g.family(), 6);
  EXPECT_EQ(g.src_port, 40000);
  EXPECT_EQ(g.dst_port, 443);
  EXPECT_EQ(g.bytes, 10000u);
  EXPECT_EQ(g.rev_bytes, 500u);
  EXPECT_EQ(g.retrans, 3u);
  EXPECT_EQ(g.srtt_us, 120u);
  EXPECT_EQ(g.close, CloseReason::Fin);
  EXPECT_EQ(g.pid, 42u);
  EXPECT_EQ(g.comm, "curl");
  EXPECT_EQ(g.cgroup_id, 1234u);
  EXPECT_EQ(g.cgroup, r.cgroup);
  EXPECT_EQ(g.container_id, r.container_id);
  EXPECT_EQ(g.netns, r.netns);
  ASSERT_EQ(g.drops.size(), 2u);
  EXPECT_EQ(g.drops_total(), 3u);
  EXPECT_TRUE(g.bidirectional);
  EXPECT_FALSE(g.interim);
  // Every field of the table, whatever is added to it later.
  schema::for_each_field([&](const auto& f) { EXPECT_TRUE(g.*f.member == r.*f.member) << f.name; });
}

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

TEST(SqliteStore, UnknownFieldsStayNull) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch{softflowd_row("10.0.0.1", 53, "10.0.0.2", 5353, kT0, 300)};
  ASSERT_TRUE(store->insert(batch));
  auto page = store->query({});
  ASSERT_TRUE(page);
  ASSERT_EQ(page->flows.size(), 1u);
  const FlowRow& g = page->flows[0];
  EXPECT_FALSE(g.retrans);
  EXPECT_FALSE(g.pid);
  EXPECT_FALSE(g.comm);
  EXPECT_FALSE(g.close);
  EXPECT_EQ(g.protocol, 17);
  EXPECT_EQ(g.domain, 7u);
  EXPECT_EQ(g.family(), 4);
}

// Large batches go in multi-row statements (64 rows), with or without the
// agent's columns; every row must come back as it went in, with the id the
// insert gave it.
TEST(SqliteStore, LargeMixedBatchesRoundTripWithTheirIds) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch;
  for (uint16_t i = 0; i < 300; ++i) {
    // Runs of softflowd rows (lean) long enough for whole 64-row statements,
    // then agent rows mixed in.
    const bool agent = i >= 150 && i % 3 == 0;
    FlowRow r = agent ? agent_row("10.1.0.1", i, "10.1.0.2", 443, kT0 + i * kSec, kT0 + i * kSec + 5, 1000 + i, i)
                      : softflowd_row("10.2.0.1", i, "10.2.0.2", 53, kT0 + i * kSec, 100 + i);
    if (agent && i % 2 == 0) r.drops = {{"NETFILTER_DROP", i}};
    batch.push_back(r);
  }
  const auto want = batch;
  ASSERT_TRUE(store->insert(batch));
  std::map<int64_t, const FlowRow*> by_id;
  for (const auto& r : batch) by_id[r.id] = &r;
  ASSERT_EQ(by_id.size(), batch.size());  // distinct ids
  for (size_t k = 1; k < batch.size(); ++k) EXPECT_GT(batch[k].id, batch[k - 1].id);
  FlowQuery q;
  q.limit = 1000;
  auto page = store->query(q);
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->flows.size(), batch.size());
  for (const FlowRow& g : page->flows) {
    ASSERT_TRUE(by_id.contains(g.id));
    const FlowRow& w = want[static_cast<size_t>(by_id[g.id] - batch.data())];
    EXPECT_EQ(g.src_port, w.src_port);
    EXPECT_EQ(g.exporter, w.exporter);
    EXPECT_EQ(g.domain, w.domain);
    EXPECT_EQ(g.start_ns, w.start_ns);
    EXPECT_EQ(g.end_ns, w.end_ns);
    EXPECT_EQ(g.src_ip, w.src_ip);
    EXPECT_EQ(g.dst_ip, w.dst_ip);
    EXPECT_EQ(g.protocol, w.protocol);
    EXPECT_EQ(g.direction, w.direction);
    EXPECT_EQ(g.bytes, w.bytes);
    EXPECT_EQ(g.rev_bytes, w.rev_bytes);
    EXPECT_EQ(g.retrans, w.retrans);
    EXPECT_EQ(g.srtt_us, w.srtt_us);
    EXPECT_EQ(g.close, w.close);
    EXPECT_EQ(g.pid, w.pid);
    EXPECT_EQ(g.comm, w.comm);
    EXPECT_EQ(g.drops_total(), w.drops_total());
    EXPECT_EQ(g.cumulative, w.cumulative);
  }
}

TEST(SqliteStore, FiltersByCidrPortTimeAndAttributes) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch{
      agent_row("10.1.0.1", 40001, "10.2.0.1", 80, kT0, kT0 + 1 * kSec, 100, 10),
      agent_row("10.1.0.2", 40002, "10.3.0.1", 443, kT0 + 10 * kSec, kT0 + 11 * kSec, 200, 20),
      agent_row("fd00::1", 40003, "fd00::2", 80, kT0 + 20 * kSec, kT0 + 21 * kSec, 300, 30),
      softflowd_row("10.2.0.1", 80, "10.1.0.1", 40001, kT0 + 30 * kSec, 400),
  };
  batch[1].comm = "wget";
  batch[1].pid = 77;
  batch[1].container_id = "0123456789abcdef0123";
  batch[2].close = CloseReason::RstReceived;
  ASSERT_TRUE(store->insert(batch));

  auto count = [&](FlowFilter f) {
    auto p = store->query({.filter = f, .limit = 1000});
    EXPECT_TRUE(p) << (p ? "" : p.error().message);
    return p ? p->flows.size() : size_t{999};
  };
  EXPECT_EQ(count({}), 4u);
  EXPECT_EQ(count({.addr = *parse_cidr("10.2.0.0/16")}), 2u);  // as dst and as src
  EXPECT_EQ(count({.src = *parse_cidr("10.1.0.0/16")}), 2u);
  EXPECT_EQ(count({.dst = *parse_cidr("10.1.0.1")}), 1u);
  EXPECT_EQ(count({.addr = *parse_cidr("fd00::/16")}), 1u);
  EXPECT_EQ(count({.addr = *parse_cidr("0.0.0.0/0")}), 3u);
  EXPECT_EQ(count({.port = 80}), 3u);
  EXPECT_EQ(count({.protocol = 17}), 1u);
  EXPECT_EQ(count({.direction = "outbound"}), 3u);
  EXPECT_EQ(count({.comm = "wget"}), 1u);
  EXPECT_EQ(count({.pid = 77}), 1u);
  EXPECT_EQ(count({.container = "0123456789ab"}), 1u);
  EXPECT_EQ(count({.container = "0123456789ac"}), 0u);
  EXPECT_EQ(count({.close_reason = "rst_received"}), 1u);
  EXPECT_EQ(count({.exporter = "192.0.2.1"}), 1u);
  EXPECT_EQ(count({.from_ns = kT0 + 10 * kSec, .to_ns = kT0 + 20 * kSec}), 2u);
  EXPECT_EQ(count({.from_ns = kT0 + 25 * kSec}), 1u);
  // SQL metacharacters are data, never syntax.
  EXPECT_EQ(count({.comm = "' OR 1=1 --"}), 0u);
  EXPECT_EQ(count({.exporter = "\"; DROP TABLE flows; --"}), 0u);
  EXPECT_EQ(count({}), 4u);
}

TEST(SqliteStore, PagesNewestFirstWithoutOverlap) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch;
  for (int i = 0; i < 25; ++i)
    batch.push_back(agent_row("10.0.0.1", static_cast<uint16_t>(1000 + i), "10.0.0.2", 80, kT0 + i * kSec,
                              kT0 + i * kSec + 1, 1, 1));
  ASSERT_TRUE(store->insert(batch));
  std::vector<uint16_t> seen;
  for (uint64_t off = 0;; off += 10) {
    auto p = store->query({.limit = 10, .offset = off});
    ASSERT_TRUE(p);
    for (auto& f : p->flows) seen.push_back(f.src_port);
    if (!p->more) break;
  }
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1024 - i);
}

TEST(SqliteStore, CumulativeRecordsCountOnceInAggregates) {
  TempDb tmp;
  auto store = open_store(tmp);
  // One long flow reported twice while open and once at close (totals grow),
  // plus one short flow.
  std::vector<FlowRow> batch{
      long_flow(60, 1000, 100, true),
      long_flow(120, 3000, 300, true),
      agent_row("10.0.0.1", 5001, "10.0.0.3", 80, kT0, kT0 + 10 * kSec, 50, 5),
  };
  ASSERT_TRUE(store->insert(batch));
  std::vector<FlowRow> last{long_flow(150, 4000, 400, false)};
  ASSERT_TRUE(store->insert(last));
  EXPECT_TRUE(batch[0].first);
  EXPECT_FALSE(batch[1].first);
  EXPECT_EQ(batch[1].delta_bytes, 2200u);
  EXPECT_EQ(last[0].delta_bytes, 1100u);

  auto top = store->top({.group = TopGroup::Dst, .by = TopMetric::Bytes});
  ASSERT_TRUE(top) << top.error().message;
  ASSERT_EQ(top->size(), 2u);
  EXPECT_EQ((*top)[0].key, std::vector<std::string>{"10.0.0.2"});
  EXPECT_EQ((*top)[0].bytes, 4400u);
  EXPECT_EQ((*top)[0].flows, 1u);
  EXPECT_EQ((*top)[1].bytes, 55u);

  auto series = store->series({.filter = {.from_ns = kT0, .to_ns = kT0 + 180 * kSec}, .interval_ns = 60 * kSec});
  ASSERT_TRUE(series) << series.error().message;
  uint64_t bytes = 0, flows = 0;
  for (auto& p : *series) {
    bytes += p.bytes;
    flows += p.flows;
  }
  EXPECT_EQ(bytes, 4455u);
  EXPECT_EQ(flows, 2u);
  ASSERT_EQ(series->size(), 3u);
  EXPECT_EQ((*series)[0].time_ns, kT0);
  EXPECT_EQ((*series)[0].bytes, 55u);    // the short flow, ended at +10 s
  EXPECT_EQ((*series)[1].bytes, 1100u);  // first interim record at +60 s
  EXPECT_EQ((*series)[2].bytes, 3300u);  // growth to +120 s and to the close at +150 s
}

TEST(SqliteStore, TopGroupsAndMetrics) {
  TempDb tmp;
  auto store = open_store(tmp);
  std::vector<FlowRow> batch{
      agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + 1, 10, 0),
      agent_row("10.0.0.1", 5001, "10.0.0.2", 80, kT0, kT0 + 1, 10, 0),
      agent_row("10.0.0.3", 5002, "10.0.0.2", 443, kT0, kT0 + 1, 1000, 0),
  };
  batch[2].comm = "big";
  batch[2].retrans = 9;
  batch[2].container_id = "c1";
  ASSERT_TRUE(store->insert(batch));
  auto flows = store->top({.group = TopGroup::Src, .by = TopMetric::Flows});
  ASSERT_TRUE(flows);
  EXPECT_EQ((*flows)[0].key[0], "10.0.0.1");
  EXPECT_EQ((*flows)[0].flows, 2u);
  auto pair = store->top({.group = TopGroup::Pair, .by = TopMetric::Bytes, .limit = 1});
  ASSERT_TRUE(pair);
  ASSERT_EQ(pair->size(), 1u);
  EXPECT_EQ((*pair)[0].key, (std::vector<std::string>{"10.0.0.3", "10.0.0.2"}));
  auto port = store->top({.group = TopGroup::Port, .by = TopMetric::Flows});
  ASSERT_TRUE(port);
  EXPECT_EQ((*port)[0].key[0], "80");
  auto proc = store->top({.group = TopGroup::Process, .by = TopMetric::Retrans});
  ASSERT_TRUE(proc);
  EXPECT_EQ((*proc)[0].key[0], "big");
  EXPECT_EQ((*proc)[0].retrans, 9u);
  auto cont = store->top({.group = TopGroup::Container});
  ASSERT_TRUE(cont);
  ASSERT_EQ(cont->size(), 1u);
  EXPECT_EQ((*cont)[0].key[0], "c1");
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

TEST(SqliteStore, ReopensExistingFile) {
  TempDb tmp;
  {
    auto store = open_store(tmp);
    std::vector<FlowRow> batch{softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, kT0, 1)};
    ASSERT_TRUE(store->insert(batch));
  }
  auto store = open_store(tmp);
  EXPECT_EQ(store->stats().rows, 1u);
  auto p = store->query({});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->flows.size(), 1u);
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
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), sum(bytes) FROM open_flows", -1, &st, nullptr), SQLITE_OK);
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
