#include "ipfix/decoder.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <list>
#include <map>
#include <set>
#include <unordered_map>
#include <optional>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "flow/fields.h"
#include "ipfix/wire.h"

namespace flowscope::ipfix {

namespace {

using namespace wire;
using Clock = std::chrono::system_clock;

constexpr size_t kIpfixHeader = 16;
constexpr size_t kV9Header = 20;
constexpr size_t kSetHeader = 4;

// What a template field means to the decoder.
enum class Kind : uint8_t {
  Skip, Src4, Dst4, Src6, Dst6, SrcPort, DstPort, Proto, Octets, Packets, RevOctets, RevPackets,
  Direction, EndReason, TcpFlags, StartS, EndS, StartMs, EndMs, StartUs, EndUs, StartNs, EndNs,
  StartUp, EndUp, SysInitMs, Enterprise,
  // RFC 5610 options records
  IeId, IePen, IeType, IeName,
};

struct Field {
  uint16_t id = 0;
  uint16_t length = 0;  // kVarLen: variable
  uint32_t pen = 0;
  Kind kind = Kind::Skip;
};

struct Domain;
struct TemplateRef {
  Domain* domain;
  uint16_t id;
};
using TemplateLru = std::list<TemplateRef>;  // least recently used first

struct Template {
  uint16_t id = 0;
  bool options = false;
  std::vector<Field> fields;
  size_t min_length = 0;  // fixed fields plus one octet per variable field
  Clock::time_point refreshed{};
  size_t cost = 0;  // charged to the budgets (kTemplateCost + kFieldCost per field)
  TemplateLru::iterator lru{};
};

Kind iana_kind(uint16_t id) {
  switch (id) {
    case iana::sourceIPv4Address: return Kind::Src4;
    case iana::destinationIPv4Address: return Kind::Dst4;
    case iana::sourceIPv6Address: return Kind::Src6;
    case iana::destinationIPv6Address: return Kind::Dst6;
    case iana::sourceTransportPort: return Kind::SrcPort;
    case iana::destinationTransportPort: return Kind::DstPort;
    case iana::protocolIdentifier: return Kind::Proto;
    case iana::octetDeltaCount:
    case iana::octetTotalCount: return Kind::Octets;
    case iana::packetDeltaCount:
    case iana::packetTotalCount: return Kind::Packets;
    case iana::flowDirection: return Kind::Direction;
    case iana::flowEndReason: return Kind::EndReason;
    case iana::tcpControlBits: return Kind::TcpFlags;
    case iana::flowStartSeconds: return Kind::StartS;
    case iana::flowEndSeconds: return Kind::EndS;
    case iana::flowStartMilliseconds: return Kind::StartMs;
    case iana::flowEndMilliseconds: return Kind::EndMs;
    case iana::flowStartMicroseconds: return Kind::StartUs;
    case iana::flowEndMicroseconds: return Kind::EndUs;
    case iana::flowStartNanoseconds: return Kind::StartNs;
    case iana::flowEndNanoseconds: return Kind::EndNs;
    case iana::flowStartSysUpTime: return Kind::StartUp;
    case iana::flowEndSysUpTime: return Kind::EndUp;
    case iana::systemInitTimeMilliseconds: return Kind::SysInitMs;
    case iana::informationElementId: return Kind::IeId;
    case iana::privateEnterpriseNumber: return Kind::IePen;
    case iana::informationElementDataType: return Kind::IeType;
    case iana::informationElementName: return Kind::IeName;
    default: return Kind::Skip;
  }
}

Kind field_kind(uint16_t id, uint32_t pen) {
  if (pen == 0) return iana_kind(id);
  if (pen == kReversePen) {
    if (id == iana::octetDeltaCount || id == iana::octetTotalCount) return Kind::RevOctets;
    if (id == iana::packetDeltaCount || id == iana::packetTotalCount) return Kind::RevPackets;
    return Kind::Skip;
  }
  return Kind::Enterprise;
}

// NetFlow v9 field types share the IPFIX registry: RFC 3954 defined 1..127,
// and IANA assigns every number up to 32767 for both (nfdump's nfreplay sends
// flowStartMilliseconds 152 / flowEndMilliseconds 153). v9 has no enterprise
// bit; types from 32768 up are vendor-specific and skipped.
Kind v9_kind(uint16_t id) { return id < 0x8000 ? iana_kind(id) : Kind::Skip; }

using DomainKey = std::tuple<std::string, uint16_t, uint32_t>;  // exporter, version, domain

struct Source;
struct Held;
using HeldList = std::list<Held>;  // oldest first

struct Domain {
  Transport transport = Transport::Udp;
  Source* source = nullptr;
  std::list<Domain*>::iterator lru{};  // in source->domains
  Clock::time_point last_active{};  // idle expiry
  std::list<HeldList::iterator> held;  // this domain's entries in the hold, oldest first
  uint64_t tick = 0;                // recency across all sources (times may tie)
  std::map<uint16_t, Template> templates;
  // RFC 5610 names learned from this exporter: (pen, id) -> flowscope element.
  std::map<std::pair<uint32_t, uint16_t>, size_t> fs_names;  // -> index in the field table
  // flowscopeOwnershipState as announced under another PEN (pen, id).
  std::optional<std::pair<uint32_t, uint16_t>> claim_state_ie;
  // systemInitTimeMilliseconds from an options record (softflowd sends it
  // that way) for *SysUpTime fields.
  std::optional<uint64_t> sys_init_ms;
  // The flowscope exporter instance announced on this session (ie.h).
  std::optional<uint64_t> instance;
  bool seq_valid = false;
  uint32_t next_seq = 0;
  ExporterStats stats;
};

// An exporter address: what its sessions hold, for its budgets.
struct Source {
  std::string name;
  std::list<Domain*> domains;  // least recently active first
  TemplateLru templates;
  size_t template_bytes = 0;
  std::list<HeldList::iterator> held;  // its sessions' entries in the hold, oldest first
  size_t held_bytes = 0;
};

// Memory a held set is charged: its body plus bookkeeping, so many tiny sets
// cannot grow the hold without bound.
constexpr size_t kHeldOverhead = 128;

struct Held {
  Domain* owner;
  std::list<HeldList::iterator>::iterator ref;      // in owner->held
  std::list<HeldList::iterator>::iterator src_ref;  // in owner->source->held
  uint16_t set_id;
  std::vector<uint8_t> body;
  Clock::time_point at;
  uint32_t export_time;
  uint32_t sys_uptime;  // NetFlow v9 header
};

struct Ctx {
  uint16_t version;
  uint32_t export_time;
  uint32_t sys_uptime;
};

uint64_t ntp_to_unix_ns(uint64_t v) {
  const uint64_t sec = v >> 32;
  const uint64_t frac = v & 0xffffffffu;
  constexpr uint64_t kNtpToUnix = 2208988800ull;
  if (sec < kNtpToUnix) return 0;
  return (sec - kNtpToUnix) * 1'000'000'000ull + ((frac * 1'000'000'000ull) >> 32);
}

std::vector<DropCount> parse_drops(std::string_view s) {
  std::vector<DropCount> out;
  while (!s.empty() && out.size() < 64) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    size_t eq = item.rfind('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    uint64_t n = 0;
    auto num = item.substr(eq + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
    if (ec != std::errc() || p != num.data() + num.size()) continue;
    out.push_back({std::string(item.substr(0, eq)), n});
  }
  return out;
}

// Values of one data record, before they become a flow.
struct Values {
  bool src4 = false, dst4 = false, src6 = false, dst6 = false;
  std::array<uint8_t, 16> src{}, dst{};
  uint16_t sport = 0, dport = 0;
  std::optional<uint8_t> proto;
  uint64_t octets = 0, packets = 0, rev_octets = 0, rev_packets = 0;
  bool has_reverse = false;
  std::optional<uint8_t> direction, end_reason;
  uint8_t tcp_flags = 0;
  uint64_t start_ns = 0, end_ns = 0;
  std::optional<uint64_t> start_up, end_up, sys_init_ms;
  // flowscope's own elements, decoded straight into a flow by the field table
  bool fs = false;
  Flow own;
  uint64_t own_seen = 0;  // bit i: field i of the table was in the record
  // RFC 5610
  std::optional<uint16_t> ie_id;
  std::optional<uint32_t> ie_pen;
  std::string ie_name;
  std::optional<uint64_t> instance;  // flowscopeExporterInstance
  std::optional<uint8_t> claim_state;  // flowscopeOwnershipState: the record is a claim
};

// One of flowscope's own elements into its field, by the field's C++ type.
// Returns false for a value of the wrong size (ignored).
template <class T>
bool read_own(T& out, const uint8_t* p, size_t len, uint8_t hints) {
  auto text = [&] { return std::string(reinterpret_cast<const char*>(p), std::min<size_t>(len, 4096)); };
  if constexpr (schema::is_optional_v<T>) {
    typename T::value_type v{};
    if (!read_own(v, p, len, hints)) return false;
    if constexpr (std::is_same_v<typename T::value_type, std::string>) {
      if ((hints & schema::kZeroIsUnknown) && v.empty()) return true;
    } else if constexpr (std::is_integral_v<typename T::value_type>) {
      if ((hints & schema::kZeroIsUnknown) && v == 0) return true;
    }
    out = std::move(v);
    return true;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (len != 1) return false;
    out = p[0] == 1;
    return true;
  } else if constexpr (std::is_same_v<T, std::string>) {
    out = text();
    return true;
  } else if constexpr (std::is_same_v<T, CloseReason>) {
    auto c = close_reason_from_string(text());
    if (c) out = *c;
    return c.has_value();
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    out = parse_drops(text());
    return true;
  } else if constexpr (std::is_integral_v<T>) {
    if (len > 8) return false;
    out = static_cast<T>(get_uint(p, len));
    return true;
  } else {
    return false;  // flowscope sends no element of other types
  }
}

using OwnSetter = bool (*)(Flow&, const uint8_t*, size_t);
static_assert(schema::kFieldCount <= 64, "Values::own_seen has a bit per field");

// For each field of the table: its setter if it is one of flowscope's own
// elements (else null), made at compile time.
constexpr auto kOwnSetters = [] {
  std::array<OwnSetter, schema::kFieldCount> out{};
  schema::for_each_field_indexed([&](auto i, const auto& f) {
    if (f.ie.pen != schema::kOwnPen) return;
    out[i] = [](Flow& flow, const uint8_t* p, size_t len) {
      constexpr const auto& field = std::get<decltype(i)::value>(schema::kFields);
      return read_own(flow.*field.member, p, len, field.hints);
    };
  });
  return out;
}();

// The field-table index of flowscope's own element `id`, if there is one.
std::optional<size_t> own_field_by_id(uint16_t id) {
  std::optional<size_t> out;
  schema::for_each_field_indexed([&](auto i, const auto& f) {
    if (f.ie.pen == schema::kOwnPen && f.ie.id == id) out = i;
  });
  return out;
}

// ... by its RFC 5610 name, as another PEN's exporter may announce it.
std::optional<size_t> own_field_by_name(std::string_view name) {
  std::optional<size_t> out;
  schema::for_each_field_indexed([&](auto i, const auto& f) {
    if (f.ie.pen == schema::kOwnPen && f.ie.name == name) out = i;
  });
  return out;
}

constexpr size_t field_index(std::string_view name) {
  size_t out = schema::kFieldCount;
  schema::for_each_field_indexed([&](auto i, const auto& f) {
    if (f.name == name) out = i;
  });
  return out;
}

}  // namespace

struct Decoder::Impl {
  DecoderOptions opts;
  DecoderCounters c;
  std::map<DomainKey, Domain> domains;
  std::unordered_map<std::string, Source> sources;  // those holding at least one domain
  std::unordered_map<std::string, SourceCounters> source_counts;  // until taken
  HeldList held;
  size_t held_bytes = 0;
  size_t template_bytes = 0;  // charged by all cached templates
  uint64_t tick = 0;
  // Sources by what they hold, largest first, to find who gives way at a
  // global bound without a scan: by domains (ties: the one whose least
  // recent domain is oldest), and by template bytes. A source's entries are
  // taken out before it changes and put back after (rerank()).
  using DomainRank = std::tuple<size_t, uint64_t, Source*>;
  std::set<DomainRank, std::greater<>> by_domains;
  std::set<std::pair<size_t, Source*>, std::greater<>> by_template_bytes;
  size_t template_count = 0;
  Clock::time_point last_expire{};

  // --- Sessions, domains and template budgets --------------------------------
  //
  // Every domain belongs to a source and sits in its list, least recently
  // active first; every template sits in its source's list, least recently
  // used (defined, refreshed or used by data) first. A source at a budget
  // gives up the front of its own list; at a global bound, the source that
  // holds the most gives up the front of its list. A flood from one address
  // thus only churns that address's own state.

  SourceCounters* counts(const Source& s) {
    auto it = source_counts.find(s.name);
    if (it != source_counts.end()) return &it->second;
    if (source_counts.size() >= 16384) return nullptr;  // not taken by the caller: the global counters still count
    return &source_counts[s.name];
  }

  static DomainRank domain_rank(Source& s) {
    return {s.domains.size(), UINT64_MAX - s.domains.front()->tick, &s};
  }
  void unrank(Source& s) {
    if (s.domains.empty()) return;
    by_domains.erase(domain_rank(s));
    by_template_bytes.erase({s.template_bytes, &s});
  }
  void rank(Source& s) {
    if (s.domains.empty()) return;
    by_domains.insert(domain_rank(s));
    by_template_bytes.insert({s.template_bytes, &s});
  }
  template <class F>
  void rerank(Source& s, F&& change) {
    unrank(s);
    change();
    rank(s);
  }

  void erase_template(Domain& d, std::map<uint16_t, Template>::iterator it) {
    Source& s = *d.source;
    rerank(s, [&] {
      s.templates.erase(it->second.lru);
      s.template_bytes -= it->second.cost;
    });
    template_bytes -= it->second.cost;
    template_count--;
    d.templates.erase(it);
  }

  void evict_template(Source& s) {
    const TemplateRef ref = s.templates.front();
    erase_template(*ref.domain, ref.domain->templates.find(ref.id));
    c.templates_evicted++;
    if (auto* sc = counts(s)) sc->templates_evicted++;
  }

  // Takes a set out of the hold (decoded, or dropped and counted by the caller).
  void unhold(HeldList::iterator it) {
    Source& s = *it->owner->source;
    it->owner->held.erase(it->ref);
    s.held.erase(it->src_ref);
    s.held_bytes -= it->body.size() + kHeldOverhead;
    held_bytes -= it->body.size() + kHeldOverhead;
    held.erase(it);
  }

  // A domain's held sets, when it goes (each domain knows its own: no scan
  // of the whole hold, which a flood of new domains would make costly).
  void drop_held_of(Domain& d) {
    while (!d.held.empty()) {
      c.sets_no_template++;
      c.bytes_no_template += d.held.front()->body.size();
      unhold(d.held.front());
    }
  }

  enum class Gone { Closed, Expired, Evicted };

  // Removes a domain with its templates and held data.
  void erase_domain(std::map<DomainKey, Domain>::iterator it, Gone why) {
    Domain& d = it->second;
    Source& s = *d.source;
    while (!d.templates.empty()) erase_template(d, d.templates.begin());
    drop_held_of(d);
    if (why == Gone::Expired) c.domains_expired++;
    if (why == Gone::Evicted) c.domains_evicted++;
    if (why != Gone::Closed) {
      if (auto* sc = counts(s)) (why == Gone::Expired ? sc->domains_expired : sc->domains_evicted)++;
    }
    rerank(s, [&] { s.domains.erase(d.lru); });
    domains.erase(it);
    if (s.domains.empty()) {
      const std::string name = s.name;  // not the key of the node being erased
      sources.erase(name);
    }
  }

  void erase_domain(Domain& d, Gone why) {
    erase_domain(domains.find(DomainKey{d.stats.exporter, d.stats.version, d.stats.domain}), why);
  }

  Domain* domain(const DomainKey& k, const std::string& source, Transport t, Clock::time_point now) {
    if (auto it = domains.find(k); it != domains.end()) {
      Domain& d = it->second;
      Source& s = *d.source;
      d.last_active = now;
      if (s.domains.front() == &d) {  // the source's rank changes with its least recent domain
        rerank(s, [&] {
          s.domains.splice(s.domains.end(), s.domains, d.lru);
          d.tick = ++tick;
        });
      } else {
        s.domains.splice(s.domains.end(), s.domains, d.lru);
        d.tick = ++tick;
      }
      return &d;
    }
    if (opts.max_domains == 0 || opts.max_domains_per_source == 0) return nullptr;
    if (auto s = sources.find(source); s != sources.end() && s->second.domains.size() >= opts.max_domains_per_source)
      erase_domain(*s->second.domains.front(), Gone::Evicted);
    else if (domains.size() >= opts.max_domains)
      erase_domain(*std::get<2>(*by_domains.begin())->domains.front(), Gone::Evicted);
    Source& s = sources[source];
    s.name = source;
    Domain& d = domains[k];
    d.transport = t;
    d.source = &s;
    rerank(s, [&] {
      d.lru = s.domains.insert(s.domains.end(), &d);
      d.tick = ++tick;
    });
    d.last_active = now;
    d.stats.exporter = std::get<0>(k);
    d.stats.source = source;
    d.stats.version = std::get<1>(k);
    d.stats.domain = std::get<2>(k);
    return &d;
  }

  // Caches a template (replacing one with its id), making room inside the
  // budgets; false when it was refused.
  bool add_template(Domain& d, Template tmpl) {
    Source& s = *d.source;
    tmpl.cost = kTemplateCost + kFieldCost * tmpl.fields.size();
    auto it = d.templates.find(tmpl.id);
    if ((it == d.templates.end() && d.templates.size() >= opts.max_templates_per_domain) ||
        tmpl.cost > std::min(opts.max_template_bytes, opts.max_template_bytes_per_source)) {
      c.templates_limit++;
      if (auto* sc = counts(s)) sc->templates_refused++;
      return false;
    }
    if (it != d.templates.end()) erase_template(d, it);
    while (s.template_bytes + tmpl.cost > opts.max_template_bytes_per_source) evict_template(s);
    while (template_bytes + tmpl.cost > opts.max_template_bytes)
      evict_template(*by_template_bytes.begin()->second);
    const uint16_t id = tmpl.id;
    rerank(s, [&] {
      tmpl.lru = s.templates.insert(s.templates.end(), TemplateRef{&d, id});
      s.template_bytes += tmpl.cost;
    });
    template_bytes += tmpl.cost;
    template_count++;
    d.templates[id] = std::move(tmpl);
    return true;
  }

  const Template* find_template(Domain& d, uint16_t id, Clock::time_point now) {
    auto it = d.templates.find(id);
    if (it == d.templates.end()) return nullptr;
    if (d.transport == Transport::Udp && now - it->second.refreshed > opts.template_lifetime) {
      erase_template(d, it);
      c.templates_expired++;
      return nullptr;
    }
    d.source->templates.splice(d.source->templates.end(), d.source->templates, it->second.lru);
    return &it->second;
  }

  void expire(Clock::time_point now) {
    const auto idle = opts.session_idle.count() > 0 ? opts.session_idle : opts.template_lifetime;
    for (auto it = domains.begin(); it != domains.end();) {
      auto next = std::next(it);
      Domain& d = it->second;
      if (d.transport == Transport::Udp) {
        if (now - d.last_active > idle) {
          erase_domain(it, Gone::Expired);
        } else {
          for (auto t = d.templates.begin(); t != d.templates.end();) {
            auto tn = std::next(t);
            if (now - t->second.refreshed > opts.template_lifetime) {
              c.templates_expired++;
              erase_template(d, t);
            }
            t = tn;
          }
        }
      }
      it = next;
    }
    while (!held.empty() && now - held.front().at > opts.hold_time) drop_held_front();
    last_expire = now;
  }

  void drop_held(HeldList::iterator it) {
    c.sets_no_template++;
    c.bytes_no_template += it->body.size();
    it->owner->stats.sets_no_template++;
    unhold(it);
  }
  void drop_held_front() { drop_held(held.begin()); }

  void hold(Domain* d, uint16_t set_id, std::span<const uint8_t> body, Clock::time_point now,
            const Ctx& ctx) {
    const size_t cost = body.size() + kHeldOverhead;
    if (!d || cost > std::min(opts.hold_max_bytes, opts.hold_max_bytes_per_source)) {
      c.sets_no_template++;
      c.bytes_no_template += body.size();
      if (d) d->stats.sets_no_template++;
      return;
    }
    // Room inside the source's own share first, so one source cannot push
    // out what others hold; then the oldest of all.
    Source& s = *d->source;
    while (!s.held.empty() && s.held_bytes + cost > opts.hold_max_bytes_per_source) drop_held(s.held.front());
    while (!held.empty() && held_bytes + cost > opts.hold_max_bytes) drop_held_front();
    auto it = held.insert(held.end(), Held{d, {}, {}, set_id, std::vector<uint8_t>(body.begin(), body.end()), now,
                                           ctx.export_time, ctx.sys_uptime});
    it->ref = d->held.insert(d->held.end(), it);
    it->src_ref = s.held.insert(s.held.end(), it);
    s.held_bytes += cost;
    held_bytes += cost;
    c.sets_held++;
  }

  // Parses a template set (IPFIX set 2/3, NetFlow v9 flowset 0/1). With
  // apply=false it only validates; returns an error text or empty.
  std::string templates(const DomainKey& k, Domain* d, Transport t, uint16_t version, uint16_t set_id,
                        std::span<const uint8_t> body, Clock::time_point now, bool apply,
                        std::vector<uint16_t>* added, std::map<uint16_t, Template>* parsed = nullptr) {
    const bool v9 = version == kVersionNetflow9;
    const bool options = v9 ? set_id == 1 : set_id == kSetOptionsTemplate;
    size_t pos = 0;
    while (body.size() - pos >= 4) {
      const uint8_t* p = body.data() + pos;
      const uint16_t tid = get16(p);
      const uint16_t count = get16(p + 2);
      if (tid == 0 && count == 0) break;  // padding
      Template tmpl;
      tmpl.id = tid;
      tmpl.options = options;
      tmpl.refreshed = now;
      size_t fpos = pos + 4;
      size_t nfields = count;
      size_t nscope = 0;

      if (!v9 && count == 0) {
        // Withdrawal (RFC 7011 §8.1): template id, field count 0.
        if (tid != set_id && tid < kSetMinData) return fmt::format("withdrawal of invalid template id {}", tid);
        pos = fpos;
        if (!apply) continue;
        if (t == Transport::Udp) {
          c.withdrawals_ignored++;
          continue;
        }
        if (!d) continue;
        if (tid == set_id) {  // all (options) templates
          for (auto it = d->templates.begin(); it != d->templates.end();) {
            auto next = std::next(it);
            if (it->second.options == options) erase_template(*d, it);
            it = next;
          }
        } else {
          if (auto it = d->templates.find(tid); it != d->templates.end()) erase_template(*d, it);
        }
        c.templates_withdrawn++;
        continue;
      }
      if (tid < kSetMinData) return fmt::format("template id {} below 256", tid);

      if (options) {
        if (v9) {
          // template id, scope length (octets), option length (octets)
          const uint16_t scope_len = count;
          if (body.size() - fpos < 2) return "truncated options template";
          const uint16_t opt_len = get16(body.data() + fpos);
          fpos += 2;
          if (scope_len % 4 || opt_len % 4) return "options template lengths not multiples of 4";
          nscope = scope_len / 4;
          nfields = nscope + opt_len / 4;
        } else {
          if (body.size() - fpos < 2) return "truncated options template";
          nscope = get16(body.data() + fpos);
          fpos += 2;
          if (nscope == 0 || nscope > nfields) return fmt::format("options template {}: scope count {} of {}", tid, nscope, nfields);
        }
      }
      if (nfields == 0) return fmt::format("template {} has no fields", tid);
      tmpl.fields.reserve(std::min<size_t>(nfields, (body.size() - fpos) / 4 + 1));
      size_t min_len = 0;
      for (size_t i = 0; i < nfields; i++) {
        if (body.size() - fpos < 4) return fmt::format("template {} truncated at field {} of {}", tid, i, nfields);
        Field f;
        uint16_t raw = get16(body.data() + fpos);
        f.length = get16(body.data() + fpos + 2);
        fpos += 4;
        if (!v9 && (raw & 0x8000)) {
          if (body.size() - fpos < 4) return fmt::format("template {} truncated at enterprise number", tid);
          f.pen = get32(body.data() + fpos);
          fpos += 4;
          raw &= 0x7fff;
        }
        f.id = raw;
        if (f.length == 0) return fmt::format("template {} field {} has length 0", tid, f.id);
        if (v9 && f.length == kVarLen) return "variable-length field in NetFlow v9";
        if (v9 && options && i < nscope)
          f.kind = Kind::Skip;  // v9 scope types are their own numbering
        else
          f.kind = v9 ? v9_kind(f.id) : field_kind(f.id, f.pen);
        min_len += f.length == kVarLen ? 1 : f.length;
        tmpl.fields.push_back(f);
      }
      if (min_len == 0 || min_len > 65535) return fmt::format("template {} record length {} invalid", tid, min_len);
      tmpl.min_length = min_len;
      pos = fpos;
      if (!apply) {
        if (parsed) (*parsed)[tid] = std::move(tmpl);
        continue;
      }
      if (options)
        c.options_templates++;
      else
        c.templates++;
      if (!d) {
        c.templates_limit++;
        continue;
      }
      if (!add_template(*d, std::move(tmpl))) continue;
      if (added) added->push_back(tid);
    }
    (void)k;
    return {};
  }

  // True if the records of a data set end inside it (the rest shorter than
  // a record: padding). Reads lengths only, so a message can be checked
  // whole before any of it changes state.
  static bool records_fit(const Template& t, std::span<const uint8_t> body) {
    size_t pos = 0;
    while (body.size() - pos >= t.min_length) {
      for (const Field& f : t.fields) {
        size_t len = f.length;
        if (len == kVarLen) {
          if (body.size() - pos < 1) return false;
          len = body[pos++];
          if (len == 255) {
            if (body.size() - pos < 2) return false;
            len = get16(body.data() + pos);
            pos += 2;
          }
        }
        if (body.size() - pos < len) return false;
        pos += len;
      }
    }
    return true;
  }

  // Reads one data record at body[pos..]; returns false if it runs past the set.
  bool record(const Template& t, std::span<const uint8_t> body, size_t& pos, Values& v, const Domain& d) {
    for (const Field& f : t.fields) {
      size_t len = f.length;
      if (len == kVarLen) {
        if (body.size() - pos < 1) return false;
        len = body[pos++];
        if (len == 255) {
          if (body.size() - pos < 2) return false;
          len = get16(body.data() + pos);
          pos += 2;
        }
      }
      if (body.size() - pos < len) return false;
      const uint8_t* p = body.data() + pos;
      pos += len;
      auto u = [&] { return get_uint(p, len); };
      const bool num = len <= 8;
      switch (f.kind) {
        case Kind::Skip: break;
        case Kind::Src4: if (len == 4) { std::memcpy(v.src.data(), p, 4); v.src4 = true; } break;
        case Kind::Dst4: if (len == 4) { std::memcpy(v.dst.data(), p, 4); v.dst4 = true; } break;
        case Kind::Src6: if (len == 16) { std::memcpy(v.src.data(), p, 16); v.src6 = true; } break;
        case Kind::Dst6: if (len == 16) { std::memcpy(v.dst.data(), p, 16); v.dst6 = true; } break;
        case Kind::SrcPort: if (len <= 2) v.sport = uint16_t(u()); break;
        case Kind::DstPort: if (len <= 2) v.dport = uint16_t(u()); break;
        case Kind::Proto: if (len == 1) v.proto = p[0]; break;
        case Kind::Octets: if (num) v.octets = u(); break;
        case Kind::Packets: if (num) v.packets = u(); break;
        case Kind::RevOctets: if (num) { v.rev_octets = u(); v.has_reverse = true; } break;
        case Kind::RevPackets: if (num) { v.rev_packets = u(); v.has_reverse = true; } break;
        case Kind::Direction: if (len == 1) v.direction = p[0]; break;
        case Kind::EndReason: if (len == 1) v.end_reason = p[0]; break;
        case Kind::TcpFlags: if (num) v.tcp_flags = uint8_t(u()); break;
        case Kind::StartS: if (len == 4) v.start_ns = u() * 1'000'000'000ull; break;
        case Kind::EndS: if (len == 4) v.end_ns = u() * 1'000'000'000ull; break;
        case Kind::StartMs: if (len == 8) v.start_ns = u() * 1'000'000ull; break;
        case Kind::EndMs: if (len == 8) v.end_ns = u() * 1'000'000ull; break;
        case Kind::StartUs: case Kind::StartNs: if (len == 8) v.start_ns = ntp_to_unix_ns(u()); break;
        case Kind::EndUs: case Kind::EndNs: if (len == 8) v.end_ns = ntp_to_unix_ns(u()); break;
        case Kind::StartUp: if (len == 4) v.start_up = u(); break;
        case Kind::EndUp: if (len == 4) v.end_up = u(); break;
        case Kind::SysInitMs: if (len == 8) v.sys_init_ms = u(); break;
        case Kind::IeId: if (len == 2) v.ie_id = uint16_t(u()); break;
        case Kind::IePen: if (len == 4) v.ie_pen = uint32_t(u()); break;
        case Kind::IeType: break;
        case Kind::IeName: v.ie_name.assign(reinterpret_cast<const char*>(p), std::min<size_t>(len, 128)); break;
        case Kind::Enterprise: enterprise(f, p, len, v, d); break;
      }
    }
    return true;
  }

  void enterprise(const Field& f, const uint8_t* p, size_t len, Values& v, const Domain& d) {
    std::optional<size_t> idx;
    if (f.pen == opts.flowscope_pen && f.id == kExporterInstanceId) {
      if (len == 8) v.instance = get_uint(p, 8);
      return;
    }
    if ((f.pen == opts.flowscope_pen && f.id == kOwnershipStateId) ||
        (d.claim_state_ie && *d.claim_state_ie == std::pair{f.pen, f.id})) {
      // Any length marks the record a claim; only one octet of 1 or 2 makes a usable one.
      v.claim_state = len == 1 ? p[0] : 0;
      return;
    }
    if (f.pen == opts.flowscope_pen) {
      idx = own_field_by_id(f.id);
    } else if (auto it = d.fs_names.find({f.pen, f.id}); it != d.fs_names.end()) {
      idx = it->second;
    }
    if (!idx || !kOwnSetters[*idx] || !kOwnSetters[*idx](v.own, p, len)) return;
    v.own_seen |= uint64_t{1} << *idx;
    v.fs = true;
  }

  // A record with no usable start or end (none sent, or one that decodes to
  // 1970: a relative time without the exporter's boot time) would be stored
  // at 1970 and deleted by the next retention pass. A missing end takes the
  // start and a missing start the end; with neither, both take the message's
  // export time, the moment the exporter sent what it had metered (an upper
  // bound of the flow's end). Counted. With no export time either (0), the
  // record has no time at all: counted and not stored (false).
  bool fill_missing_times(Values& v, const Ctx& ctx) {
    if (v.start_ns && v.end_ns) return true;
    if (!v.start_ns && !v.end_ns) {
      if (!ctx.export_time) {
        c.records_no_time++;
        return false;
      }
      v.start_ns = v.end_ns = uint64_t(ctx.export_time) * 1'000'000'000ull;
    } else if (!v.start_ns) {
      v.start_ns = v.end_ns;
    } else {
      v.end_ns = v.start_ns;
    }
    c.records_time_fallback++;
    return true;
  }

  std::optional<DecodedFlow> to_flow(Values& v, uint32_t domain, uint16_t tid,
                                     const Ctx& ctx, const Domain& d) {
    DecodedFlow out;
    // flowscope's own elements were decoded into v.own already; the IANA
    // elements, which other exporters send in many equivalent forms, fill the rest.
    Flow& r = out.record;
    r = std::move(v.own);
    if (v.src4 && v.dst4) {
      r.src_ip = ip16_from_v4(v.src.data());
      r.dst_ip = ip16_from_v4(v.dst.data());
    } else if (v.src6 && v.dst6) {
      r.src_ip = ip16_from_v6(v.src.data());
      r.dst_ip = ip16_from_v6(v.dst.data());
    } else {
      return std::nullopt;
    }
    r.src_port = v.sport;
    r.dst_port = v.dport;
    r.protocol = v.proto.value_or(0);
    r.bytes = v.octets;
    r.packets = v.packets;
    r.rev_bytes = v.rev_octets;
    r.rev_packets = v.rev_packets;
    r.direction = !v.direction               ? Direction::Unknown
                  : *v.direction == kDirEgress ? Direction::Outbound
                  : *v.direction == kDirIngress ? Direction::Inbound
                                                : Direction::Unknown;
    // Times relative to the exporter's boot: IPFIX needs systemInitTime; v9
    // has the uptime in its header.
    if (v.start_up || v.end_up) {
      // Uptimes are 32-bit milliseconds and wrap every 49.7 days: take them
      // as a signed difference from the uptime at export time (NetFlow v9:
      // in the header; IPFIX: export time minus systemInitTimeMilliseconds).
      const int64_t export_ms = int64_t(ctx.export_time) * 1000;
      std::optional<uint32_t> up_at_export;
      if (ctx.version == kVersionNetflow9) {
        up_at_export = ctx.sys_uptime;
      } else if (auto boot_ms = v.sys_init_ms ? v.sys_init_ms : d.sys_init_ms) {
        up_at_export = uint32_t(uint64_t(export_ms) - *boot_ms);
      }
      if (up_at_export) {
        auto abs_ns = [&](uint64_t up) {
          const int64_t ms = export_ms + int32_t(uint32_t(up) - *up_at_export);
          return ms > 0 ? uint64_t(ms) * 1'000'000ull : 0;
        };
        if (v.start_up && !v.start_ns) v.start_ns = abs_ns(*v.start_up);
        if (v.end_up && !v.end_ns) v.end_ns = abs_ns(*v.end_up);
      }
    }
    if (!fill_missing_times(v, ctx)) return std::nullopt;
    r.start_ns = v.start_ns;
    r.end_ns = v.end_ns;
    out.end_reason = v.end_reason.value_or(0);
    out.tcp_flags = v.tcp_flags;
    constexpr size_t kInterim = field_index("interim"), kClose = field_index("close");
    static_assert(kInterim < schema::kFieldCount && kClose < schema::kFieldCount);
    if (!(v.own_seen & (uint64_t{1} << kInterim))) r.interim = out.end_reason == kEndActiveTimeout;
    // A flowscope agent always knows how its flows ended: without the element
    // (an older agent), flowEndReason says as much as can be said.
    if (v.fs && !r.close) r.close = out.end_reason == kEndActiveTimeout ? CloseReason::Active : CloseReason::Fin;
    // flowscope agents send bidirectional totals since the flow started;
    // other exporters per-record deltas, bidirectional if they send RFC 5103
    // reverse counts.
    r.bidirectional = v.fs || v.has_reverse;
    r.cumulative = v.fs;
    r.domain = domain;
    out.domain = domain;
    out.template_id = tid;
    out.version = ctx.version;
    out.flowscope = v.fs;
    out.has_reverse = v.has_reverse;
    return out;
  }

  // A claim record (flowscopeOwnershipState present) to a claim, or nothing
  // if it cannot be one.
  std::optional<OwnershipClaim> to_claim(Values& v) {
    if (*v.claim_state != kClaimHeld && *v.claim_state != kClaimReleased) return std::nullopt;
    OwnershipClaim c;
    if (v.src6)
      c.addr = ip16_from_v6(v.src.data());
    else if (v.src4)
      c.addr = ip16_from_v4(v.src.data());
    else
      return std::nullopt;
    if (!v.start_ns || !v.end_ns || v.end_ns < v.start_ns) return std::nullopt;
    c.from_ns = v.start_ns;
    c.to_ns = v.end_ns;
    c.port = v.sport;
    c.protocol = v.proto.value_or(0);
    c.held = *v.claim_state == kClaimHeld;
    Flow& o = v.own;
    c.host = std::move(o.host);
    c.host_id = std::move(o.host_id);
    c.exe = std::move(o.exe);
    c.unit = std::move(o.unit);
    c.comm = std::move(o.comm);
    c.container_id = std::move(o.container_id);
    c.pid = o.pid;
    c.netns = o.netns;
    return c;
  }

  // Decodes a data set with its template. Returns the number of records, or
  // nullopt if a record runs past the set (malformed).
  std::optional<uint64_t> data_set(const DomainKey& k, Domain& d, const Template& t, std::span<const uint8_t> body,
                                   const Ctx& ctx, std::vector<DecodedFlow>& out,
                                   std::vector<OwnershipClaim>& claims) {
    uint64_t n = 0;
    size_t pos = 0;
    // Room for this set's records (growing geometrically: a message of many
    // small sets must not reallocate for each).
    if (const size_t need = out.size() + body.size() / t.min_length; !t.options && need > out.capacity())
      out.reserve(std::max(need, 2 * out.capacity()));
    // Anything shorter than the shortest record at the end is padding.
    while (body.size() - pos >= t.min_length) {
      Values v;
      if (!record(t, body, pos, v, d)) return std::nullopt;
      n++;
      c.data_records++;
      d.stats.data_records++;
      if (t.options && !v.claim_state) {
        c.options_records++;
        if (v.sys_init_ms) d.sys_init_ms = v.sys_init_ms;
        if (v.instance) d.instance = v.instance;
        // RFC 5610 type record: learn flowscope element names.
        if (v.ie_id && v.ie_pen && !v.ie_name.empty()) {
          if (auto e = own_field_by_name(v.ie_name); e && d.fs_names.size() < 1024)
            d.fs_names[{*v.ie_pen, *v.ie_id}] = *e;
          if (v.ie_name == kOwnershipStateName) d.claim_state_ie = {*v.ie_pen, *v.ie_id};
        }
        continue;
      }
      if (v.claim_state) {
        if (auto cl = to_claim(v)) {
          claims.push_back(std::move(*cl));
          c.claims++;
        } else {
          c.claims_unusable++;
          c.records_unusable++;
        }
        continue;
      }
      auto f = to_flow(v, std::get<2>(k), t.id, ctx, d);
      if (!f) {
        c.records_unusable++;
        continue;
      }
      out.push_back(std::move(*f));
    }
    return n;
  }

  FeedResult feed(const std::string& exporter, const std::string& source, Transport t,
                  std::span<const uint8_t> msg, Clock::time_point now);
  void release_held(const DomainKey& k, Domain& d, const std::vector<uint16_t>& added, std::vector<DecodedFlow>& out,
                    std::vector<OwnershipClaim>& claims);
};

FeedResult Decoder::Impl::feed(const std::string& exporter, const std::string& source, Transport transport,
                               std::span<const uint8_t> msg, Clock::time_point now) {
  FeedResult res;
  c.messages++;
  if (now - last_expire > std::chrono::seconds(1) || now < last_expire) expire(now);
  auto bad = [&](std::string why, Domain* d) {
    c.messages_malformed++;
    if (d) d->stats.malformed++;
    res.flows.clear();
    res.claims.clear();
    res.error = std::move(why);
    return res;
  };
  if (msg.size() < 2) return bad("message shorter than a header", nullptr);
  const uint16_t version = get16(msg.data());
  Ctx ctx{version, 0, 0};
  uint32_t seq = 0, domain_id = 0;
  size_t hdr = 0, end = msg.size();
  if (version == kVersionIpfix) {
    if (msg.size() < kIpfixHeader) return bad("message shorter than the IPFIX header", nullptr);
    const uint16_t len = get16(msg.data() + 2);
    if (len < kIpfixHeader || len > msg.size()) return bad(fmt::format("message length {} of {} octets", len, msg.size()), nullptr);
    end = len;  // trailing bytes beyond the message are ignored
    ctx.export_time = get32(msg.data() + 4);
    seq = get32(msg.data() + 8);
    domain_id = get32(msg.data() + 12);
    hdr = kIpfixHeader;
  } else if (version == kVersionNetflow9) {
    if (msg.size() < kV9Header) return bad("message shorter than the NetFlow v9 header", nullptr);
    ctx.sys_uptime = get32(msg.data() + 4);
    ctx.export_time = get32(msg.data() + 8);
    seq = get32(msg.data() + 12);
    domain_id = get32(msg.data() + 16);
    hdr = kV9Header;
  } else {
    c.messages_bad_version++;
    return bad(fmt::format("unsupported version {}", version), nullptr);
  }
  const std::span<const uint8_t> sets = msg.subspan(hdr, end - hdr);
  res.version = version;
  res.domain = domain_id;
  res.sequence = seq;
  const DomainKey key{exporter, version, domain_id};
  Domain* d = domain(key, source, transport, now);

  // Pass 1: set framing, template structure and data record framing (with
  // this message's templates, else the installed ones). A message that fails
  // here is discarded whole, before it changes any state: a template in a
  // malformed message is not installed.
  {
    std::map<uint16_t, Template> defined;
    size_t pos = 0;
    while (pos < sets.size()) {
      if (sets.size() - pos < kSetHeader) {
        if (version == kVersionNetflow9) break;  // v9 packets may carry trailing padding
        return bad("truncated set header", d);
      }
      const uint16_t id = get16(sets.data() + pos);
      const uint16_t len = get16(sets.data() + pos + 2);
      if (len < kSetHeader || len > sets.size() - pos) return bad(fmt::format("set {} length {} invalid", id, len), d);
      const bool tmpl = version == kVersionIpfix ? (id == kSetTemplate || id == kSetOptionsTemplate) : id <= 1;
      if (version == kVersionIpfix && id < kSetMinData && !tmpl) return bad(fmt::format("reserved set id {}", id), d);
      if (tmpl) {
        auto err = templates(key, d, transport, version, id, sets.subspan(pos + kSetHeader, len - kSetHeader), now,
                             false, nullptr, &defined);
        if (!err.empty()) {
          c.templates_rejected++;
          return bad(err, d);
        }
      } else if (id >= kSetMinData) {
        const Template* t = nullptr;
        if (auto it = defined.find(id); it != defined.end())
          t = &it->second;
        else if (d)
          if (auto at = d->templates.find(id); at != d->templates.end()) t = &at->second;
        if (t && !records_fit(*t, sets.subspan(pos + kSetHeader, len - kSetHeader)))
          return bad(fmt::format("data set {}: record overruns the set", id), d);
      }
      pos += len;
    }
  }

  // Pass 2: apply templates, decode data.
  uint64_t records = 0;
  bool records_known = true;
  std::vector<uint16_t> added;
  size_t pos = 0;
  while (sets.size() - pos >= kSetHeader) {
    const uint16_t id = get16(sets.data() + pos);
    const uint16_t len = get16(sets.data() + pos + 2);
    const auto body = sets.subspan(pos + kSetHeader, len - kSetHeader);
    pos += len;
    c.sets++;
    if (version == kVersionIpfix ? (id == kSetTemplate || id == kSetOptionsTemplate) : id <= 1) {
      templates(key, d, transport, version, id, body, now, true, &added);
      continue;
    }
    if (id < kSetMinData) continue;  // NetFlow v9 reserved flowset ids
    const Template* t = d ? find_template(*d, id, now) : nullptr;
    if (body.empty()) continue;  // an empty data set carries no records
    if (!t) {
      records_known = false;
      hold(d, id, body, now, ctx);
      continue;
    }
    auto n = data_set(key, *d, *t, body, ctx, res.flows, res.claims);
    if (!n) return bad(fmt::format("data set {}: record overruns the set", id), d);
    records += *n;
  }
  res.data_records = records;

  if (d) {
    d->stats.messages++;
    d->stats.last_seen = now;
    // Sequence numbers: IPFIX counts data records, v9 counts export packets.
    if (d->seq_valid && seq != d->next_seq) {
      const uint32_t diff = seq - d->next_seq;
      if (diff < 0x80000000u) {
        c.sequence_gaps++;
        d->stats.sequence_gaps++;
        d->stats.records_lost += diff;
        (version == kVersionIpfix ? c.records_lost : c.packets_lost) += diff;
      } else {
        c.sequence_reordered++;
      }
    }
    d->stats.last_sequence = seq;
    if (version == kVersionNetflow9) {
      d->next_seq = seq + 1;
      d->seq_valid = true;
    } else {
      // Without a template we cannot count a set's records: resynchronise on
      // the next message instead of reporting a false gap.
      d->next_seq = seq + uint32_t(records);
      d->seq_valid = records_known;
    }
    res.instance = d->instance;
    if (!added.empty()) release_held(key, *d, added, res.flows, res.claims);
    d->stats.flows += res.flows.size();
    d->stats.templates = d->templates.size();
  }
  c.flows += res.flows.size();
  return res;
}

void Decoder::Impl::release_held(const DomainKey& k, Domain& d, const std::vector<uint16_t>& added,
                                 std::vector<DecodedFlow>& out, std::vector<OwnershipClaim>& claims) {
  for (auto ref = d.held.begin(); ref != d.held.end();) {
    const auto it = *ref++;  // (unhold() below erases the entry ref was at)
    if (std::find(added.begin(), added.end(), it->set_id) == added.end()) continue;
    const Template* t = find_template(d, it->set_id, it->at);
    if (t) {
      Ctx ctx{std::get<1>(k), it->export_time, it->sys_uptime};
      std::vector<DecodedFlow> flows;
      std::vector<OwnershipClaim> held_claims;
      if (data_set(k, d, *t, it->body, ctx, flows, held_claims)) {
        c.sets_held_decoded++;
        for (auto& f : flows) out.push_back(std::move(f));
        for (auto& cl : held_claims) claims.push_back(std::move(cl));
      } else {
        c.messages_malformed++;
        d.stats.malformed++;
      }
    }
    unhold(it);
  }
}

Decoder::Decoder(DecoderOptions opts) : impl_(std::make_unique<Impl>()) { impl_->opts = opts; }
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

FeedResult Decoder::feed(const std::string& exporter, Transport transport, std::span<const uint8_t> message,
                         Clock::time_point now) {
  return impl_->feed(exporter, exporter, transport, message, now);
}

FeedResult Decoder::feed(const std::string& session, const std::string& source, Transport transport,
                         std::span<const uint8_t> message, Clock::time_point now) {
  return impl_->feed(session, source, transport, message, now);
}

void Decoder::close_session(const std::string& exporter) {
  Impl& i = *impl_;
  // Domains of a session are adjacent in the map (the session key sorts first).
  auto it = i.domains.lower_bound(DomainKey{exporter, 0, 0});
  while (it != i.domains.end() && std::get<0>(it->first) == exporter) {
    auto next = std::next(it);
    i.erase_domain(it, Impl::Gone::Closed);
    it = next;
  }
}

std::vector<std::pair<std::string, SourceCounters>> Decoder::take_source_counters() {
  std::vector<std::pair<std::string, SourceCounters>> out(impl_->source_counts.begin(), impl_->source_counts.end());
  impl_->source_counts.clear();
  return out;
}

std::vector<SourceUsage> Decoder::source_usage() const {
  std::vector<SourceUsage> out;
  out.reserve(impl_->sources.size());
  for (const auto& [name, s] : impl_->sources) out.push_back({name, s.domains.size(), s.templates.size(), s.template_bytes});
  return out;
}

DecoderUsage Decoder::usage() const {
  const Impl& i = *impl_;
  return {i.sources.size(), i.domains.size(), i.template_count, i.template_bytes, i.held_bytes};
}

void Decoder::expire(Clock::time_point now) { impl_->expire(now); }
const DecoderCounters& Decoder::counters() const { return impl_->c; }
const DecoderOptions& Decoder::options() const { return impl_->opts; }

std::vector<ExporterStats> Decoder::exporter_stats() const {
  std::vector<ExporterStats> out;
  out.reserve(impl_->domains.size());
  for (const auto& [k, d] : impl_->domains) {
    out.push_back(d.stats);
    out.back().templates = d.templates.size();
  }
  return out;
}

void StreamFramer::append(std::span<const uint8_t> bytes) {
  if (broken_) return;
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 65536) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::vector<uint8_t> StreamFramer::next() {
  if (broken_ || buf_.size() - pos_ < 4) return {};
  const uint8_t* p = buf_.data() + pos_;
  const uint16_t version = get16(p);
  const uint16_t len = get16(p + 2);
  if (version != kVersionIpfix || len < kIpfixHeader) {
    broken_ = true;
    return {};
  }
  if (buf_.size() - pos_ < len) return {};
  std::vector<uint8_t> msg(p, p + len);
  pos_ += len;
  return msg;
}

}  // namespace flowscope::ipfix
