#include "collector/attribution.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "collector/ownership.h"
#include "net/ip16.h"

#include <nlohmann/json.hpp>

namespace flowscope {

std::string workload_of(const Flow& f) {
  if (f.unit && !f.unit->empty()) return *f.unit;
  if (f.exe && !f.exe->empty()) return *f.exe;
  if (f.comm && !f.comm->empty()) return *f.comm;
  return {};
}

Result<std::vector<FlowRow>> conversation_rows(FlowStore& store, std::vector<uint64_t> ids, uint64_t since_ns) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<FlowRow> out;
  constexpr size_t kIdsPerQuery = 500;
  for (size_t at = 0; at < ids.size(); at += kIdsPerQuery) {
    FlowQuery q;
    q.filter.conversations.assign(ids.begin() + static_cast<std::ptrdiff_t>(at),
                                  ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + kIdsPerQuery)));
    if (since_ns) q.filter.from_ns = since_ns;
    q.limit = 10'000;
    for (;;) {
      auto page = store.query(q);
      if (!page) return std::unexpected(page.error());
      for (auto& r : page->flows) out.push_back(std::move(r));
      if (!page->more) break;
      q.offset += q.limit;
    }
  }
  return out;
}

std::optional<FlowRow> other_end(const FlowRow& r, const std::vector<const FlowRow*>& rows) {
  const FlowRow* best = nullptr;
  for (const FlowRow* o : rows) {
    if (o->src_ip == r.src_ip && o->src_port == r.src_port) continue;  // r's own end
    if (!best || o->end_ns > best->end_ns) best = o;
  }
  if (!best) return std::nullopt;
  return *best;
}

namespace {

nlohmann::json remote_json(const FlowRow& o) {
  nlohmann::json j = {{"attribution", "joined"}};
  auto put = [&](const char* k, const auto& v) {
    if (v) j[k] = *v;
  };
  put("remote_host", o.host);
  put("remote_host_id", o.host_id);
  if (auto w = workload_of(o); !w.empty()) j["remote_workload"] = w;
  put("remote_exe", o.exe);
  put("remote_unit", o.unit);
  put("remote_comm", o.comm);
  put("remote_pid", o.pid);
  put("remote_container", o.container_id);
  put("remote_netns", o.netns);
  j["remote_exporter"] = o.exporter;
  return j;
}

}  // namespace

namespace {

nlohmann::json owner_json(const OwnerDecision& d) {
  nlohmann::json j = {{"attribution", "owner"}};
  const OwnershipClaim& h = *d.host;
  if (h.host) j["remote_host"] = *h.host;
  if (h.host_id) j["remote_host_id"] = *h.host_id;
  if (const OwnershipClaim* w = d.workload) {
    Flow f;
    f.exe = w->exe;
    f.unit = w->unit;
    f.comm = w->comm;
    if (auto name = workload_of(f); !name.empty()) j["remote_workload"] = name;
    auto put = [&](const char* k, const auto& v) {
      if (v) j[k] = *v;
    };
    put("remote_exe", w->exe);
    put("remote_unit", w->unit);
    put("remote_comm", w->comm);
    if (d.one_pid) put("remote_pid", w->pid);
    put("remote_container", w->container_id);
    put("remote_netns", w->netns);
  }
  j["remote_exporter"] = h.exporter;
  return j;
}

// An address no agent can own alone: loopback, unspecified, link-local.
bool shared_address(const Ip16& a) {
  if (ip16_is_v4(a)) return a[12] == 127 || (a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0) ||
                            (a[12] == 169 && a[13] == 254);
  static const Ip16 kLoop = [] {
    Ip16 l{};
    l[15] = 1;
    return l;
  }();
  return a == Ip16{} || a == kLoop || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

std::string members_of(const nlohmann::json& j) {
  std::string m = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  m.front() = ',';  // the object's members, without its braces
  m.pop_back();
  return m;
}

}  // namespace

Result<std::vector<nlohmann::json>> attribute(FlowStore& store, const std::vector<FlowRow>& rows,
                                              AttributionCounts* counts, const OwnerRules& rules) {
  std::vector<const FlowRow*> refs;
  refs.reserve(rows.size());
  for (const auto& r : rows) refs.push_back(&r);
  return attribute(store, refs, counts, rules);
}

Result<std::vector<nlohmann::json>> attribute(FlowStore& store, std::span<const FlowRow* const> rows,
                                              AttributionCounts* counts, const OwnerRules& rules) {
  std::vector<uint64_t> ids;
  uint64_t first_start = UINT64_MAX;
  for (const FlowRow* r : rows)
    if (r->conversation) {
      ids.push_back(*r->conversation);
      first_start = std::min(first_start, r->start_ns);
    }
  auto found = conversation_rows(store, ids, first_start > rules.skew_ns ? first_start - rules.skew_ns : 0);
  if (!found) return std::unexpected(found.error());
  std::unordered_map<uint64_t, std::vector<const FlowRow*>> by_conv;
  for (const auto& r : *found) by_conv[*r.conversation].push_back(&r);
  std::vector<std::optional<FlowRow>> other(rows.size());
  // The rows left without the other end's record are named by ownership.
  std::vector<Ip16> addrs;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t k = 0; k < rows.size(); ++k) {
    const FlowRow& r = *rows[k];
    if (r.conversation)
      if (auto it = by_conv.find(*r.conversation); it != by_conv.end()) other[k] = other_end(r, it->second);
    if (other[k] || shared_address(r.dst_ip)) continue;
    addrs.push_back(r.dst_ip);
    lo = std::min(lo, r.start_ns);
    hi = std::max(hi, r.start_ns);
  }
  std::sort(addrs.begin(), addrs.end());
  addrs.erase(std::unique(addrs.begin(), addrs.end()), addrs.end());
  std::vector<OwnershipClaim> claims;
  std::vector<Claimant> claimants;
  if (!addrs.empty()) {
    constexpr size_t kAddrsPerQuery = 500;
    for (size_t at = 0; at < addrs.size(); at += kAddrsPerQuery) {
      ClaimQuery q;
      q.addrs.assign(addrs.begin() + static_cast<std::ptrdiff_t>(at),
                     addrs.begin() + static_cast<std::ptrdiff_t>(std::min(addrs.size(), at + kAddrsPerQuery)));
      q.from_ns = lo > rules.skew_ns ? lo - rules.skew_ns : 0;
      q.to_ns = hi + rules.skew_ns;
      auto c = store.claims(q);
      if (!c) return std::unexpected(c.error());
      for (auto& x : *c) claims.push_back(std::move(x));
    }
    auto a = store.claimants(lo > rules.linger_ns ? lo - rules.linger_ns : 0);
    if (!a) return std::unexpected(a.error());
    claimants = std::move(*a);
  }
  std::map<Ip16, std::vector<OwnershipClaim>> claims_of;
  for (auto& c : claims) claims_of[c.addr].push_back(std::move(c));
  AttributionCounts n;
  std::vector<nlohmann::json> out;
  out.reserve(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    const FlowRow& r = *rows[k];
    if (other[k]) {
      ++n.joined;
      out.push_back(remote_json(*other[k]));
      continue;
    }
    OwnerDecision d;
    if (!shared_address(r.dst_ip)) {
      auto it = claims_of.find(r.dst_ip);
      static const std::vector<OwnershipClaim> kNone;
      const auto& mine = it == claims_of.end() ? kNone : it->second;
      d = decide_owner(mine, claimants, r.dst_ip, r.dst_port, r.protocol, r.start_ns, rules);
    }
    if (d.verdict == OwnerVerdict::Owner) {
      ++n.owner;
      out.push_back(owner_json(d));
      continue;
    }
    ++n.none;
    ++n.unattributed[static_cast<size_t>(d.verdict)];
    out.push_back({{"attribution", "none"}, {"unattributed", shared_address(r.dst_ip) ? "shared_address" : to_string(d.verdict)}});
  }
  if (counts) *counts = n;
  return out;
}

Result<std::vector<std::string>> attribution_members(FlowStore& store, const std::vector<FlowRow>& rows,
                                                     AttributionCounts* counts, const OwnerRules& rules) {
  auto objects = attribute(store, rows, counts, rules);
  if (!objects) return std::unexpected(objects.error());
  std::vector<std::string> out;
  out.reserve(objects->size());
  for (const auto& j : *objects) out.push_back(members_of(j));
  return out;
}

std::string with_members(std::string object, const std::string& members) {
  if (object.empty() || object.back() != '}') return object;
  object.pop_back();
  object += members;
  object += '}';
  return object;
}

}  // namespace flowscope
