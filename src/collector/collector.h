// The IPFIX collector: receivers on UDP and TCP, one decoding thread, and the
// store writer.
//
//   UDP socket --(reader thread)--> bounded queue --(decoder thread)--> StoreWriter --> FlowStore
//   TCP conns  --(one thread each, framing)--^ (waits when full: TCP pushes back)
//
// Reading the UDP socket is kept apart from decoding so a burst lands in the
// queue instead of overflowing the socket buffer; when the queue is full the
// datagram is dropped and counted. The decoder waits for room in the store
// queue, so a backlog is held as raw messages (the compact form) and nothing
// is decoded only to be dropped. Exporters outside the allow-list are
// counted and dropped (UDP) or disconnected (TCP) before anything is parsed.
#pragma once

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
