// libFuzzer target for the tracer's packet decoder: the bytes come from
// whatever packet the kernel carried, so they are outside input. Built and run
// bounded by scripts/fuzz.sh (clang++ -fsanitize=fuzzer,address,undefined).
// Seeds: tests/trace/corpus/.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "trace/packet.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so that ASan sees any read past the captured bytes.
  const std::vector<uint8_t> pkt(data, data + size);
  const auto pi = flowscope::trace::decode_packet(pkt.data(), pkt.size());
  (void)pi.summary();
  return 0;
}
