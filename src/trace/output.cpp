#include "trace/output.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "trace/packet.h"

namespace flowscope::trace {

EventNames::EventNames(std::vector<std::string> tracepoints, std::map<int64_t, std::string> reasons, Kallsyms syms,
                       int64_t realtime_offset_ns)
    : tps_(std::move(tracepoints)), reasons_(std::move(reasons)), syms_(std::move(syms)), offset_(realtime_offset_ns) {}

std::string EventNames::tracepoint(const fs_trace_event& ev) const {
  // trace --functions: the function and the probe's offset in it.
  if (ev.flags & FS_TEV_FUNC) return syms_.symbolize(ev.location);
  return ev.tp < tps_.size() ? tps_[ev.tp] : fmt::format("tracepoint#{}", ev.tp);
}

std::string EventNames::reason(const fs_trace_event& ev) const {
  if (!(ev.flags & FS_TEV_HAS_REASON)) return "";
  auto it = reasons_.find(ev.reason);
  return it != reasons_.end() ? it->second : fmt::format("reason#{}", ev.reason);
}

bool EventNames::is_drop(const fs_trace_event& ev) const {
  if (!(ev.flags & FS_TEV_HAS_REASON)) return false;
  const std::string r = reason(ev);
  return r != "SKB_CONSUMED" && r != "SKB_NOT_DROPPED_YET";
}

std::string EventNames::function(const fs_trace_event& ev) const {
  return ev.flags & FS_TEV_FUNC ? syms_.function(ev.location) : "";
}

std::string EventNames::location(const fs_trace_event& ev) const {
  return ev.location ? syms_.symbolize(ev.location) : "";
}

std::string clock_time(int64_t realtime_ns) {
  const time_t sec = static_cast<time_t>(realtime_ns / 1000000000);
  struct tm tm {};
  localtime_r(&sec, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:06}", tm.tm_hour, tm.tm_min, tm.tm_sec, (realtime_ns % 1000000000) / 1000);
}

namespace {

std::string ifname_of(const fs_trace_event& ev) {
  std::string s(ev.ifname, strnlen(ev.ifname, sizeof(ev.ifname)));
  return s.empty() ? "-" : s;
}

std::string free_note(const EventNames& n, const fs_trace_event& ev) {
  if (!(ev.flags & FS_TEV_FREE)) return "";
  std::string s;
  if (n.is_drop(ev))
    s = " DROP " + n.reason(ev);
  else if (ev.flags & FS_TEV_HAS_REASON)
    s = " " + n.reason(ev);
  if (ev.location) s += " at " + n.location(ev);
  return s;
}

}  // namespace

std::string format_event_line(const EventNames& n, const fs_trace_event& ev) {
  const PacketInfo pi = decode_packet(ev.pkt, ev.cap_len);
  return fmt::format("{} pkt {} cpu {} netns {} {} {} len {} {}{}", clock_time(n.realtime_ns(ev.ts_ns)), ev.pkt_id,
                     ev.cpu, ev.netns, ifname_of(ev), n.tracepoint(ev), ev.len, pi.summary(), free_note(n, ev));
}

nlohmann::json event_json(const EventNames& n, const fs_trace_event& ev) {
  const PacketInfo pi = decode_packet(ev.pkt, ev.cap_len);
  nlohmann::json j;
  j["time_ns"] = n.realtime_ns(ev.ts_ns);
  j["pkt"] = ev.pkt_id;
  j["tracepoint"] = n.tracepoint(ev);
  j["cpu"] = ev.cpu;
  j["netns"] = ev.netns;
  j["ifindex"] = ev.ifindex;
  j["ifname"] = std::string(ev.ifname, strnlen(ev.ifname, sizeof(ev.ifname)));
  j["len"] = ev.len;
  j["mark"] = ev.mark;
  j["skb"] = fmt::format("{:#x}", ev.skb);
  if (pi.ip_version) {
    j["ip"] = pi.ip_version;
    j["src"] = pi.src;
    j["dst"] = pi.dst;
    j["proto"] = pi.proto_name();
    if (pi.has_ports) {
      j["sport"] = pi.sport;
      j["dport"] = pi.dport;
    }
    if (pi.proto == 6 && pi.has_ports) j["tcp_flags"] = pi.flags_string();
    if (pi.icmp_type >= 0) {
      j["icmp_type"] = pi.icmp_type;
      j["icmp_code"] = pi.icmp_code;
    }
  }
  if (ev.flags & FS_TEV_FREE) j["freed"] = true;
  if (ev.flags & FS_TEV_HAS_REASON) {
    j["reason"] = n.reason(ev);
    j["drop"] = n.is_drop(ev);
  }
  if (ev.flags & FS_TEV_FUNC)
    j["function"] = n.function(ev);
  else if (ev.location)
    j["location"] = n.location(ev);
  return j;
}

std::string format_packet_block(const EventNames& n, const TracedPacket& p) {
  if (p.events.empty()) return "";
  const fs_trace_event& first = p.events.front();
  const PacketInfo pi0 = decode_packet(first.pkt, first.cap_len);
  std::string out = fmt::format("packet {} {} {}{}\n", p.id, clock_time(n.realtime_ns(first.ts_ns)), pi0.summary(),
                                p.freed ? "" : " (not freed on a traced path)");
  std::string last_summary = pi0.summary();
  for (const auto& ev : p.events) {
    const double rel = static_cast<double>(ev.ts_ns - first.ts_ns) / 1e9;
    std::string line = fmt::format("  +{:.6f} cpu {:<2} netns {:<10} {:<10} {:<28} len {:<5}", rel, ev.cpu, ev.netns,
                                   ifname_of(ev), n.tracepoint(ev), ev.len);
    const PacketInfo pi = decode_packet(ev.pkt, ev.cap_len);
    const std::string sum = pi.summary();
    if (pi.ip_version && sum != last_summary) {
      line += " " + sum;  // headers changed (NAT, encapsulation)
      last_summary = sum;
    }
    line += free_note(n, ev);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string packet_comment(const EventNames& n, const TracedPacket& p) {
  std::string path;
  std::string drop;
  for (const auto& ev : p.events) {
    if (!path.empty()) path += " > ";
    path += n.tracepoint(ev);
    std::string ifn(ev.ifname, strnlen(ev.ifname, sizeof(ev.ifname)));
    if (!ifn.empty()) path += "@" + ifn;
    if (n.is_drop(ev)) drop = "drop " + n.reason(ev) + (ev.location ? " at " + n.location(ev) : "");
  }
  std::string c = "path: " + path;
  if (!drop.empty()) c += "; " + drop;
  return c;
}

std::vector<TracedPacket> PacketAssembler::add(const fs_trace_event& ev) {
  std::vector<TracedPacket> done;
  auto it = open_.find(ev.pkt_id);
  if (it == open_.end()) {
    if (open_.size() >= max_open_) {
      auto oldest = open_.begin();
      done.push_back(std::move(oldest->second));
      open_.erase(oldest);
      pushed_out_++;
    }
    it = open_.emplace(ev.pkt_id, TracedPacket{ev.pkt_id, {}, false}).first;
  }
  it->second.events.push_back(ev);
  if (ev.flags & FS_TEV_FREE) {
    it->second.freed = true;
    auto& evs = it->second.events;
    // Events of one packet on several CPUs can arrive out of order.
    std::stable_sort(evs.begin(), evs.end(), [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; });
    done.push_back(std::move(it->second));
    open_.erase(it);
  }
  return done;
}

std::vector<TracedPacket> PacketAssembler::expire(uint64_t now_mono_ns, bool flush_all) {
  std::vector<TracedPacket> done;
  const auto idle = static_cast<uint64_t>(idle_.count());
  for (auto it = open_.begin(); it != open_.end();) {
    const uint64_t last = it->second.events.empty() ? 0 : it->second.events.back().ts_ns;
    if (flush_all || last + idle < now_mono_ns) {
      auto& evs = it->second.events;
      std::stable_sort(evs.begin(), evs.end(), [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; });
      done.push_back(std::move(it->second));
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
  return done;
}

void DropSummary::add(const EventNames& n, const fs_trace_event& ev) {
  if (!n.is_drop(ev)) return;
  counts_[{n.reason(ev), n.location(ev), ifname_of(ev)}]++;
  total_++;
}

std::string DropSummary::render(const std::string& title) const {
  std::vector<std::pair<uint64_t, std::tuple<std::string, std::string, std::string>>> rows;
  for (const auto& [k, v] : counts_) rows.emplace_back(v, k);
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out = fmt::format("--- {}: {} drops ---\n", title, total_);
  out += fmt::format("{:>8}  {:<28} {:<36} {}\n", "COUNT", "REASON", "LOCATION", "IFACE");
  for (const auto& [count, k] : rows) {
    out += fmt::format("{:>8}  {:<28} {:<36} {}\n", count, std::get<0>(k), std::get<1>(k), std::get<2>(k));
  }
  return out;
}

}  // namespace flowscope::trace
