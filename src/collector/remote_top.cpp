#include "collector/remote_top.h"

#include <algorithm>
#include <unordered_map>

#include "collector/attribution.h"
#include "net/ip16.h"

namespace flowscope {

const char* to_string(RemoteLevel l) { return l == RemoteLevel::Host ? "remote_host" : "remote_workload"; }

bool is_remote_top(const Params& p) {
  auto it = p.find("group");
  return it != p.end() && (it->second == "remote_workload" || it->second == "remote_host");
}

Result<RemoteTopQuery> parse_remote_top_query(const Params& p, uint64_t now_ns) {
  RemoteTopQuery q;
  if (p.count("group") > 1) return fail("parameter 'group' given more than once");
  Params rest = p;
  q.level = rest.find("group")->second == "remote_host" ? RemoteLevel::Host : RemoteLevel::Workload;
  rest.erase("group");
  std::optional<std::string> interval;
  if (auto it = rest.find("interval"); it != rest.end()) {
    if (rest.count("interval") > 1) return fail("parameter 'interval' given more than once");
    interval = it->second;
    rest.erase("interval");
  }
  if (rest.contains("cidr4") || rest.contains("cidr6"))
    return fail("parameters 'cidr4' and 'cidr6' need group=src_cidr or group=dst_cidr");
  auto top = parse_top_query(rest, now_ns);
  if (!top) return std::unexpected(top.error());
  q.top = *top;
  // The interval as /api/timeseries takes it.
  Params series = {{"from", std::to_string(*q.top.filter.from_ns / 1'000'000'000)},
                   {"to", std::to_string(*q.top.filter.to_ns / 1'000'000'000)}};
  if (interval) series.emplace("interval", *interval);
  auto s = parse_series_query(series, now_ns);
  if (!s) return std::unexpected(s.error());
  q.interval_ns = s->interval_ns;
  return q;
}

namespace {

// What one record adds to its group: the same shares the stores sum for
// /api/top and /api/timeseries (their deltas; failures by close reason;
// drops from every record but a cumulative flow's interim ones).
void add(TopEntry& e, const FlowRow& r) {
  e.bytes += r.delta_bytes, e.bytes_out += r.delta_bytes_out, e.bytes_in += r.delta_bytes_in;
  e.packets += r.delta_packets;
  e.flows += r.first ? 1 : 0;
  e.retrans += r.delta_retrans;
  if (r.close && (*r.close == CloseReason::Refused || *r.close == CloseReason::Timeout ||
                  *r.close == CloseReason::RstSent || *r.close == CloseReason::RstReceived))
    e.failures += 1;
  if (!(r.interim && r.cumulative)) e.drops += r.drops_total();
}

void add(SeriesPoint& p, const FlowRow& r) {
  TopEntry e;
  add(e, r);
  p.bytes += e.bytes, p.bytes_out += e.bytes_out, p.bytes_in += e.bytes_in, p.packets += e.packets;
  p.flows += e.flows, p.retrans += e.retrans, p.failures += e.failures, p.drops += e.drops;
}

uint64_t metric(const TopEntry& e, TopMetric m) {
  switch (m) {
    case TopMetric::Bytes: return e.bytes;
    case TopMetric::Flows: return e.flows;
    case TopMetric::Retrans: return e.retrans;
    case TopMetric::Failures: return e.failures;
    case TopMetric::Drops: return e.drops;
  }
  return 0;
}

}  // namespace

Result<std::vector<RemoteTopEntry>> remote_top(FlowStore& store, const RemoteTopQuery& q, const OwnerRules& rules) {
  const uint64_t from = *q.top.filter.from_ns;
  const uint64_t buckets = (*q.top.filter.to_ns - from) / q.interval_ns + 1;
  // Per group its total and its records' shares by bucket, sparse (most
  // remote ends have a few records): only the top entries get whole series.
  struct Group {
    bool attributed = false;
    TopEntry total;
    std::vector<std::pair<uint64_t, SeriesPoint>> shares;
  };
  std::unordered_map<std::string, Group> groups;
  FlowQuery fq{.filter = q.top.filter, .limit = 10'000, .offset = 0};
  uint64_t records = 0;
  for (;;) {
    auto page = store.query(fq);
    if (!page) return std::unexpected(page.error());
    records += page->flows.size();
    if (records > kMaxRemoteTopRecords)
      return fail("the answer would read more than {} records: narrow the time range or add filters",
                  kMaxRemoteTopRecords);
    auto remote = attribute(store, page->flows, nullptr, rules);
    if (!remote) return std::unexpected(remote.error());
    for (size_t k = 0; k < page->flows.size(); ++k) {
      const FlowRow& r = page->flows[k];
      const nlohmann::json& j = (*remote)[k];
      const char* field = q.level == RemoteLevel::Host ? "remote_host" : "remote_workload";
      const bool named = j.contains(field);
      auto [it, added] = groups.try_emplace(named ? j[field].get<std::string>() : ip16_to_string(r.dst_ip));
      Group& g = it->second;
      g.attributed = named;
      add(g.total, r);
      if (r.end_ns >= from && r.end_ns <= *q.top.filter.to_ns) {  // as /api/timeseries buckets them
        const uint64_t b = (r.end_ns - from) / q.interval_ns;
        if (b < buckets) {
          if (g.shares.empty() || g.shares.back().first != b) g.shares.push_back({b, SeriesPoint{}});
          add(g.shares.back().second, r);
        }
      }
    }
    if (!page->more) break;
    fq.offset += fq.limit;
  }
  std::vector<std::pair<const std::string*, Group*>> ranked;
  ranked.reserve(groups.size());
  for (auto& [k, g] : groups)
    if (metric(g.total, q.top.by) > 0) ranked.push_back({&k, &g});
  auto before = [&](const auto& a, const auto& b) {
    const uint64_t ma = metric(a.second->total, q.top.by), mb = metric(b.second->total, q.top.by);
    return ma != mb ? ma > mb : *a.first < *b.first;
  };
  const size_t n = std::min<size_t>(ranked.size(), q.top.limit);
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n), ranked.end(), before);
  std::vector<RemoteTopEntry> out;
  for (size_t k = 0; k < n; ++k) {
    const Group& g = *ranked[k].second;
    RemoteTopEntry e{*ranked[k].first, g.attributed, g.total, std::vector<SeriesPoint>(buckets)};
    for (uint64_t b = 0; b < buckets; ++b) e.points[b].time_ns = from + b * q.interval_ns;
    for (const auto& [b, share] : g.shares) {
      SeriesPoint& p = e.points[b];
      p.bytes += share.bytes, p.bytes_out += share.bytes_out, p.bytes_in += share.bytes_in;
      p.packets += share.packets, p.flows += share.flows, p.retrans += share.retrans;
      p.failures += share.failures, p.drops += share.drops;
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace flowscope
