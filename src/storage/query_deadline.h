// A time limit for the store's read queries, set by the caller on its own
// thread (the HTTP API's query workers). A backend checks `passed()` while a
// query runs and stops it there, failing with ETIMEDOUT, so one heavy query
// cannot hold a worker and a reader connection for as long as it likes.
#pragma once

#include <atomic>
#include <chrono>

namespace flowscope {

class QueryDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  // Queries on this thread stop at `at`, or once `*cancel` is set (the
  // owner is shutting down), until this object goes away.
  explicit QueryDeadline(Clock::time_point at, const std::atomic<bool>* cancel = nullptr)
      : prev_(at_), prev_cancel_(cancel_) {
    at_ = at;
    cancel_ = cancel;
  }
  ~QueryDeadline() {
    at_ = prev_;
    cancel_ = prev_cancel_;
  }
  QueryDeadline(const QueryDeadline&) = delete;
  QueryDeadline& operator=(const QueryDeadline&) = delete;

  // This thread's deadline (time_point::max() when none).
  static Clock::time_point at() { return at_; }
  // True once this thread's deadline (if any) is behind us.
  static bool passed() {
    return (cancel_ && cancel_->load(std::memory_order_relaxed)) ||
           (at_ != Clock::time_point::max() && Clock::now() >= at_);
  }

 private:
  Clock::time_point prev_;
  const std::atomic<bool>* prev_cancel_;
  static inline thread_local Clock::time_point at_ = Clock::time_point::max();
  static inline thread_local const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace flowscope
