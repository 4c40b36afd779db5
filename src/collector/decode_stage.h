// The decode stage: one thread takes the inputs' events from the ingest
// queue, decodes messages (ipfix::Decoder), keeps per-exporter totals, and
// hands rows to the store writer, one exporter's rows per chunk.
//
// It waits for room in the store queue, so a backlog is held as raw messages
// (the compact form, ~45 bytes a record against a row's ~450) and nothing is
// decoded only to be dropped.
#pragma once

#include <chrono>
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

class DecodeStage {
 public:
  // Distinct exporter addresses tracked (bounded against spoofed UDP sources).
  static constexpr size_t kMaxExporters = 10'000;

  DecodeStage(const ipfix::DecoderOptions& opts, std::shared_ptr<StoreWriter> writer, IngestQueue& queue);
  ~DecodeStage();  // finish()
  DecodeStage(const DecodeStage&) = delete;
  DecodeStage& operator=(const DecodeStage&) = delete;

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
};

}  // namespace flowscope
