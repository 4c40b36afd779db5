#include "collector/store_writer.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace flowscope {

StoreWriter::StoreWriter(std::shared_ptr<FlowStore> store, StoreWriterOptions opts)
    : store_(std::move(store)), opts_(opts), joiner_(opts.conversations) {
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

namespace {
constexpr size_t kMaxSpare = 4;  // emptied chunks kept for reuse (a few MiB at most)
}

bool StoreWriter::push(FlowRow row, bool block) {
  std::unique_lock lk(mu_);
  if (q_rows_ >= opts_.queue_max) {
    if (!block) {
      st_.dropped++;
      return false;
    }
    space_cv_.wait(lk, [&] { return q_rows_ < opts_.queue_max || stop_; });
    if (stop_) {
      st_.dropped++;
      return false;
    }
  }
  // Single rows (the in-process agent) go into the newest chunk.
  if (q_.empty() || q_.back().size() >= opts_.batch_max) {
    if (!spare_.empty()) {
      q_.push_back(std::move(spare_.back()));
      spare_.pop_back();
    } else {
      q_.emplace_back();
    }
  }
  q_.back().push_back(std::move(row));
  q_rows_++;
  pushed_++;
  st_.queued++;
  if (q_rows_ >= opts_.batch_max) cv_.notify_one();
  return true;
}

size_t StoreWriter::push(std::vector<FlowRow>& rows, bool block) {
  if (rows.empty()) return 0;
  std::unique_lock lk(mu_);
  // Room for the chunk; an empty queue takes any chunk, so one larger than
  // queue_max cannot wait forever.
  auto room = [&] { return q_rows_ == 0 || q_rows_ + rows.size() <= opts_.queue_max; };
  if (block && !room()) {
    cv_.notify_one();
    space_cv_.wait(lk, [&] { return room() || stop_; });
  }
  size_t dropped = 0;
  if (!room()) {  // not waiting, or stopping
    const size_t fit = opts_.queue_max - std::min(opts_.queue_max, q_rows_);
    dropped = block ? rows.size() : rows.size() - std::min(rows.size(), fit);
  }
  rows.resize(rows.size() - dropped);
  st_.dropped += dropped;
  if (!rows.empty()) {
    q_rows_ += rows.size();
    pushed_ += rows.size();
    st_.queued += rows.size();
    q_.push_back(std::move(rows));
  }
  rows.clear();
  if (!spare_.empty()) {
    rows = std::move(spare_.back());
    spare_.pop_back();
  }
  if (q_rows_ >= opts_.batch_max) cv_.notify_one();
  return dropped;
}

void StoreWriter::mark(const DeliveryMark& m) {
  std::lock_guard lk(mu_);
  marks_.emplace_back(pushed_, m);
}

namespace {
constexpr size_t kMaxQueuedClaims = 100'000;
constexpr size_t kMaxHolders = 1'000'000;
}  // namespace

void StoreWriter::push_claims(std::vector<OwnershipClaim>& claims) {
  if (claims.empty()) return;
  std::lock_guard lk(mu_);
  const size_t fit = kMaxQueuedClaims - std::min(kMaxQueuedClaims, claims_.size());
  const size_t n = std::min(fit, claims.size());
  st_.claims_dropped += claims.size() - n;
  claims_.insert(claims_.end(), std::make_move_iterator(claims.begin()),
                 std::make_move_iterator(claims.begin() + static_cast<std::ptrdiff_t>(n)));
  claims.clear();
}

void StoreWriter::count_conflicts(const std::vector<OwnershipClaim>& claims) {
  uint64_t n = 0;
  for (const auto& c : claims) {
    if (c.port != 0 || c.addr == Ip16{}) continue;
    const std::string addr(reinterpret_cast<const char*>(c.addr.data()), c.addr.size());
    const std::string who = claimant_key(c.host.value_or(""), c.host_id.value_or(""));
    auto it = holders_.find(addr);
    if (it != holders_.end() && it->second.first != who && c.from_ns < it->second.second) ++n;
    if (it == holders_.end() && holders_.size() >= kMaxHolders) holders_.clear();
    // The latest claimant holds it until its claim ends (a released claim
    // ends it; a held one holds it at least that long).
    if (it == holders_.end() || it->second.first != who || c.to_ns > it->second.second)
      holders_[addr] = {who, c.to_ns};
  }
  if (!n) return;
  std::lock_guard lk(mu_);
  st_.claim_conflicts += n;
}

void StoreWriter::on_rows(std::function<void(const std::vector<FlowRow>&)> f) {
  std::lock_guard lk(mu_);
  on_rows_ = std::move(f);
}

void StoreWriter::on_stored(std::function<void(const std::vector<DeliveryMark>&)> f) {
  std::lock_guard lk(mu_);
  on_stored_ = std::move(f);
}

void StoreWriter::drain() {
  {
    std::unique_lock lk(mu_);
    cv_.notify_one();
    space_cv_.wait(lk, [&] { return (q_rows_ == 0 && claims_.empty() && in_flight_ == 0) || stop_; });
  }
  // A store that sends in the background (ClickHouse) has the rows now, not
  // necessarily its server.
  if (auto r = store_->sync(std::chrono::seconds(30)); !r) spdlog::warn("{}", r.error().message);
}

StoreWriterStats StoreWriter::stats() const {
  std::lock_guard lk(mu_);
  StoreWriterStats s = st_;
  s.queue_depth = q_rows_;
  return s;
}

ConversationStats StoreWriter::conversation_stats() const {
  std::lock_guard lk(mu_);
  return conv_st_;
}

void StoreWriter::loop() {
  using clock = std::chrono::steady_clock;
  auto next_retention = clock::now();
  std::vector<FlowRow> batch;
  std::vector<DeliveryMark> marks;
  std::vector<OwnershipClaim> claims;
  std::function<void(const std::vector<DeliveryMark>&)> cb;
  std::function<void(const std::vector<FlowRow>&)> rows_cb;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, opts_.flush_every, [&] { return stop_ || q_rows_ >= opts_.batch_max; });
      // One transaction: the oldest chunk as it is, then whole chunks
      // appended while the batch is short of batch_max.
      if (!q_.empty()) {
        batch = std::move(q_.front());
        q_.pop_front();
        while (batch.size() < opts_.batch_max && !q_.empty()) {
          auto& c = q_.front();
          batch.insert(batch.end(), std::make_move_iterator(c.begin()), std::make_move_iterator(c.end()));
          c.clear();
          if (spare_.size() < kMaxSpare) spare_.push_back(std::move(c));
          q_.pop_front();
        }
      }
      // Claims pushed before these rows: stored first.
      claims.swap(claims_);
      q_rows_ -= batch.size();
      in_flight_ = batch.size();
      taken_ += batch.size();
      // The marks this batch completes; the newest per instance and domain.
      while (!marks_.empty() && marks_.front().first <= taken_) {
        const DeliveryMark& m = marks_.front().second;
        auto same = std::find_if(marks.begin(), marks.end(), [&](const DeliveryMark& x) {
          return x.instance == m.instance && x.domain == m.domain;
        });
        if (same == marks.end()) marks.push_back(m);
        else if (m.next_seq > same->next_seq) same->next_seq = m.next_seq;
        marks_.pop_front();
      }
      if (batch.empty() && marks.empty() && claims.empty() && stop_) break;
      in_flight_ += marks.size() + claims.size();  // drain() waits for their acknowledgements and claims too
      cb = on_stored_;
      rows_cb = on_rows_;
    }
    space_cv_.notify_all();
    if (!claims.empty()) {
      count_conflicts(claims);
      auto r = store_->insert_claims(claims);
      std::lock_guard lk(mu_);
      (r ? st_.claims_stored : st_.claims_failed) += claims.size();
      if (!r) spdlog::warn("storing {} ownership claims failed: {}", claims.size(), r.error().message);
      claims.clear();
    }
    if (!batch.empty() || !marks.empty()) {
      if (opts_.join_conversations) {
        for (auto& row : batch) joiner_.assign(row);
        std::lock_guard lk(mu_);
        conv_st_ = joiner_.stats();
      }
      auto r = store_->insert_marked(batch, marks);
      if (r && !marks.empty() && cb) cb(marks);
      if (r && rows_cb) rows_cb(batch);
      marks.clear();
      std::lock_guard lk(mu_);
      if (r) {
        st_.written += batch.size();
      } else {
        st_.failed += batch.size();
        spdlog::warn("storing {} flows failed: {}", batch.size(), r.error().message);
      }
      in_flight_ = 0;
      batch.clear();
      if (spare_.size() < kMaxSpare) spare_.push_back(std::move(batch));
      batch = {};
    } else {
      std::lock_guard lk(mu_);
      in_flight_ = 0;
    }
    cb = nullptr;
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
