// What the IPFIX inputs hand the decode stage, and the bounded queue between
// them. Each event kind means one thing.
//
//   UdpInput ─┐ MessageEvent                       ┌─▶ DecodeStage
//   TcpInput ─┴ MessageEvent, SessionOpened,  ──▶ IngestQueue
//               SessionClosed, ConnectionRefused
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "ipfix/decoder.h"

namespace flowscope {

// A transport session as the decoder knows it. Templates and sequence
// numbers are kept per session; budgets per exporter address.
struct Session {
  ipfix::Transport transport = ipfix::Transport::Udp;
  std::string key;       // "udp:ADDR:PORT" or "tcp:ADDR:PORT#N"
  std::string exporter;  // the exporter's address (text)
};
using SessionRef = std::shared_ptr<const Session>;

// One IPFIX or NetFlow v9 message: a datagram, or one cut from a TCP stream.
struct MessageEvent {
  SessionRef session;
  std::vector<uint8_t> bytes;
};

// A TCP connection was accepted.
struct SessionOpened {
  SessionRef session;
};

// Why a TCP connection ended.
enum class CloseCause : uint8_t {
  PeerClosed,      // EOF or reset from the exporter
  FramingError,    // a header that cannot be IPFIX: the stream cannot be re-synchronised
  IdleTimeout,     // nothing received for the idle timeout
  MessageTimeout,  // a message started but did not complete in time (slow sender)
  Evicted,         // closed to make room for a new connection at a limit
  Shutdown,        // the collector stopped
};
const char* to_string(CloseCause c);

// A TCP connection ended; its templates go with it.
struct SessionClosed {
  SessionRef session;
  CloseCause cause = CloseCause::PeerClosed;
};

// Why a TCP connection was refused (closed at once, before reading).
enum class RefuseCause : uint8_t { SourceLimit, GlobalLimit };
const char* to_string(RefuseCause c);

// A TCP connection was refused at a limit (closed before anything was read).
struct ConnectionRefused {
  std::string exporter;
  RefuseCause cause = RefuseCause::GlobalLimit;
};

using IngestEvent = std::variant<MessageEvent, SessionOpened, SessionClosed, ConnectionRefused>;

struct IngestQueueOptions {
  size_t max_messages = 131'072;
  size_t max_bytes = 128u << 20;
  // Waiting producers (TCP) stop at this many bytes: buffering more of a
  // stream that can wait only costs memory; the rest is for UDP, which cannot.
  size_t max_bytes_waiting = 8u << 20;
};

// Bounded, many producers, one consumer. Message bytes count against the
// byte bounds; the other events are small and count as messages.
class IngestQueue {
 public:
  explicit IngestQueue(IngestQueueOptions o) : o_(o) {}

  // Without waiting (UDP): false when full; the caller counts the drop.
  bool try_push(IngestEvent e);
  // Waits for room (TCP: its exporter then waits too, in TCP's flow
  // control); false only once the queue is closed.
  bool push_wait(IngestEvent e);
  // The consumer: waits up to `timeout` for events and takes them all.
  // False when the queue is closed and empty: nothing more will come.
  bool pop_all(std::deque<IngestEvent>& out, std::chrono::milliseconds timeout);
  // No more producers: the consumer drains what is queued and finishes.
  void close();

  // Datagram buffers the consumer is done with, for the UDP input to fill
  // again (kept up to kSpareBytes).
  void recycle(std::vector<uint8_t>&& buf);
  void take_spares(std::vector<std::vector<uint8_t>>& into, size_t want);

  size_t depth() const;
  size_t high_water() const;

 private:
  bool full(size_t adding, size_t max_bytes) const;
  bool push(IngestEvent&& e, bool wait);

  static constexpr size_t kSpareBytes = 8u << 20;
  const IngestQueueOptions o_;
  mutable std::mutex mu_;
  std::condition_variable cv_, space_cv_;
  std::deque<IngestEvent> q_;
  size_t bytes_ = 0;
  size_t high_water_ = 0;
  bool closed_ = false;
  std::vector<std::vector<uint8_t>> spares_;
  size_t spare_bytes_ = 0;
};

}  // namespace flowscope
