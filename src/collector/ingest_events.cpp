#include "collector/ingest_events.h"

#include <algorithm>

namespace flowscope {

const char* to_string(CloseCause c) {
  switch (c) {
    case CloseCause::PeerClosed: return "peer_closed";
    case CloseCause::FramingError: return "framing_error";
    case CloseCause::IdleTimeout: return "idle_timeout";
    case CloseCause::MessageTimeout: return "message_timeout";
    case CloseCause::Evicted: return "evicted";
    case CloseCause::Shutdown: return "shutdown";
  }
  return "?";
}

const char* to_string(RefuseCause c) { return c == RefuseCause::SourceLimit ? "source_limit" : "global_limit"; }

namespace {
size_t bytes_of(const IngestEvent& e) {
  const auto* m = std::get_if<MessageEvent>(&e);
  return m ? m->bytes.size() : 0;
}
}  // namespace

bool IngestQueue::full(size_t adding, size_t max_bytes) const {
  return q_.size() >= o_.max_messages || (!q_.empty() && bytes_ + adding > max_bytes);
}

bool IngestQueue::push(IngestEvent&& e, bool wait) {
  const size_t n = bytes_of(e);
  std::unique_lock lk(mu_);
  if (closed_) return false;
  const size_t max_bytes = wait ? std::min(o_.max_bytes_waiting, o_.max_bytes) : o_.max_bytes;
  if (full(n, max_bytes)) {
    if (!wait) return false;
    space_cv_.wait(lk, [&] { return closed_ || !full(n, max_bytes); });
    if (closed_) return false;
  }
  bytes_ += n;
  q_.push_back(std::move(e));
  high_water_ = std::max(high_water_, q_.size());
  lk.unlock();
  cv_.notify_one();
  return true;
}

bool IngestQueue::try_push(IngestEvent e) { return push(std::move(e), false); }
bool IngestQueue::push_wait(IngestEvent e) { return push(std::move(e), true); }

bool IngestQueue::pop_all(std::deque<IngestEvent>& out, std::chrono::milliseconds timeout) {
  {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return !closed_;
    out.swap(q_);
    bytes_ = 0;
  }
  space_cv_.notify_all();
  return true;
}

void IngestQueue::close() {
  {
    std::lock_guard lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
  space_cv_.notify_all();
}

void IngestQueue::recycle(std::vector<uint8_t>&& buf) {
  const size_t cap = buf.capacity();
  std::lock_guard lk(mu_);
  if (cap == 0 || spare_bytes_ + cap > kSpareBytes) return;
  buf.clear();
  spare_bytes_ += cap;
  spares_.push_back(std::move(buf));
}

void IngestQueue::take_spares(std::vector<std::vector<uint8_t>>& into, size_t want) {
  std::lock_guard lk(mu_);
  while (into.size() < want && !spares_.empty()) {
    spare_bytes_ -= spares_.back().capacity();
    into.push_back(std::move(spares_.back()));
    spares_.pop_back();
  }
}

size_t IngestQueue::depth() const {
  std::lock_guard lk(mu_);
  return q_.size();
}

size_t IngestQueue::high_water() const {
  std::lock_guard lk(mu_);
  return high_water_;
}

}  // namespace flowscope
