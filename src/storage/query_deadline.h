// A time limit for the store's read queries, set by the caller on its own
// thread (the HTTP API's query workers). A backend checks `passed()` while a
// query runs and stops it there, failing with ETIMEDOUT, so one heavy query
// cannot hold a worker and a reader connection for as long as it likes.
#pragma once

#include <chrono>

namespace flowscope {

class QueryDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  // Queries on this thread stop at `at` until this object goes away.
  explicit QueryDeadline(Clock::time_point at) : prev_(at_) { at_ = at; }
  ~QueryDeadline() { at_ = prev_; }
  QueryDeadline(const QueryDeadline&) = delete;
  QueryDeadline& operator=(const QueryDeadline&) = delete;

  // True once this thread's deadline (if any) is behind us.
  static bool passed() { return at_ != Clock::time_point::max() && Clock::now() >= at_; }

 private:
  Clock::time_point prev_;
  static inline thread_local Clock::time_point at_ = Clock::time_point::max();
};

}  // namespace flowscope
