#include "flow/json.h"

#include <iterator>

#include <fmt/format.h>

namespace flowscope {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // comm and cgroup names are bytes, not UTF-8: escape anything
          // outside printable ASCII so the line stays valid JSON.
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Hand-rolled rather than via a DOM: this runs once per flow at high rates,
// and the field set is fixed.
void append_json_line(std::string& out, const FlowRecord& r) {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 R"({{"type":"flow","record":"{}","start_ns":{},"end_ns":{},"duration_ns":{},"family":{},)"
                 R"("local_addr":"{}","local_port":{},"remote_addr":"{}","remote_port":{},"direction":"{}",)"
                 R"("bytes_sent":{},"bytes_received":{},"segs_sent":{},"segs_received":{},"retrans_segs":{},)"
                 R"("srtt_us":{},"rttvar_us":{},"close":"{}",)",
                 r.interim ? "interim" : "final", r.start_ns, r.end_ns, r.duration_ns(), r.family, r.local_addr,
                 r.local_port, r.remote_addr, r.remote_port, to_string(r.direction), r.bytes_sent, r.bytes_received,
                 r.segs_sent, r.segs_received, r.retrans_segs, r.srtt_us, r.rttvar_us, to_string(r.close));
  if (r.pid) {
    fmt::format_to(it, R"("pid":{},"comm":)", r.pid);
    append_json_string(out, r.comm);
  } else {
    out += R"("pid":null,"comm":null)";
  }
  fmt::format_to(it, R"(,"cgroup_id":{},"cgroup":)", r.cgroup_id);
  if (r.cgroup.empty())
    out += "null";
  else
    append_json_string(out, r.cgroup);
  out += R"(,"container_id":)";
  if (r.container_id)
    append_json_string(out, *r.container_id);
  else
    out += "null";
  fmt::format_to(it, R"(,"netns":{},"preexisting":{},"drops":{{)", r.netns, r.preexisting ? "true" : "false");
  bool first = true;
  for (const auto& d : r.drops) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, d.reason);
    fmt::format_to(it, ":{}", d.count);
  }
  out += "}}\n";
}

}  // namespace flowscope
