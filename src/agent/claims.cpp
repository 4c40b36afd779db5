#include "agent/claims.h"

#include <algorithm>

#include "agent/address_watch.h"

namespace flowscope {

OwnershipClaim ClaimTracker::base(const Ip16& addr) const {
  OwnershipClaim c;
  c.host = host_;
  c.host_id = host_id_;
  c.addr = addr;
  return c;
}

void ClaimTracker::address_added(const Ip16& addr, uint64_t now_ns) {
  if (address_is_local_only(addr)) return;
  since_.try_emplace(addr, now_ns);
}

std::optional<OwnershipClaim> ClaimTracker::address_removed(const Ip16& addr, uint64_t now_ns) {
  auto it = since_.find(addr);
  if (it == since_.end()) return std::nullopt;
  OwnershipClaim c = base(addr);
  c.from_ns = it->second;
  c.to_ns = std::max(now_ns, it->second);
  c.held = false;
  since_.erase(it);
  return c;
}

void ClaimTracker::observe(const Flow& f) {
  // The server side of a TCP connection: the local end is the served port.
  if (f.protocol != 6 || f.direction != Direction::Inbound || f.src_port == 0) return;
  if (address_is_local_only(f.src_ip)) return;
  PortKey k{f.src_ip, f.src_port, f.protocol, f.exe, f.unit, f.comm, f.container_id, f.pid, f.netns};
  auto [it, fresh] = ports_.try_emplace(std::move(k), f.start_ns, f.end_ns);
  if (fresh) return;
  it->second.first = std::min(it->second.first, f.start_ns);
  it->second.second = std::max(it->second.second, f.end_ns);
}

void ClaimTracker::take_ports(std::vector<OwnershipClaim>& out) {
  for (auto& [k, range] : ports_) {
    OwnershipClaim c = base(std::get<0>(k));
    c.port = std::get<1>(k);
    c.protocol = std::get<2>(k);
    c.exe = std::get<3>(k);
    c.unit = std::get<4>(k);
    c.comm = std::get<5>(k);
    c.container_id = std::get<6>(k);
    c.pid = std::get<7>(k);
    c.netns = std::get<8>(k);
    c.from_ns = range.first;
    c.to_ns = std::max(range.first, range.second);
    out.push_back(std::move(c));
  }
  ports_.clear();
}

std::vector<OwnershipClaim> ClaimTracker::tick(uint64_t now_ns) {
  std::vector<OwnershipClaim> out;
  out.reserve(since_.size() + ports_.size());
  for (const auto& [addr, since] : since_) {
    OwnershipClaim c = base(addr);
    c.from_ns = since;
    c.to_ns = std::max(now_ns, since);
    out.push_back(std::move(c));
  }
  take_ports(out);
  return out;
}

std::vector<OwnershipClaim> ClaimTracker::stop(uint64_t now_ns) {
  std::vector<OwnershipClaim> out;
  take_ports(out);
  for (const auto& [addr, since] : since_) {
    OwnershipClaim c = base(addr);
    c.from_ns = since;
    c.to_ns = std::max(now_ns, since);
    c.held = false;
    out.push_back(std::move(c));
  }
  since_.clear();
  // The stop marker (flow/ownership.h): this agent claims nothing more until
  // it starts again, so a collector need not wait for its next heartbeat.
  OwnershipClaim stop = base(Ip16{});
  stop.from_ns = stop.to_ns = now_ns;
  stop.held = false;
  out.push_back(std::move(stop));
  return out;
}

}  // namespace flowscope
