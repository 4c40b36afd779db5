#include "net/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace flowscope {

namespace {
constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}

Ip16 ip16_from_v4(const uint8_t* a4) {
  Ip16 r{};
  std::memcpy(r.data(), kMapped, 12);
  std::memcpy(r.data() + 12, a4, 4);
  return r;
}

Ip16 ip16_from_v6(const uint8_t* a16) {
  Ip16 r{};
  std::memcpy(r.data(), a16, 16);
  return r;
}

bool ip16_is_v4(const Ip16& a) { return std::memcmp(a.data(), kMapped, 12) == 0; }

std::string ip16_to_string(const Ip16& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ip16_is_v4(a))
    inet_ntop(AF_INET, a.data() + 12, buf, sizeof(buf));
  else
    inet_ntop(AF_INET6, a.data(), buf, sizeof(buf));
  return buf;
}

size_t ip16_format(const Ip16& a, char* out) {
  if (!ip16_is_v4(a)) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, a.data(), buf, sizeof(buf));
    const size_t n = std::strlen(buf);
    std::memcpy(out, buf, n);
    return n;
  }
  char* p = out;
  for (int i = 12; i < 16; i++) {
    const unsigned v = a[i];
    if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
    *p++ = static_cast<char>('0' + v % 10);
    if (i < 15) *p++ = '.';
  }
  return static_cast<size_t>(p - out);
}

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
