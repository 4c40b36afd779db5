// ipfix_decode FILE...: decodes IPFIX / NetFlow v9 messages (one per file, or
// a TCP-style stream of IPFIX messages) and prints the flows as JSON lines
// plus the decoder's counters. A debugging aid for the codec tests.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <fmt/format.h>

#include "flow/json.h"
#include "ipfix/decoder.h"

using namespace flowscope;
using namespace flowscope::ipfix;

int main(int argc, char** argv) {
  Decoder dec;
  for (int i = 1; i < argc; i++) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto r = dec.feed("file", Transport::Udp, bytes);
    if (!r.ok()) fmt::print("{}: malformed: {}\n", argv[i], r.error);
    for (const auto& fl : r.flows) {
      std::string line;
      append_json_line(line, fl.record);
      fmt::print("proto={} v={} tmpl={} end_reason={} {}", fl.record.protocol, fl.version, fl.template_id,
                 fl.end_reason, line);
    }
  }
  const auto& c = dec.counters();
  fmt::print("messages={} malformed={} templates={} data_records={} flows={} held={} no_template={} gaps={}\n",
             c.messages, c.messages_malformed, c.templates, c.data_records, c.flows, c.sets_held, c.sets_no_template,
             c.sequence_gaps);
  return 0;
}
