#include "flow/json.h"

#include <iterator>

#include <fmt/compile.h>
#include <fmt/format.h>

namespace flowscope {

namespace {

// Characters that must be escaped in a JSON string, or that we escape because
// comm and cgroup names are bytes, not UTF-8.
constexpr bool needs_escape(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '"' || c == '\\'; }

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  size_t plain = 0;
  while (plain < s.size() && !needs_escape(static_cast<unsigned char>(s[plain]))) ++plain;
  out.append(s.data(), plain);  // the common case: nothing to escape
  for (unsigned char c : s.substr(plain)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (needs_escape(c))
          fmt::format_to(std::back_inserter(out), FMT_COMPILE("\\u{:04x}"), c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

// Hand-rolled rather than via a DOM, with format strings compiled ahead: this
// runs once per flow at high rates, and the field set is fixed.
void append_json_line(std::string& out, const FlowRecord& r) {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 FMT_COMPILE(R"({{"type":"flow","record":"{}","start_ns":{},"end_ns":{},"duration_ns":{},"family":{},)"
                             R"("local_addr":"{}","local_port":{},"remote_addr":"{}","remote_port":{},"direction":"{}",)"
                             R"("bytes_sent":{},"bytes_received":{},"segs_sent":{},"segs_received":{},"retrans_segs":{},)"
                             R"("srtt_us":{},"rttvar_us":{},"close":"{}",)"),
                 r.interim ? "interim" : "final", r.start_ns, r.end_ns, r.duration_ns(), r.family, r.local_addr,
                 r.local_port, r.remote_addr, r.remote_port, to_string(r.direction), r.bytes_sent, r.bytes_received,
                 r.segs_sent, r.segs_received, r.retrans_segs, r.srtt_us, r.rttvar_us, to_string(r.close));
  if (r.pid) {
    fmt::format_to(it, FMT_COMPILE(R"("pid":{},"comm":)"), r.pid);
    append_json_string(out, r.comm);
  } else {
    out += R"("pid":null,"comm":null)";
  }
  fmt::format_to(it, FMT_COMPILE(R"(,"cgroup_id":{},"cgroup":)"), r.cgroup_id);
  if (r.cgroup.empty())
    out += "null";
  else
    append_json_string(out, r.cgroup);
  out += R"(,"container_id":)";
  if (r.container_id)
    append_json_string(out, *r.container_id);
  else
    out += "null";
  fmt::format_to(it, FMT_COMPILE(R"(,"netns":{},"preexisting":{},"drops":{{)"), r.netns,
                 r.preexisting ? "true" : "false");
  bool first = true;
  for (const auto& d : r.drops) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, d.reason);
    fmt::format_to(it, FMT_COMPILE(":{}"), d.count);
  }
  out += "}}\n";
}

}  // namespace flowscope
