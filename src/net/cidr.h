// IP addresses and networks, v4 and v6, in one comparable form.
//
// Every address is held as 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped
// IPv6 address ::ffff:a.b.c.d. Byte-wise comparison then orders addresses
// numerically, so a network is a closed range [first, last] that SQLite can
// compare against BLOB columns with an index (memcmp order).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "net/ip16.h"

namespace flowscope {

Result<Ip16> parse_ip(std::string_view text);

struct Cidr {
  Ip16 first{};
  Ip16 last{};
  int prefix = 0;  // in the address's own family (0..32 for v4, 0..128 for v6)
  bool v4 = false;

  bool contains(const Ip16& a) const { return first <= a && a <= last; }
  std::string to_string() const;
};

// "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128). Host bits set
// below the prefix are refused ("10.0.0.1/8" is a typo more often than not).
Result<Cidr> parse_cidr(std::string_view text);

}  // namespace flowscope
