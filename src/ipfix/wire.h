// Big-endian read/write helpers for the IPFIX wire format. Readers never read
// past the span they were given: every accessor is bounds-checked by callers
// through remaining().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace flowscope::ipfix::wire {

inline void put8(std::vector<uint8_t>& b, uint8_t v) { b.push_back(v); }
inline void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
inline void put32(std::vector<uint8_t>& b, uint32_t v) {
  put16(b, uint16_t(v >> 16));
  put16(b, uint16_t(v));
}
inline void put64(std::vector<uint8_t>& b, uint64_t v) {
  put32(b, uint32_t(v >> 32));
  put32(b, uint32_t(v));
}
inline void set16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = uint8_t(v >> 8);
  b[at + 1] = uint8_t(v);
}
inline void set32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  set16(b, at, uint16_t(v >> 16));
  set16(b, at + 2, uint16_t(v));
}
// Variable-length field (RFC 7011 §7): one length octet below 255, else 255
// followed by a two-octet length.
inline size_t varlen_size(size_t n) { return n < 255 ? 1 + n : 3 + n; }
inline void put_varlen(std::vector<uint8_t>& b, std::string_view s) {
  if (s.size() < 255) {
    put8(b, uint8_t(s.size()));
  } else {
    put8(b, 255);
    put16(b, uint16_t(s.size()));
  }
  b.insert(b.end(), s.begin(), s.end());
}

inline uint16_t get16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline uint32_t get32(const uint8_t* p) { return (uint32_t(get16(p)) << 16) | get16(p + 2); }
// Unsigned integer of 1..8 octets (reduced-size encoding, RFC 7011 §6.2).
inline uint64_t get_uint(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && i < 8; i++) v = (v << 8) | p[i];
  return v;
}

}  // namespace flowscope::ipfix::wire
