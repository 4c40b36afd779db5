// The 16-byte address form every flow carries: IPv6 as is, IPv4 as the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d (see net/cidr.h for why). Kept
// apart from the parsers so the flow types need nothing but this.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace flowscope {

using Ip16 = std::array<uint8_t, 16>;

// IPv4 (4 bytes) or IPv6 (16 bytes) in network order to the 16-byte form.
Ip16 ip16_from_v4(const uint8_t* a4);
Ip16 ip16_from_v6(const uint8_t* a16);
bool ip16_is_v4(const Ip16& a);
// Text form: dotted quad for mapped IPv4, RFC 5952 for IPv6.
std::string ip16_to_string(const Ip16& a);
// The same text into `out` (room for INET6_ADDRSTRLEN = 46 bytes, no NUL
// written); returns its length. Per record at high rates: dotted quads are
// written without inet_ntop's generality.
size_t ip16_format(const Ip16& a, char* out);

}  // namespace flowscope
