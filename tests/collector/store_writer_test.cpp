// StoreWriter: rows pushed one by one and in chunks reach the store in
// order, in transactions of the configured size; a full queue drops (and
// counts) what a non-blocking push cannot queue. The store is a recorder
// that can hold the writer inside insert(), so "full" is reached without
// any timing.
#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

#include "collector/store_writer.h"

using namespace flowscope;

namespace {

class RecordingStore : public FlowStore {
 public:
  Result<void> insert(std::vector<FlowRow>& rows) override {
    std::unique_lock lk(mu_);
    inside_ = true;
    cv_.notify_all();
    cv_.wait(lk, [&] { return !hold_; });
    inside_ = false;
    batches.push_back(rows.size());
    for (auto& r : rows) ports.push_back(r.src_port);
    return {};
  }
  Result<FlowPage> query(const FlowQuery&) override { return FlowPage{}; }
  Result<std::vector<TopEntry>> top(const TopQuery&) override { return std::vector<TopEntry>{}; }
  Result<std::vector<SeriesPoint>> series(const SeriesQuery&) override { return std::vector<SeriesPoint>{}; }
  Result<uint64_t> expire(uint64_t) override { return uint64_t{0}; }
  StoreStats stats() override { return {}; }

  void hold() {
    std::lock_guard lk(mu_);
    hold_ = true;
  }
  void release() {
    std::lock_guard lk(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  void wait_inside() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return inside_; });
  }

  std::vector<size_t> batches;   // rows per insert() call
  std::vector<uint16_t> ports;   // src_port of every stored row, in order

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, inside_ = false;
};

FlowRow row(uint16_t n) {
  FlowRow r;
  r.exporter = "192.0.2.1";
  r.src_port = n;
  return r;
}

std::vector<FlowRow> chunk(uint16_t first, uint16_t n) {
  std::vector<FlowRow> v;
  for (uint16_t i = 0; i < n; ++i) v.push_back(row(static_cast<uint16_t>(first + i)));
  return v;
}

// Every row with ports 0 .. n-1 reached the store, in order.
void expect_ports_in_order(const RecordingStore& store, uint16_t n) {
  ASSERT_EQ(store.ports.size(), n);
  for (uint16_t i = 0; i < n; ++i) EXPECT_EQ(store.ports[i], i);
}

std::shared_ptr<RecordingStore> held_store() {
  auto store = std::make_shared<RecordingStore>();
  store->hold();
  return store;
}

// A writer (queue 20, batch 5) whose first batch, rows 0 .. 4, is inside a
// held store: its queue is empty and nothing more is written until release().
struct HeldWriter {
  std::shared_ptr<RecordingStore> store = held_store();
  StoreWriter w{store, {.queue_max = 20, .batch_max = 5}};
  HeldWriter() {
    auto c = chunk(0, 5);
    EXPECT_EQ(w.push(c), 0u);
    store->wait_inside();
  }
};

}  // namespace

TEST(StoreWriter, SingleRowsAndChunksArriveInOrder) {
  auto store = std::make_shared<RecordingStore>();
  StoreWriter w(store, {.queue_max = 1000, .batch_max = 10});
  uint16_t next = 0;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(w.push(row(next++)));
  auto c = chunk(next, 23);
  next = static_cast<uint16_t>(next + 23);
  EXPECT_EQ(w.push(c), 0u);
  EXPECT_TRUE(c.empty());  // handed back empty (possibly with a reused capacity)
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(w.push(row(next++)));
  c = chunk(next, 7);
  next = static_cast<uint16_t>(next + 7);
  EXPECT_EQ(w.push(c, true), 0u);
  w.drain();
  const auto st = w.stats();
  EXPECT_EQ(st.queued, next);
  EXPECT_EQ(st.written, next);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(st.queue_depth, 0u);
  expect_ports_in_order(*store, next);
}

TEST(StoreWriter, FullQueueDropsAndCountsWhatDoesNotFit) {
  // The first batch goes to the store and stays there.
  HeldWriter h;
  auto& [store, w] = h;
  // 20 rows fill the queue; a chunk of 8 then fits not at all, single rows neither.
  auto c = chunk(5, 20);
  EXPECT_EQ(w.push(c), 0u);
  c = chunk(25, 8);
  EXPECT_EQ(w.push(c), 8u);
  EXPECT_FALSE(w.push(row(33)));
  auto st = w.stats();
  EXPECT_EQ(st.dropped, 9u);
  EXPECT_EQ(st.queue_depth, 20u);
  store->release();
  w.drain();
  st = w.stats();
  EXPECT_EQ(st.written, 25u);
  EXPECT_EQ(st.queued, 25u);
  expect_ports_in_order(*store, 25);
}

TEST(StoreWriter, PartlyFullQueueTakesTheHeadOfAChunk) {
  HeldWriter h;
  auto& [store, w] = h;
  auto c = chunk(5, 15);
  EXPECT_EQ(w.push(c), 0u);
  c = chunk(20, 8);  // room for 5 of them
  EXPECT_EQ(w.push(c), 3u);
  store->release();
  w.drain();
  expect_ports_in_order(*store, 25);
}

TEST(StoreWriter, BlockingPushWaitsForRoomAndLosesNothing) {
  auto store = std::make_shared<RecordingStore>();
  StoreWriter w(store, {.queue_max = 12, .batch_max = 4});
  uint16_t next = 0;
  for (int k = 0; k < 50; ++k) {
    auto c = chunk(next, 7);
    next = static_cast<uint16_t>(next + 7);
    EXPECT_EQ(w.push(c, true), 0u);
  }
  w.drain();
  EXPECT_EQ(w.stats().written, next);
  EXPECT_EQ(w.stats().dropped, 0u);
  expect_ports_in_order(*store, next);
}
