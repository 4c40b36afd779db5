#include "ipfix/encoder.h"

#include <algorithm>
#include <string>

#include "ipfix/wire.h"

namespace flowscope::ipfix {

namespace {

using namespace wire;

struct FieldSpec {
  uint16_t id;
  uint16_t length;
  uint32_t pen;  // 0: IANA; 1: flowscope's configured PEN; else that PEN
};
constexpr uint32_t kOwnPen = 1;

// Flow template after the two address fields (which differ for IPv4/IPv6).
// The order here is the order on the wire; encode_flow() follows it.
constexpr FieldSpec kFlowFields[] = {
    {iana::sourceTransportPort, 2, 0},
    {iana::destinationTransportPort, 2, 0},
    {iana::protocolIdentifier, 1, 0},
    {iana::flowDirection, 1, 0},
    {iana::flowEndReason, 1, 0},
    {iana::flowStartMilliseconds, 8, 0},
    {iana::flowEndMilliseconds, 8, 0},
    {iana::octetTotalCount, 8, 0},
    {iana::packetTotalCount, 8, 0},
    {iana::octetTotalCount, 8, kReversePen},   // reverseOctetTotalCount (RFC 5103)
    {iana::packetTotalCount, 8, kReversePen},  // reversePacketTotalCount
};

void put_field(Message& b, const FieldSpec& f, uint32_t own_pen) {
  const uint32_t pen = f.pen == kOwnPen ? own_pen : f.pen;
  put16(b, pen ? uint16_t(f.id | 0x8000) : f.id);
  put16(b, f.length);
  if (pen) put32(b, pen);
}

Message flow_template(uint16_t tid, bool v6, uint32_t pen) {
  Message t;
  const size_t n = 2 + std::size(kFlowFields) + std::size(kFsElements);
  put16(t, tid);
  put16(t, uint16_t(n));
  put_field(t, {v6 ? iana::sourceIPv6Address : iana::sourceIPv4Address, uint16_t(v6 ? 16 : 4), 0}, pen);
  put_field(t, {v6 ? iana::destinationIPv6Address : iana::destinationIPv4Address, uint16_t(v6 ? 16 : 4), 0}, pen);
  for (const auto& f : kFlowFields) put_field(t, f, pen);
  for (const auto& e : kFsElements) put_field(t, {e.id, e.length, kOwnPen}, pen);
  return t;
}

// RFC 5610 information element type options template.
Message ie_type_template(uint32_t pen) {
  Message t;
  put16(t, kTemplateIeType);
  put16(t, 7);  // field count
  put16(t, 2);  // scope field count
  put_field(t, {iana::informationElementId, 2, 0}, pen);
  put_field(t, {iana::privateEnterpriseNumber, 4, 0}, pen);
  put_field(t, {iana::informationElementDataType, 1, 0}, pen);
  put_field(t, {iana::informationElementSemantics, 1, 0}, pen);
  put_field(t, {iana::informationElementUnits, 2, 0}, pen);
  put_field(t, {iana::informationElementName, kVarLen, 0}, pen);
  put_field(t, {iana::informationElementDescription, kVarLen, 0}, pen);
  return t;
}

Message ie_type_record(const ElementInfo& e, uint32_t pen) {
  Message r;
  put16(r, e.id);
  put32(r, pen);
  put8(r, uint8_t(e.type));
  put8(r, uint8_t(e.semantics));
  put16(r, uint16_t(e.units));
  put_varlen(r, e.name);
  put_varlen(r, e.description);
  return r;
}

std::string_view cut(std::string_view s, size_t n) { return s.substr(0, std::min(s.size(), n)); }

uint8_t end_reason(const FlowRecord& r) { return r.interim ? kEndActiveTimeout : kEndOfFlow; }

uint8_t direction(const FlowRecord& r) {
  switch (r.direction) {
    case Direction::Outbound: return kDirEgress;
    case Direction::Inbound: return kDirIngress;
    case Direction::Unknown: break;
  }
  return kDirUnknown;
}

Message encode_flow(const FlowRecord& r) {
  Message b;
  b.reserve(256);
  const size_t alen = r.family == 6 ? 16 : 4;
  b.insert(b.end(), r.local_ip.begin(), r.local_ip.begin() + alen);
  b.insert(b.end(), r.remote_ip.begin(), r.remote_ip.begin() + alen);
  put16(b, r.local_port);
  put16(b, r.remote_port);
  put8(b, r.protocol);
  put8(b, direction(r));
  put8(b, end_reason(r));
  put64(b, r.start_ns / 1'000'000);
  put64(b, r.end_ns / 1'000'000);
  put64(b, r.bytes_sent);
  put64(b, r.segs_sent);
  put64(b, r.bytes_received);
  put64(b, r.segs_received);
  // Enterprise elements, in kFsElements order.
  put32(b, r.srtt_us);
  put32(b, r.rttvar_us);
  put32(b, r.retrans_segs);
  put32(b, r.pid);
  put_varlen(b, cut(r.comm, kMaxComm));
  put64(b, r.cgroup_id);
  put_varlen(b, cut(r.cgroup, kMaxCgroupPath));
  put_varlen(b, cut(r.container_id.value_or(""), kMaxContainerId));
  put32(b, r.netns);
  put_varlen(b, to_string(r.close));
  put_varlen(b, drops_to_string(r.drops));
  put8(b, r.interim ? 1 : 2);  // IPFIX boolean: 1 true, 2 false
  put8(b, r.preexisting ? 1 : 2);
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

std::string drops_to_string(const std::vector<DropCount>& drops) {
  std::string s;
  for (const auto& d : drops) {
    std::string item = d.reason + "=" + std::to_string(d.count);
    if (s.size() + item.size() + (s.empty() ? 0 : 1) > kMaxDropString) break;
    if (!s.empty()) s += ',';
    s += item;
  }
  return s;
}

Encoder::Encoder(EncoderOptions opts) : opts_(opts) {
  opts_.max_message = std::clamp<size_t>(opts_.max_message, 1024, 65535);
}

std::vector<Message> Encoder::template_messages(uint32_t export_time) {
  Builder b(opts_, export_time, seq_);
  b.add(kSetTemplate, flow_template(kTemplateV4, false, opts_.pen), false);
  b.add(kSetTemplate, flow_template(kTemplateV6, true, opts_.pen), false);
  b.add(kSetOptionsTemplate, ie_type_template(opts_.pen), false);
  for (const auto& e : kFsElements) b.add(kTemplateIeType, ie_type_record(e, opts_.pen), true);
  return b.done();
}

std::vector<Message> Encoder::encode(std::span<const FlowRecord> records, uint32_t export_time,
                                     std::vector<size_t>* per_message) {
  Builder b(opts_, export_time, seq_, per_message);
  for (const auto& r : records) b.add(r.family == 6 ? kTemplateV6 : kTemplateV4, encode_flow(r), true);
  return b.done();
}

}  // namespace flowscope::ipfix
