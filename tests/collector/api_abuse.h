// HTTP API abuse shared by the in-process API tests and the root tests
// against a real collector process: raw connections that send what an HTTP
// client library would not, and the slow-clients-plus-heavy-queries load
// during which /healthz must stay fast.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace flowscope {
class FlowStore;
}

namespace fstest {

// A raw TCP connection to 127.0.0.1:port.
class RawConn {
 public:
  // `rcvbuf`: a small receive buffer (set before connect, so the window
  // stays small) for a client that reads slowly or not at all.
  explicit RawConn(uint16_t port, int rcvbuf = 0);
  ~RawConn();
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;
  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  bool send_all(std::string_view s);
  // Reads until the peer closes or `timeout`; returns what arrived.
  std::string read_until_close(std::chrono::milliseconds timeout);
  // True once the peer has closed (EOF or reset), without blocking.
  bool closed_by_peer();

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Status and latency (seconds) of one /healthz on a new connection (status 0: failed).
std::pair<int, double> healthz(uint16_t port);

// What happened while `slow` clients sent their request head at one byte a
// second and 8 heavy queries ran, with /healthz polled throughout.
struct AbuseOutcome {
  int polls = 0;               // /healthz requests made
  int bad = 0;                 // of them, not answered 200
  double worst_s = 0;          // slowest /healthz
  int cut_off = 0;             // slow clients the server closed
  double held_s = 0;           // how long the abuse lasted
  std::map<int, int> heavy;    // heavy query status -> count (0: no answer, -1: error without a reason)
  std::string summary() const;
};

// Runs until every heavy query is answered and every slow client was cut
// off at the server's header deadline, or `bound` passes.
AbuseOutcome slow_clients_and_heavy_queries(uint16_t port, int slow, std::chrono::seconds bound = std::chrono::seconds(30));

// The heavy query: a GROUP BY over every address pair.
inline constexpr const char* kHeavyQuery = "/api/top?group=pair&by=bytes&limit=1000";

// Fills `store` with `rows` flows over the last half hour from exporter
// "seed", each its own address pair with a long cgroup path, so a GROUP BY
// over the pairs is really heavy and a page of flows is several MB.
// Returns an error message, or "" on success.
std::string seed_heavy_rows(flowscope::FlowStore& store, int rows);

}  // namespace fstest
