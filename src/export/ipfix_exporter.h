// IPFIX export of flow records (RFC 7011) over UDP or TCP: a FlowSink that
// never blocks capture.
//
// write() only copies the record into a bounded queue per destination; a
// sender thread per destination encodes and sends. When the queue is full the
// record is dropped and counted, and the encoder's sequence number still
// advances for it, so the collector sees the loss (RFC 7011 §10.2.2).
//   UDP: templates at start, every template_refresh, and after send errors
//        (a restarted collector learns them again quickly).
//   TCP: templates once per connection; on a failed connect or send the
//        connection is closed and retried with exponential back-off (0.5 s
//        up to max_backoff); records wait in the queue meanwhile.
//        Delivery (docs/ipfix.md): the exporter announces a random instance
//        number; a flowscope collector acknowledges what it has stored. Sent
//        messages stay in a replay window (replay_window records) until
//        acknowledged and are sent again, with their original sequence
//        numbers, after any reconnect; the collector drops what it already
//        has. What leaves the window unconfirmed is counted (window_evicted,
//        unconfirmed), never lost silently.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "ipfix/ie.h"
#include "base/result.h"

namespace flowscope {

struct IpfixDestination {
  bool tcp = false;
  std::string host;
  uint16_t port = 0;
  std::string url;  // as given, for messages and stats
};

// "udp://HOST:PORT" or "tcp://HOST:PORT"; HOST may be a name, an IPv4
// address or a bracketed IPv6 address ("udp://[::1]:4739").
Result<IpfixDestination> parse_ipfix_url(const std::string& url);

struct IpfixExportOptions {
  uint32_t domain = 0;                          // observation domain id
  uint32_t pen = ipfix::kDefaultPen;            // enterprise number of flowscope's elements
  std::chrono::milliseconds template_refresh{60'000};  // UDP
  size_t queue_records = 16384;                 // per destination
  size_t udp_max_message = 1400;                // octets; TCP messages go up to 65535
  std::chrono::milliseconds max_backoff{30'000};
  std::chrono::milliseconds io_timeout{2000};   // TCP connect and send
  size_t replay_window = 65536;                 // TCP: records kept until acknowledged
  uint64_t instance = 0;                        // 0: drawn at random by create()
};

struct IpfixDestinationStats {
  std::string url;
  bool connected = false;
  uint64_t queued = 0;
  uint64_t records_sent = 0;
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t template_sends = 0;
  uint64_t dropped_queue_full = 0;   // the queue was full (collector slow or away)
  uint64_t dropped_send_failed = 0;  // in a message that could not be sent
  uint64_t dropped_at_exit = 0;      // still queued when the agent stopped
  uint64_t send_errors = 0;
  uint64_t connects = 0;             // TCP connections made
  uint64_t connect_failures = 0;
  // TCP delivery.
  bool acknowledged = false;         // the collector acknowledges what it stored
  uint64_t records_acked = 0;        // confirmed stored
  uint64_t records_replayed = 0;     // written again after a reconnect
  uint64_t window_records = 0;       // sent or waiting, not yet confirmed
  uint64_t window_evicted = 0;       // left the full window unconfirmed: may be lost
  uint64_t unconfirmed = 0;          // written, never confirmed (reconnect without acks, exit)
  uint64_t ack_errors = 0;           // bytes from the collector that were no acknowledgement
};

class IpfixExporter : public FlowSink {
 public:
  static Result<std::shared_ptr<IpfixExporter>> create(const std::vector<std::string>& urls,
                                                       const IpfixExportOptions& opts);
  ~IpfixExporter() override;

  void write(const Flow& r) override;
  // Claims (template 260) share the flows' queue, sequence numbers and
  // delivery: a claim is one more data record.
  void write_claim(const OwnershipClaim& c) override;
  void flush() override;
  std::string stats_fields() const override;
  // Sends what is queued (waiting at most `timeout`), then stops the senders.
  void close(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  std::vector<IpfixDestinationStats> stats() const;

  class Destination;

 private:
  IpfixExporter() = default;
  std::vector<std::unique_ptr<Destination>> dests_;
};

}  // namespace flowscope
