// The IPFIX TCP input: one thread accepts exporters' connections and cuts
// each byte stream into messages (by the header's length) for the ingest
// queue. When the queue is full it waits, so TCP's own flow control slows the
// exporters instead of losing data.
//
// No exporter can hold the input hostage:
//   - a connection that sends nothing for idle_timeout is closed;
//   - a message must complete within message_timeout of its first byte
//     (a slow sender, or a header announcing 65,535 bytes that never come);
//   - at most max_connections_per_source per exporter address and
//     max_connections in all. At a limit, the connection that has gone
//     longest without completing a message is closed to make room (if that
//     is at least evict_after ago); otherwise the new connection is refused
//     at once: reset before anything is read, so its exporter sees it
//     immediately. A connection is never accepted, read and dropped.
// Every close says why (SessionClosed), every refusal is an event too.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "collector/ingest_events.h"
#include "collector/input_socket.h"

namespace flowscope {

struct TcpInputOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 4739;  // 0: any free port
  std::vector<Cidr> allow;
  size_t max_connections = 256;
  size_t max_connections_per_source = 16;
  std::chrono::milliseconds idle_timeout{300'000};
  std::chrono::milliseconds message_timeout{10'000};
  std::chrono::milliseconds evict_after{1'000};
};

struct TcpInputStats {
  uint64_t accepted = 0;
  uint64_t open = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t rejected = 0;              // outside the allow-list
  uint64_t refused_source_limit = 0;  // reset at once: the exporter's own limit
  uint64_t refused_global_limit = 0;  // reset at once: the global limit
  uint64_t evicted = 0;               // closed to make room for a new connection
  uint64_t idle_timeouts = 0;
  uint64_t message_timeouts = 0;
  uint64_t framing_errors = 0;
  uint64_t partial_bytes_dropped = 0;  // of a message cut off by a close
  uint64_t acks = 0;                   // delivery acknowledgements written
  uint64_t acks_skipped = 0;           // connection gone or its buffer full (a later one covers it)
};

class TcpInput {
 public:
  static Result<std::unique_ptr<TcpInput>> start(const TcpInputOptions& opts, IngestQueue& queue);
  ~TcpInput();  // stop()
  TcpInput(const TcpInput&) = delete;
  TcpInput& operator=(const TcpInput&) = delete;

  // Stops accepting; what exporters already sent (it is in the receive
  // buffers, and they count it as delivered) is read and queued, then the
  // connections close. Idempotent.
  void stop();
  uint16_t port() const { return port_; }
  // Writes a delivery acknowledgement (docs/ipfix.md) on the session's
  // connection if it is still open; from any thread. Never blocks: when the
  // exporter does not read them and its buffer is full, it is skipped.
  void post_ack(const std::string& session, uint32_t domain, uint64_t next_seq);
  TcpInputStats stats() const;

  struct Conn;

 private:
  TcpInput(IngestQueue& q, const TcpInputOptions& o) : q_(q), o_(o) {}
  void loop();
  void write_acks(const std::map<std::string, Conn*>& by_session);

  IngestQueue& q_;
  const TcpInputOptions o_;
  Fd listen_fd_, epoll_fd_;
  Waker waker_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  struct Counters {
    std::atomic<uint64_t> accepted{0}, open{0}, messages{0}, bytes{0}, rejected{0}, refused_source{0},
        refused_global{0}, evicted{0}, idle_timeouts{0}, message_timeouts{0}, framing_errors{0}, partial_bytes{0};
  };
  Counters n_;
  std::atomic<uint64_t> acks_{0}, acks_skipped_{0};
  struct Ack {
    std::string session;
    uint32_t domain;
    uint64_t next_seq;
  };
  std::mutex ack_mu_;
  std::vector<Ack> acks_pending_;
  std::thread thread_;
};

}  // namespace flowscope
