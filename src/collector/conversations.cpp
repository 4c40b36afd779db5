#include "collector/conversations.h"

#include <algorithm>
#include <cstring>

namespace flowscope {

namespace {

// The 5-tuple with its two endpoints in a fixed order, so both ends of a
// connection find the same key.
std::string tuple_key(const FlowRow& r) {
  auto ep = [](const Ip16& ip, uint16_t port) {
    std::string s(reinterpret_cast<const char*>(ip.data()), 16);
    s += static_cast<char>(port >> 8);
    s += static_cast<char>(port & 0xff);
    return s;
  };
  std::string a = ep(r.src_ip, r.src_port), b = ep(r.dst_ip, r.dst_port);
  if (b < a) std::swap(a, b);
  return static_cast<char>(r.protocol) + a + b;
}

std::string reporter(const FlowRow& r) {
  std::string s = r.host_id.value_or(r.host.value_or(r.exporter));
  s += '|';
  s += std::to_string(r.domain);
  return s;
}

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

void ConversationJoiner::assign(FlowRow& r) {
  // Only records that measured both directions of a connection: two
  // unidirectional records of one connection (a third-party exporter's) are
  // halves, not two views of the same whole.
  if (!r.bidirectional || r.src_port == 0 || r.dst_port == 0) {
    st_.skipped++;
    return;
  }
  st_.records++;
  watermark_ns_ = std::max(watermark_ns_, r.end_ns);
  const std::string key = tuple_key(r);
  const std::string rep = reporter(r);
  auto& convs = by_tuple_[key];
  auto overlaps = [&](const End& e) {
    return r.start_ns <= e.last_ns + o_.skew_ns && e.start_ns <= r.end_ns + o_.skew_ns;
  };
  // A record of an end already known: same reporter, same local endpoint,
  // same start (interim and final records of one socket share it).
  for (auto& c : convs) {
    for (uint8_t k = 0; k < c.n; ++k) {
      End& e = c.ends[k];
      if (e.port == r.src_port && e.ip == r.src_ip && e.start_ns == r.start_ns && e.reporter == rep) {
        e.last_ns = std::max(e.last_ns, r.end_ns);
        c.last_ns = std::max(c.last_ns, r.end_ns);
        r.conversation = c.id;
        r.mirror = k != 0;
        return;
      }
    }
  }
  // The other end of a conversation that has one end so far.
  for (auto& c : convs) {
    if (c.n != 1) continue;
    const End& e = c.ends[0];
    if (e.port == r.src_port && e.ip == r.src_ip) continue;  // the same side: a new socket on a reused tuple
    if (!overlaps(e)) continue;
    c.ends[1] = End{rep, r.src_ip, r.src_port, r.start_ns, r.end_ns};
    c.n = 2;
    c.last_ns = std::max(c.last_ns, r.end_ns);
    r.conversation = c.id;
    r.mirror = true;
    st_.joined++;
    return;
  }
  Conv c;
  // Stable across collectors and restarts for the same first end; 62 bits
  // (a signed 64-bit column holds it; 0 is never used).
  std::string seed = key + rep;
  seed += std::to_string(r.start_ns);
  seed.append(reinterpret_cast<const char*>(r.src_ip.data()), 16);
  seed += std::to_string(r.src_port);
  c.id = (fnv1a(seed) >> 2) | 1;
  c.ends[0] = End{rep, r.src_ip, r.src_port, r.start_ns, r.end_ns};
  c.n = 1;
  c.last_ns = r.end_ns;
  convs.push_back(std::move(c));
  count_++;
  r.conversation = convs.back().id;
  r.mirror = false;
  // The linger sweep visits every conversation: at most once per as many
  // new conversations as are held, so it costs about one visit per new one
  // however many are held. An expired one may so stay until that many new
  // ones came (never past max_conversations).
  if (++since_sweep_ >= std::max<uint64_t>(4096, count_) || count_ > o_.max_conversations) sweep();
}

void ConversationJoiner::sweep() {
  since_sweep_ = 0;
  const uint64_t cutoff = watermark_ns_ > o_.linger_ns ? watermark_ns_ - o_.linger_ns : 0;
  auto drop_if = [&](auto pred) {
    for (auto it = by_tuple_.begin(); it != by_tuple_.end();) {
      auto& v = it->second;
      const size_t before = v.size();
      std::erase_if(v, pred);
      count_ -= before - v.size();
      it = v.empty() ? by_tuple_.erase(it) : std::next(it);
    }
  };
  drop_if([&](const Conv& c) { return c.last_ns < cutoff; });
  if (count_ <= o_.max_conversations) return;
  // Over the bound: forget the least recently reported tenth.
  std::vector<uint64_t> lasts;
  lasts.reserve(count_);
  for (const auto& [k, v] : by_tuple_)
    for (const auto& c : v) lasts.push_back(c.last_ns);
  const size_t n = count_ - o_.max_conversations * 9 / 10;
  std::nth_element(lasts.begin(), lasts.begin() + static_cast<std::ptrdiff_t>(n - 1), lasts.end());
  const uint64_t oldest_kept = lasts[n - 1];
  const size_t before = count_;
  drop_if([&](const Conv& c) { return c.last_ns <= oldest_kept; });
  st_.forgotten += before - count_;
}

ConversationStats ConversationJoiner::stats() const {
  ConversationStats s = st_;
  s.open = count_;
  return s;
}

}  // namespace flowscope
