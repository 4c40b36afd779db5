// Batches flow rows into the store from one writer thread, and applies
// retention. Producers (the IPFIX decoder, the in-process agent) never wait
// on SQLite: rows go into a bounded queue; when it is full, a non-blocking
// push drops and counts, a blocking push (TCP ingest, which can push back on
// its exporter) waits.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "storage/flow_store.h"

namespace flowscope {

struct StoreWriterOptions {
  size_t queue_max = 200'000;           // rows waiting for the writer
  size_t batch_max = 5'000;             // rows per transaction
  std::chrono::milliseconds flush_every{200};
  std::chrono::seconds retention{0};    // 0: keep everything
  std::chrono::seconds retention_check{60};
};

struct StoreWriterStats {
  uint64_t queued = 0;        // accepted into the queue
  uint64_t dropped = 0;       // queue full
  uint64_t written = 0;       // committed to the store
  uint64_t failed = 0;        // lost in a failed batch
  uint64_t queue_depth = 0;
};

class StoreWriter {
 public:
  StoreWriter(std::shared_ptr<FlowStore> store, StoreWriterOptions opts = {});
  ~StoreWriter();  // writes what is queued, then stops
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Returns false when the row was dropped (queue full and !block).
  bool push(FlowRow row, bool block = false);
  // Moves the rows into the queue (one lock for all); returns how many were
  // dropped (queue full and !block). `rows` is left empty.
  size_t push(std::vector<FlowRow>& rows, bool block = false);
  // Waits until everything pushed so far is committed (or failed).
  void drain();
  StoreWriterStats stats() const;
  FlowStore& store() { return *store_; }

 private:
  void loop();

  std::shared_ptr<FlowStore> store_;
  StoreWriterOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // writer: rows or stop
  std::condition_variable space_cv_;  // producers: room in the queue; drain(): batch done
  std::deque<FlowRow> q_;
  bool stop_ = false;
  uint64_t in_flight_ = 0;
  StoreWriterStats st_;
  std::thread thread_;
};

// The agent's sink for `flowscope run`: records go straight into the store.
class StoreSink : public FlowSink {
 public:
  explicit StoreSink(std::shared_ptr<StoreWriter> w) : w_(std::move(w)) {}
  void write(const FlowRecord& r) override { w_->push(flow_row_from_record(r)); }

 private:
  std::shared_ptr<StoreWriter> w_;
};

}  // namespace flowscope
