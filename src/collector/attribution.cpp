#include "collector/attribution.h"

#include <algorithm>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace flowscope {

std::string workload_of(const Flow& f) {
  if (f.unit && !f.unit->empty()) return *f.unit;
  if (f.exe && !f.exe->empty()) return *f.exe;
  if (f.comm && !f.comm->empty()) return *f.comm;
  return {};
}

Result<std::vector<FlowRow>> conversation_rows(FlowStore& store, std::vector<uint64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<FlowRow> out;
  constexpr size_t kIdsPerQuery = 500;
  for (size_t at = 0; at < ids.size(); at += kIdsPerQuery) {
    FlowQuery q;
    q.filter.conversations.assign(ids.begin() + static_cast<std::ptrdiff_t>(at),
                                  ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + kIdsPerQuery)));
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

Result<std::vector<std::string>> attribution_members(FlowStore& store, const std::vector<FlowRow>& rows) {
  std::vector<uint64_t> ids;
  for (const auto& r : rows)
    if (r.conversation) ids.push_back(*r.conversation);
  auto found = conversation_rows(store, ids);
  if (!found) return std::unexpected(found.error());
  std::unordered_map<uint64_t, std::vector<const FlowRow*>> by_conv;
  for (const auto& r : *found) by_conv[*r.conversation].push_back(&r);
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    std::optional<FlowRow> o;
    if (r.conversation)
      if (auto it = by_conv.find(*r.conversation); it != by_conv.end()) o = other_end(r, it->second);
    std::string m = o ? remote_json(*o).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : std::string(R"({"attribution":"none"})");
    m.front() = ',';  // the object's members, without its braces
    m.pop_back();
    out.push_back(std::move(m));
  }
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
