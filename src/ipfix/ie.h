// IPFIX information elements flowscope sends and understands.
//
// IANA elements (RFC 7012 registry) wherever one exists; RFC 5103 reverse
// elements (private enterprise 29305) for the counts of the other direction of
// a bidirectional flow; flowscope's own elements under a configurable private
// enterprise number (PEN) for what IANA lacks. Which element carries which
// flow field is defined once, in flow/fields.h; this header is the IPFIX
// vocabulary (numbers, data types) it is written in. Every flowscope element
// is also described in-band with RFC 5610 information-element type records,
// so a collector that does not know the PEN still learns names and types.
#pragma once

#include <cstdint>

namespace flowscope::ipfix {

// RFC 5612 reserves PEN 32473 for documentation and examples. It is the
// default only as a placeholder: an operator with an assigned PEN passes
// --ipfix-pen. The decoder recognises flowscope elements by the configured PEN
// and also by the RFC 5610 names an exporter announces.
inline constexpr uint32_t kDefaultPen = 32473;
inline constexpr uint32_t kReversePen = 29305;  // RFC 5103 reverse information elements

inline constexpr uint16_t kVersionIpfix = 10;
inline constexpr uint16_t kVersionNetflow9 = 9;
inline constexpr uint16_t kSetTemplate = 2;
inline constexpr uint16_t kSetOptionsTemplate = 3;
inline constexpr uint16_t kSetMinData = 256;
inline constexpr uint16_t kVarLen = 65535;

// IANA element ids.
namespace iana {
inline constexpr uint16_t octetDeltaCount = 1;
inline constexpr uint16_t packetDeltaCount = 2;
inline constexpr uint16_t protocolIdentifier = 4;
inline constexpr uint16_t tcpControlBits = 6;
inline constexpr uint16_t sourceTransportPort = 7;
inline constexpr uint16_t sourceIPv4Address = 8;
inline constexpr uint16_t destinationTransportPort = 11;
inline constexpr uint16_t destinationIPv4Address = 12;
inline constexpr uint16_t flowEndSysUpTime = 21;
inline constexpr uint16_t flowStartSysUpTime = 22;
inline constexpr uint16_t sourceIPv6Address = 27;
inline constexpr uint16_t destinationIPv6Address = 28;
inline constexpr uint16_t ipVersion = 60;
inline constexpr uint16_t flowDirection = 61;
inline constexpr uint16_t octetTotalCount = 85;
inline constexpr uint16_t packetTotalCount = 86;
inline constexpr uint16_t flowEndReason = 136;
inline constexpr uint16_t flowStartSeconds = 150;
inline constexpr uint16_t flowEndSeconds = 151;
inline constexpr uint16_t flowStartMilliseconds = 152;
inline constexpr uint16_t flowEndMilliseconds = 153;
inline constexpr uint16_t flowStartMicroseconds = 154;
inline constexpr uint16_t flowEndMicroseconds = 155;
inline constexpr uint16_t flowStartNanoseconds = 156;
inline constexpr uint16_t flowEndNanoseconds = 157;
inline constexpr uint16_t systemInitTimeMilliseconds = 160;
inline constexpr uint16_t informationElementId = 303;
inline constexpr uint16_t informationElementDataType = 339;
inline constexpr uint16_t informationElementDescription = 340;
inline constexpr uint16_t informationElementName = 341;
inline constexpr uint16_t informationElementRangeBegin = 342;
inline constexpr uint16_t informationElementRangeEnd = 343;
inline constexpr uint16_t informationElementSemantics = 344;
inline constexpr uint16_t informationElementUnits = 345;
inline constexpr uint16_t privateEnterpriseNumber = 346;
}  // namespace iana

// flowscope's session elements (its PEN; ids from 100 up, apart from the
// flow fields' ids in flow/fields.h). flowscopeExporterInstance is a random
// 64-bit number an agent draws at start and announces at the start of every
// TCP connection, in an options record (template kTemplateExporter, scope:
// the instance). A collector that reads it knows the connection's records
// continue the sequence numbering of the instance's earlier connections, and
// acknowledges what it has stored (docs/ipfix.md, "Delivery").
inline constexpr uint16_t kExporterInstanceId = 100;
inline constexpr const char* kExporterInstanceName = "flowscopeExporterInstance";

// flowscopeOwnershipState: the state of an ownership claim (flow/ownership.h)
// in the claim template (kTemplateClaim, encoder.h). Its presence in a data
// record is what makes the record a claim rather than a flow.
inline constexpr uint16_t kOwnershipStateId = 101;
inline constexpr const char* kOwnershipStateName = "flowscopeOwnershipState";
inline constexpr uint8_t kClaimHeld = 1;      // still held at the range's end
inline constexpr uint8_t kClaimReleased = 2;  // released at the range's end

// flowEndReason values (RFC 5102).
inline constexpr uint8_t kEndIdleTimeout = 1;
inline constexpr uint8_t kEndActiveTimeout = 2;
inline constexpr uint8_t kEndOfFlow = 3;
inline constexpr uint8_t kEndForced = 4;
inline constexpr uint8_t kEndLackOfResources = 5;

// flowDirection values (RFC 5102): 0 ingress, 1 egress. flowscope reports a
// flow whose opener it could not tell as 255 (documented in docs/ipfix.md).
inline constexpr uint8_t kDirIngress = 0;
inline constexpr uint8_t kDirEgress = 1;
inline constexpr uint8_t kDirUnknown = 255;

// RFC 5610 informationElementDataType values.
enum class DataType : uint8_t {
  octetArray = 0, unsigned8 = 1, unsigned16 = 2, unsigned32 = 3, unsigned64 = 4,
  boolean = 11, string = 13, dateTimeMilliseconds = 15, ipv4Address = 18, ipv6Address = 19,
};
// RFC 5610 informationElementSemantics values.
enum class Semantics : uint8_t { default_ = 0, quantity = 1, totalCounter = 2, deltaCounter = 3, identifier = 4, flags = 5 };
// IANA IPFIX information element units.
enum class Units : uint16_t { none = 0, octets = 2, packets = 3, microseconds = 7 };

}  // namespace flowscope::ipfix
