// The collector's inputs on loopback, no root: a hostile sender on
// 127.0.0.2 and legitimate exporters (flowscope's own IPFIX exporter, over
// UDP and TCP) on 127.0.0.1 at the same time. Whatever the hostile sender
// does — 10^5 sessions, 10^6 templates, idle, stalled and slow TCP
// connections at the limit — every legitimate record is stored exactly once.
// Everything waits on a condition with a deadline, never on a fixed sleep.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "collector/collector.h"
#include "export/ipfix_exporter.h"
#include "hostile_ipfix.h"
#include "kernel/handles.h"

using namespace flowscope;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Keeps what reaches the store: how often each (exporter, domain, port) came.
class RecordingStore : public FlowStore {
 public:
  Result<void> insert(std::vector<FlowRow>& rows) override {
    std::lock_guard lk(mu_);
    for (auto& r : rows) {
      seen_[{r.exporter, r.domain, r.src_port}]++;
      if (!arrived_.contains({r.domain, r.src_port})) arrived_[{r.domain, r.src_port}] = Clock::now();
    }
    return {};
  }
  Result<FlowPage> query(const FlowQuery&) override { return FlowPage{}; }
  Result<std::vector<TopEntry>> top(const TopQuery&) override { return std::vector<TopEntry>{}; }
  Result<std::vector<SeriesPoint>> series(const SeriesQuery&) override { return std::vector<SeriesPoint>{}; }
  Result<uint64_t> expire(uint64_t) override { return uint64_t{0}; }
  StoreStats stats() override { return {}; }

  size_t rows(const std::string& exporter, uint32_t domain) {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (auto& [k, c] : seen_)
      if (std::get<0>(k) == exporter && std::get<1>(k) == domain) n += size_t(c);
    return n;
  }
  // Ports 1..n each stored exactly once for this exporter and domain.
  ::testing::AssertionResult exactly_once(const std::string& exporter, uint32_t domain, uint16_t n) {
    std::lock_guard lk(mu_);
    for (uint16_t p = 1; p <= n; p++) {
      auto it = seen_.find({exporter, domain, p});
      const int c = it == seen_.end() ? 0 : it->second;
      if (c != 1) return ::testing::AssertionFailure() << "domain " << domain << " port " << p << " stored " << c << " times";
    }
    return ::testing::AssertionSuccess();
  }
  std::optional<Clock::time_point> arrived(uint32_t domain, uint16_t port) {
    std::lock_guard lk(mu_);
    auto it = arrived_.find({domain, port});
    if (it == arrived_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::tuple<std::string, uint32_t, uint16_t>, int> seen_;
  std::map<std::pair<uint32_t, uint16_t>, Clock::time_point> arrived_;
};

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(500us);  // polling interval of a condition with a deadline
  }
  return cond();
}

struct Rig {
  std::shared_ptr<RecordingStore> store = std::make_shared<RecordingStore>();
  std::shared_ptr<StoreWriter> writer;
  std::unique_ptr<Collector> col;

  explicit Rig(CollectorOptions o = {}) {
    writer = std::make_shared<StoreWriter>(store, StoreWriterOptions{.flush_every = 10ms});
    o.host = "127.0.0.1";
    o.udp_port = 0;
    o.tcp_port = 0;
    auto c = Collector::start(o, writer);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message);
    col = std::move(*c);
  }
  nlohmann::json stats() const { return col->exporters_json(); }
  nlohmann::json exporter(const std::string& addr) const {
    const auto st = stats();
    for (auto& e : st["exporters"])
      if (e["exporter"] == addr) return e;
    return nlohmann::json::object();  // not seen yet: its fields read as null
  }
  uint64_t receiver(const char* name) const { return stats()["receivers"][name].get<uint64_t>(); }
  // Messages the decode stage has taken from this exporter address.
  uint64_t decoded_from(const std::string& addr) const { return exporter(addr).value("messages", uint64_t(0)); }
};

Flow record(uint16_t port) {
  Flow r;
  r.src_ip = *parse_ip("10.9.8.7");
  r.dst_ip = *parse_ip("192.0.2.1");
  r.src_ip = *parse_ip("10.9.8.7");
  r.dst_ip = *parse_ip("192.0.2.1");
  r.src_port = port;
  r.dst_port = 443;
  r.start_ns = 1'764'000'000'000'000'000ull;
  r.end_ns = r.start_ns + 5'000'000;
  r.bytes = 100 + port;
  return r;
}

// flowscope's own exporter, as an agent would run it.
std::shared_ptr<IpfixExporter> exporter(const std::string& url, uint32_t domain) {
  IpfixExportOptions o;
  o.domain = domain;
  o.max_backoff = 500ms;
  auto e = IpfixExporter::create({url}, o);
  EXPECT_TRUE(e.has_value());
  return *e;
}

sockaddr_in loopback(const char* addr, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, addr, &a.sin_addr);
  return a;
}

Fd socket_from(const char* src, int type) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  auto a = loopback(src, 0);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  return fd;
}

Fd tcp_from(const char* src, uint16_t port) {
  Fd fd = socket_from(src, SOCK_STREAM);
  auto a = loopback("127.0.0.1", port);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  return fd;
}

void send_to(const Fd& fd, uint16_t port, const std::vector<uint8_t>& m) {
  auto a = loopback("127.0.0.1", port);
  ASSERT_EQ(::sendto(fd.get(), m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)), ssize_t(m.size()));
}

// True once the collector closed or reset this connection (seen as EOF or
// an error on read), within the deadline.
bool closed_by_peer(const Fd& fd, std::chrono::milliseconds limit = 5s) {
  pollfd p{fd.get(), POLLIN, 0};
  if (::poll(&p, 1, int(limit.count())) != 1) return false;
  char b;
  return ::recv(fd.get(), &b, 1, MSG_DONTWAIT) <= 0;
}

// The header of an IPFIX message that announces `len` octets.
std::vector<uint8_t> ipfix_header(uint16_t len) {
  std::vector<uint8_t> m;
  ipfix::wire::put16(m, 10);
  ipfix::wire::put16(m, len);
  ipfix::wire::put32(m, 1'764'000'000);
  ipfix::wire::put32(m, 0);
  ipfix::wire::put32(m, 0);
  return m;
}

size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}

// A sender that writes legitimate records during a flood, over UDP (domain
// udp_domain) and TCP (udp_domain + 1), and measures how long each took to
// be stored. One made in the middle of a flood starts new sessions then.
struct LegitExporters {
  Rig& rig;
  uint32_t du, dt;
  std::shared_ptr<IpfixExporter> udp, tcp;
  uint16_t sent = 0;
  std::map<uint16_t, Clock::time_point> written;

  LegitExporters(Rig& r, uint32_t udp_domain)
      : rig(r),
        du(udp_domain),
        dt(udp_domain + 1),
        udp(exporter("udp://127.0.0.1:" + std::to_string(r.col->udp_port()), du)),
        tcp(exporter("tcp://127.0.0.1:" + std::to_string(r.col->tcp_port()), dt)) {}

  void write(int n) {
    for (int i = 0; i < n; i++) {
      auto r = record(++sent);
      written[sent] = Clock::now();
      udp->write(r);
      tcp->write(r);
    }
  }
  // Sends what is queued, waits for the store, checks every record is there once.
  void finish_and_check() {
    udp->close(5s);
    tcp->close(5s);
    for (auto& s : udp->stats()) EXPECT_EQ(s.records_sent, sent) << s.url;
    for (auto& s : tcp->stats()) EXPECT_EQ(s.records_sent, sent) << s.url;
    EXPECT_TRUE(wait_for([&] { return rig.store->rows("127.0.0.1", du) >= sent && rig.store->rows("127.0.0.1", dt) >= sent; }))
        << "UDP " << rig.store->rows("127.0.0.1", du) << ", TCP " << rig.store->rows("127.0.0.1", dt) << " of " << sent;
    rig.writer->drain();
    EXPECT_TRUE(rig.store->exactly_once("127.0.0.1", du, sent));
    EXPECT_TRUE(rig.store->exactly_once("127.0.0.1", dt, sent));
  }
  // The longest time from write() to the store, over both transports.
  std::chrono::milliseconds worst_latency() {
    Clock::duration worst{};
    for (auto& [port, at] : written)
      for (uint32_t d : {du, dt})
        if (auto got = rig.store->arrived(d, port)) worst = std::max(worst, *got - at);
    return std::chrono::duration_cast<std::chrono::milliseconds>(worst);
  }
};

// Sends datagrams from 127.0.0.2, never more than a window ahead of what
// the decoder has taken, so the kernel drops none of them (on loopback the
// receive buffer would otherwise overflow) and the flood is what the test
// says it is. The window fits the receive buffer granted (a small datagram
// takes ~1 KiB of it; root gets more than rmem_max).
struct PacedFlood {
  Rig& rig;
  size_t window;
  uint64_t base = 0, sent = 0;
  PacedFlood(Rig& r, size_t datagram_bytes, size_t max_window)
      : rig(r),
        window(std::clamp<size_t>(size_t(r.col->udp_rcvbuf()) / 2 / (datagram_bytes + 1024), 8, max_window)),
        base(r.decoded_from("127.0.0.2")) {}
  void send(const Fd& fd, const std::vector<uint8_t>& m) {
    if (sent % (window / 2) == 0) {
      ASSERT_TRUE(wait_for([&] { return base + sent < rig.decoded_from("127.0.0.2") + window / 2 + 1; }, 20s))
          << "flood stalled at " << sent;
    }
    send_to(fd, rig.col->udp_port(), m);
    sent++;
  }
  void wait_all() {
    ASSERT_TRUE(wait_for([&] { return rig.decoded_from("127.0.0.2") >= base + sent; }, 20s));
  }
};

}  // namespace

// 10^5 sessions (100 source ports x 1,000 observation domains) from one
// address: the collector keeps decoding the legitimate exporters' records.
TEST(CollectorInputs, SessionFloodDoesNotLockOutAnExporter) {
  Rig rig;
  LegitExporters legit(rig, 1);
  std::optional<LegitExporters> late;  // new sessions once the flood has filled the tables
  legit.write(10);
  {
    PacedFlood flood(rig, 28, 512);
    std::vector<Fd> socks;
    for (int i = 0; i < 100; i++) socks.push_back(socket_from("127.0.0.2", SOCK_DGRAM));
    const uint32_t rounds = 1000 / fstest::kFloodScale;
    for (uint32_t d = 0; d < rounds; d++) {
      for (auto& s : socks) flood.send(s, fstest::one_field_templates(d, 256, 1));
      if (d == rounds / 2) late.emplace(rig, 3);
      if (d % 20 == 0) legit.write(10);
      if (late && d % 20 == 0) late->write(10);
    }
    flood.wait_all();
    EXPECT_EQ(rig.receiver("udp_queue_drops"), 0u);
  }
  legit.finish_and_check();
  late->finish_and_check();
  const auto hostile = rig.exporter("127.0.0.2");
  const uint32_t n = 100'000 / fstest::kFloodScale;
  EXPECT_EQ(hostile["messages"], n);
  EXPECT_EQ(hostile["domains_evicted"], n - 256u);
  EXPECT_EQ(hostile["domains"], 256u);
  const auto good = rig.exporter("127.0.0.1");
  EXPECT_EQ(good["domains_evicted"], 0u);
  EXPECT_EQ(good["templates_evicted"], 0u);
  EXPECT_EQ(good["sets_no_template"], 0u);
  const auto worst = legit.worst_latency();
  RecordProperty("legit_worst_latency_ms", std::to_string(worst.count()));
  std::printf("session flood: %u legitimate records per transport, worst write-to-store latency %lld ms\n", legit.sent,
              static_cast<long long>(worst.count()));
}

// 10^6 one-field templates (1,000 datagrams of 1,000) from one address: the
// collector's memory grows by a bounded amount, the legitimate exporters'
// templates are never evicted, and their records are all stored once.
TEST(CollectorInputs, TemplateFloodStaysWithinItsBudget) {
  Rig rig;
  LegitExporters legit(rig, 1);
  std::optional<LegitExporters> late;  // templates defined in the middle of the flood
  legit.write(10);
  ASSERT_TRUE(wait_for([&] { return rig.store->rows("127.0.0.1", 1) == 10 && rig.store->rows("127.0.0.1", 2) == 10; }));
  const size_t rss0 = rss_bytes();
  size_t rss_max = rss0;
  {
    PacedFlood flood(rig, 8020, 16);  // little in flight: the memory measured is the decoder's
    Fd s = socket_from("127.0.0.2", SOCK_DGRAM);
    const uint32_t datagrams = 1000 / fstest::kFloodScale;
    for (uint32_t d = 0; d < datagrams; d++) {
      flood.send(s, fstest::one_field_templates(d, 256, 1000));
      if (d == datagrams / 2) late.emplace(rig, 3);
      if (d % 20 == 0) {
        legit.write(10);
        if (late) late->write(10);
        rss_max = std::max(rss_max, rss_bytes());
      }
    }
    flood.wait_all();
  }
  rss_max = std::max(rss_max, rss_bytes());
  legit.finish_and_check();
  late->finish_and_check();
  const auto st = rig.stats();
  const uint32_t n = 1'000'000 / fstest::kFloodScale;
  EXPECT_EQ(rig.exporter("127.0.0.2")["templates_received"], n);
  EXPECT_GT(rig.exporter("127.0.0.2").value("templates_evicted", uint64_t(0)), n - 10'000u);
  EXPECT_LE(rig.exporter("127.0.0.2").value("template_bytes", UINT64_MAX), st["decoder"]["budgets"]["template_bytes_per_source"].get<uint64_t>());
  EXPECT_EQ(rig.exporter("127.0.0.1")["templates_evicted"], 0u);
  EXPECT_EQ(rig.exporter("127.0.0.1")["sets_no_template"], 0u);
  const size_t grown = rss_max - rss0;
  // The decoder's documented bound is 16 MiB of templates in all; one
  // source gets 1 MiB of it. Unbounded, this flood took ~150 MB.
  if (!fstest::kSanitized) {
    EXPECT_LT(grown, size_t(24) << 20) << "RSS grew by " << grown;
  }
  RecordProperty("rss_growth_bytes", std::to_string(grown));
  std::printf("template flood: RSS grew by %zu KiB at most; worst write-to-store latency %lld ms\n", grown / 1024,
              static_cast<long long>(legit.worst_latency().count()));
}

// Idle connections, connections that announced a 65,535-byte message and
// stalled, and slowloris senders (one byte at a time) hold every slot: a new
// legitimate exporter still gets in (the connection that has gone longest
// without completing a message makes room) and all its records are stored.
TEST(CollectorInputs, IdleAndSlowTcpConnectionsAtTheLimitDoNotLockOutAnExporter) {
  CollectorOptions o;
  o.max_tcp_connections = 8;
  o.max_tcp_connections_per_source = 8;
  o.tcp_evict_after = 0ms;
  Rig rig(o);
  const uint16_t port = rig.col->tcp_port();
  std::vector<Fd> idle, stalled, slow;
  for (int i = 0; i < 3; i++) idle.push_back(tcp_from("127.0.0.2", port));
  for (int i = 0; i < 3; i++) {
    stalled.push_back(tcp_from("127.0.0.2", port));
    auto h = ipfix_header(65535);
    ASSERT_EQ(::send(stalled.back().get(), h.data(), h.size(), 0), ssize_t(h.size()));
  }
  for (int i = 0; i < 2; i++) slow.push_back(tcp_from("127.0.0.2", port));
  std::jthread slowloris([&](std::stop_token st) {
    const auto h = ipfix_header(65535);
    for (size_t at = 0; !st.stop_requested(); at++)
      for (auto& s : slow) {
        pollfd p{s.get(), POLLIN, 0};
        if (::poll(&p, 1, 20) == 0) ::send(s.get(), &h[at % h.size()], 1, MSG_NOSIGNAL);  // paced by the poll
      }
  });
  ASSERT_TRUE(wait_for([&] { return rig.receiver("tcp_open") == 8; }));

  auto tcp = exporter("tcp://127.0.0.1:" + std::to_string(port), 2);
  for (uint16_t p = 1; p <= 500; p++) tcp->write(record(p));
  tcp->close(5s);
  EXPECT_TRUE(wait_for([&] { return rig.store->rows("127.0.0.1", 2) >= 500; }));
  rig.writer->drain();
  EXPECT_TRUE(rig.store->exactly_once("127.0.0.1", 2, 500));
  EXPECT_GE(rig.receiver("tcp_evicted"), 1u);
  EXPECT_EQ(rig.receiver("tcp_refused_limit"), 0u);
  EXPECT_EQ(rig.exporter("127.0.0.1")["tcp_refused"], 0u);
  EXPECT_TRUE(wait_for([&] { return rig.exporter("127.0.0.2").value("tcp_evicted", uint64_t(0)) >= 1u; }));
}

// The timeouts free the slots by themselves: an idle connection after the
// idle timeout, a stalled or slow message after the message deadline. The
// hostile clients see their connections closed; a new exporter then gets in.
TEST(CollectorInputs, TcpTimeoutsCloseIdleStalledAndSlowConnections) {
  CollectorOptions o;
  o.max_tcp_connections = 6;
  o.tcp_idle_timeout = 300ms;
  o.tcp_message_timeout = 300ms;
  o.tcp_evict_after = std::chrono::hours(1);  // no eviction: only the timeouts free slots here
  Rig rig(o);
  const uint16_t port = rig.col->tcp_port();
  std::vector<Fd> idle, stalled, slow;
  for (int i = 0; i < 2; i++) idle.push_back(tcp_from("127.0.0.2", port));
  for (int i = 0; i < 2; i++) {
    stalled.push_back(tcp_from("127.0.0.2", port));
    auto h = ipfix_header(65535);
    ASSERT_EQ(::send(stalled.back().get(), h.data(), h.size(), 0), ssize_t(h.size()));
  }
  for (int i = 0; i < 2; i++) {
    slow.push_back(tcp_from("127.0.0.2", port));
    ASSERT_EQ(::send(slow.back().get(), "\0", 1, 0), 1);  // a message has begun, whenever the thread below runs
  }
  // Then one byte every 20 ms: never idle, never completes a message.
  std::atomic<int> slow_closed{0};
  std::jthread slowloris([&] {
    const auto h = ipfix_header(65535);
    std::vector<bool> done(slow.size());
    for (size_t at = 1; slow_closed.load() < int(slow.size()) && at < 1000; at++)
      for (size_t i = 0; i < slow.size(); i++) {
        if (done[i]) continue;
        pollfd p{slow[i].get(), POLLIN, 0};
        if (::poll(&p, 1, 20) == 0) {
          ::send(slow[i].get(), &h[at % h.size()], 1, MSG_NOSIGNAL);
        } else {
          done[i] = true;
          slow_closed++;
        }
      }
  });
  for (auto& f : idle) EXPECT_TRUE(closed_by_peer(f));
  for (auto& f : stalled) EXPECT_TRUE(closed_by_peer(f));
  slowloris.join();
  EXPECT_EQ(slow_closed.load(), 2);
  EXPECT_TRUE(wait_for([&] { return rig.receiver("tcp_open") == 0; }));
  EXPECT_EQ(rig.receiver("tcp_idle_timeouts"), 2u);
  EXPECT_EQ(rig.receiver("tcp_message_timeouts"), 4u);
  // The decode stage counts per exporter as it takes the close events.
  EXPECT_TRUE(wait_for([&] { return rig.exporter("127.0.0.2")["tcp_message_timeouts"] == 4u; }));
  EXPECT_EQ(rig.exporter("127.0.0.2")["tcp_idle_timeouts"], 2u);

  auto tcp = exporter("tcp://127.0.0.1:" + std::to_string(port), 2);
  for (uint16_t p = 1; p <= 100; p++) tcp->write(record(p));
  tcp->close(5s);
  EXPECT_TRUE(wait_for([&] { return rig.store->rows("127.0.0.1", 2) >= 100; }));
  rig.writer->drain();
  EXPECT_TRUE(rig.store->exactly_once("127.0.0.1", 2, 100));
}

// At a limit with nothing evictable, the new connection is reset at once,
// before anything is read: its exporter learns immediately. The per-source
// limit refuses only that source.
TEST(CollectorInputs, AtTheLimitANewConnectionIsResetAtOnce) {
  CollectorOptions o;
  o.max_tcp_connections = 3;
  o.max_tcp_connections_per_source = 2;
  o.tcp_evict_after = std::chrono::hours(1);
  Rig rig(o);
  const uint16_t port = rig.col->tcp_port();
  Fd a = tcp_from("127.0.0.2", port), b = tcp_from("127.0.0.2", port);
  ASSERT_TRUE(wait_for([&] { return rig.receiver("tcp_open") == 2; }));
  Fd c = tcp_from("127.0.0.2", port);  // over its source's limit
  EXPECT_TRUE(closed_by_peer(c));
  Fd d = tcp_from("127.0.0.1", port);  // another source: room left
  ASSERT_TRUE(wait_for([&] { return rig.receiver("tcp_open") == 3; }));
  Fd e = tcp_from("127.0.0.1", port);  // over the global limit
  EXPECT_TRUE(closed_by_peer(e));
  EXPECT_EQ(rig.receiver("tcp_refused_source_limit"), 1u);
  EXPECT_EQ(rig.receiver("tcp_refused_global_limit"), 1u);
  EXPECT_TRUE(wait_for([&] { return rig.exporter("127.0.0.1")["tcp_refused"] == 1u; }));
  EXPECT_TRUE(wait_for([&] { return rig.exporter("127.0.0.2")["tcp_refused"] == 1u; }));
  // The ones that were accepted are still open.
  for (const Fd* f : {&a, &b, &d}) {
    pollfd p{f->get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0);
  }
}
