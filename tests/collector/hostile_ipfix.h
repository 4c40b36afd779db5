// IPFIX messages a hostile sender makes: many sessions, many templates.
// Built by hand (not with the encoder) so they are exactly what they claim.
#pragma once

#include <cstdint>
#include <vector>

#include "ipfix/wire.h"

namespace fstest {

// Under AddressSanitizer freed memory is quarantined and every allocation is
// padded, so RSS says nothing about the code's own bounds, and everything
// runs several times slower: there the floods are a tenth as large and RSS
// is not checked (the counters and budgets still are).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif
inline constexpr uint32_t kFloodScale = kSanitized ? 10 : 1;

// An IPFIX message whose template set defines `count` one-field templates
// (octetDeltaCount, 8 octets), ids first_id, first_id + 1, ...
inline std::vector<uint8_t> one_field_templates(uint32_t domain, uint16_t first_id, uint16_t count,
                                                uint32_t export_time = 1'700'000'000) {
  using namespace flowscope::ipfix::wire;
  std::vector<uint8_t> m;
  const size_t set_len = 4 + size_t(count) * 8;
  put16(m, 10);
  put16(m, uint16_t(16 + set_len));
  put32(m, export_time);
  put32(m, 0);  // sequence: templates do not count
  put32(m, domain);
  put16(m, 2);  // template set
  put16(m, uint16_t(set_len));
  for (uint16_t i = 0; i < count; i++) {
    put16(m, uint16_t(first_id + i));
    put16(m, 1);  // one field
    put16(m, 1);  // octetDeltaCount
    put16(m, 8);
  }
  return m;
}

}  // namespace fstest

namespace fstest {

// An IPFIX message with one data set for template `set_id` (which the
// receiver may not know: the set is then held, waiting for it).
inline std::vector<uint8_t> data_set(uint32_t domain, uint16_t set_id, uint16_t body_bytes) {
  using namespace flowscope::ipfix::wire;
  std::vector<uint8_t> m;
  put16(m, 10);
  put16(m, uint16_t(16 + 4 + body_bytes));
  put32(m, 1'700'000'000);
  put32(m, 0);
  put32(m, domain);
  put16(m, set_id);
  put16(m, uint16_t(4 + body_bytes));
  m.resize(m.size() + body_bytes, 0xab);
  return m;
}

}  // namespace fstest
