#include "net/ip16.h"

#include <arpa/inet.h>

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

}  // namespace flowscope
