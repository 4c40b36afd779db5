#include "collector/graph.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "collector/attribution.h"
#include "storage/delta_tracker.h"

namespace flowscope {

Result<GraphQuery> parse_graph_query(const Params& p, uint64_t now_ns) {
  auto f = parse_ranged_filter(p, now_ns, {"level", "limit"});
  if (!f) return std::unexpected(f.error());
  GraphQuery q{.filter = *f};
  if (auto it = p.find("level"); it != p.end()) {
    static const std::map<std::string, GraphLevel, std::less<>> levels = {{"host", GraphLevel::Host},
                                                                          {"workload", GraphLevel::Workload},
                                                                          {"container", GraphLevel::Container},
                                                                          {"process", GraphLevel::Process}};
    auto l = levels.find(it->second);
    if (l == levels.end()) return fail("parameter 'level': expected host, workload, container or process");
    q.level = l->second;
  }
  if (auto it = p.find("limit"); it != p.end()) {
    const std::string& v = it->second;
    uint32_t n = 0;
    auto [e, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || e != v.data() + v.size() || n == 0 || n > kMaxGraphEdges)
      return fail("parameter 'limit': expected 1..{}", kMaxGraphEdges);
    q.limit = n;
  }
  return q;
}

namespace {

const char* level_name(GraphLevel l) {
  switch (l) {
    case GraphLevel::Host: return "host";
    case GraphLevel::Workload: return "workload";
    case GraphLevel::Container: return "container";
    case GraphLevel::Process: return "process";
  }
  return "?";
}

// One end of a connection as its records tell it: the latest record of a
// cumulative flow (totals), or the sum of a third party's per-record shares.
struct EndView {
  std::string key;  // end_key(rec) of its first record
  FlowRow rec;
  uint64_t bytes = 0, rev_bytes = 0, retrans = 0;
  std::map<std::string, uint64_t> drops;
};

struct Connection {
  std::vector<EndView> ends;  // 1 or 2
};

// One end of a connection: its reporter and its socket (binary, compared
// once per record).
std::string end_key(const FlowRow& r) {
  std::string k = r.host_id.value_or(r.host.value_or(r.exporter));
  k += '|';
  const auto put = [&](const auto& v) { k.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(r.domain);
  k.append(reinterpret_cast<const char*>(r.src_ip.data()), r.src_ip.size());
  put(r.src_port);
  put(r.start_ns);
  return k;
}

// Takes the record (moved in: a graph holds the latest record of every end).
void add_record(Connection& c, FlowRow&& r) {
  std::string k = end_key(r);
  auto it = std::find_if(c.ends.begin(), c.ends.end(), [&](const EndView& e) { return e.key == k; });
  if (it == c.ends.end()) {
    if (c.ends.size() >= 2) return;  // a third view of one connection cannot be: keep the first two
    EndView e{std::move(k), {}, r.bytes, r.rev_bytes, r.retrans.value_or(0), {}};
    for (const auto& d : r.drops) e.drops[d.reason] += d.count;
    e.rec = std::move(r);
    c.ends.push_back(std::move(e));
    return;
  }
  if (r.cumulative) {
    if (r.end_ns < it->rec.end_ns) return;
    it->bytes = r.bytes, it->rev_bytes = r.rev_bytes, it->retrans = r.retrans.value_or(0);
    it->drops.clear();
    for (const auto& d : r.drops) it->drops[d.reason] = d.count;
    it->rec = std::move(r);
    return;
  }
  it->bytes += r.bytes, it->rev_bytes += r.rev_bytes, it->retrans += r.retrans.value_or(0);
  for (const auto& d : r.drops) it->drops[d.reason] += d.count;
  if (r.end_ns > it->rec.end_ns) it->rec = std::move(r);
}

struct Node {
  std::string id;
  bool attributed = true;
  // The API filter selecting this node's own records (`key`=`value`, and
  // pid for a process; none without a key); a node named by its address or
  // by ownership evidence selects by the address instead. Kept as strings
  // here: the graph names a node once per connection.
  const char* key = nullptr;
  std::string value;
  std::optional<uint32_t> pid;
  nlohmann::json filter() const {
    nlohmann::json f = nlohmann::json::object();
    if (key) f[key] = value;
    if (pid) f["pid"] = *pid;
    return f;
  }
};

Node node_of(const FlowRow& r, GraphLevel level) {
  const std::string host = r.host.value_or(r.exporter);
  std::string w = workload_of(r);
  if (w.empty()) w = "unknown";
  const char* by_workload = w == "unknown" ? nullptr : "workload";
  const char* by_host = r.host ? "host" : "exporter";  // a third party's record names no host
  switch (level) {
    case GraphLevel::Host: return {host, true, by_host, host};
    case GraphLevel::Workload: return {w, true, by_workload, w};
    case GraphLevel::Container:
      if (r.container_id && !r.container_id->empty())
        return {r.container_id->substr(0, 12), true, "container", r.container_id->substr(0, 12)};
      return {w, true, by_workload, w};
    case GraphLevel::Process:
      return {fmt::format("{}/{}[{}]", host, r.exe.value_or(r.comm.value_or("unknown")),
                          r.pid ? std::to_string(*r.pid) : "?"),
              true, by_host, host, r.pid};
  }
  return {host};
}

Node address_node(const Ip16& ip) {
  const std::string a = ip16_to_string(ip);
  return {a, false, "addr", a};
}

// The end at `ip` that no agent's record shows, named from ownership
// evidence (`owner`: the attribution of a record whose remote end it is) at
// the graph's level; nullopt when the evidence does not reach that level.
std::optional<Node> owned_node(const nlohmann::json& owner, const Ip16& ip, GraphLevel level) {
  if (owner.value("attribution", "") != "owner" || !owner.contains("remote_host")) return std::nullopt;
  const std::string host = owner["remote_host"];
  const std::string addr = ip16_to_string(ip);
  switch (level) {
    case GraphLevel::Host: return Node{host, true, "addr", addr};
    case GraphLevel::Workload:
      if (!owner.contains("remote_workload")) return std::nullopt;
      return Node{owner["remote_workload"], true, "addr", addr};
    case GraphLevel::Container:
      if (owner.contains("remote_container"))
        return Node{owner["remote_container"].get<std::string>().substr(0, 12), true, "addr", addr};
      if (!owner.contains("remote_workload")) return std::nullopt;
      return Node{owner["remote_workload"], true, "addr", addr};
    case GraphLevel::Process: {
      if (!owner.contains("remote_pid")) return std::nullopt;
      const std::string name = owner.value("remote_exe", owner.value("remote_comm", std::string("unknown")));
      return Node{fmt::format("{}/{}[{}]", host, name, owner["remote_pid"].get<uint32_t>()), true, "addr", addr};
    }
  }
  return std::nullopt;
}

struct Edge {
  std::string src, dst;
  uint64_t bytes_fwd = 0, bytes_rev = 0;  // client -> server, server -> client
  uint64_t connections = 0, joined = 0, owner = 0, unattributed = 0;
  uint64_t refused = 0, timeout = 0, reset = 0;
  uint64_t retrans = 0;
  std::map<std::string, uint64_t> drops;
  std::vector<uint32_t> rtts;
  void add(const Edge& o) {
    bytes_fwd += o.bytes_fwd, bytes_rev += o.bytes_rev;
    connections += o.connections, joined += o.joined, owner += o.owner, unattributed += o.unattributed;
    refused += o.refused, timeout += o.timeout, reset += o.reset, retrans += o.retrans;
    for (const auto& [k, v] : o.drops) drops[k] += v;
    rtts.insert(rtts.end(), o.rtts.begin(), o.rtts.end());
  }
};

// Nearest-rank percentile.
std::optional<uint32_t> percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

nlohmann::json edge_json(Edge& e) {
  uint64_t drops_total = 0;
  for (const auto& [k, v] : e.drops) drops_total += v;
  nlohmann::json j = {{"src", e.src},
                      {"dst", e.dst},
                      {"bytes_src_to_dst", e.bytes_fwd},
                      {"bytes_dst_to_src", e.bytes_rev},
                      {"connections", e.connections},
                      {"joined", e.joined},
                      {"owner", e.owner},
                      {"unattributed", e.unattributed},
                      {"failed", e.refused + e.timeout + e.reset},
                      {"failed_by", {{"refused", e.refused}, {"timeout", e.timeout}, {"reset", e.reset}}},
                      {"retransmits", e.retrans},
                      {"drops", e.drops},
                      {"drops_total", drops_total}};
  auto p50 = percentile(e.rtts, 0.50), p95 = percentile(e.rtts, 0.95);
  j["rtt_p50_us"] = p50 ? nlohmann::json(*p50) : nlohmann::json(nullptr);
  j["rtt_p95_us"] = p95 ? nlohmann::json(*p95) : nlohmann::json(nullptr);
  return j;
}

}  // namespace

Result<nlohmann::json> build_graph(FlowStore& store, const GraphQuery& q, const OwnerRules& rules) {
  // Every record in range, grouped by connection.
  std::unordered_map<std::string, Connection> conns;
  auto conn_key = [](const FlowRow& r) {
    // Built by append: GCC 12 at -O3 misreads `"f" + std::string&&` as an
    // overlapping copy (-Wrestrict).
    if (r.conversation) return fmt::format("c{}", *r.conversation);
    std::string key = "f";
    key += flow_identity(r);
    return key;
  };
  FlowQuery fq{.filter = q.filter, .limit = 10'000, .offset = 0};
  uint64_t records = 0;
  for (;;) {
    auto page = store.query(fq);
    if (!page) return std::unexpected(page.error());
    records += page->flows.size();
    if (records > kMaxGraphRecords)
      return fail("the graph would read more than {} records: narrow the time range or add filters",
                  kMaxGraphRecords);
    for (auto& r : page->flows) add_record(conns[conn_key(r)], std::move(r));
    if (!page->more) break;
    fq.offset += fq.limit;
  }
  // Connections seen from one end here whose other end's records fell
  // outside the filter: read them by conversation id.
  std::vector<uint64_t> lone;
  uint64_t first_start = UINT64_MAX;
  for (const auto& [k, c] : conns)
    if (c.ends.size() == 1 && c.ends[0].rec.conversation) {
      lone.push_back(*c.ends[0].rec.conversation);
      first_start = std::min(first_start, c.ends[0].rec.start_ns);
    }
  if (!lone.empty()) {
    auto more = conversation_rows(store, lone, first_start > rules.skew_ns ? first_start - rules.skew_ns : 0);
    if (!more) return std::unexpected(more.error());
    for (auto& r : *more) {
      Connection& c = conns[conn_key(r)];
      // Only the other end's records: the end here was read above, as far
      // as the filter reaches (adding its records again would count
      // per-record shares twice).
      if (!c.ends.empty() && c.ends[0].key == end_key(r)) continue;
      add_record(c, std::move(r));
    }
  }

  // The other end of the connections still seen from one end only, named
  // by ownership evidence where it can be.
  std::vector<const FlowRow*> single;
  std::vector<const Connection*> single_of;
  for (const auto& [k, c] : conns)
    if (c.ends.size() == 1) {
      single.push_back(&c.ends[0].rec);
      single_of.push_back(&c);
    }
  auto owners = attribute(store, single, nullptr, rules);
  if (!owners) return std::unexpected(owners.error());
  std::unordered_map<const Connection*, const nlohmann::json*> owner_of;
  for (size_t k = 0; k < single.size(); ++k) owner_of[single_of[k]] = &(*owners)[k];

  std::map<std::pair<std::string, std::string>, Edge> edges;
  std::map<std::string, Node> nodes;
  Edge total;
  for (auto& [k, c] : conns) {
    // The client is the end that opened the connection.
    const EndView* client = nullptr;
    const EndView* server = nullptr;
    if (c.ends.size() == 2) {
      const bool first_is_server =
          c.ends[0].rec.direction == Direction::Inbound || c.ends[1].rec.direction == Direction::Outbound;
      client = &c.ends[first_is_server ? 1 : 0];
      server = &c.ends[first_is_server ? 0 : 1];
    } else if (c.ends[0].rec.direction == Direction::Inbound) {
      server = &c.ends[0];
    } else {
      client = &c.ends[0];
    }
    // The end no record shows: its owner, else its address.
    std::optional<Node> owned;
    if (!client || !server) {
      const EndView& seen = client ? *client : *server;
      owned = owned_node(*owner_of.at(&c), seen.rec.dst_ip, q.level);
    }
    const Node cn = client ? node_of(client->rec, q.level) : owned ? *owned : address_node(server->rec.dst_ip);
    const Node sn = server ? node_of(server->rec, q.level) : owned ? *owned : address_node(client->rec.dst_ip);
    // A node some record shows selects by that record's fields; one known
    // only from ownership evidence, by its address.
    for (const auto& [n, from_record] : {std::pair{&cn, client != nullptr}, std::pair{&sn, server != nullptr}})
      if (auto [it, added] = nodes.try_emplace(n->id, *n); !added && from_record && it->second.key && std::string_view(it->second.key) == "addr")
        it->second = *n;
    Edge e;
    e.connections = 1;
    (client && server ? e.joined : owned ? e.owner : e.unattributed) = 1;
    // Bytes from the client's record where there is one (what the server
    // acknowledged), else the server's, turned around.
    if (client) {
      e.bytes_fwd = client->bytes, e.bytes_rev = client->rev_bytes;
    } else {
      e.bytes_fwd = server->rev_bytes, e.bytes_rev = server->bytes;
    }
    for (const EndView* end : {client, server}) {
      if (!end) continue;
      e.retrans += end->retrans;  // each end retransmits its own data
      for (const auto& [reason, n] : end->drops) e.drops[reason] += n;
    }
    auto failed_as = [&](const EndView* end) -> std::optional<CloseReason> {
      if (!end || !end->rec.close) return std::nullopt;
      const CloseReason r = *end->rec.close;
      if (r == CloseReason::Refused || r == CloseReason::Timeout || r == CloseReason::RstSent ||
          r == CloseReason::RstReceived)
        return r;
      return std::nullopt;
    };
    auto f = failed_as(client);
    if (!f) f = failed_as(server);
    if (f == CloseReason::Refused) e.refused = 1;
    else if (f == CloseReason::Timeout) e.timeout = 1;
    else if (f) e.reset = 1;
    const EndView* rtt_end = client && client->rec.srtt_us ? client : server;
    if (rtt_end && rtt_end->rec.srtt_us && *rtt_end->rec.srtt_us > 0) e.rtts.push_back(*rtt_end->rec.srtt_us);
    e.src = cn.id, e.dst = sn.id;
    auto& slot = edges[{cn.id, sn.id}];
    slot.src = cn.id, slot.dst = sn.id;
    slot.add(e);
    total.add(e);
  }

  std::vector<Edge*> order;
  for (auto& [k, e] : edges) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Edge* a, const Edge* b) {
    const uint64_t ba = a->bytes_fwd + a->bytes_rev, bb = b->bytes_fwd + b->bytes_rev;
    if (ba != bb) return ba > bb;
    if (a->connections != b->connections) return a->connections > b->connections;
    return std::tie(a->src, a->dst) < std::tie(b->src, b->dst);
  });
  nlohmann::json jedges = nlohmann::json::array();
  std::set<std::string> shown;
  Edge other;
  other.src = other.dst = "other";
  for (size_t i = 0; i < order.size(); ++i) {
    if (i < q.limit) {
      shown.insert(order[i]->src);
      shown.insert(order[i]->dst);
      jedges.push_back(edge_json(*order[i]));
    } else {
      other.add(*order[i]);
    }
  }
  nlohmann::json jnodes = nlohmann::json::array();
  for (const auto& id : shown)
    jnodes.push_back({{"id", id}, {"attributed", nodes[id].attributed}, {"filter", nodes[id].filter()}});
  if (other.connections) {
    jedges.push_back(edge_json(other));
    jnodes.push_back({{"id", "other"}, {"attributed", false}});
  }
  total.src = total.dst = "";
  nlohmann::json jtotal = edge_json(total);
  jtotal.erase("src");
  jtotal.erase("dst");
  return nlohmann::json{{"level", level_name(q.level)},
                        {"from_ns", *q.filter.from_ns},
                        {"to_ns", *q.filter.to_ns},
                        {"nodes", jnodes},
                        {"edges", jedges},
                        {"edges_folded", order.size() > q.limit ? order.size() - q.limit : 0},
                        {"totals", jtotal}};
}

}  // namespace flowscope
