// `flowscope agent --ipfix` against real IPFIX consumers, for real TCP
// connections made by fs_peer on loopback:
//  - tshark's IPFIX dissector decodes the captured messages to the same
//    addresses, ports, byte and packet counts and times as the agent's JSON;
//  - nfdump's nfcapd stores flows that `nfdump -o raw` prints with the same values;
//  - over TCP the agent waits for an absent collector, connects, sends
//    templates, and after the collector restarts reconnects and re-sends them.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "ipfix/decoder.h"
#include "support/agent_runner.h"
#include "support/netns.h"
#include "support/ports.h"
#include "support/process.h"

using namespace fstest;
using namespace std::chrono_literals;

namespace {

// One client connection to a fresh fs_peer server: 10000 bytes up, 500 down.
void make_traffic(const std::string& addr, uint16_t port, uint64_t up = 10000, uint64_t down = 500) {
  Process server({FS_PEER_BIN, "server", "--addr", addr, "--port", std::to_string(port), "--send", std::to_string(down)});
  ASSERT_TRUE(server.wait_for("listening", 5s, false)) << server.err();
  Process client({FS_PEER_BIN, "client", "--addr", addr, "--port", std::to_string(port), "--send", std::to_string(up)});
  ASSERT_EQ(client.wait(10s), 0) << client.err();
  ASSERT_EQ(server.wait(10s), 0) << server.err();
}

std::vector<Json> final_flows(const AgentRunner& agent, size_t n, uint16_t port) {
  auto pred = [&](const Json& f) {
    return f["record"] == "final" && (f["local_port"] == port || f["remote_port"] == port);
  };
  auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<Json> hits;
  while (std::chrono::steady_clock::now() < deadline) {
    hits = agent.wait_flows(pred, 1s);
    if (hits.size() >= n) break;
  }
  return hits;
}

uint64_t parse_tshark_time_ms(const std::string& s) {
  // "Nov 25, 2026 12:27:45.718000000 UTC"
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%b %d, %Y %H:%M:%S", &tm);
  uint64_t ms = uint64_t(timegm(&tm)) * 1000;
  if (rest && *rest == '.') ms += std::strtoull(std::string(rest + 1, 3).c_str(), nullptr, 10);
  return ms;
}

void collect_cflow(const Json& j, std::vector<Json>& out) {
  if (j.is_object()) {
    if (j.contains("cflow.srcport")) {
      out.push_back(j);
      return;
    }
    for (const auto& [k, v] : j.items()) collect_cflow(v, out);
  } else if (j.is_array()) {
    for (const auto& v : j) collect_cflow(v, out);
  }
}

std::string str(const Json& v) { return v.is_array() ? v[0].get<std::string>() : v.get<std::string>(); }
std::string nth(const Json& v, size_t i) {
  if (!v.is_array()) return i == 0 ? v.get<std::string>() : "";
  return i < v.size() ? v[i].get<std::string>() : "";
}

}  // namespace

TEST(IpfixExport, TsharkDecodesTheAgentsRecords) {
  const uint16_t ipfix_port = free_loopback_port(SOCK_DGRAM);
  const uint16_t port = free_loopback_port(SOCK_STREAM);
  const std::string pcap = "/tmp/fstest-ipfix-" + std::to_string(getpid()) + ".pcap";
  Process tshark({"tshark", "-i", "lo", "-f", "udp port " + std::to_string(ipfix_port), "-w", pcap});
  ASSERT_TRUE(tshark.wait_for("Capturing on", 30s)) << tshark.err();

  AgentRunner agent({"--ipfix", "udp://127.0.0.1:" + std::to_string(ipfix_port), "--port", std::to_string(port)});
  make_traffic("127.0.0.1", port);
  make_traffic("::1", port, 3000, 70000);
  auto flows = final_flows(agent, 4, port);
  ASSERT_EQ(flows.size(), 4u) << agent.process().out();
  EXPECT_EQ(agent.stop(), 0) << agent.process().err();
  std::this_thread::sleep_for(1s);  // let tshark write the last packets
  tshark.signal(SIGINT);
  tshark.wait(20s);

  auto text = sh_out("TZ=UTC tshark -r " + pcap + " -d udp.port==" + std::to_string(ipfix_port) +
                     ",cflow -T json --no-duplicate-keys 2>/dev/null");
  std::filesystem::remove(pcap);
  std::vector<Json> records;
  collect_cflow(Json::parse(text), records);
  ASSERT_GE(records.size(), 4u) << text.substr(0, 4000);

  for (const auto& f : flows) {
    SCOPED_TRACE(f.dump());
    const bool v6 = f["family"] == 6;
    int matched = 0;
    for (const auto& r : records) {
      const std::string src = str(r.value(v6 ? "cflow.srcaddrv6" : "cflow.srcaddr", Json("")));
      const std::string dst = str(r.value(v6 ? "cflow.dstaddrv6" : "cflow.dstaddr", Json("")));
      if (src != f["local_addr"] || dst != f["remote_addr"] || str(r["cflow.srcport"]) != std::to_string(int(f["local_port"])) ||
          str(r["cflow.dstport"]) != std::to_string(int(f["remote_port"])))
        continue;
      if (str(r.value("cflow.flow_end_reason", Json(""))) != "3") continue;  // the final record
      matched++;
      EXPECT_EQ(str(r["cflow.protocol"]), "6");
      // octetTotalCount then RFC 5103 reverseOctetTotalCount.
      EXPECT_EQ(nth(r["cflow.permanent_octets"], 0), std::to_string(uint64_t(f["bytes_sent"])));
      EXPECT_EQ(nth(r["cflow.permanent_octets"], 1), std::to_string(uint64_t(f["bytes_received"])));
      EXPECT_EQ(nth(r["cflow.permanent_packets"], 0), std::to_string(uint64_t(f["segs_sent"])));
      EXPECT_EQ(nth(r["cflow.permanent_packets"], 1), std::to_string(uint64_t(f["segs_received"])));
      EXPECT_EQ(str(r["cflow.direction"]), f["direction"] == "outbound" ? "1" : "0");
      const auto& t = r["cflow.timedelta_tree"];
      EXPECT_EQ(parse_tshark_time_ms(str(t["cflow.abstimestart"])), uint64_t(f["start_ns"]) / 1'000'000);
      EXPECT_EQ(parse_tshark_time_ms(str(t["cflow.abstimeend"])), uint64_t(f["end_ns"]) / 1'000'000);
    }
    EXPECT_EQ(matched, 1);
  }
  EXPECT_EQ(text.find("no template found"), std::string::npos);
  EXPECT_EQ(text.find("_ws.malformed"), std::string::npos);
}

TEST(IpfixExport, NfdumpStoresTheAgentsFlows) {
  const uint16_t ipfix_port = free_loopback_port(SOCK_DGRAM);
  const uint16_t port = free_loopback_port(SOCK_STREAM);
  const std::string dir = "/tmp/fstest-nfcapd-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Process nfcapd({"nfcapd", "-w", dir, "-p", std::to_string(ipfix_port), "-b", "127.0.0.1"});
  ASSERT_TRUE(nfcapd.wait_for("Startup", 10s) || nfcapd.wait_for("Startup", 1s, false)) << nfcapd.err();

  AgentRunner agent({"--ipfix", "udp://127.0.0.1:" + std::to_string(ipfix_port), "--port", std::to_string(port),
                     "--ipfix-domain", "7"});
  make_traffic("127.0.0.1", port, 12345, 678);
  make_traffic("::1", port, 4000, 50000);
  auto flows = final_flows(agent, 4, port);
  ASSERT_EQ(flows.size(), 4u);
  EXPECT_EQ(agent.stop(), 0);
  std::this_thread::sleep_for(500ms);
  nfcapd.signal(SIGTERM);
  nfcapd.wait(20s);

  // nfdump -o raw: one block per flow, "key = value" lines.
  auto text = sh_out("nfdump -R " + dir + " -o raw 2>&1");
  std::filesystem::remove_all(dir);
  std::vector<std::map<std::string, std::string>> recs;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Flow Record")) recs.emplace_back();
    auto eq = line.find(" = ");
    if (eq == std::string::npos || recs.empty()) continue;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(' '));
      s.erase(s.find_last_not_of(' ') + 1);
      return s;
    };
    recs.back()[trim(line.substr(0, eq))] = trim(line.substr(eq + 3));
  }
  ASSERT_GE(recs.size(), 4u) << text;
  for (const auto& f : flows) {
    SCOPED_TRACE(f.dump());
    int matched = 0;
    for (auto& r : recs) {
      if (r["src addr"] != f["local_addr"] || r["dst addr"] != f["remote_addr"] ||
          r["src port"] != std::to_string(int(f["local_port"])) || r["dst port"] != std::to_string(int(f["remote_port"])))
        continue;
      matched++;
      auto first_ms = std::strtoull(r["first"].c_str(), nullptr, 10);
      auto last_ms = std::strtoull(r["last"].c_str(), nullptr, 10);
      EXPECT_EQ(first_ms, uint64_t(f["start_ns"]) / 1'000'000);
      EXPECT_EQ(last_ms, uint64_t(f["end_ns"]) / 1'000'000);
      EXPECT_EQ(r["in bytes"], std::to_string(uint64_t(f["bytes_sent"])));
      EXPECT_EQ(r["in packets"], std::to_string(uint64_t(f["segs_sent"])));
      EXPECT_EQ(r["out bytes"], std::to_string(uint64_t(f["bytes_received"])));
      EXPECT_EQ(r["out packets"], std::to_string(uint64_t(f["segs_received"])));
      EXPECT_TRUE(r["proto"].starts_with("6")) << r["proto"];
      EXPECT_EQ(r["export sysid"].empty(), false);
    }
    EXPECT_EQ(matched, 1);
  }
}

namespace {

// A minimal IPFIX-over-TCP collector built on the decoder, restartable.
class TcpCollector {
 public:
  explicit TcpCollector(uint16_t port) : port_(port) {}
  ~TcpCollector() { stop(); }
  void start() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(fd_, 4), 0);
    stop_ = false;
    th_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_ = true;
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    if (th_.joinable()) th_.join();
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  std::vector<flowscope::ipfix::DecodedFlow> flows() {
    std::lock_guard lk(mu_);
    return flows_;
  }
  int sessions() { return sessions_; }
  uint64_t malformed() {
    std::lock_guard lk(mu_);
    return dec_.counters().messages_malformed;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) != 1) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      sessions_++;
      flowscope::ipfix::StreamFramer fr;
      const std::string key = "tcp-" + std::to_string(sessions_);
      std::vector<uint8_t> buf(65536);
      while (!stop_) {
        pollfd q{c, POLLIN, 0};
        if (poll(&q, 1, 100) != 1) continue;
        ssize_t n = read(c, buf.data(), buf.size());
        if (n <= 0) break;
        fr.append(std::span(buf.data(), size_t(n)));
        for (auto m = fr.next(); !m.empty(); m = fr.next()) {
          std::lock_guard lk(mu_);
          auto r = dec_.feed(key, flowscope::ipfix::Transport::Tcp, m);
          for (auto& f : r.flows) flows_.push_back(std::move(f));
        }
      }
      {
        std::lock_guard lk(mu_);
        dec_.close_session(key);
      }
      close(c);
    }
  }
  uint16_t port_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_{0};
  std::thread th_;
  std::mutex mu_;
  flowscope::ipfix::Decoder dec_;
  std::vector<flowscope::ipfix::DecodedFlow> flows_;
};

bool has_flow(const std::vector<flowscope::ipfix::DecodedFlow>& got, const Json& f) {
  for (const auto& d : got) {
    const auto& r = d.record;
    if (flowscope::ip16_to_string(r.src_ip) == f["local_addr"] && r.src_port == f["local_port"] &&
        r.dst_port == f["remote_port"] && !r.interim && r.bytes == f["bytes_sent"] &&
        r.rev_bytes == f["bytes_received"] && r.start_ns / 1'000'000 == uint64_t(f["start_ns"]) / 1'000'000 &&
        r.pid.value_or(0) == f["pid"] && r.comm.value_or("") == f["comm"] && r.srtt_us.value_or(0) == f["srtt_us"] &&
        d.flowscope)
      return true;
  }
  return false;
}

}  // namespace

TEST(IpfixExport, TcpWaitsForTheCollectorAndReconnects) {
  const uint16_t ipfix_port = free_loopback_port(SOCK_STREAM);
  const uint16_t port = free_loopback_port(SOCK_STREAM);
  TcpCollector col(ipfix_port);
  // The collector is not there yet: the agent starts anyway and queues.
  AgentRunner agent({"--ipfix", "tcp://127.0.0.1:" + std::to_string(ipfix_port), "--port", std::to_string(port),
                     "--stats", "0.5"});
  make_traffic("127.0.0.1", port);
  auto first = final_flows(agent, 2, port);
  ASSERT_EQ(first.size(), 2u);
  col.start();
  auto wait_for = [&](const std::vector<Json>& want) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      auto got = col.flows();
      bool all = true;
      for (const auto& f : want) all = all && has_flow(got, f);
      if (all) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(100ms);
    }
  };
  EXPECT_TRUE(wait_for(first));
  EXPECT_EQ(col.sessions(), 1);

  // Collector restart: the agent notices on its next send, reconnects,
  // re-sends templates (a new session knows none), and delivers new flows.
  col.stop();
  make_traffic("127.0.0.1", port, 777, 888);
  std::this_thread::sleep_for(1s);
  col.start();
  make_traffic("127.0.0.1", port, 999, 111);
  std::vector<Json> later;
  for (const auto& f : final_flows(agent, 6, port))
    if (f["bytes_sent"] == 999 || f["bytes_received"] == 999) later.push_back(f);
  ASSERT_EQ(later.size(), 2u);
  EXPECT_TRUE(wait_for(later));
  EXPECT_GE(col.sessions(), 2);
  EXPECT_EQ(col.malformed(), 0u);
  EXPECT_EQ(agent.stop(), 0);
  auto stats = agent.stats();
  ASSERT_FALSE(stats.empty());
  const auto& ip = stats.back()["ipfix"][0];
  EXPECT_GE(int(ip["connects"]), 2);
  EXPECT_GE(int(ip["connect_failures"]), 1);
  EXPECT_GE(int(ip["template_sends"]), 2);
  // Nothing lost, nothing duplicated: every final record of the test's six
  // connections arrived exactly once (the restart window's too), and the
  // agent counted no drops.
  const auto got = col.flows();
  auto all = final_flows(agent, 6, port);
  ASSERT_EQ(all.size(), 6u);
  for (const auto& f : all) {
    int n = 0;
    for (const auto& d : got)
      if (!d.record.interim && d.record.src_port == f["local_port"] && d.record.dst_port == f["remote_port"] &&
          d.record.bytes == f["bytes_sent"])
        n++;
    EXPECT_EQ(n, 1) << f.dump();
  }
  EXPECT_EQ(int(ip["dropped_queue_full"]) + int(ip["dropped_send_failed"]) + int(ip["dropped_at_exit"]), 0);
}
