#include "any_store.h"

#include <map>

#include <fmt/format.h>

#include "flow/fields.h"
#include "net/cidr.h"

using namespace flowscope;
using namespace fstest_storage;

// A restart (an upgrade) while a long flow is open: its next record counts
// only its growth, as without the restart; a flow closed before it is new.
TEST_P(AnyStore, OpenFlowTotalsSurviveACleanRestart) {
  {
    auto store = open();
    std::vector<FlowRow> batch{long_flow(60, 1000, 100, true)};
    ASSERT_TRUE(insert(*store, batch));
  }
  auto store = open();
  std::vector<FlowRow> next{long_flow(120, 3000, 300, true)};
  ASSERT_TRUE(insert(*store, next));
  EXPECT_FALSE(next[0].first);
  EXPECT_EQ(next[0].delta_bytes, 2200u);
  EXPECT_EQ(next[0].delta_bytes_out, 2000u);
  EXPECT_EQ(next[0].delta_bytes_in, 200u);
  auto top = store->top({.group = TopGroup::Dst, .by = TopMetric::Flows});
  ASSERT_TRUE(top);
  ASSERT_EQ(top->size(), 1u);
  EXPECT_EQ((*top)[0].flows, 1u);
  EXPECT_EQ((*top)[0].bytes, 3300u);
}

TEST_P(AnyStore, RoundTripsEveryField) {
  auto store = open();
  FlowRow r = agent_row("fd00:1::1", 40000, "fd00:1::2", 443, kT0, kT0 + kSec, 10000, 500);
  r.cgroup_id = 1234;
  r.cgroup = "/system.slice/x.service";
  r.container_id = std::string(64, 'a');
  r.netns = 4026531840u;
  r.retrans = 3;
  r.drops = {{"NETFILTER_DROP", 2}, {"TCP_CSUM", 1}};
  r.preexisting = true;
  std::vector<FlowRow> batch{r};
  ASSERT_TRUE(insert(*store, batch));
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

TEST_P(AnyStore, UnknownFieldsStayNull) {
  auto store = open();
  std::vector<FlowRow> batch{softflowd_row("10.0.0.1", 53, "10.0.0.2", 5353, kT0, 300)};
  ASSERT_TRUE(insert(*store, batch));
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
TEST_P(AnyStore, LargeMixedBatchesRoundTripWithTheirIds) {
  auto store = open();
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
  ASSERT_TRUE(insert(*store, batch));
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

TEST_P(AnyStore, FiltersByCidrPortTimeAndAttributes) {
  auto store = open();
  std::vector<FlowRow> batch{
      agent_row("10.1.0.1", 40001, "10.2.0.1", 80, kT0, kT0 + 1 * kSec, 100, 10),
      agent_row("10.1.0.2", 40002, "10.3.0.1", 443, kT0 + 10 * kSec, kT0 + 11 * kSec, 200, 20),
      agent_row("fd00::1", 40003, "fd00::2", 80, kT0 + 20 * kSec, kT0 + 21 * kSec, 300, 30),
      softflowd_row("10.2.0.1", 80, "10.1.0.1", 40001, kT0 + 30 * kSec, 400),
  };
  batch[1].comm = "wget";
  batch[1].pid = 77;
  batch[1].container_id = "0123456789abcdef0123";
  batch[1].unit = "fetch.service";
  batch[0].exe = "python3";  // its thread's comm stays "curl"
  batch[2].unit = "";        // no unit
  batch[2].close = CloseReason::RstReceived;
  ASSERT_TRUE(insert(*store, batch));

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
  // The workload: the unit, else the program, else the comm.
  EXPECT_EQ(count({.workload = "fetch.service"}), 1u);
  EXPECT_EQ(count({.workload = "wget"}), 0u);
  EXPECT_EQ(count({.workload = "python3"}), 1u);
  EXPECT_EQ(count({.workload = "curl"}), 1u);
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

TEST_P(AnyStore, PagesNewestFirstWithoutOverlap) {
  auto store = open();
  std::vector<FlowRow> batch;
  for (int i = 0; i < 25; ++i)
    batch.push_back(agent_row("10.0.0.1", static_cast<uint16_t>(1000 + i), "10.0.0.2", 80, kT0 + i * kSec,
                              kT0 + i * kSec + 1, 1, 1));
  ASSERT_TRUE(insert(*store, batch));
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

TEST_P(AnyStore, CumulativeRecordsCountOnceInAggregates) {
  auto store = open();
  // One long flow reported twice while open and once at close (totals grow),
  // plus one short flow.
  std::vector<FlowRow> batch{
      long_flow(60, 1000, 100, true),
      long_flow(120, 3000, 300, true),
      agent_row("10.0.0.1", 5001, "10.0.0.3", 80, kT0, kT0 + 10 * kSec, 50, 5),
  };
  ASSERT_TRUE(insert(*store, batch));
  std::vector<FlowRow> last{long_flow(150, 4000, 400, false)};
  ASSERT_TRUE(insert(*store, last));
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

TEST_P(AnyStore, TopGroupsAndMetrics) {
  auto store = open();
  std::vector<FlowRow> batch{
      agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + 1, 10, 0),
      agent_row("10.0.0.1", 5001, "10.0.0.2", 80, kT0, kT0 + 1, 10, 0),
      agent_row("10.0.0.3", 5002, "10.0.0.2", 443, kT0, kT0 + 1, 1000, 0),
  };
  batch[2].comm = "big";
  batch[2].retrans = 9;
  batch[2].container_id = "c1";
  ASSERT_TRUE(insert(*store, batch));
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

// The console's groups (host, netns, close, drop reason) and metrics
// (failures, drops): a flow's drops count once, from its last record.
TEST_P(AnyStore, ConsoleGroupsFailuresAndDrops) {
  auto store = open();
  // A long flow on host a with drops reported while open (totals so far)
  // and at its reset; a refused flow on host b; a clean one on host b.
  auto open_rec = long_flow(60, 1000, 100, true);
  open_rec.host = "a";
  open_rec.netns = 4026531840u;
  open_rec.drops = {{"NO_SOCKET", 2}};
  auto last = long_flow(120, 3000, 300, false);
  last.host = "a";
  last.netns = 4026531840u;
  last.close = CloseReason::RstReceived;
  last.drops = {{"NO_SOCKET", 3}, {"TCP_CSUM", 1}};
  auto refused = agent_row("10.0.0.1", 5001, "10.0.0.9", 81, kT0, kT0 + 5 * kSec, 0, 0);
  refused.host = "b";
  refused.close = CloseReason::Refused;
  auto clean = agent_row("10.0.0.1", 5002, "10.0.0.9", 80, kT0, kT0 + 6 * kSec, 500, 50);
  clean.host = "b";
  std::vector<FlowRow> batch{open_rec, refused, clean};
  ASSERT_TRUE(insert(*store, batch));
  std::vector<FlowRow> batch2{last};
  ASSERT_TRUE(insert(*store, batch2));

  auto hosts = store->top({.group = TopGroup::Host, .by = TopMetric::Drops});
  ASSERT_TRUE(hosts) << hosts.error().message;
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].key[0], "a");
  EXPECT_EQ((*hosts)[0].drops, 4u);  // 3 + 1 at the close; the interim 2 are part of them
  EXPECT_EQ((*hosts)[0].failures, 1u);
  EXPECT_EQ((*hosts)[1].key[0], "b");
  EXPECT_EQ((*hosts)[1].failures, 1u);
  EXPECT_EQ((*hosts)[1].drops, 0u);

  auto fails = store->top({.group = TopGroup::Close, .by = TopMetric::Failures});
  ASSERT_TRUE(fails) << fails.error().message;
  ASSERT_EQ(fails->size(), 4u);  // one failure each (ties: more bytes first), then active and fin
  EXPECT_EQ((*fails)[0].key[0], "rst_received");
  EXPECT_EQ((*fails)[1].key[0], "refused");
  EXPECT_EQ((*fails)[0].failures + (*fails)[1].failures, 2u);
  EXPECT_EQ((*fails)[2].failures + (*fails)[3].failures, 0u);

  auto reasons = store->top({.group = TopGroup::DropReason, .by = TopMetric::Drops});
  ASSERT_TRUE(reasons) << reasons.error().message;
  ASSERT_EQ(reasons->size(), 2u);
  EXPECT_EQ((*reasons)[0].key[0], "NO_SOCKET");
  EXPECT_EQ((*reasons)[0].drops, 3u);
  EXPECT_EQ((*reasons)[0].flows, 1u);
  EXPECT_EQ((*reasons)[1].key[0], "TCP_CSUM");
  EXPECT_EQ((*reasons)[1].drops, 1u);

  auto ns = store->top({.filter = {.host = "a"}, .group = TopGroup::Netns});
  ASSERT_TRUE(ns) << ns.error().message;
  ASSERT_EQ(ns->size(), 1u);
  EXPECT_EQ((*ns)[0].key[0], "4026531840");
  EXPECT_EQ((*ns)[0].bytes, 3300u);

  auto series = store->series({.filter = {.from_ns = kT0, .to_ns = kT0 + 180 * kSec}, .interval_ns = 60 * kSec});
  ASSERT_TRUE(series) << series.error().message;
  uint64_t failures = 0, drops = 0;
  for (const auto& p : *series) {
    failures += p.failures;
    drops += p.drops;
  }
  EXPECT_EQ(failures, 2u);
  EXPECT_EQ(drops, 4u);
}

TEST_P(AnyStore, CompletesValuesSeen) {
  auto store = open();
  std::vector<FlowRow> batch;
  for (const char* comm : {"nginx", "node", "curl", "nginx"}) {
    batch.push_back(agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + kSec, 10, 10));
    batch.back().comm = comm;
  }
  batch[0].drops = {{"NO_SOCKET", 1}};
  ASSERT_TRUE(insert(*store, batch));
  auto n = store->complete({.field = CompleteField::Process, .prefix = "n"});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, (std::vector<std::string>{"nginx", "node"}));
  auto all = store->complete({.field = CompleteField::Process, .limit = 2});
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, (std::vector<std::string>{"curl", "nginx"}));
  auto reasons = store->complete({.field = CompleteField::DropReason, .prefix = "NO"});
  ASSERT_TRUE(reasons) << reasons.error().message;
  EXPECT_EQ(*reasons, std::vector<std::string>{"NO_SOCKET"});
  auto closes = store->complete({.field = CompleteField::Close});
  ASSERT_TRUE(closes);
  EXPECT_EQ(*closes, std::vector<std::string>{"fin"});
  // Older than `from`: not offered.
  auto later = store->complete({.field = CompleteField::Process, .from_ns = kT0 + 2 * kSec});
  ASSERT_TRUE(later);
  EXPECT_TRUE(later->empty());
}

TEST_P(AnyStore, ReopensExistingFile) {
  {
    auto store = open();
    std::vector<FlowRow> batch{softflowd_row("10.0.0.1", 1, "10.0.0.2", 2, kT0, 1)};
    ASSERT_TRUE(insert(*store, batch));
  }
  auto store = open();
  EXPECT_EQ(store->stats().rows, 1u);
  auto p = store->query({});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->flows.size(), 1u);
}

// The second end of a connection captured at both ends (marked mirror by the
// collector's joiner) is kept, found by its conversation id, and counted by
// no aggregate: the connection counts once.
TEST_P(AnyStore, MirrorRecordsAreKeptButCountedOnce) {
  auto store = open();
  FlowRow client = agent_row("10.0.0.1", 5000, "10.0.0.2", 80, kT0, kT0 + kSec, 1000, 200);
  client.conversation = 77;
  FlowRow server = agent_row("10.0.0.2", 80, "10.0.0.1", 5000, kT0, kT0 + kSec, 200, 1000);
  server.direction = Direction::Inbound;
  server.conversation = 77;
  server.mirror = true;
  FlowRow other = agent_row("10.0.0.3", 5001, "10.0.0.2", 80, kT0, kT0 + kSec, 50, 5);
  other.conversation = 78;
  std::vector<FlowRow> batch{client, server, other};
  ASSERT_TRUE(insert(*store, batch));
  auto top = store->top({.filter = {.from_ns = kT0, .to_ns = kT0 + 10 * kSec}, .group = TopGroup::Process});
  ASSERT_TRUE(top) << top.error().message;
  ASSERT_EQ(top->size(), 1u);
  EXPECT_EQ((*top)[0].flows, 2u);
  EXPECT_EQ((*top)[0].bytes, 1255u);
  auto pts = store->series({.filter = {.from_ns = kT0, .to_ns = kT0 + 10 * kSec}, .interval_ns = 10 * kSec});
  ASSERT_TRUE(pts) << pts.error().message;
  ASSERT_EQ(pts->size(), 1u);
  EXPECT_EQ((*pts)[0].flows, 2u);
  EXPECT_EQ((*pts)[0].bytes, 1255u);
  FlowQuery q;
  q.filter.conversations = {77};
  auto page = store->query(q);
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->flows.size(), 2u);
  int mirrors = 0;
  for (const auto& r : page->flows) {
    EXPECT_EQ(r.conversation, 77u);
    mirrors += r.mirror.value_or(false);
  }
  EXPECT_EQ(mirrors, 1);
}

// Ownership evidence: a range's heartbeats extend one row, its release ends
// it, reads find what overlaps, and an agent's stop marker says it is done.
TEST_P(AnyStore, OwnershipClaimsKeepTheirLatestEnd) {
  auto store = open();
  auto claim = [](const char* host, const char* addr, uint64_t from, uint64_t to, bool held) {
    OwnershipClaim c;
    c.exporter = "192.0.2.10";
    c.host = host;
    c.host_id = std::string("id-") + host;
    c.addr = *parse_ip(addr);
    c.from_ns = from;
    c.to_ns = to;
    c.held = held;
    return c;
  };
  OwnershipClaim port = claim("h1", "10.0.0.1", kT0 + 2 * kSec, kT0 + 3 * kSec, true);
  port.port = 80;
  port.protocol = 6;
  port.exe = "nginx";
  port.unit = "nginx.service";
  port.pid = 42;
  port.netns = 4026531840u;
  std::vector<OwnershipClaim> claims = {
      claim("h1", "10.0.0.1", kT0, kT0 + 5 * kSec, true),
      claim("h1", "10.0.0.1", kT0, kT0 + 10 * kSec, true),   // the heartbeat after
      claim("h1", "10.0.0.1", kT0, kT0 + 7 * kSec, true),    // an older one arriving late
      claim("h2", "10.0.0.9", kT0, kT0 + 20 * kSec, false),  // released
      port,
  };
  OwnershipClaim stop = claim("h2", "::", kT0 + 20 * kSec, kT0 + 20 * kSec, false);
  claims.push_back(stop);
  ASSERT_TRUE(store->insert_claims(claims));
  ASSERT_TRUE(store->sync(std::chrono::seconds(10)));
  auto got = store->claims({.addrs = {*parse_ip("10.0.0.1")}, .from_ns = kT0 + 9 * kSec, .to_ns = kT0 + 9 * kSec});
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), 1u);  // the port claim ended before 9 s
  EXPECT_EQ((*got)[0].to_ns, kT0 + 10 * kSec);
  EXPECT_TRUE((*got)[0].held);
  EXPECT_EQ((*got)[0].host, "h1");
  got = store->claims({.addrs = {*parse_ip("10.0.0.1"), *parse_ip("10.0.0.9")}, .from_ns = kT0, .to_ns = kT0 + kSec * 2});
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), 3u);
  for (const auto& c : *got) {
    if (c.port == 80) {
      EXPECT_EQ(c, port);
    }
    if (c.addr == *parse_ip("10.0.0.9")) {
      EXPECT_FALSE(c.held);
    }
  }
  auto who = store->claimants(kT0);
  ASSERT_TRUE(who) << who.error().message;
  ASSERT_EQ(who->size(), 2u);
  for (const auto& a : *who) {
    EXPECT_EQ(a.host_id, "id-" + a.host);
    EXPECT_EQ(a.reported_to_ns, a.host == "h1" ? kT0 + 10 * kSec : kT0 + 20 * kSec);
    EXPECT_EQ(a.stopped, a.host == "h2");
  }
  // Only the agents that reported since a moment.
  who = store->claimants(kT0 + 15 * kSec);
  ASSERT_TRUE(who) << who.error().message;
  ASSERT_EQ(who->size(), 1u);
  EXPECT_EQ((*who)[0].host, "h2");
}
// Bytes each way: `out` is what src sent (the agent: the local end), `in`
// what it received; a cumulative flow's records count what grew each way
// (also across a restart), a unidirectional record counts all of its bytes
// out, a mirror counts nothing. The same on the rollup's path (whole
// minutes, a group the rollup keeps) and the raw one.
TEST_P(AnyStore, BytesEachWayInTopAndSeries) {
  const uint64_t m0 = kT0 - kT0 % (60 * kSec);  // the long flow's records end in minutes 1..3 after m0
  {
    auto store = open();
    std::vector<FlowRow> first{long_flow(60, 1000, 100, true)};
    ASSERT_TRUE(insert(*store, first));
    EXPECT_EQ(first[0].delta_bytes_out, 1000u);
    EXPECT_EQ(first[0].delta_bytes_in, 100u);
  }
  auto store = open();
  FlowRow mirror = agent_row("10.0.0.2", 80, "10.0.0.1", 5000, kT0, kT0 + 150 * kSec, 4000, 400);
  mirror.direction = Direction::Inbound;
  mirror.mirror = true;
  FlowRow dns = softflowd_row("10.0.0.9", 53, "10.0.0.1", 40000, kT0 + 100 * kSec, 300);
  std::vector<FlowRow> batch{long_flow(120, 3000, 300, true), mirror, dns};
  ASSERT_TRUE(insert(*store, batch));
  std::vector<FlowRow> last{long_flow(150, 4000, 400, false)};
  ASSERT_TRUE(insert(*store, last));
  EXPECT_EQ(batch[0].delta_bytes_out, 2000u);
  EXPECT_EQ(batch[0].delta_bytes_in, 200u);
  EXPECT_EQ(batch[1].delta_bytes_out + batch[1].delta_bytes_in + batch[1].delta_bytes, 0u);
  EXPECT_EQ(batch[2].delta_bytes_out, 300u);
  EXPECT_EQ(batch[2].delta_bytes_in, 0u);
  EXPECT_EQ(last[0].delta_bytes_out, 1000u);
  EXPECT_EQ(last[0].delta_bytes_in, 100u);

  const FlowFilter range{.from_ns = m0, .to_ns = m0 + 10 * 60 * kSec - 1};
  auto dst = store->top({.filter = range, .group = TopGroup::Dst});
  ASSERT_TRUE(dst) << dst.error().message;
  ASSERT_EQ(dst->size(), 2u);  // 10.0.0.2, then 10.0.0.1 (the dns record and the mirror's nothing)
  EXPECT_EQ((*dst)[0].key[0], "10.0.0.2");
  EXPECT_EQ((*dst)[0].bytes_out, 4000u);
  EXPECT_EQ((*dst)[0].bytes_in, 400u);
  EXPECT_EQ((*dst)[0].bytes, 4400u);
  EXPECT_EQ((*dst)[1].key[0], "10.0.0.1");
  EXPECT_EQ((*dst)[1].bytes_out, 300u);
  EXPECT_EQ((*dst)[1].bytes_in, 0u);
  EXPECT_EQ((*dst)[1].bytes, 300u);
  // The agent's records and the mirror: one process.
  auto proc = store->top({.filter = range, .group = TopGroup::Process});
  ASSERT_TRUE(proc) << proc.error().message;
  ASSERT_EQ(proc->size(), 1u);
  EXPECT_EQ((*proc)[0].bytes_out, 4000u);
  EXPECT_EQ((*proc)[0].bytes_in, 400u);

  auto series = store->series({.filter = range, .interval_ns = 60 * kSec});
  ASSERT_TRUE(series) << series.error().message;
  std::vector<std::pair<uint64_t, uint64_t>> each_way;
  for (const auto& p : *series) {
    EXPECT_EQ(p.bytes, p.bytes_out + p.bytes_in);
    each_way.emplace_back(p.bytes_out, p.bytes_in);
  }
  // Placed by end time: +60 s, +100 s (dns) and +120 s, +150 s after kT0.
  uint64_t out = 0, in = 0;
  for (auto [o, i] : each_way) out += o, in += i;
  EXPECT_EQ(out, 4300u);
  EXPECT_EQ(in, 400u);
  const uint64_t off = (kT0 - m0) / kSec;  // kT0's second within its minute
  auto at = [&](uint64_t s) { return (off + s) / 60; };
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> want;
  auto add = [&](uint64_t s, uint64_t o, uint64_t i) {
    want[at(s)].first += o;
    want[at(s)].second += i;
  };
  add(60, 1000, 100);
  add(100, 300, 0);
  add(120, 2000, 200);
  add(150, 1000, 100);
  for (const auto& p : *series) {
    const uint64_t k = (p.time_ns - m0) / (60 * kSec);
    EXPECT_EQ(std::make_pair(p.bytes_out, p.bytes_in), want[k]) << "minute " << k;
  }
}

// Grouped by network: IPv4 addresses at cidr4, IPv6 ones at cidr6, prefix
// lengths inside a byte too; the same keys and sums on every backend.
TEST_P(AnyStore, TopBySourceAndDestinationNetwork) {
  auto store = open();
  std::vector<FlowRow> batch{
      agent_row("10.1.2.3", 40000, "192.0.2.1", 443, kT0, kT0 + kSec, 100, 1),
      agent_row("10.1.2.200", 40001, "192.0.2.77", 443, kT0, kT0 + kSec, 200, 2),
      agent_row("10.1.3.4", 40002, "192.0.2.130", 443, kT0, kT0 + kSec, 400, 4),
      agent_row("fd00:1:2:3::1", 40003, "2001:db8::1", 443, kT0, kT0 + kSec, 1000, 10),
      agent_row("fd00:1:2:3::9", 40004, "2001:db8:0:1::1", 443, kT0, kT0 + kSec, 2000, 20),
      agent_row("fd00:1:2:4::1", 40005, "2001:db8:1::1", 443, kT0, kT0 + kSec, 4000, 40),
  };
  ASSERT_TRUE(insert(*store, batch));
  auto top = [&](TopGroup g, uint8_t c4, uint8_t c6) {
    auto r = store->top({.group = g, .by = TopMetric::Bytes, .limit = 20, .cidr4 = c4, .cidr6 = c6});
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    std::string s;
    if (r)
      for (const auto& e : *r) s += fmt::format("{} {} {}/{};", e.key.at(0), e.flows, e.bytes_out, e.bytes_in);
    return s;
  };
  EXPECT_EQ(top(TopGroup::SrcCidr, 24, 48), "fd00:1:2::/48 3 7000/70;10.1.3.0/24 1 400/4;10.1.2.0/24 2 300/3;");
  EXPECT_EQ(top(TopGroup::SrcCidr, 20, 64),
            "fd00:1:2:4::/64 1 4000/40;fd00:1:2:3::/64 2 3000/30;10.1.0.0/20 3 700/7;");
  EXPECT_EQ(top(TopGroup::SrcCidr, 32, 128),
            "fd00:1:2:4::1/128 1 4000/40;fd00:1:2:3::9/128 1 2000/20;fd00:1:2:3::1/128 1 1000/10;"
            "10.1.3.4/32 1 400/4;10.1.2.200/32 1 200/2;10.1.2.3/32 1 100/1;");
  EXPECT_EQ(top(TopGroup::SrcCidr, 0, 0), "::/0 3 7000/70;0.0.0.0/0 3 700/7;");
  // 192.0.2.1 and .77 share a /25, .130 is in the other half.
  EXPECT_EQ(top(TopGroup::DstCidr, 25, 63),
            "2001:db8:1::/63 1 4000/40;2001:db8::/63 2 3000/30;192.0.2.128/25 1 400/4;192.0.2.0/25 2 300/3;");
}
