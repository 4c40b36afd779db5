#include "net/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace flowscope {

Result<Ip16> parse_ip(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return fail("bad IP address '{}'", text);
  std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return ip16_from_v4(buf);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return ip16_from_v6(buf);
  return fail("bad IP address '{}'", text);
}

Result<Cidr> parse_cidr(std::string_view text) {
  // Error messages echo at most a bounded prefix of the input.
  const std::string_view shown = text.substr(0, 64);
  auto slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return fail("bad CIDR '{}': not an IP address", shown);
  Cidr c;
  c.v4 = ip16_is_v4(*ip);
  const int max = c.v4 ? 32 : 128;
  int prefix = max;
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || prefix < 0 || prefix > max)
      return fail("bad CIDR '{}': prefix length must be 0..{}", shown, max);
  }
  c.prefix = prefix;
  const int bits = c.v4 ? prefix + 96 : prefix;  // prefix within the 128-bit form
  c.first = *ip;
  c.last = *ip;
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(bits - i * 8, 0, 8);
    const uint8_t mask = keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    if ((*ip)[i] & ~mask) return fail("bad CIDR '{}': address has bits set below the /{} prefix", shown, prefix);
    c.first[i] = (*ip)[i] & mask;
    c.last[i] = static_cast<uint8_t>((*ip)[i] | ~mask);
  }
  return c;
}

std::string Cidr::to_string() const { return ip16_to_string(first) + "/" + std::to_string(prefix); }

}  // namespace flowscope
