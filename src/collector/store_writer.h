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
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "collector/conversations.h"
#include "collector/ownership.h"
#include "flow/flow.h"
#include "storage/flow_store.h"

namespace flowscope {

struct StoreWriterOptions {
  size_t queue_max = 200'000;           // rows waiting for the writer
  size_t batch_max = 5'000;             // rows per transaction
  std::chrono::milliseconds flush_every{200};
  std::chrono::seconds retention{0};    // 0: keep everything
  std::chrono::seconds retention_check{60};
  // Records of one connection from both ends are linked before they are
  // stored, so aggregates count the connection once (collector/conversations.h).
  bool join_conversations = true;
  ConversationOptions conversations;
};

struct StoreWriterStats {
  uint64_t queued = 0;        // accepted into the queue
  uint64_t dropped = 0;       // queue full
  uint64_t written = 0;       // committed to the store
  uint64_t failed = 0;        // lost in a failed batch
  uint64_t queue_depth = 0;
  // Ownership evidence (flow/ownership.h).
  uint64_t claims_stored = 0;
  uint64_t claims_dropped = 0;   // queue full
  uint64_t claims_failed = 0;    // the store refused them
  uint64_t claim_conflicts = 0;  // an address claimed by a second agent while another held it
};

class StoreWriter {
 public:
  StoreWriter(std::shared_ptr<FlowStore> store, StoreWriterOptions opts = {});
  ~StoreWriter();  // writes what is queued, then stops
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Returns false when the row was dropped (queue full and !block).
  bool push(FlowRow row, bool block = false);
  // Queues the rows as one chunk (no copy); returns how many were dropped
  // (queue full and !block: the ones that did not fit). `rows` comes back
  // empty, with the capacity of a chunk the writer has finished with, so a
  // producer that fills and pushes the same vector allocates nothing.
  size_t push(std::vector<FlowRow>& rows, bool block = false);
  size_t batch_max() const { return opts_.batch_max; }
  // Delivery: `m` is complete once the rows pushed so far are stored. It is
  // committed with them (FlowStore::insert_marked), then passed to the
  // callback, which acknowledges it to the exporter. A batch the store
  // refuses is counted (failed); a later batch's marks still cover it, so
  // one bad batch cannot stall every exporter.
  void mark(const DeliveryMark& m);
  // Ownership evidence, stored before any row pushed after it (so before
  // the delivery marks that follow it); counted when the queue is full.
  void push_claims(std::vector<OwnershipClaim>& claims);
  // Set before the first push; runs on the writer thread.
  void on_stored(std::function<void(const std::vector<DeliveryMark>&)> f);
  // Runs on the writer thread with each batch the store committed (deltas
  // filled), e.g. for traffic metrics; may be set while rows flow.
  void on_rows(std::function<void(const std::vector<FlowRow>&)> f);
  // Waits until everything pushed so far is committed (or failed).
  void drain();
  StoreWriterStats stats() const;
  ConversationStats conversation_stats() const;
  FlowStore& store() { return *store_; }

 private:
  void loop();
  void count_conflicts(const std::vector<OwnershipClaim>& claims);

  std::shared_ptr<FlowStore> store_;
  StoreWriterOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // writer: rows or stop
  std::condition_variable space_cv_;  // producers: room in the queue; drain(): batch done
  std::deque<std::vector<FlowRow>> q_;  // chunks of rows, oldest first
  size_t q_rows_ = 0;                     // rows in q_
  std::vector<std::vector<FlowRow>> spare_;  // emptied chunks, for reuse
  bool stop_ = false;
  uint64_t in_flight_ = 0;
  uint64_t pushed_ = 0;  // rows ever queued
  uint64_t taken_ = 0;   // rows ever taken into a batch
  std::deque<std::pair<uint64_t, DeliveryMark>> marks_;  // with the pushed_ they wait for
  std::vector<OwnershipClaim> claims_;
  // Per address: the agent holding it and until when, to count conflicting
  // claims as they arrive (writer thread only; bounded, cleared when full).
  std::unordered_map<std::string, std::pair<std::string, uint64_t>> holders_;
  std::function<void(const std::vector<DeliveryMark>&)> on_stored_;
  std::function<void(const std::vector<FlowRow>&)> on_rows_;
  StoreWriterStats st_;
  ConversationJoiner joiner_;    // writer thread only
  ConversationStats conv_st_;    // its stats, copied under mu_
  std::thread thread_;
};

// The agent's sink for `flowscope run`: records go straight into the store.
class StoreSink : public FlowSink {
 public:
  explicit StoreSink(std::shared_ptr<StoreWriter> w) : w_(std::move(w)) {}
  void write(const Flow& f) override { w_->push(FlowRow(f)); }

 private:
  std::shared_ptr<StoreWriter> w_;
};

}  // namespace flowscope
