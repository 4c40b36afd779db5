// Packets of a capture file, read with libpcap (kept out of files that include
// libbpf: both headers define struct bpf_insn).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fstest {

struct CapturedPacket {
  int linktype = 0;
  std::vector<uint8_t> data;
};
// Throws std::runtime_error when the file cannot be read.
std::vector<CapturedPacket> read_capture(const std::string& path);

}  // namespace fstest
