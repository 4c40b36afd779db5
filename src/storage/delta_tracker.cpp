#include "storage/delta_tracker.h"

namespace flowscope {

std::string flow_identity(const FlowRow& r) {
  std::string k = r.exporter;
  k += '|';
  k += std::to_string(r.domain);
  k += '|';
  k += std::to_string(r.start_ns);
  k.append(reinterpret_cast<const char*>(r.src_ip.data()), 16);
  k.append(reinterpret_cast<const char*>(r.dst_ip.data()), 16);
  k += std::to_string(r.src_port) + ':' + std::to_string(r.dst_port) + '/' + std::to_string(r.protocol);
  return k;
}

namespace {
uint64_t sub0(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }
}  // namespace

void DeltaTracker::account(FlowRow& r) {
  const uint64_t retrans = r.retrans.value_or(0);
  if (!r.cumulative) {  // the record's counters are its own share already
    r.delta_bytes_out = r.bytes;
    r.delta_bytes_in = r.rev_bytes;
    r.delta_bytes = r.bytes + r.rev_bytes;
    r.delta_packets = r.packets + r.rev_packets;
    r.delta_retrans = retrans;
    r.first = true;
    return;
  }
  const Totals now{r.bytes, r.rev_bytes, r.packets + r.rev_packets, retrans};
  const std::string key = flow_identity(r);
  auto it = open_.find(key);
  Totals prev;
  r.first = it == open_.end();
  if (!r.first) prev = it->second.first;
  r.delta_bytes_out = sub0(now.bytes, prev.bytes);
  r.delta_bytes_in = sub0(now.rev_bytes, prev.rev_bytes);
  r.delta_bytes = r.delta_bytes_out + r.delta_bytes_in;
  r.delta_packets = sub0(now.packets, prev.packets);
  r.delta_retrans = sub0(now.retrans, prev.retrans);
  if (!r.interim) {  // the final record: the flow is closed
    if (it != open_.end()) {
      lru_.erase(it->second.second);
      open_.erase(it);
    }
    return;
  }
  if (it != open_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    it->second.first = now;
    return;
  }
  lru_.push_front(key);
  open_.emplace(key, std::make_pair(now, lru_.begin()));
  while (open_.size() > max_) {
    open_.erase(lru_.back());
    lru_.pop_back();
    ++evicted_;
  }
}

bool DeltaTracker::restore(const std::string& key, uint64_t bytes, uint64_t rev_bytes, uint64_t packets,
                           uint64_t retrans) {
  if (open_.contains(key) || open_.size() >= max_) return false;
  lru_.push_front(key);
  open_.emplace(key, std::make_pair(Totals{bytes, rev_bytes, packets, retrans}, lru_.begin()));
  return true;
}

}  // namespace flowscope
