// libFuzzer target for the IPFIX / NetFlow v9 decoder (hostile input).
//
// Each input is decoded twice: as one UDP datagram, and as a TCP byte stream
// cut into messages by StreamFramer (so templates from one message apply to
// the next). Built with -DFLOWSCOPE_FUZZ=ON (clang++ -fsanitize=fuzzer,address,undefined);
// run bounded by scripts/fuzz.sh. Seeds: tests/ipfix/corpus/.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ipfix/decoder.h"

using namespace flowscope::ipfix;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  // Small limits so the bounds themselves are exercised.
  DecoderOptions o;
  o.template_lifetime = std::chrono::seconds(30);
  o.hold_max_bytes = 4096;
  o.max_templates_per_domain = 8;
  o.max_domains = 4;
  o.max_domains_per_source = 2;
  o.max_template_bytes = 4096;
  o.max_template_bytes_per_source = 2048;
  {
    Decoder dec(o);
    (void)dec.feed("udp", Transport::Udp, in, t0);
    (void)dec.feed("udp", Transport::Udp, in, t0 + std::chrono::seconds(1));  // templates now known
    (void)dec.exporter_stats();
  }
  {
    Decoder dec(o);
    StreamFramer fr;
    fr.append(in);
    int n = 0;
    for (auto m = fr.next(); !m.empty() && n < 1000; m = fr.next(), n++) {
      (void)dec.feed("tcp", Transport::Tcp, m, t0 + std::chrono::seconds(n));
      // The same message as UDP from another exporter, hours later: expiry paths.
      (void)dec.feed("udp", Transport::Udp, m, t0 + std::chrono::seconds(n * 20));
    }
    dec.close_session("tcp");
  }
  return 0;
}
