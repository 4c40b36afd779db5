// The graph and the flows' attribution on SQLite, from records as agents on
// three hosts would send them: both ends of connections between hosts with
// agents, one end of those to a host without one.
#include "collector/graph.h"
#include "collector/remote_top.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "collector/attribution.h"
#include "collector/store_writer.h"
#include "net/cidr.h"
#include "storage/sqlite_store.h"

using namespace flowscope;

namespace {

constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;

struct Workload {
  const char* host;
  const char* ip;
  const char* exe;
  const char* unit;  // nullptr: none
  uint32_t pid;
};

const Workload kCurl1{"h1", "10.1.0.1", "curl", nullptr, 100};
const Workload kCurl3{"h3", "10.1.0.3", "curl", nullptr, 300};
const Workload kWeb2{"h2", "10.1.0.2", "nginx", "web.service", 200};
const Workload kDb3{"h3", "10.1.0.3", "postgres", "db.service", 301};

FlowRow end_of(const Workload& me, uint16_t my_port, const char* peer_ip, uint16_t peer_port, Direction dir,
               uint64_t start, uint64_t sent, uint64_t received) {
  FlowRow r;
  r.exporter = std::string("192.0.2.") + me.host;  // each agent exports from its own address
  r.host = me.host;
  r.host_id = std::string("id-") + me.host;
  r.start_ns = start;
  r.end_ns = start + kSec;
  r.src_ip = *parse_ip(me.ip);
  r.dst_ip = *parse_ip(peer_ip);
  r.src_port = my_port;
  r.dst_port = peer_port;
  r.direction = dir;
  r.bytes = sent;
  r.rev_bytes = received;
  r.packets = r.rev_packets = 1;
  r.bidirectional = r.cumulative = true;
  r.retrans = 0;
  r.close = CloseReason::Fin;
  r.pid = me.pid;
  r.comm = me.exe;
  r.exe = me.exe;
  if (me.unit) r.unit = me.unit;
  return r;
}

class Graph : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fs-fleet-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto s = SqliteStore::open({.path = dir_ + "/flows.db"});
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    writer_ = std::make_unique<StoreWriter>(store_);
  }
  void TearDown() override {
    writer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A connection client -> server: both ends' records (server's first when
  // `server_first`), or the client's alone when the server has no agent.
  void connect(const Workload& c, uint16_t cport, const Workload& s, uint16_t sport, uint64_t start, uint64_t up,
               uint64_t down, bool server_has_agent = true, bool server_first = false,
               CloseReason close = CloseReason::Fin, uint32_t rtt = 100) {
    FlowRow cr = end_of(c, cport, s.ip, sport, Direction::Outbound, start, up, down);
    cr.close = close;
    cr.srtt_us = rtt;
    FlowRow sr = end_of(s, sport, c.ip, cport, Direction::Inbound, start + kSec / 2, down, up);
    sr.close = close;
    sr.srtt_us = rtt + 1;
    if (server_has_agent && server_first) writer_->push(sr);
    writer_->push(cr);
    if (server_has_agent && !server_first) writer_->push(sr);
  }
  nlohmann::json graph(GraphLevel level, uint32_t limit = 50) {
    writer_->drain();
    GraphQuery q{.filter = {.from_ns = kT0 - 60 * kSec, .to_ns = kT0 + 600 * kSec}, .level = level, .limit = limit};
    auto g = build_graph(*store_, q);
    EXPECT_TRUE(g) << g.error().message;
    return g ? *g : nlohmann::json{};
  }
  static const nlohmann::json* edge(const nlohmann::json& g, const std::string& src, const std::string& dst) {
    for (const auto& e : g["edges"])
      if (e["src"] == src && e["dst"] == dst) return &e;
    return nullptr;
  }

  std::string dir_;
  std::shared_ptr<FlowStore> store_;
  std::unique_ptr<StoreWriter> writer_;
};

}  // namespace

TEST_F(Graph, EdgesAndTotalsCountEachConnectionOnce) {
  // h1 curl -> h2 nginx: 3 connections; h3 curl -> h2 nginx: 1; h1 curl -> h3 postgres: 2, one refused;
  // h1 curl -> 10.1.0.9:80 (no agent there): 1.
  const Workload kNoAgent{"h9", "10.1.0.9", "x", nullptr, 0};
  connect(kCurl1, 40001, kWeb2, 80, kT0, 1000, 10000);
  connect(kCurl1, 40002, kWeb2, 80, kT0 + kSec, 1000, 20000, true, true, CloseReason::Fin, 300);
  connect(kCurl1, 40003, kWeb2, 80, kT0 + 2 * kSec, 1000, 30000, true, false, CloseReason::Fin, 500);
  connect(kCurl3, 40004, kWeb2, 80, kT0, 500, 5000);
  connect(kCurl1, 40005, kDb3, 5432, kT0, 700, 7000);
  connect(kCurl1, 40006, kDb3, 5432, kT0, 0, 0, true, false, CloseReason::Refused);
  connect(kCurl1, 40007, kNoAgent, 80, kT0, 10, 20, false);

  auto g = graph(GraphLevel::Host);
  EXPECT_EQ(g["totals"]["connections"], 7);
  EXPECT_EQ(g["totals"]["joined"], 6);
  EXPECT_EQ(g["totals"]["unattributed"], 1);
  EXPECT_EQ(g["totals"]["bytes_src_to_dst"], 1000 * 3 + 500 + 700 + 10);
  EXPECT_EQ(g["totals"]["bytes_dst_to_src"], 60000 + 5000 + 7000 + 20);
  EXPECT_EQ(g["edges"].size(), 4u);
  const auto* e12 = edge(g, "h1", "h2");
  ASSERT_TRUE(e12) << g.dump();
  EXPECT_EQ((*e12)["connections"], 3);
  EXPECT_EQ((*e12)["bytes_src_to_dst"], 3000);
  EXPECT_EQ((*e12)["bytes_dst_to_src"], 60000);
  EXPECT_EQ((*e12)["rtt_p50_us"], 300);  // the clients' RTTs: 100, 300, 500
  EXPECT_EQ((*e12)["rtt_p95_us"], 500);
  const auto* e13 = edge(g, "h1", "h3");
  ASSERT_TRUE(e13);
  EXPECT_EQ((*e13)["connections"], 2);
  EXPECT_EQ((*e13)["failed"], 1);
  EXPECT_EQ((*e13)["failed_by"]["refused"], 1);
  ASSERT_TRUE(edge(g, "h3", "h2"));
  // The host without an agent is its address, unattributed; never a host's name.
  const auto* e19 = edge(g, "h1", "10.1.0.9");
  ASSERT_TRUE(e19) << g.dump();
  EXPECT_EQ((*e19)["unattributed"], 1);
  for (const auto& n : g["nodes"]) {
    if (n["id"] == "10.1.0.9") {
      EXPECT_FALSE(n["attributed"].get<bool>());
    }
  }

  // Aggregates count each connection once too.
  auto top = store_->top({.filter = {.from_ns = kT0 - 60 * kSec, .to_ns = kT0 + 600 * kSec},
                          .group = TopGroup::Process, .by = TopMetric::Flows, .limit = 10});
  ASSERT_TRUE(top);
  uint64_t flows = 0, bytes = 0;
  for (const auto& e : *top) flows += e.flows, bytes += e.bytes;
  EXPECT_EQ(flows, 7u);
  EXPECT_EQ(bytes, 1000u * 3 + 500 + 700 + 10 + 60000 + 5000 + 7000 + 20);
}

// Top-N by the other end: each connection counted once, on the end the
// store counts (the first seen), under the workload at its other end; an end
// nobody names is its address. The same totals as the store's own top-N.
TEST_F(Graph, TopByRemoteWorkloadCountsEachConnectionOnceUnderItsOtherEnd) {
  const Workload kNoAgent{"h9", "10.1.0.9", "x", nullptr, 0};
  connect(kCurl1, 40001, kWeb2, 80, kT0, 1000, 10000);
  connect(kCurl1, 40002, kWeb2, 80, kT0 + kSec, 1000, 20000, true, true);  // the server's record first
  connect(kCurl1, 40003, kWeb2, 80, kT0 + 2 * kSec, 1000, 30000);
  connect(kCurl3, 40004, kWeb2, 80, kT0, 500, 5000);
  connect(kCurl1, 40005, kDb3, 5432, kT0, 700, 7000);
  connect(kCurl1, 40006, kDb3, 5432, kT0, 0, 0, true, false, CloseReason::Refused);
  connect(kCurl1, 40007, kNoAgent, 80, kT0, 10, 20, false);
  writer_->drain();
  const FlowFilter range{.from_ns = kT0 - 60 * kSec, .to_ns = kT0 + 600 * kSec};
  auto q = parse_remote_top_query({{"group", "remote_workload"}, {"by", "flows"}, {"interval", "60s"},
                                   {"from", std::to_string(*range.from_ns / kSec)},
                                   {"to", std::to_string(*range.to_ns / kSec)}},
                                  kT0);
  ASSERT_TRUE(q) << q.error().message;
  auto top = remote_top(*store_, *q);
  ASSERT_TRUE(top) << top.error().message;
  std::map<std::string, std::pair<uint64_t, bool>> flows;
  for (const auto& e : *top) {
    flows[e.key] = {e.total.flows, e.attributed};
    uint64_t in_points = 0;
    for (const auto& p : e.points) in_points += p.flows;
    EXPECT_EQ(in_points, e.total.flows) << e.key;
    EXPECT_EQ(e.points.size(), 12u);  // 660 s in 60 s buckets, both ends included, as /api/timeseries
  }
  const std::map<std::string, std::pair<uint64_t, bool>> want = {
      {"web.service", {3, true}}, {"curl", {1, true}}, {"db.service", {2, true}}, {"10.1.0.9", {1, false}}};
  EXPECT_EQ(flows, want);
  // Failures are counted on each end's record, as the store counts them.
  q->top.by = TopMetric::Failures;
  top = remote_top(*store_, *q);
  ASSERT_TRUE(top);
  ASSERT_EQ(top->size(), 2u);
  for (const auto& e : *top) EXPECT_EQ(e.total.failures, 1u) << e.key;
  // Bytes: the same total as the store's top-N.
  q->top.by = TopMetric::Bytes;
  q->level = RemoteLevel::Host;
  top = remote_top(*store_, *q);
  ASSERT_TRUE(top);
  auto store_top = store_->top({.filter = range, .group = TopGroup::Process, .by = TopMetric::Bytes, .limit = 10});
  ASSERT_TRUE(store_top);
  uint64_t mine = 0, theirs = 0;
  for (const auto& e : *top) mine += e.total.bytes;
  for (const auto& e : *store_top) theirs += e.bytes;
  EXPECT_EQ(mine, theirs);
  std::set<std::string> hosts;
  for (const auto& e : *top) hosts.insert(e.key);
  EXPECT_EQ(hosts, (std::set<std::string>{"h1", "h2", "h3", "10.1.0.9"}));
  // Bad parameters are refused.
  EXPECT_FALSE(parse_remote_top_query({{"group", "remote_host"}, {"cidr4", "16"}}, kT0));
  EXPECT_FALSE(parse_remote_top_query({{"group", "remote_host"}, {"interval", "0s"}}, kT0));
  EXPECT_FALSE(parse_remote_top_query({{"group", "remote_host"}, {"bogus", "1"}}, kT0));
}

TEST_F(Graph, WorkloadsAreUnitsOrProgramsAndTopNFoldsTheRest) {
  connect(kCurl1, 40001, kWeb2, 80, kT0, 1000, 10000);
  connect(kCurl3, 40002, kWeb2, 80, kT0, 100, 100);
  connect(kCurl1, 40003, kDb3, 5432, kT0, 10, 10);
  auto g = graph(GraphLevel::Workload);
  const auto* e = edge(g, "curl", "web.service");
  ASSERT_TRUE(e) << g.dump();
  EXPECT_EQ((*e)["connections"], 2);
  ASSERT_TRUE(edge(g, "curl", "db.service"));

  auto p = graph(GraphLevel::Process, 1);
  ASSERT_EQ(p["edges"].size(), 2u) << p.dump();
  EXPECT_EQ(p["edges"][0]["src"], "h1/curl[100]");
  EXPECT_EQ(p["edges"][0]["dst"], "h2/nginx[200]");
  EXPECT_EQ(p["edges"][1]["src"], "other");
  EXPECT_EQ(p["edges"][1]["connections"], 2);
  EXPECT_EQ(p["edges_folded"], 2);
}

TEST_F(Graph, EachFlowNamesItsOtherEndOnlyFromThatEndsRecord) {
  const Workload kNoAgent{"h9", "10.1.0.9", "x", nullptr, 0};
  connect(kCurl1, 40001, kWeb2, 80, kT0, 1000, 10000);
  connect(kCurl1, 40002, kNoAgent, 80, kT0, 10, 20, false);
  writer_->drain();
  auto page = store_->query({.limit = 100});
  ASSERT_TRUE(page);
  ASSERT_EQ(page->flows.size(), 3u);
  auto members = attribution_members(*store_, page->flows);
  ASSERT_TRUE(members) << members.error().message;
  for (size_t i = 0; i < page->flows.size(); ++i) {
    const FlowRow& r = page->flows[i];
    auto j = nlohmann::json::parse(with_members(flow_row_json(r), (*members)[i]));
    if (r.src_port == 40002) {
      EXPECT_EQ(j["attribution"], "none");
      EXPECT_FALSE(j.contains("remote_host"));
    } else if (r.src_port == 40001) {
      EXPECT_EQ(j["attribution"], "joined");
      EXPECT_EQ(j["remote_host"], "h2");
      EXPECT_EQ(j["remote_workload"], "web.service");
      EXPECT_EQ(j["remote_pid"], 200);
      EXPECT_FALSE(j["mirror"].get<bool>());
    } else {
      EXPECT_EQ(j["attribution"], "joined");
      EXPECT_EQ(j["remote_host"], "h1");
      EXPECT_EQ(j["remote_workload"], "curl");
      EXPECT_TRUE(j["mirror"].get<bool>());
    }
  }
}

// Without the other end's record, ownership evidence stored through the
// writer names the remote end: the host, and the workload whose port claims
// agree; a second claimant, or an address nobody claims, names nobody.
TEST_F(Graph, ClaimsNameTheOwnerOfAnUnjoinedRemoteEnd) {
  auto claim = [](const char* host, const char* addr, uint64_t from, uint64_t to, uint16_t port = 0) {
    OwnershipClaim c;
    c.host = host;
    c.host_id = std::string("id-") + host;
    c.addr = *parse_ip(addr);
    c.from_ns = from;
    c.to_ns = to;
    c.port = port;
    if (port) {
      c.protocol = 6;
      c.exe = "nginx";
      c.unit = "web.service";
      c.pid = 200;
    }
    return c;
  };
  std::vector<OwnershipClaim> claims = {
      claim("h2", "10.1.0.2", kT0 - 60 * kSec, kT0 + 60 * kSec), claim("h2", "10.1.0.2", kT0, kT0 + 2 * kSec, 80),
      claim("h3", "10.1.0.3", kT0 - 60 * kSec, kT0 + 60 * kSec),  // h3 and h4 both claim .3
      claim("h4", "10.1.0.3", kT0 - 10 * kSec, kT0 + 60 * kSec),
      claim("h1", "10.1.0.1", kT0 - 60 * kSec, kT0 + 60 * kSec)};
  writer_->push_claims(claims);
  connect(kCurl1, 40001, kWeb2, 80, kT0, 10, 20, false);  // h2's agent sent no record of it
  connect(kCurl1, 40002, kDb3, 5432, kT0, 10, 20, false);
  const Workload kNoAgent{"h9", "10.1.0.9", "x", nullptr, 0};
  connect(kCurl1, 40003, kNoAgent, 80, kT0, 10, 20, false);
  writer_->drain();
  EXPECT_EQ(writer_->stats().claims_stored, 5u);
  EXPECT_EQ(writer_->stats().claim_conflicts, 1u);
  auto page = store_->query({.limit = 100});
  ASSERT_TRUE(page);
  ASSERT_EQ(page->flows.size(), 3u);
  AttributionCounts n;
  auto members = attribution_members(*store_, page->flows, &n);
  ASSERT_TRUE(members) << members.error().message;
  for (size_t i = 0; i < page->flows.size(); ++i) {
    auto j = nlohmann::json::parse(with_members(flow_row_json(page->flows[i]), (*members)[i]));
    switch (page->flows[i].src_port) {
      case 40001:
        EXPECT_EQ(j["attribution"], "owner") << j.dump();
        EXPECT_EQ(j["remote_host"], "h2");
        EXPECT_EQ(j["remote_host_id"], "id-h2");
        EXPECT_EQ(j["remote_workload"], "web.service");
        EXPECT_EQ(j["remote_pid"], 200);
        break;
      case 40002:
        EXPECT_EQ(j["attribution"], "none") << j.dump();
        EXPECT_EQ(j["unattributed"], "conflict");
        EXPECT_FALSE(j.contains("remote_host"));
        break;
      default:
        EXPECT_EQ(j["attribution"], "none") << j.dump();
        EXPECT_EQ(j["unattributed"], "no_claim");
    }
  }
  EXPECT_EQ(n.owner, 1u);
  EXPECT_EQ(n.none, 2u);
  // The graph names the same end the same way, at the levels the claims
  // reach: the host from the address claim, the workload from the port's.
  // The conflicting and the unclaimed ends stay addresses.
  for (auto level : {GraphLevel::Host, GraphLevel::Workload}) {
    const auto g = graph(level);
    const std::string client = level == GraphLevel::Host ? "h1" : "curl";
    const std::string owner = level == GraphLevel::Host ? "h2" : "web.service";
    const auto* e = edge(g, client, owner);
    ASSERT_TRUE(e) << g.dump(1);
    EXPECT_EQ((*e)["owner"], 1) << e->dump();
    EXPECT_EQ((*e)["unattributed"], 0) << e->dump();
    EXPECT_EQ((*e)["joined"], 0) << e->dump();
    for (const char* addr : {"10.1.0.3", "10.1.0.9"}) {
      const auto* u = edge(g, client, addr);
      ASSERT_TRUE(u) << addr << "\n" << g.dump(1);
      EXPECT_EQ((*u)["unattributed"], 1) << u->dump();
    }
    for (const auto& node : g["nodes"]) {
      // The owned end's own records are not there: it selects by address.
      if (node["id"] == owner) {
        EXPECT_EQ(node["filter"], nlohmann::json({{"addr", "10.1.0.2"}})) << node.dump();
      }
      if (node["id"] == client) {
        EXPECT_EQ(node["filter"], level == GraphLevel::Host ? nlohmann::json({{"host", "h1"}})
                                                            : nlohmann::json({{"workload", "curl"}}))
            << node.dump();
      }
    }
  }
  // An agent that has not reported past a flow's window holds its answer back.
  std::vector<OwnershipClaim> late = {claim("h5", "10.1.0.5", kT0 - 60 * kSec, kT0 - 30 * kSec)};
  writer_->push_claims(late);
  writer_->drain();
  members = attribution_members(*store_, page->flows, &n);
  ASSERT_TRUE(members) << members.error().message;
  EXPECT_EQ(n.owner, 0u);
  EXPECT_EQ(n.unattributed[static_cast<size_t>(OwnerVerdict::Pending)], 3u);
}
