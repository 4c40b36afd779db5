// The IPFIX UDP input: one thread moves datagrams from the socket to the
// ingest queue, and does nothing else, so a burst lands in the queue
// instead of overflowing the socket buffer. A full queue drops the datagram
// and counts it. Senders outside the allow-list are counted and dropped
// before anything is parsed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "collector/ingest_events.h"
#include "collector/input_socket.h"

namespace flowscope {

struct UdpInputOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 4739;            // 0: any free port
  std::vector<Cidr> allow;         // empty: any
  int rcvbuf = 32 << 20;           // requested SO_RCVBUF (root may exceed rmem_max)
};

struct UdpInputStats {
  uint64_t datagrams = 0;
  uint64_t bytes = 0;
  uint64_t queue_drops = 0;  // the ingest queue was full
  uint64_t errors = 0;       // recvmmsg failures
  uint64_t rejected = 0;     // senders outside the allow-list
};

class UdpInput {
 public:
  static Result<std::unique_ptr<UdpInput>> start(const UdpInputOptions& opts, IngestQueue& queue);
  ~UdpInput();  // stop()
  UdpInput(const UdpInput&) = delete;
  UdpInput& operator=(const UdpInput&) = delete;

  // Stops reading and joins the thread (idempotent).
  void stop();
  uint16_t port() const { return port_; }
  int rcvbuf() const { return rcvbuf_; }  // what the kernel granted
  UdpInputStats stats() const;

 private:
  UdpInput(IngestQueue& q, std::vector<Cidr> allow) : q_(q), allow_(std::move(allow)) {}
  void loop();

  IngestQueue& q_;
  const std::vector<Cidr> allow_;
  Fd fd_;
  Waker waker_;
  uint16_t port_ = 0;
  int rcvbuf_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> datagrams_{0}, bytes_{0}, queue_drops_{0}, errors_{0}, rejected_{0};
  std::thread thread_;
};

}  // namespace flowscope
