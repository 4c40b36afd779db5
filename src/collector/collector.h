// The IPFIX collector: its parts, each with one job, wired together.
//
//   UdpInput (datagrams) ─┐  typed events
//                         ├─▶ IngestQueue ─▶ DecodeStage ─────▶ StoreWriter ─▶ FlowStore
//   TcpInput (framing) ───┘  (bounded)      (ipfix::Decoder)    (rows, batched)
//
// UdpInput only moves datagrams into the queue (a full queue drops and
// counts them); TcpInput cuts streams into messages and waits when the queue
// is full (TCP pushes back), and bounds its connections (timeouts, limits,
// see tcp_input.h); DecodeStage decodes, keeps per-exporter totals and waits
// for room in the store queue, so a backlog is held as raw messages.
// Exporters outside the allow-list are counted and dropped (UDP) or
// disconnected (TCP) before anything is parsed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "collector/metrics.h"
#include "collector/store_writer.h"
#include "ipfix/decoder.h"
#include "base/result.h"
#include "net/cidr.h"

namespace flowscope {

struct CollectorOptions {
  std::string host = "127.0.0.1";  // address the IPFIX listeners bind
  uint16_t udp_port = 4739;        // 0: no UDP listener
  uint16_t tcp_port = 4739;        // 0: no TCP listener
  bool udp = true;
  bool tcp = true;
  std::vector<Cidr> allow;         // exporters allowed; empty: any
  size_t queue_max_messages = 131'072;
  size_t queue_max_bytes = 128u << 20;
  // TCP readers wait once the queue holds this much (their exporters then
  // wait too, in TCP's flow control); the rest is for UDP, which cannot.
  size_t queue_max_bytes_tcp = 8u << 20;
  int udp_rcvbuf = 32 << 20;       // requested SO_RCVBUF (root may exceed rmem_max)
  size_t max_tcp_connections = 256;
  size_t max_tcp_connections_per_source = 16;
  // A TCP connection that sends nothing this long is closed; a message must
  // complete this soon after its first byte; at a connection limit, one that
  // completed no message for evict_after makes room (else the new one is
  // refused at once). See tcp_input.h.
  std::chrono::milliseconds tcp_idle_timeout{300'000};
  std::chrono::milliseconds tcp_message_timeout{10'000};
  std::chrono::milliseconds tcp_evict_after{1'000};
  ipfix::DecoderOptions decoder;
};

class Collector {
 public:
  static Result<std::unique_ptr<Collector>> start(const CollectorOptions& opts, std::shared_ptr<StoreWriter> writer);
  ~Collector();  // stops receivers, decodes what is queued, joins
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  uint16_t udp_port() const;  // the bound ports (useful with port 0)
  uint16_t tcp_port() const;
  int udp_rcvbuf() const;     // SO_RCVBUF the kernel granted

  // Ingest statistics: collector-wide counters and one page of per-exporter
  // entries, those whose address sorts after `after`, at most `limit`
  // ("next_after" names the next page's cursor when there is one).
  nlohmann::json exporters_json(const std::string& after = {}, size_t limit = 100) const;
  // Adds the collector's families to a metrics scrape.
  void collect_metrics(FamilyBuilder& b) const;

  struct Impl;

 private:
  explicit Collector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A decoded IPFIX flow as a stored row. flowscope agents send totals since
// the flow started (cumulative, like their JSON); other exporters send
// per-record deltas and none of the agent's process or TCP details.
FlowRow flow_row_from_decoded(const ipfix::DecodedFlow& d, const std::string& exporter_addr);

}  // namespace flowscope
