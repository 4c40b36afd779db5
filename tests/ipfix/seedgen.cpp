// Writes IPFIX messages made by the encoder to files DIR/NAME-N.bin: the fuzz
// seed corpus and input for the tshark/nfdump tests.
//   ipfix_seedgen DIR
#include <arpa/inet.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "net/cidr.h"
#include "ipfix/encoder.h"

using namespace flowscope;
using namespace flowscope::ipfix;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ipfix_seedgen DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  Encoder enc({.domain = 1, .max_message = 1400});
  std::vector<Flow> recs;
  for (int i = 0; i < 3; i++) {
    Flow r;
    r.src_ip = *parse_ip(i == 1 ? "::1" : "127.0.0.1");
    r.dst_ip = *parse_ip(i == 1 ? "::1" : "127.0.0.2");
    r.src_port = uint16_t(40000 + i);
    r.dst_port = 8080;
    r.start_ns = 1'700'000'000'000'000'000ull + i * 1'000'000'000ull;
    r.end_ns = r.start_ns + 1'234'000'000ull;
    r.direction = i == 2 ? Direction::Inbound : Direction::Outbound;
    r.bytes = 1000u * (i + 1);
    r.rev_bytes = 77;
    r.packets = 5;
    r.rev_packets = 4;
    r.srtt_us = 50;
    r.comm = "seed";
    r.pid = 1;
    r.interim = i == 1;
    r.close = i == 1 ? CloseReason::Active : CloseReason::Fin;
    if (i == 2) r.drops = {{"NO_SOCKET", 2}};
    recs.push_back(r);
  }
  int n = 0;
  auto write = [&](const std::string& name, const std::vector<Message>& msgs) {
    for (const auto& m : msgs) {
      std::ofstream(dir + "/" + name + "-" + std::to_string(n++) + ".bin", std::ios::binary)
          .write(reinterpret_cast<const char*>(m.data()), std::streamsize(m.size()));
    }
  };
  write("templates", enc.template_messages(1'700'000'010));
  write("flows", enc.encode(recs, 1'700'000'010));
  // Templates and data in one message (TCP-sized).
  Encoder big({.domain = 2, .max_message = 65535});
  auto t = big.template_messages(1'700'000'020);
  auto d = big.encode(recs, 1'700'000'020);
  std::vector<uint8_t> both;
  write("tcp", t);
  write("tcp", d);
  return 0;
}
