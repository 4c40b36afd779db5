#include "ipfix/encoder.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "flow/fields.h"
#include "ipfix/wire.h"

namespace flowscope::ipfix {

namespace {

using namespace wire;

struct FieldSpec {
  uint16_t id;
  uint16_t length;
  uint32_t pen;  // 0: IANA; schema::kOwnPen: flowscope's configured PEN; else that PEN
};

void put_field(Message& b, const FieldSpec& f, uint32_t own_pen) {
  const uint32_t pen = f.pen == schema::kOwnPen ? own_pen : f.pen;
  put16(b, pen ? uint16_t(f.id | 0x8000) : f.id);
  put16(b, f.length);
  if (pen) put32(b, pen);
}

// The flow template: every field of the table that has an element, in table
// order, then flowEndReason (derived from `interim`, for collectors that do
// not know flowscope's elements).
Message flow_template(uint16_t tid, bool v6, uint32_t pen) {
  Message t;
  put16(t, tid);
  put16(t, 0);  // field count, set below
  uint16_t n = 0;
  schema::for_each_field([&](const auto& f) {
    if (!f.ie.id) return;
    using T = typename std::remove_cvref_t<decltype(f)>::Type;
    if constexpr (std::is_same_v<T, Ip16>)
      put_field(t, {v6 ? f.ie.id_v6 : f.ie.id, uint16_t(v6 ? 16 : 4), f.ie.pen}, pen);
    else
      put_field(t, {f.ie.id, f.ie.length, f.ie.pen}, pen);
    n++;
  });
  put_field(t, {iana::flowEndReason, 1, 0}, pen);
  set16(t, 2, uint16_t(n + 1));
  return t;
}

// RFC 5610 information element type options template. RFC 5610 makes the
// range elements optional, but libfixbuf (YAF, SiLK, ipfixDump) takes an
// options template as the one for type records only if it has every element
// RFC 5610 defines for them (padding aside), ranges included; without them it
// reads the records as plain data and never learns the names.
Message ie_type_template(uint32_t pen) {
  Message t;
  put16(t, kTemplateIeType);
  put16(t, 9);  // field count
  put16(t, 2);  // scope field count
  put_field(t, {iana::informationElementId, 2, 0}, pen);
  put_field(t, {iana::privateEnterpriseNumber, 4, 0}, pen);
  put_field(t, {iana::informationElementDataType, 1, 0}, pen);
  put_field(t, {iana::informationElementSemantics, 1, 0}, pen);
  put_field(t, {iana::informationElementUnits, 2, 0}, pen);
  put_field(t, {iana::informationElementRangeBegin, 8, 0}, pen);
  put_field(t, {iana::informationElementRangeEnd, 8, 0}, pen);
  put_field(t, {iana::informationElementName, kVarLen, 0}, pen);
  put_field(t, {iana::informationElementDescription, kVarLen, 0}, pen);
  return t;
}

// The values an element can take: the whole range of an unsigned type, 1..2
// for a boolean (RFC 7011 §6.1.5); 0..0 (libfixbuf's "no range") for strings.
std::pair<uint64_t, uint64_t> ie_range(DataType t) {
  switch (t) {
    case DataType::unsigned8: return {0, UINT8_MAX};
    case DataType::unsigned16: return {0, UINT16_MAX};
    case DataType::unsigned32: return {0, UINT32_MAX};
    case DataType::unsigned64: return {0, UINT64_MAX};
    case DataType::boolean: return {1, 2};
    default: return {0, 0};
  }
}

// One RFC 5610 information element type record.
Message type_record(uint16_t id, uint32_t pen, DataType type, Semantics semantics, Units units, std::string_view name,
                    std::string_view doc) {
  Message r;
  put16(r, id);
  put32(r, pen);
  put8(r, uint8_t(type));
  put8(r, uint8_t(semantics));
  put16(r, uint16_t(units));
  const auto [lo, hi] = ie_range(type);
  put64(r, lo);
  put64(r, hi);
  put_varlen(r, name);
  put_varlen(r, doc);
  return r;
}

// The RFC 5610 type records of flowscope's own elements.
std::vector<Message> ie_type_records(uint32_t pen) {
  std::vector<Message> out;
  schema::for_each_field([&](const auto& f) {
    if (f.ie.pen == schema::kOwnPen)
      out.push_back(type_record(f.ie.id, pen, f.ie.type, f.ie.semantics, f.ie.units, f.ie.name, f.doc));
  });
  out.push_back(type_record(kOwnershipStateId, pen, DataType::unsigned8, Semantics::identifier, Units::none,
                            kOwnershipStateName,
                            "ownership claim: 1 the address (or port) is still held at flowEnd, 2 released at flowEnd"));
  return out;
}

// The element the field table gives the flow member `m` (host, exe, pid...):
// a claim's workload fields mean what the flow's do, on the wire too.
template <class T>
constexpr schema::Ie ie_of(T Flow::*m) {
  schema::Ie out{};
  schema::for_each_field([&](const auto& f) {
    if constexpr (std::is_same_v<typename std::remove_cvref_t<decltype(f)>::Type, T>)
      if (f.member == m) out = f.ie;
  });
  return out;
}

constexpr schema::Ie kClaimHost = ie_of(&Flow::host), kClaimHostId = ie_of(&Flow::host_id),
                     kClaimExe = ie_of(&Flow::exe), kClaimUnit = ie_of(&Flow::unit), kClaimComm = ie_of(&Flow::comm),
                     kClaimContainer = ie_of(&Flow::container_id), kClaimPid = ie_of(&Flow::pid),
                     kClaimNetns = ie_of(&Flow::netns);

// Template 260, an ownership claim: an options template (scope: the claiming
// agent's host name and id), so a collector that does not know it treats
// claims as options data, never as flows. Wire order:
//   flowscopeHostName (var) | flowscopeHostId (var) | sourceIPv6Address (16,
//   IPv4 mapped) | sourceTransportPort (2, 0: the address) |
//   protocolIdentifier (1) | flowStartMilliseconds (8) |
//   flowEndMilliseconds (8) | flowscopeOwnershipState (1) |
//   flowscopeProgramName | flowscopeSystemdUnit | flowscopeProcessName |
//   flowscopeContainerId (var each) | flowscopeProcessId (4) |
//   flowscopeNetnsInode (4)
Message claim_template(uint32_t pen) {
  Message t;
  put16(t, kTemplateClaim);
  put16(t, 14);  // field count
  put16(t, 2);   // scope field count: host name and id
  auto own = [&](const schema::Ie& ie) { put_field(t, {ie.id, ie.length, ie.pen}, pen); };
  own(kClaimHost);
  own(kClaimHostId);
  put_field(t, {iana::sourceIPv6Address, 16, 0}, pen);
  put_field(t, {iana::sourceTransportPort, 2, 0}, pen);
  put_field(t, {iana::protocolIdentifier, 1, 0}, pen);
  put_field(t, {iana::flowStartMilliseconds, 8, 0}, pen);
  put_field(t, {iana::flowEndMilliseconds, 8, 0}, pen);
  put_field(t, {kOwnershipStateId, 1, schema::kOwnPen}, pen);
  own(kClaimExe);
  own(kClaimUnit);
  own(kClaimComm);
  own(kClaimContainer);
  own(kClaimPid);
  own(kClaimNetns);
  return t;
}

// The exporter instance element's type record, so that a collector which
// does not know flowscope still prints its name.
Message instance_type_record(uint32_t pen) {
  return type_record(kExporterInstanceId, pen, DataType::unsigned64, Semantics::identifier, Units::none,
                     kExporterInstanceName,
                     "this exporting process's random instance number; its records continue the sequence numbering "
                     "of its earlier connections");
}

// Options template: scope flowscopeExporterInstance, nothing else.
Message instance_template(uint32_t pen) {
  Message t;
  put16(t, kTemplateExporter);
  put16(t, 1);  // field count
  put16(t, 1);  // scope field count
  put_field(t, {kExporterInstanceId, 8, schema::kOwnPen}, pen);
  return t;
}

std::string_view cut(std::string_view s, size_t n) { return s.substr(0, std::min(s.size(), n)); }

uint8_t flow_direction(Direction d) {
  switch (d) {
    case Direction::Outbound: return kDirEgress;
    case Direction::Inbound: return kDirIngress;
    case Direction::Unknown: break;
  }
  return kDirUnknown;
}

void put_uint(Message& b, uint64_t v, uint16_t length) {
  switch (length) {
    case 1: put8(b, uint8_t(v)); break;
    case 2: put16(b, uint16_t(v)); break;
    case 4: put32(b, uint32_t(v)); break;
    default: put64(b, v); break;
  }
}

// One field's value on the wire, by its C++ type and element (an absent
// optional goes out as 0 or "": IPFIX has no null, and those fields are
// marked zero-is-unknown in the table).
template <class T, class F>
void put_value(Message& b, const T& v, const F& f, bool v6) {
  if constexpr (schema::is_optional_v<T>) {
    if (v)
      put_value(b, *v, f, v6);
    else if constexpr (std::is_same_v<typename T::value_type, std::string> ||
                       std::is_enum_v<typename T::value_type>)
      put_varlen(b, "");
    else
      put_uint(b, 0, f.ie.length);
  } else if constexpr (std::is_same_v<T, Ip16>) {
    if (v6)
      b.insert(b.end(), v.begin(), v.end());
    else
      b.insert(b.end(), v.begin() + 12, v.end());
  } else if constexpr (std::is_same_v<T, bool>) {
    put8(b, v ? 1 : 2);  // IPFIX boolean: 1 true, 2 false
  } else if constexpr (std::is_same_v<T, Direction>) {
    put8(b, flow_direction(v));
  } else if constexpr (std::is_enum_v<T>) {
    put_varlen(b, to_string(v));
  } else if constexpr (std::is_same_v<T, std::string>) {
    put_varlen(b, cut(v, f.ie.max_text));
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    put_varlen(b, drops_to_string(v, f.ie.max_text));
  } else if (f.ie.type == DataType::dateTimeMilliseconds) {
    put64(b, uint64_t(v) / 1'000'000);
  } else {
    put_uint(b, uint64_t(v), f.ie.length);
  }
}

Message encode_flow(const Flow& r) {
  Message b;
  b.reserve(256);
  const bool v6 = r.family() == 6;
  schema::for_each_field([&](const auto& f) {
    if (f.ie.id) put_value(b, r.*f.member, f, v6);
  });
  put8(b, r.interim ? kEndActiveTimeout : kEndOfFlow);
  return b;
}

Message encode_claim(const OwnershipClaim& c) {
  Message b;
  b.reserve(128);
  auto text = [&](const std::optional<std::string>& v, const schema::Ie& ie) {
    put_varlen(b, v ? cut(*v, ie.max_text) : std::string_view{});
  };
  text(c.host, kClaimHost);
  text(c.host_id, kClaimHostId);
  b.insert(b.end(), c.addr.begin(), c.addr.end());
  put16(b, c.port);
  put8(b, c.protocol);
  put64(b, c.from_ns / 1'000'000);
  put64(b, c.to_ns / 1'000'000);
  put8(b, c.held ? kClaimHeld : kClaimReleased);
  text(c.exe, kClaimExe);
  text(c.unit, kClaimUnit);
  text(c.comm, kClaimComm);
  text(c.container_id, kClaimContainer);
  put32(b, c.pid.value_or(0));  // 0: unknown, as in the flow templates
  put32(b, c.netns.value_or(0));
  return b;
}

// Packs records into messages no larger than max_message, opening a new set
// whenever the set id changes and a new message whenever one is full.
class Builder {
 public:
  Builder(const EncoderOptions& o, uint32_t export_time, uint32_t& seq, std::vector<size_t>* per_message = nullptr)
      : o_(o), time_(export_time), seq_(seq), per_message_(per_message) {}

  void add(uint16_t set_id, const Message& rec, bool data) {
    const size_t need = rec.size() + (set_id == set_id_ && set_at_ ? 0 : 4);
    if (!cur_.empty() && cur_.size() + need > o_.max_message) finish();
    if (cur_.empty()) start();
    if (set_id != set_id_ || !set_at_) {
      close_set();
      set_at_ = cur_.size();
      set_id_ = set_id;
      put16(cur_, set_id);
      put16(cur_, 0);
    }
    cur_.insert(cur_.end(), rec.begin(), rec.end());
    if (data) records_++;
  }

  std::vector<Message> done() {
    if (!cur_.empty()) finish();
    return std::move(out_);
  }

 private:
  void start() {
    put16(cur_, kVersionIpfix);
    put16(cur_, 0);
    put32(cur_, time_);
    put32(cur_, 0);
    put32(cur_, o_.domain);
    records_ = 0;
    set_at_ = 0;
  }
  void close_set() {
    if (set_at_) set16(cur_, set_at_ + 2, uint16_t(cur_.size() - set_at_));
  }
  void finish() {
    close_set();
    set16(cur_, 2, uint16_t(cur_.size()));
    set32(cur_, 8, seq_);
    seq_ += records_;
    if (per_message_) per_message_->push_back(records_);
    out_.push_back(std::move(cur_));
    cur_.clear();
    set_at_ = 0;
  }

  const EncoderOptions& o_;
  uint32_t time_;
  uint32_t& seq_;
  std::vector<size_t>* per_message_;
  std::vector<Message> out_;
  Message cur_;
  size_t set_at_ = 0;  // offset of the open set's header; 0: none
  uint16_t set_id_ = 0;
  uint32_t records_ = 0;
};

}  // namespace

std::string drops_to_string(const std::vector<DropCount>& drops, size_t max) {
  std::string s;
  for (const auto& d : drops) {
    std::string item = d.reason + "=" + std::to_string(d.count);
    if (s.size() + item.size() + (s.empty() ? 0 : 1) > max) break;
    if (!s.empty()) s += ',';
    s += item;
  }
  return s;
}

Encoder::Encoder(EncoderOptions opts) : opts_(opts) {
  opts_.max_message = std::clamp<size_t>(opts_.max_message, 1024, 65535);
}

namespace {

std::vector<Message> build_templates(const EncoderOptions& o, uint32_t export_time, uint32_t& seq) {
  Builder b(o, export_time, seq);
  // RFC 5610 type records first, then the templates that use them: a
  // strict collector (libfixbuf) resolves an enterprise element's name and
  // type when it reads the template, from the type records it has read so
  // far, and keeps an element it does not know yet as an unknown octet array.
  b.add(kSetOptionsTemplate, ie_type_template(o.pen), false);
  for (const auto& r : ie_type_records(o.pen)) b.add(kTemplateIeType, r, true);
  if (o.instance) {
    b.add(kTemplateIeType, instance_type_record(o.pen), true);
    b.add(kSetOptionsTemplate, instance_template(o.pen), false);
    Message r;
    put64(r, *o.instance);
    b.add(kTemplateExporter, r, true);
  }
  b.add(kSetTemplate, flow_template(kTemplateV4, false, o.pen), false);
  b.add(kSetTemplate, flow_template(kTemplateV6, true, o.pen), false);
  b.add(kSetOptionsTemplate, claim_template(o.pen), false);
  return b.done();
}

}  // namespace

std::vector<Message> Encoder::template_messages(uint32_t export_time) {
  return build_templates(opts_, export_time, seq_);
}

std::vector<Message> Encoder::template_messages_before(uint32_t export_time, uint32_t next_seq) {
  uint32_t count = 0;
  build_templates(opts_, export_time, count);  // how many data records they carry
  uint32_t seq = next_seq - count;
  return build_templates(opts_, export_time, seq);
}

std::vector<Message> Encoder::encode(std::span<const Flow> records, uint32_t export_time,
                                     std::vector<size_t>* per_message) {
  Builder b(opts_, export_time, seq_, per_message);
  for (const auto& r : records) b.add(r.family() == 6 ? kTemplateV6 : kTemplateV4, encode_flow(r), true);
  return b.done();
}

std::vector<Message> Encoder::encode(std::span<const ExportRecord> records, uint32_t export_time,
                                     std::vector<size_t>* per_message) {
  Builder b(opts_, export_time, seq_, per_message);
  for (const auto& r : records) {
    if (const Flow* f = std::get_if<Flow>(&r))
      b.add(f->family() == 6 ? kTemplateV6 : kTemplateV4, encode_flow(*f), true);
    else
      b.add(kTemplateClaim, encode_claim(std::get<OwnershipClaim>(r)), true);
  }
  return b.done();
}

std::vector<Message> Encoder::encode_claims(std::span<const OwnershipClaim> claims, uint32_t export_time) {
  Builder b(opts_, export_time, seq_);
  for (const auto& c : claims) b.add(kTemplateClaim, encode_claim(c), true);
  return b.done();
}

}  // namespace flowscope::ipfix
