#include "api_abuse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "net/cidr.h"
#include "storage/flow_store.h"

namespace fstest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

RawConn::RawConn(uint16_t port, int rcvbuf) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (rcvbuf) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

RawConn::~RawConn() {
  if (fd_ >= 0) close(fd_);
}

bool RawConn::send_all(std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string RawConn::read_until_close(std::chrono::milliseconds timeout) {
  std::string out;
  const auto end = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool RawConn::closed_by_peer() {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  char c;
  const ssize_t n = recv(fd_, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

std::pair<int, double> healthz(uint16_t port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5);
  c.set_read_timeout(5);
  const auto t0 = Clock::now();
  auto r = c.Get("/healthz");
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return {r ? r->status : 0, s};
}

std::string AbuseOutcome::summary() const {
  std::string s = fmt::format("{} /healthz polls over {:.1f} s, {} not 200, slowest {:.1f} ms; {} slow clients cut off; "
                              "heavy query statuses:",
                              polls, held_s, bad, worst_s * 1000, cut_off);
  for (auto [st, n] : heavy) s += fmt::format(" {} x{}", st, n);
  return s;
}

AbuseOutcome slow_clients_and_heavy_queries(uint16_t port, int slow, std::chrono::seconds bound) {
  AbuseOutcome out;
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int k = 0; k < slow; ++k) conns.push_back(std::make_unique<RawConn>(port));
  const std::string head = "GET /api/flows HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + std::string(200, 'a');
  std::atomic<bool> stop{false};
  std::atomic<int> cut_off{0};
  const auto t0 = Clock::now();
  std::thread dripper([&] {
    std::vector<bool> done(conns.size(), false);
    for (size_t pos = 0; !stop && pos < head.size(); ++pos) {
      for (size_t k = 0; k < conns.size(); ++k) {
        if (done[k]) continue;
        if (!conns[k]->connected() || conns[k]->closed_by_peer() || !conns[k]->send_all(head.substr(pos, 1))) {
          done[k] = true;
          ++cut_off;
        }
      }
      for (int w = 0; w < 10 && !stop; ++w) std::this_thread::sleep_for(100ms);  // the client's pace: 1 byte/s
    }
  });
  std::vector<std::future<int>> heavy;
  for (int k = 0; k < 8; ++k)
    heavy.push_back(std::async(std::launch::async, [port] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(60);
      auto r = c.Get(kHeavyQuery);
      if (!r) return 0;
      if (r->status != 200 && nlohmann::json::parse(r->body, nullptr, false).value("error", "").empty()) return -1;
      return r->status;
    }));
  const auto deadline = t0 + bound;
  auto all_answered = [&] {
    return std::all_of(heavy.begin(), heavy.end(), [](auto& f) { return f.wait_for(0s) == std::future_status::ready; });
  };
  while (Clock::now() < deadline && !(all_answered() && cut_off == slow)) {
    auto [status, s] = healthz(port);
    ++out.polls;
    if (status != 200) ++out.bad;
    out.worst_s = std::max(out.worst_s, s);
    std::this_thread::sleep_for(20ms);  // poll pace, not a wait for an event
  }
  stop = true;
  dripper.join();
  for (auto& f : heavy) out.heavy[f.get()]++;
  out.cut_off = cut_off.load();
  out.held_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

std::string seed_heavy_rows(flowscope::FlowStore& store, int rows) {
  using namespace flowscope;
  constexpr uint64_t kSec = 1'000'000'000ull;
  const uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::vector<FlowRow> batch;
  for (int i = 0; i < rows; ++i) {
    FlowRow r;
    r.exporter = "seed";
    r.start_ns = now - 1800 * kSec + static_cast<uint64_t>(i) * 1000;
    r.end_ns = r.start_ns + kSec;
    r.src_ip = *parse_ip(fmt::format("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255));
    r.dst_ip = *parse_ip(fmt::format("10.200.{}.{}", (i >> 8) & 15, i & 255));
    r.src_port = static_cast<uint16_t>(1024 + i % 60000);
    r.dst_port = 443;
    r.bytes = 100 + static_cast<uint64_t>(i % 1000);
    r.close = CloseReason::Fin;
    r.cgroup = fmt::format("/system.slice/app-{}.scope/{}", i % 97, std::string(400, 'c'));
    batch.push_back(std::move(r));
    if (batch.size() == 10'000 || i + 1 == rows) {
      if (auto ok = store.insert(batch); !ok) return ok.error().message;
      batch.clear();
    }
  }
  return "";
}

}  // namespace fstest
