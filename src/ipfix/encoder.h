// IPFIX (RFC 7011) encoder: Flows -> IPFIX messages.
//
// Message layout (all integers big-endian):
//
//   0                   1                   2                   3
//   +-------------------------------+-------------------------------+
//   | Version = 10                  | Length (whole message)        |
//   +-------------------------------+-------------------------------+
//   | Export Time (Unix seconds)                                    |
//   +---------------------------------------------------------------+
//   | Sequence Number (data records sent before this message, mod 2^32)
//   +---------------------------------------------------------------+
//   | Observation Domain ID                                         |
//   +-------------------------------+-------------------------------+
//   | Set ID (2 tmpl, 3 opt tmpl,   | Set Length (incl. this header)|
//   |        >=256 data)            |                               |
//   +-------------------------------+-------------------------------+
//   | records ...                                                   |
//
// Templates: 256 = IPv4 flow, 257 = IPv6 flow, 258 = RFC 5610 information
// element type options template (scope: informationElementId,
// privateEnterpriseNumber), 259 = the exporter instance options template
// (scope: flowscopeExporterInstance; sent only when an instance is set),
// 260 = ownership claims (flow/ownership.h; docs/ipfix.md lists its fields).
// The flow templates' fields are the field table's (flow/fields.h), in its
// order; docs/schema.md lists them.
//
// Sequence numbers count data records (flows, claims and RFC 5610 options data
// records), never template records, per observation domain; records dropped
// before encoding are accounted with skip() so the collector sees the loss
// (RFC 7011 §10.2.2). One Encoder per transport session and domain.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "flow/flow.h"
#include "flow/ownership.h"
#include "ipfix/ie.h"

namespace flowscope::ipfix {

inline constexpr uint16_t kTemplateV4 = 256;
inline constexpr uint16_t kTemplateV6 = 257;
inline constexpr uint16_t kTemplateIeType = 258;
inline constexpr uint16_t kTemplateExporter = 259;
inline constexpr uint16_t kTemplateClaim = 260;

// What an exporter sends: a flow, or ownership evidence beside the flows.
using ExportRecord = std::variant<Flow, OwnershipClaim>;

using Message = std::vector<uint8_t>;

struct EncoderOptions {
  uint32_t domain = 0;
  uint32_t pen = kDefaultPen;
  // Largest message in bytes: UDP should fit the path MTU (1400 leaves room
  // for IPv6 + UDP headers in a 1500-byte MTU); TCP can use up to 65535.
  size_t max_message = 1400;
  // The exporter instance announced with the templates (ie.h), for a
  // collector that acknowledges; unset: not announced.
  std::optional<uint64_t> instance;
};

class Encoder {
 public:
  explicit Encoder(EncoderOptions opts = {});

  // The RFC 5610 options template and type records describing flowscope's
  // enterprise elements, then the flow templates (IPv4, IPv6) that use them:
  // a strict collector must read an element's type record before the template
  // naming it. Send at session start, after every reconnect (TCP) and
  // periodically (UDP), in this order.
  std::vector<Message> template_messages(uint32_t export_time);
  // The same messages for a new connection that then resends unacknowledged
  // messages with their original numbers, from `next_seq` on: numbered to
  // end where next_seq begins, so the new stream counts without a gap. The
  // encoder's own sequence number does not move.
  std::vector<Message> template_messages_before(uint32_t export_time, uint32_t next_seq);
  // Encodes flow records into as few messages as fit max_message. If
  // `per_message` is given it receives the number of records in each message.
  std::vector<Message> encode(std::span<const Flow> records, uint32_t export_time,
                              std::vector<size_t>* per_message = nullptr);
  // Flows and claims, in the order given, into as few messages as fit.
  std::vector<Message> encode(std::span<const ExportRecord> records, uint32_t export_time,
                              std::vector<size_t>* per_message = nullptr);
  std::vector<Message> encode_claims(std::span<const OwnershipClaim> claims, uint32_t export_time);
  // `n` data records were dropped before they could be encoded.
  void skip(uint64_t n) { seq_ += static_cast<uint32_t>(n); }
  uint32_t sequence() const { return seq_; }
  const EncoderOptions& options() const { return opts_; }

 private:
  EncoderOptions opts_;
  uint32_t seq_ = 0;
};

// "REASON=count,..." as sent in flowscopeDropCounts, cut at `max` bytes on
// an entry boundary.
std::string drops_to_string(const std::vector<DropCount>& drops, size_t max);

}  // namespace flowscope::ipfix
