#include "collector/api_params.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <set>
#include <tuple>

#include "net/cidr.h"

namespace flowscope {

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;
// Shown back to the caller in errors: bounded, and only printable ASCII.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) out += "...";
  return out;
}

template <class T>
Result<T> parse_uint(std::string_view name, std::string_view v, T max) {
  uint64_t x = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || x > static_cast<uint64_t>(max))
    return fail("parameter '{}': expected an integer 0..{}, got '{}'", name, static_cast<uint64_t>(max), shown(v));
  return static_cast<T>(x);
}

// Decimal number "123" or "123.456" to nanoseconds scaled by `unit`.
std::optional<uint64_t> parse_decimal(std::string_view v, uint64_t unit) {
  auto dot = v.find('.');
  std::string_view ip = v.substr(0, dot);
  uint64_t whole = 0;
  auto [e, ec] = std::from_chars(ip.data(), ip.data() + ip.size(), whole);
  if (ip.empty() || ec != std::errc{} || e != ip.data() + ip.size()) return std::nullopt;
  if (whole > UINT64_MAX / 2 / unit) return std::nullopt;
  uint64_t ns = whole * unit;
  if (dot != std::string_view::npos) {
    std::string_view frac = v.substr(dot + 1);
    if (frac.empty() || frac.size() > 9) return std::nullopt;
    uint64_t scale = unit;
    for (char c : frac) {
      if (c < '0' || c > '9') return std::nullopt;
      scale /= 10;
      ns += static_cast<uint64_t>(c - '0') * scale;
    }
  }
  return ns;
}

std::optional<uint64_t> unit_ns(char c) {
  switch (c) {
    case 's': return kSec;
    case 'm': return 60 * kSec;
    case 'h': return 3600 * kSec;
    case 'd': return 86400 * kSec;
    case 'w': return 7 * 86400 * kSec;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_rfc3339(std::string_view v) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  if (v.size() < 20 || v[4] != '-' || v[7] != '-' || (v[10] != 'T' && v[10] != 't' && v[10] != ' ') ||
      v[13] != ':' || v[16] != ':')
    return std::nullopt;
  auto num = [&](size_t pos, size_t len) -> std::optional<int> {
    int x = 0;
    auto [e, ec] = std::from_chars(v.data() + pos, v.data() + pos + len, x);
    if (ec != std::errc{} || e != v.data() + pos + len) return std::nullopt;
    return x;
  };
  auto Y = num(0, 4), M = num(5, 2), D = num(8, 2), h = num(11, 2), m = num(14, 2), s = num(17, 2);
  if (!Y || !M || !D || !h || !m || !s || *Y < 1970 || *M < 1 || *M > 12 || *D < 1 || *D > 31 || *h > 23 ||
      *m > 59 || *s > 60)
    return std::nullopt;
  size_t pos = 19;
  uint64_t frac_ns = 0;
  if (pos < v.size() && v[pos] == '.') {
    size_t start = ++pos;
    while (pos < v.size() && v[pos] >= '0' && v[pos] <= '9') ++pos;
    if (pos == start || pos - start > 9) return std::nullopt;
    auto f = parse_decimal(std::string("0.").append(v.substr(start, pos - start)), kSec);
    if (!f) return std::nullopt;
    frac_ns = *f;
  }
  int64_t offset_s = 0;
  std::string_view tz = v.substr(pos);
  if (tz == "Z" || tz == "z") {
  } else if (tz.size() == 6 && (tz[0] == '+' || tz[0] == '-') && tz[3] == ':') {
    auto oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset_s = (*oh * 3600 + *om * 60) * (tz[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *Y - 1900;
  tm.tm_mon = *M - 1;
  tm.tm_mday = *D;
  tm.tm_hour = *h;
  tm.tm_min = *m;
  tm.tm_sec = *s;
  const int64_t t = static_cast<int64_t>(timegm(&tm)) - offset_s;
  if (t < 0 || static_cast<uint64_t>(t) > kMaxTimeNs / kSec) return std::nullopt;
  return static_cast<uint64_t>(t) * kSec + frac_ns;
}

// Parameters each endpoint accepts; anything else is refused.
const std::set<std::string> kFilterParams = {"from",      "to",   "addr",   "src",      "dst",      "port",
                                             "protocol",  "direction", "process", "comm", "pid", "container",
                                             "close",     "exporter",  "record", "drops", "exclude_port",
                                             "host",      "netns",     "workload"};

Result<void> check_params(const Params& p, const std::set<std::string>& extra) {
  for (auto it = p.begin(); it != p.end(); it = p.upper_bound(it->first)) {
    if (!kFilterParams.contains(it->first) && !extra.contains(it->first))
      return fail("unknown parameter '{}'", shown(it->first));
    if (p.count(it->first) > 1) return fail("parameter '{}' given more than once", shown(it->first));
  }
  return {};
}

const std::string* get(const Params& p, const char* name) {
  auto it = p.find(name);
  return it == p.end() ? nullptr : &it->second;
}

Result<void> check_text(const char* name, const std::string& v, size_t max = 256) {
  if (v.empty() || v.size() > max) return fail("parameter '{}': expected 1..{} characters", name, max);
  return {};
}

Result<FlowFilter> parse_filter(const Params& p, uint64_t now_ns) {
  FlowFilter f;
  if (auto* v = get(p, "from")) {
    auto t = parse_time(*v, now_ns);
    if (!t) return fail("parameter 'from': {}", t.error().message);
    f.from_ns = *t;
  }
  if (auto* v = get(p, "to")) {
    auto t = parse_time(*v, now_ns);
    if (!t) return fail("parameter 'to': {}", t.error().message);
    f.to_ns = *t;
  }
  if (f.from_ns && f.to_ns && *f.from_ns > *f.to_ns) return fail("'from' is after 'to'");
  for (auto [name, slot] : {std::pair{"addr", &f.addr}, std::pair{"src", &f.src}, std::pair{"dst", &f.dst}}) {
    if (auto* v = get(p, name)) {
      auto c = parse_cidr(*v);
      if (!c) return fail("parameter '{}': {}", name, c.error().message);
      *slot = *c;
    }
  }
  if (auto* v = get(p, "port")) {
    auto x = parse_uint<uint16_t>("port", *v, 65535);
    if (!x) return std::unexpected(x.error());
    f.port = *x;
  }
  if (auto* v = get(p, "protocol")) {
    if (*v == "tcp") f.protocol = 6;
    else if (*v == "udp") f.protocol = 17;
    else if (*v == "icmp") f.protocol = 1;
    else if (*v == "ipv6-icmp" || *v == "icmp6") f.protocol = 58;
    else if (*v == "sctp") f.protocol = 132;
    else {
      auto x = parse_uint<uint8_t>("protocol", *v, 255);
      if (!x) return fail("parameter 'protocol': expected tcp, udp, icmp, icmp6, sctp or 0..255, got '{}'", shown(*v));
      f.protocol = *x;
    }
  }
  if (auto* v = get(p, "direction")) {
    if (*v != "inbound" && *v != "outbound" && *v != "unknown")
      return fail("parameter 'direction': expected inbound, outbound or unknown");
    f.direction = *v;
  }
  const std::string* comm = get(p, "process");
  if (auto* c = get(p, "comm")) {
    if (comm) return fail("give 'process' or 'comm', not both");
    comm = c;
  }
  if (comm) {
    if (auto r = check_text("process", *comm, 64); !r) return std::unexpected(r.error());
    f.comm = *comm;
  }
  if (auto* v = get(p, "workload")) {
    if (auto r = check_text("workload", *v, 255); !r) return std::unexpected(r.error());
    f.workload = *v;
  }
  if (auto* v = get(p, "pid")) {
    auto x = parse_uint<uint32_t>("pid", *v, UINT32_MAX);
    if (!x) return std::unexpected(x.error());
    f.pid = *x;
  }
  if (auto* v = get(p, "container")) {
    if (v->size() > 128 || v->size() < 4) return fail("parameter 'container': expected 4..128 characters");
    for (char c : *v)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
        return fail("parameter 'container': only letters, digits, '-', '_' and '.' are allowed");
    f.container = *v;
  }
  if (auto* v = get(p, "close")) {
    static const std::set<std::string> ok = {"active", "fin", "rst_sent", "rst_received", "refused", "timeout"};
    if (!ok.contains(*v))
      return fail("parameter 'close': expected one of active, fin, rst_sent, rst_received, refused, timeout");
    f.close_reason = *v;
  }
  if (auto* v = get(p, "host")) {
    if (auto r = check_text("host", *v, 255); !r) return std::unexpected(r.error());
    f.host = *v;
  }
  if (auto* v = get(p, "netns")) {
    auto x = parse_uint<uint64_t>("netns", *v, UINT32_MAX);
    if (!x) return std::unexpected(x.error());
    f.netns = *x;
  }
  if (auto* v = get(p, "exporter")) {
    if (auto r = check_text("exporter", *v, 128); !r) return std::unexpected(r.error());
    f.exporter = *v;
  }
  if (auto* v = get(p, "record")) {
    if (*v == "final") f.interim = false;
    else if (*v == "interim") f.interim = true;
    else if (*v != "all") return fail("parameter 'record': expected final, interim or all");
  }
  if (auto* v = get(p, "drops")) {
    // Kernel drop reason names (enum skb_drop_reason without its prefix).
    if (v->empty() || v->size() > 64 || !std::all_of(v->begin(), v->end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
        }))
      return fail("parameter 'drops': expected a drop reason such as NO_SOCKET (letters, digits, '_') or 'any'");
    f.drop_reason = *v;
  }
  if (auto* v = get(p, "exclude_port")) {
    auto x = parse_uint<uint16_t>("exclude_port", *v, 65535);
    if (!x) return std::unexpected(x.error());
    f.exclude_port = *x;
  }
  return f;
}

void default_last_hour(FlowFilter& f, uint64_t now_ns) {
  if (!f.to_ns) f.to_ns = now_ns;
  if (!f.from_ns) f.from_ns = *f.to_ns > 3600 * kSec ? *f.to_ns - 3600 * kSec : 0;
}

}  // namespace

Result<uint64_t> parse_duration_ns(std::string_view v) {
  if (v.empty() || v.size() > 32) return fail("bad duration '{}'", shown(v));
  uint64_t unit = kSec;
  std::string_view num = v;
  if (auto u = unit_ns(v.back())) {
    unit = *u;
    num = v.substr(0, v.size() - 1);
  }
  auto ns = parse_decimal(num, unit);
  if (!ns) return fail("bad duration '{}': expected a number with an optional unit s, m, h, d or w", shown(v));
  return *ns;
}

Result<uint64_t> parse_time(std::string_view v, uint64_t now_ns) {
  if (v.empty() || v.size() > 40) return fail("bad time '{}'", shown(v));
  if (v == "now") return now_ns;
  if (v[0] == '-') {
    auto d = parse_duration_ns(v.substr(1));
    if (!d || *d > now_ns) return fail("bad relative time '{}': expected e.g. -30s, -15m, -2h, -7d", shown(v));
    return now_ns - *d;
  }
  if (v.find('-') != std::string_view::npos) {
    if (auto t = parse_rfc3339(v); t && *t <= kMaxTimeNs) return *t;
    return fail("bad time '{}': expected RFC 3339 such as 2026-11-25T12:00:00Z, before the year 2262", shown(v));
  }
  auto ns = parse_decimal(v, kSec);
  if (!ns) return fail("bad time '{}': expected Unix seconds, RFC 3339 or a relative time like -1h", shown(v));
  if (*ns > kMaxTimeNs) return fail("bad time '{}': past {} s, the largest time the store can hold", shown(v),
                                    kMaxTimeNs / kSec);
  return *ns;
}

Result<FlowQuery> parse_flow_query(const Params& p, uint64_t now_ns) {
  if (auto r = check_params(p, {"limit", "offset"}); !r) return std::unexpected(r.error());
  auto f = parse_filter(p, now_ns);
  if (!f) return std::unexpected(f.error());
  FlowQuery q{.filter = *f};
  if (auto* v = get(p, "limit")) {
    auto x = parse_uint<uint32_t>("limit", *v, kMaxFlowLimit);
    if (!x || *x == 0) return fail("parameter 'limit': expected 1..{}", kMaxFlowLimit);
    q.limit = *x;
  }
  if (auto* v = get(p, "offset")) {
    auto x = parse_uint<uint64_t>("offset", *v, kMaxOffset);
    if (!x) return std::unexpected(x.error());
    q.offset = *x;
  }
  return q;
}

Result<TopQuery> parse_top_query(const Params& p, uint64_t now_ns) {
  if (auto r = check_params(p, {"by", "group", "limit", "cidr4", "cidr6"}); !r) return std::unexpected(r.error());
  auto f = parse_filter(p, now_ns);
  if (!f) return std::unexpected(f.error());
  TopQuery q{.filter = *f};
  default_last_hour(q.filter, now_ns);
  if (*q.filter.from_ns > *q.filter.to_ns) return fail("'from' is after 'to'");
  if (auto* v = get(p, "group")) {
    static const std::map<std::string, TopGroup> g = {
        {"src", TopGroup::Src},         {"dst", TopGroup::Dst},   {"pair", TopGroup::Pair},
        {"port", TopGroup::Port},       {"process", TopGroup::Process}, {"container", TopGroup::Container},
        {"host", TopGroup::Host},       {"netns", TopGroup::Netns},     {"close", TopGroup::Close},
        {"drop_reason", TopGroup::DropReason}, {"src_cidr", TopGroup::SrcCidr}, {"dst_cidr", TopGroup::DstCidr}};
    auto it = g.find(*v);
    if (it == g.end())
      return fail("parameter 'group': expected src, dst, pair, port, process, container, host, netns, close, "
                  "drop_reason, src_cidr, dst_cidr, remote_workload or remote_host");
    q.group = it->second;
  }
  // Prefix lengths of the CIDR groups, per family.
  const bool cidr = q.group == TopGroup::SrcCidr || q.group == TopGroup::DstCidr;
  for (auto [name, max, out] : {std::tuple{"cidr4", 32, &q.cidr4}, std::tuple{"cidr6", 128, &q.cidr6}}) {
    auto* v = get(p, name);
    if (!v) continue;
    if (!cidr) return fail("parameter '{}' needs group=src_cidr or group=dst_cidr", name);
    auto x = parse_uint<uint8_t>(name, *v, static_cast<uint8_t>(max));
    if (!x) return std::unexpected(x.error());
    *out = *x;
  }
  if (auto* v = get(p, "by")) {
    if (*v == "bytes") q.by = TopMetric::Bytes;
    else if (*v == "flows") q.by = TopMetric::Flows;
    else if (*v == "retransmits" || *v == "retrans") q.by = TopMetric::Retrans;
    else if (*v == "failures") q.by = TopMetric::Failures;
    else if (*v == "drops") q.by = TopMetric::Drops;
    else return fail("parameter 'by': expected bytes, flows, retransmits, failures or drops");
  }
  if (auto* v = get(p, "limit")) {
    auto x = parse_uint<uint32_t>("limit", *v, kMaxTopLimit);
    if (!x || *x == 0) return fail("parameter 'limit': expected 1..{}", kMaxTopLimit);
    q.limit = *x;
  }
  return q;
}

Result<FlowFilter> parse_ranged_filter(const Params& p, uint64_t now_ns, const std::set<std::string>& extra) {
  if (auto r = check_params(p, extra); !r) return std::unexpected(r.error());
  auto f = parse_filter(p, now_ns);
  if (!f) return std::unexpected(f.error());
  default_last_hour(*f, now_ns);
  if (*f->from_ns > *f->to_ns) return fail("'from' is after 'to'");
  return f;
}

Result<SeriesQuery> parse_series_query(const Params& p, uint64_t now_ns) {
  if (auto r = check_params(p, {"interval"}); !r) return std::unexpected(r.error());
  auto f = parse_filter(p, now_ns);
  if (!f) return std::unexpected(f.error());
  SeriesQuery q{.filter = *f};
  default_last_hour(q.filter, now_ns);
  if (*q.filter.from_ns > *q.filter.to_ns) return fail("'from' is after 'to'");
  if (auto* v = get(p, "interval")) {
    auto d = parse_duration_ns(*v);
    if (!d) return fail("parameter 'interval': {}", d.error().message);
    if (*d < kSec || *d > 366 * 86400 * kSec) return fail("parameter 'interval': expected 1s..366d");
    q.interval_ns = *d;
  } else {
    // Default: about 60 points over the range, at least a second each.
    q.interval_ns = std::max<uint64_t>(kSec, (*q.filter.to_ns - *q.filter.from_ns) / 60 / kSec * kSec);
  }
  if ((*q.filter.to_ns - *q.filter.from_ns) / q.interval_ns > kMaxSeriesPoints)
    return fail("time series would have more than {} points: widen 'interval' or narrow from/to", kMaxSeriesPoints);
  return q;
}

Result<CompleteQuery> parse_complete_query(const Params& p, uint64_t now_ns) {
  for (const auto& [k, v] : p) {
    if (k != "field" && k != "prefix" && k != "limit" && k != "from")
      return fail("unknown parameter '{}' (expected field, prefix, limit, from)", shown(k));
    if (p.count(k) > 1) return fail("parameter '{}' given more than once", shown(k));
  }
  CompleteQuery q;
  q.from_ns = now_ns > 86400 * kSec ? now_ns - 86400 * kSec : 0;  // values seen in the last day
  auto* field = get(p, "field");
  if (!field) return fail("parameter 'field' is required");
  static const std::map<std::string, CompleteField> fields = {
      {"process", CompleteField::Process}, {"container", CompleteField::Container},
      {"host", CompleteField::Host},       {"exporter", CompleteField::Exporter},
      {"close", CompleteField::Close},     {"direction", CompleteField::Direction},
      {"drops", CompleteField::DropReason}};
  auto it = fields.find(*field);
  if (it == fields.end())
    return fail("parameter 'field': expected process, container, host, exporter, close, direction or drops");
  q.field = it->second;
  if (auto* v = get(p, "prefix")) {
    if (v->size() > 128) return fail("parameter 'prefix': expected at most 128 characters");
    q.prefix = *v;
  }
  if (auto* v = get(p, "limit")) {
    auto x = parse_uint<uint32_t>("limit", *v, kMaxCompleteLimit);
    if (!x || *x == 0) return fail("parameter 'limit': expected 1..{}", kMaxCompleteLimit);
    q.limit = *x;
  }
  if (auto* v = get(p, "from")) {
    auto t = parse_time(*v, now_ns);
    if (!t) return fail("parameter 'from': {}", t.error().message);
    q.from_ns = *t;
  }
  return q;
}

}  // namespace flowscope
