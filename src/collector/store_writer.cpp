#include "collector/store_writer.h"

#include <spdlog/spdlog.h>

namespace flowscope {

StoreWriter::StoreWriter(std::shared_ptr<FlowStore> store, StoreWriterOptions opts)
    : store_(std::move(store)), opts_(opts) {
  thread_ = std::thread([this] { loop(); });
}

StoreWriter::~StoreWriter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  space_cv_.notify_all();
  thread_.join();
}

bool StoreWriter::push(FlowRow row, bool block) {
  std::unique_lock lk(mu_);
  if (q_.size() >= opts_.queue_max) {
    if (!block) {
      st_.dropped++;
      return false;
    }
    space_cv_.wait(lk, [&] { return q_.size() < opts_.queue_max || stop_; });
    if (stop_) {
      st_.dropped++;
      return false;
    }
  }
  q_.push_back(std::move(row));
  st_.queued++;
  if (q_.size() >= opts_.batch_max) cv_.notify_one();
  return true;
}

size_t StoreWriter::push(std::vector<FlowRow>& rows, bool block) {
  size_t dropped = 0;
  {
    std::unique_lock lk(mu_);
    for (auto& row : rows) {
      if (q_.size() >= opts_.queue_max) {
        if (block) {
          cv_.notify_one();
          space_cv_.wait(lk, [&] { return q_.size() < opts_.queue_max || stop_; });
        }
        if (!block || stop_) {
          dropped++;
          continue;
        }
      }
      q_.push_back(std::move(row));
      st_.queued++;
    }
    st_.dropped += dropped;
    if (q_.size() >= opts_.batch_max) cv_.notify_one();
  }
  rows.clear();
  return dropped;
}

void StoreWriter::drain() {
  std::unique_lock lk(mu_);
  cv_.notify_one();
  space_cv_.wait(lk, [&] { return (q_.empty() && in_flight_ == 0) || stop_; });
}

StoreWriterStats StoreWriter::stats() const {
  std::lock_guard lk(mu_);
  StoreWriterStats s = st_;
  s.queue_depth = q_.size();
  return s;
}

void StoreWriter::loop() {
  using clock = std::chrono::steady_clock;
  auto next_retention = clock::now();
  std::vector<FlowRow> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, opts_.flush_every, [&] { return stop_ || q_.size() >= opts_.batch_max; });
      const size_t n = std::min(q_.size(), opts_.batch_max);
      batch.assign(std::make_move_iterator(q_.begin()), std::make_move_iterator(q_.begin() + static_cast<long>(n)));
      q_.erase(q_.begin(), q_.begin() + static_cast<long>(n));
      in_flight_ = n;
      if (batch.empty() && stop_) break;
    }
    space_cv_.notify_all();
    if (!batch.empty()) {
      auto r = store_->insert(batch);
      std::lock_guard lk(mu_);
      if (r) {
        st_.written += batch.size();
      } else {
        st_.failed += batch.size();
        spdlog::warn("storing {} flows failed: {}", batch.size(), r.error().message);
      }
      in_flight_ = 0;
    } else {
      std::lock_guard lk(mu_);
      in_flight_ = 0;
    }
    space_cv_.notify_all();
    if (opts_.retention.count() > 0 && clock::now() >= next_retention) {
      const auto now = std::chrono::system_clock::now();
      const auto cutoff = std::chrono::duration_cast<std::chrono::nanoseconds>((now - opts_.retention).time_since_epoch());
      if (cutoff.count() > 0) {
        auto n = store_->expire(static_cast<uint64_t>(cutoff.count()));
        if (!n) spdlog::warn("retention: {}", n.error().message);
        else if (*n) spdlog::debug("retention: deleted {} flows", *n);
      }
      next_retention = clock::now() + opts_.retention_check;
    }
  }
}

}  // namespace flowscope
