// A fleet in one machine: four network namespaces act as hosts on one bridge,
// three of them with their own `flowscope agent --netns ... --host hN`, all
// exporting to one collector. Workloads run in cgroups named like systemd
// units. A known matrix of connections is made; the graph, the aggregates and
// each flow's attribution must equal the matrix exactly, every connection
// counted once, and the host without an agent must stay unattributed. One
// agent's wall clock is off by seconds (libfaketime), within the collector's
// --clock-skew: joins and labels must not notice.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/process.h"

using namespace fstest;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/fs-fleet-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Hosts h1..h4 on a bridge in a namespace of its own, 10.<n>.0.<i>/24.
class Fleet {
 public:
  Fleet() : sw_("fleetsw") {
    const int n = 100 + getpid() % 150;
    if (sh(sw_.exec() + "ip link add br0 type bridge") != 0 || sh(sw_.exec() + "ip link set br0 up") != 0)
      throw std::runtime_error("bridge setup failed");
    for (int i = 1; i <= 4; ++i) {
      hosts_.push_back(std::make_unique<NetNs>(fmt::format("fleet{}", i)));
      NetNs& h = *hosts_.back();
      addrs_.push_back(fmt::format("10.{}.0.{}", n, i));
      const std::string port = fmt::format("p{}", i);
      const std::string cmds[] = {
          fmt::format("ip link add eth0 netns {} type veth peer name {} netns {}", h.name(), port, sw_.name()),
          fmt::format("{} ip link set {} master br0", sw_.exec(), port),
          fmt::format("{} ip link set {} up", sw_.exec(), port),
          fmt::format("{} ip addr add {}/24 dev eth0", h.exec(), addrs_.back()),
          h.exec() + "ip link set eth0 up",
      };
      for (const auto& c : cmds)
        if (sh(c) != 0) throw std::runtime_error("fleet setup failed: " + c);
    }
  }
  NetNs& host(int i) { return *hosts_.at(i - 1); }
  const std::string& addr(int i) const { return addrs_.at(i - 1); }
  // Another address in the hosts' subnet.
  std::string spare_addr(int last_octet) const {
    return addrs_.at(0).substr(0, addrs_.at(0).rfind('.') + 1) + std::to_string(last_octet);
  }

 private:
  NetNs sw_;
  std::vector<std::unique_ptr<NetNs>> hosts_;
  std::vector<std::string> addrs_;
};

// cgroups named like systemd units, removed at the end.
class Units {
 public:
  Units() {
    const std::string root = sh_out("findmnt -n -o TARGET -t cgroup2 | head -1");
    if (root.empty()) throw std::runtime_error("no cgroup2 mount");
    base_ = root.substr(0, root.find('\n')) + fmt::format("/fsfleet-{}.slice", getpid());
  }
  ~Units() {
    for (const auto& d : made_) rmdir(d.c_str());
    rmdir(base_.c_str());
  }
  // A command that joins the unit's cgroup, then runs `cmd`.
  std::vector<std::string> in(const std::string& unit, const std::string& cmd) {
    const std::string dir = base_ + "/" + unit;
    if (!std::filesystem::exists(dir)) {
      std::filesystem::create_directories(dir);
      made_.insert(made_.begin(), dir);
    }
    return {"sh", "-c", fmt::format("echo $$ > {}/cgroup.procs && exec {}", dir, cmd)};
  }

 private:
  std::string base_;
  std::vector<std::string> made_;
};

class CollectorProc {
 public:
  explicit CollectorProc(const std::string& db, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {FLOWSCOPE_BIN, "collector", "--db",        db, "--udp-port",
                                     "0",           "--tcp-port", "0", "--http-port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<Process>(args);
    if (!proc_->wait_for("collector running", 20s)) throw std::runtime_error("collector did not start: " + proc_->err());
    std::smatch m;
    const std::string err = proc_->err();
    if (!std::regex_search(err, m, std::regex(R"(udp/(\w+) tcp/(\w+), HTTP API on http://(\S+):(\d+))")))
      throw std::runtime_error("collector ports not found: " + err);
    tcp_port = std::stoi(m[2]);
    http_port = std::stoi(m[4]);
  }
  int stop() {
    proc_->signal(SIGINT);
    return proc_->wait(30s);
  }
  int tcp_port = 0, http_port = 0;

 private:
  std::unique_ptr<Process> proc_;
};

Json get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  auto r = c.Get(path);
  if (!r || r->status != 200) throw std::runtime_error("GET " + path + " failed: " + (r ? r->body : "no answer"));
  return Json::parse(r->body);
}

const Json* edge(const Json& g, const std::string& src, const std::string& dst) {
  for (const auto& e : g["edges"])
    if (e["src"] == src && e["dst"] == dst) return &e;
  return nullptr;
}

uint64_t unix_now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Not a wait for an event: placing traffic at a distance from a moment on
// the clock that the attribution rules measure.
void sleep_until_unix_ns(uint64_t t) {
  const uint64_t now = unix_now_ns();
  if (t > now) std::this_thread::sleep_for(std::chrono::nanoseconds(t - now));
}

struct Expected {
  std::string src, dst;
  int connections;
  uint64_t up, down;  // bytes client -> server, server -> client
  bool joined;
};

}  // namespace

TEST(Fleet, GraphAndTotalsEqualTheConnectionMatrix) {
  TempDir dir;
  Fleet fleet;
  Units units;
  CollectorProc col(dir.path() + "/flows.db");
  const std::string ipfix = fmt::format("tcp://127.0.0.1:{}", col.tcp_port);
  const uint64_t t0 = static_cast<uint64_t>(time(nullptr)) - 1;
  std::vector<std::unique_ptr<AgentRunner>> agents;  // h4 has none
  for (int i = 1; i <= 3; ++i)
    agents.push_back(std::make_unique<AgentRunner>(
        std::vector<std::string>{"--netns", fleet.host(i).path(), "--host", fmt::format("h{}", i), "--ipfix", ipfix},
        i == 3 ? 3.0 : 0.0));  // h3's clock runs 3 s ahead; the collector allows 5 (its default)
  // Its claims say so (their ranges start when it started, on its clock).
  const uint64_t started = unix_now_ns();
  ASSERT_FALSE(agents[2]
                   ->wait_claims([&](const Json& c) { return c["from_ns"].get<uint64_t>() > started + 2'000'000'000ull; },
                                 10s)
                   .empty())
      << "h3's clock is not ahead";

  auto peer = [&](int h, const std::string& args) {
    return fmt::format("ip netns exec {} {} {}", fleet.host(h).name(), FS_PEER_BIN, args);
  };
  // Servers: web.service on h2 (7 connections), db.service on h3 (2), a
  // program in no unit on h4 (1).
  Process web(units.in("web.service", peer(2, "server --addr 0.0.0.0 --port 8080 --send 2000 --count 7")));
  Process db(units.in("db.service", peer(3, "server --addr 0.0.0.0 --port 5432 --send 3000 --count 2")));
  Process h4srv({"sh", "-c", peer(4, "server --addr 0.0.0.0 --port 9000 --send 500 --count 1")});
  for (Process* s : {&web, &db, &h4srv}) ASSERT_TRUE(s->wait_for("listening", 10s, false)) << s->err();

  auto client = [&](const std::string& unit, int h, const std::string& to, int port, int send) {
    const std::string cmd = peer(h, fmt::format("client --addr {} --port {} --send {}", to, port, send));
    Process c(unit.empty() ? std::vector<std::string>{"sh", "-c", cmd} : units.in(unit, cmd));
    EXPECT_EQ(c.wait(20s), 0) << c.err();
  };
  for (int k = 0; k < 3; ++k) client("api.service", 1, fleet.addr(2), 8080, 1000);
  for (int k = 0; k < 2; ++k) client("api.service", 1, fleet.addr(3), 5432, 1100);
  for (int k = 0; k < 2; ++k) client("batch.service", 3, fleet.addr(2), 8080, 1200);
  client("probe.service", 2, "127.0.0.1", 8080, 1300);  // loopback on h2: both ends on one host
  client("api.service", 1, fleet.addr(4), 9000, 1400);  // to the host without an agent
  client("", 4, fleet.addr(2), 8080, 1500);             // from it
  for (Process* s : {&web, &db, &h4srv}) EXPECT_EQ(s->wait(20s), 0) << s->err();

  // Final records: two per connection between agents (8), one per
  // connection with h4 (2).
  const std::string range = fmt::format("from={}&to={}", t0, t0 + 3600);
  const size_t want = 8 * 2 + 2;
  size_t have = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    have = get(col.http_port, fmt::format("/api/flows?{}&record=final&limit=1000", range))["count"].get<size_t>();
    if (have >= want) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(have, want);

  const std::string h4 = fleet.addr(4);
  const std::vector<Expected> hosts = {
      {"h1", "h2", 3, 3000, 6000, true},  {"h1", "h3", 2, 2200, 6000, true}, {"h3", "h2", 2, 2400, 4000, true},
      {"h2", "h2", 1, 1300, 2000, true},  {"h1", h4, 1, 1400, 500, false},   {h4, "h2", 1, 1500, 2000, false},
  };
  const std::vector<Expected> workloads = {
      {"api.service", "web.service", 3, 3000, 6000, true},   {"api.service", "db.service", 2, 2200, 6000, true},
      {"batch.service", "web.service", 2, 2400, 4000, true}, {"probe.service", "web.service", 1, 1300, 2000, true},
      {"api.service", h4, 1, 1400, 500, false},              {h4, "web.service", 1, 1500, 2000, false},
  };
  uint64_t all_bytes = 0;
  for (const auto& e : hosts) all_bytes += e.up + e.down;
  for (const auto& [level, matrix] : {std::pair{"host", hosts}, std::pair{"workload", workloads}}) {
    const Json g = get(col.http_port, fmt::format("/api/graph?level={}&{}", level, range));
    EXPECT_EQ(g["edges"].size(), matrix.size()) << g.dump(1);
    for (const auto& x : matrix) {
      const Json* e = edge(g, x.src, x.dst);
      ASSERT_TRUE(e) << level << ": no edge " << x.src << " -> " << x.dst << "\n" << g.dump(1);
      EXPECT_EQ((*e)["connections"], x.connections) << e->dump();
      EXPECT_EQ((*e)["bytes_src_to_dst"], x.up) << e->dump();
      EXPECT_EQ((*e)["bytes_dst_to_src"], x.down) << e->dump();
      EXPECT_EQ((*e)["joined"], x.joined ? x.connections : 0) << e->dump();
      EXPECT_EQ((*e)["failed"], 0) << e->dump();
    }
    EXPECT_EQ(g["totals"]["connections"], 10);
    EXPECT_EQ(g["totals"]["bytes_src_to_dst"].get<uint64_t>() + g["totals"]["bytes_dst_to_src"].get<uint64_t>(),
              all_bytes);
    for (const auto& n : g["nodes"]) EXPECT_EQ(n["attributed"].get<bool>(), n["id"] != h4) << n.dump();
  }

  // The aggregates count each connection once too.
  const Json top = get(col.http_port, fmt::format("/api/top?group=process&by=flows&{}", range));
  uint64_t flows = 0, bytes = 0;
  for (const auto& e : top["top"]) flows += e["flows"].get<uint64_t>(), bytes += e["bytes"].get<uint64_t>();
  EXPECT_EQ(flows, 10u) << top.dump();
  EXPECT_EQ(bytes, all_bytes) << top.dump();
  const Json series = get(col.http_port, fmt::format("/api/timeseries?interval=3600s&{}", range));
  flows = 0;
  for (const auto& p : series["points"]) flows += p["flows"].get<uint64_t>();
  EXPECT_EQ(flows, 10u) << series.dump();

  // Each flow names its other end from that end's own record, or not at all.
  const Json page = get(col.http_port, fmt::format("/api/flows?{}&record=final&limit=1000", range));
  std::map<std::string, std::string> host_of = {{fleet.addr(1), "h1"}, {fleet.addr(2), "h2"}, {fleet.addr(3), "h3"}};
  int joined = 0, none = 0;
  for (const auto& f : page["flows"]) {
    const std::string remote = f["dst_addr"];
    if (remote == h4) {  // h1's client and h2's server record of the connections with h4
      EXPECT_EQ(f["attribution"], "none") << f.dump();
      EXPECT_FALSE(f.contains("remote_host")) << f.dump();
      ++none;
      continue;
    }
    EXPECT_EQ(f["attribution"], "joined") << f.dump();
    EXPECT_EQ(f["remote_host"], remote == "127.0.0.1" ? "h2" : host_of[remote]) << f.dump();
    ++joined;
  }
  EXPECT_EQ(joined, 16);
  EXPECT_EQ(none, 2);

  for (auto& a : agents) EXPECT_EQ(a->stop(), 0);
  EXPECT_EQ(col.stop(), 0);
}

// An address moves among hosts (two with agents, one without) while a client
// on a fourth connects to it. The servers' agents export no flows of their
// own (--port 9), so no connection is joined: every remote end is named by
// ownership evidence alone. Every connection made while a host with an agent
// held the address must be labelled with that host, or left unattributed;
// every one made while the host without an agent held it must stay
// unattributed. Connections start a skew after each move and end a skew
// before the next (the skew is the collector's --clock-skew), so none falls
// in a window the rules must refuse, and the unattributed share of the
// first kind is expected to be 0. The agents' clocks are off (h2 ahead, h3
// behind, by less than the skew; libfaketime): the test reads their claims
// on their clocks and widens its spacing by the offset.
TEST(Fleet, AMovingAddressIsLabelledWithItsOwnerAtEachConnectionsStart) {
  TempDir dir;
  Fleet fleet;
  const uint64_t skew_ns = 500'000'000ull;
  const int64_t offset_ns[] = {0, 0, 200'000'000, -200'000'000};  // per host h1..h3
  const uint64_t gap_ns = skew_ns + 200'000'000ull + 100'000'000ull;  // skew + the largest offset + a margin
  CollectorProc col(dir.path() + "/flows.db", {"--clock-skew", "0.5"});
  const std::string ipfix = fmt::format("tcp://127.0.0.1:{}", col.tcp_port);
  std::vector<std::unique_ptr<AgentRunner>> agents;
  agents.push_back(std::make_unique<AgentRunner>(
      std::vector<std::string>{"--netns", fleet.host(1).path(), "--host", "h1", "--port", "7000", "--ipfix", ipfix}));
  for (int i = 2; i <= 3; ++i)
    agents.push_back(std::make_unique<AgentRunner>(
        std::vector<std::string>{"--netns", fleet.host(i).path(), "--host", fmt::format("h{}", i), "--port", "9",
                                 "--ipfix", ipfix},
        static_cast<double>(offset_ns[i]) / 1e9));
  // A claim's time on the test's (true) clock.
  auto true_ns = [&](int host, uint64_t t) { return static_cast<uint64_t>(static_cast<int64_t>(t) - offset_ns[host]); };
  auto peer = [&](int h, const std::string& args) {
    return fmt::format("ip netns exec {} {} {}", fleet.host(h).name(), FS_PEER_BIN, args);
  };
  std::vector<std::unique_ptr<Process>> servers;
  for (int h = 2; h <= 4; ++h) {
    // exec: the signal that stops it reaches the server itself, not a shell.
    servers.push_back(std::make_unique<Process>(std::vector<std::string>{
        "sh", "-c", "exec " + peer(h, "server --addr 0.0.0.0 --port 7000 --send 10 --count 1000000")}));
    ASSERT_TRUE(servers.back()->wait_for("listening", 10s, false)) << servers.back()->err();
  }
  const std::string moving = fleet.spare_addr(200);
  std::mt19937 rng(static_cast<unsigned>(getpid()));
  std::map<uint16_t, std::string> truth;  // the client's local port -> the host holding the address
  constexpr int kRounds = 24, kPerRound = 50;
  int at = 0;
  for (int round = 0; round < kRounds; ++round) {
    int to = 2 + static_cast<int>(rng() % 3);
    if (to == at) to = to == 4 ? 2 : to + 1;
    // The range the old owner's agent claimed ends when it saw the removal.
    uint64_t released = 0;
    if (at) {
      const uint64_t removing = unix_now_ns();
      ASSERT_EQ(sh(fmt::format("{} ip addr del {}/24 dev eth0", fleet.host(at).exec(), moving)), 0);
      if (at != 4) {
        const auto got = agents.at(at - 1)->wait_claims(
            [&](const Json& c) {
              return c["addr"] == moving && c["port"] == 0 && c["held"] == false &&
                     true_ns(at, c["to_ns"].get<uint64_t>()) >= removing;
            },
            10s);
        ASSERT_FALSE(got.empty()) << "no release of " << moving << " from h" << at;
        released = true_ns(at, got.front()["to_ns"].get<uint64_t>());
      }
    }
    const uint64_t moved = unix_now_ns();
    ASSERT_EQ(sh(fmt::format("{} ip addr add {}/24 dev eth0", fleet.host(to).exec(), moving)), 0);
    ASSERT_EQ(sh(fleet.host(1).exec() + "ip neigh flush dev eth0"), 0);
    at = to;
    // Connections start more than the skew after the range the new owner's
    // agent claims begins, where the rules can decide: wait for that claim,
    // then for its start plus the skew on the clock.
    if (to != 4) {
      const auto got = agents.at(to - 1)->wait_claims(
          [&](const Json& c) {
            return c["addr"] == moving && c["port"] == 0 && true_ns(to, c["from_ns"].get<uint64_t>()) >= moved;
          },
          10s);
      ASSERT_FALSE(got.empty()) << "no claim of " << moving << " from h" << to;
      sleep_until_unix_ns(std::max(released, true_ns(to, got.front()["from_ns"].get<uint64_t>())) + gap_ns);
    } else {
      sleep_until_unix_ns(std::max(released, unix_now_ns()) + gap_ns);
    }
    Process c({"sh", "-c", peer(1, fmt::format("client --addr {} --port 7000 --send 20 --count {}", moving, kPerRound))});
    ASSERT_EQ(c.wait(60s), 0) << c.err();
    for (const auto& line : parse_json_lines(c.out(), "")) {
      ASSERT_FALSE(line.contains("error")) << line.dump();
      truth[line["local_port"].get<uint16_t>()] = fmt::format("h{}", to);
    }
    // The next move's release lands more than the skew after the last start.
    sleep_until_unix_ns(unix_now_ns() + gap_ns);
  }
  ASSERT_EQ(sh(fmt::format("{} ip addr del {}/24 dev eth0", fleet.host(at).exec(), moving)), 0);
  const size_t total = static_cast<size_t>(kRounds) * kPerRound;
  // Ports may repeat across rounds (then the later round's owner is the
  // truth for both, and the check below skips them).
  std::map<uint16_t, int> uses;
  const std::string range = fmt::format("from={}&to={}&dst={}&record=final&limit=10000",
                                        static_cast<uint64_t>(time(nullptr)) - 3600, time(nullptr) + 3600, moving);
  Json page;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;;) {
    page = get(col.http_port, "/api/flows?" + range);
    const bool all = page["count"].get<size_t>() >= total;
    if (all && page["attribution"]["pending"] == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "flows " << page["count"] << " of " << total
                                                          << ", attribution " << page["attribution"].dump();
    std::this_thread::sleep_for(200ms);
  }
  for (const auto& f : page["flows"]) uses[f["src_port"].get<uint16_t>()]++;
  size_t owner = 0, none = 0, wrong = 0, checked = 0, held_by_agent = 0, unattributed_held = 0;
  for (const auto& f : page["flows"]) {
    const auto port = f["src_port"].get<uint16_t>();
    if (uses[port] > 1 || !truth.contains(port)) continue;
    ++checked;
    const std::string& want = truth[port];
    const bool agent_host = want != "h4";
    held_by_agent += agent_host;
    if (f["attribution"] == "owner") {
      ++owner;
      if (f["remote_host"] != want) {
        ++wrong;
        ADD_FAILURE() << "labelled " << f["remote_host"] << ", held by " << want << ": " << f.dump();
      }
    } else {
      ASSERT_EQ(f["attribution"], "none") << f.dump();
      ++none;
      unattributed_held += agent_host;
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_GE(checked, total * 9 / 10);
  EXPECT_EQ(unattributed_held, 0u) << "of " << held_by_agent;
  std::printf("[ moves ] %zu connections, %zu checked, %zu owner, %zu none (%zu while an agent's host held it), "
              "%zu wrong\n",
              total, checked, owner, none, unattributed_held, wrong);
  for (auto& a : agents) EXPECT_EQ(a->stop(), 0);
  for (auto& s : servers) {
    s->signal(SIGKILL);
    s->wait(10s);
  }
  EXPECT_EQ(col.stop(), 0);
}
