// The decode stage: one thread takes the inputs' events from the ingest
// queue, decodes messages (ipfix::Decoder), keeps per-exporter totals, and
// hands rows to the store writer, one exporter's rows per chunk.
//
// It waits for room in the store queue, so a backlog is held as raw messages
// (the compact form, ~45 bytes a record against a row's ~450) and nothing is
// decoded only to be dropped.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "collector/ingest_events.h"
#include "collector/metrics.h"
#include "collector/store_writer.h"
#include "ipfix/decoder.h"

namespace flowscope {

// Per exporter address, across its sessions (decoder sessions come and go
// with TCP connections and idle UDP ports; these totals stay).
struct ExporterTotals {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t flows = 0;
  uint64_t malformed = 0;
  uint64_t sequence_gaps = 0;
  uint64_t records_lost = 0;
  uint64_t templates = 0;
  uint64_t sets_no_template = 0;
  uint64_t records_time_fallback = 0;  // stored with a time the record lacked (export time, or its other end)
  uint64_t records_no_time = 0;        // not stored: no time at all
  uint64_t store_drops = 0;
  uint64_t records_duplicate = 0;  // sent again after a reconnect, already stored: dropped
  ipfix::SourceCounters budget;  // domains and templates evicted, expired, refused
  uint64_t tcp_connections = 0;
  uint64_t tcp_framing_errors = 0;
  uint64_t tcp_idle_timeouts = 0;
  uint64_t tcp_message_timeouts = 0;
  uint64_t tcp_evicted = 0;
  uint64_t tcp_refused = 0;
  std::string last_error;
  std::chrono::system_clock::time_point last_seen{};
  std::set<std::string> transports;
};

// Delivery (docs/ipfix.md): a flowscope agent announces an exporter
// instance on each TCP connection and numbers its records across
// connections. Per (instance, domain) the stage knows up to which sequence
// number it has received records; a message starting before that was
// received already (TCP keeps order, and a reconnecting agent resends whole
// messages from its oldest unacknowledged one): its records are dropped as
// duplicates. The store commits the marks with the rows; once stored, the
// agent is told (acknowledged) on its current connection.
struct DeliveryStats {
  uint64_t instances = 0;          // tracked now
  uint64_t instances_untracked = 0;  // over the bound: received without duplicate checks
  uint64_t records_duplicate = 0;
  uint64_t acks = 0;               // acknowledgements handed to the TCP input
};

class DecodeStage {
 public:
  // Distinct exporter addresses tracked (bounded against spoofed UDP sources).
  static constexpr size_t kMaxExporters = 10'000;
  // Exporter instances whose delivery is tracked (TCP only: allow-listed and
  // limited per source).
  static constexpr size_t kMaxInstances = 65'536;
  using AckFn = std::function<void(const std::string& session, uint32_t domain, uint64_t next_seq)>;

  DecodeStage(const ipfix::DecoderOptions& opts, std::shared_ptr<StoreWriter> writer, IngestQueue& queue);
  ~DecodeStage();  // finish()
  DecodeStage(const DecodeStage&) = delete;
  DecodeStage& operator=(const DecodeStage&) = delete;

  // Before start(): what the store already holds, and where acknowledgements go.
  void load_delivery(const std::vector<DeliveryMark>& marks);
  void on_ack(AckFn f) {
    std::lock_guard lk(mu_);
    ack_ = std::move(f);
  }
  // The store committed these marks (writer thread).
  void stored(const std::vector<DeliveryMark>& marks);
  DeliveryStats delivery_stats() const;
  void start();
  // After the inputs have stopped: decodes what is queued, then joins.
  void finish();

  // "decoder", "exporters" and "exporters_untracked" of /api/exporters.
  // One page of exporters: those whose address sorts after `after`, at most
  // `limit`; "next_after" names the next page's cursor when there is one.
  void add_json(nlohmann::json& out, const std::string& after, size_t limit) const;
  void collect_metrics(FamilyBuilder& b) const;

 private:
  void loop();
  void on(MessageEvent& e);
  void on(SessionOpened& e);
  void on(SessionClosed& e);
  void on(ConnectionRefused& e);
  ExporterTotals* totals(const std::string& addr);
  void track_delivery(const Session& s, ipfix::FeedResult& res, ExporterTotals* t);
  void take_budget_counters();
  void flush_rows();

  std::shared_ptr<StoreWriter> writer_;
  IngestQueue& q_;
  std::thread thread_;

  // Decoder thread only: rows of one exporter address on their way to the
  // store, pushed as one chunk.
  std::vector<FlowRow> pending_;
  std::string pending_addr_;

  // Decoder state (decoder thread; read by the API under mu_).
  mutable std::mutex mu_;
  ipfix::Decoder decoder_;
  std::map<std::string, ExporterTotals> exporters_;  // by address
  uint64_t exporters_overflow_ = 0;

  // Delivery, under mu_: per (instance, domain) the sequence number (64-bit)
  // received up to; per instance its current TCP session.
  std::map<std::pair<uint64_t, uint32_t>, uint64_t> received_;
  std::map<uint64_t, std::string> instance_session_;
  std::vector<DeliveryMark> pending_marks_;  // decoder thread: go after pending_
  DeliveryStats delivery_;
  AckFn ack_;
};

}  // namespace flowscope
