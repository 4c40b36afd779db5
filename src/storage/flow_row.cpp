#include "storage/flow_row.h"

#include <nlohmann/json.hpp>

namespace flowscope {

uint64_t FlowRow::drops_total() const {
  uint64_t n = 0;
  for (const auto& d : drops) n += d.count;
  return n;
}

FlowRow flow_row_basics(const FlowRecord& r, std::string exporter, uint32_t domain) {
  FlowRow w;
  w.exporter = std::move(exporter);
  w.domain = domain;
  w.start_ns = r.start_ns;
  w.end_ns = r.end_ns;
  if (r.family == 4) {
    w.src_ip = ip16_from_v4(r.local_ip.data());
    w.dst_ip = ip16_from_v4(r.remote_ip.data());
  } else {
    w.src_ip = ip16_from_v6(r.local_ip.data());
    w.dst_ip = ip16_from_v6(r.remote_ip.data());
  }
  w.src_port = r.local_port;
  w.dst_port = r.remote_port;
  w.protocol = r.protocol;
  w.direction = to_string(r.direction);
  w.bytes = r.bytes_sent;
  w.packets = r.segs_sent;
  w.rev_bytes = r.bytes_received;
  w.rev_packets = r.segs_received;
  w.interim = r.interim;
  return w;
}

FlowRow flow_row_from_record(const FlowRecord& r, std::string exporter, uint32_t domain) {
  FlowRow w = flow_row_basics(r, std::move(exporter), domain);
  w.bidirectional = true;
  w.cumulative = true;
  w.retrans = r.retrans_segs;
  w.srtt_us = r.srtt_us;
  w.rttvar_us = r.rttvar_us;
  w.close_reason = to_string(r.close);
  if (r.pid) {
    w.pid = r.pid;
    w.comm = r.comm;
  }
  if (r.cgroup_id) w.cgroup_id = r.cgroup_id;
  if (!r.cgroup.empty()) w.cgroup = r.cgroup;
  w.container_id = r.container_id;
  if (r.netns) w.netns = r.netns;
  w.drops = r.drops;
  return w;
}

std::string flow_row_json(const FlowRow& r) {
  using nlohmann::json;
  auto opt = [](const auto& o) -> json { return o ? json(*o) : json(nullptr); };
  json drops = json::object();
  for (const auto& d : r.drops) drops[d.reason] = d.count;
  json j = {
      {"id", r.id},
      {"exporter", r.exporter},
      {"domain", r.domain},
      {"start_ns", r.start_ns},
      {"end_ns", r.end_ns},
      {"family", r.family()},
      {"src_addr", ip16_to_string(r.src_ip)},
      {"src_port", r.src_port},
      {"dst_addr", ip16_to_string(r.dst_ip)},
      {"dst_port", r.dst_port},
      {"protocol", r.protocol},
      {"direction", r.direction},
      {"bytes", r.bytes},
      {"packets", r.packets},
      {"rev_bytes", r.rev_bytes},
      {"rev_packets", r.rev_packets},
      {"bidirectional", r.bidirectional},
      {"cumulative", r.cumulative},
      {"record", r.interim ? "interim" : "final"},
      {"retrans_segs", opt(r.retrans)},
      {"srtt_us", opt(r.srtt_us)},
      {"rttvar_us", opt(r.rttvar_us)},
      {"close", opt(r.close_reason)},
      {"pid", opt(r.pid)},
      {"comm", opt(r.comm)},
      {"cgroup_id", opt(r.cgroup_id)},
      {"cgroup", opt(r.cgroup)},
      {"container_id", opt(r.container_id)},
      {"netns", opt(r.netns)},
      {"drops", drops},
  };
  // comm and cgroup are kernel bytes, not necessarily UTF-8: replace rather than throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace flowscope
