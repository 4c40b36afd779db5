// A minimal pcapng writer (IETF draft-ietf-opsawg-pcapng): one Section Header
// Block, one Interface Description Block (LINKTYPE_RAW: packets start at the
// IP header, nanosecond timestamps), one Enhanced Packet Block per packet with
// an opt_comment. libpcap's pcap_dump writes the older pcap format, which has
// no comments.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "base/result.h"

namespace flowscope::trace {

class PcapngWriter {
 public:
  static Result<PcapngWriter> open(const std::string& path, uint32_t snaplen);
  // ts_ns: Unix time in nanoseconds.
  Result<void> write(uint64_t ts_ns, const uint8_t* data, uint32_t caplen, uint32_t origlen, const std::string& comment);
  Result<void> flush();
  uint64_t packets() const { return packets_; }

 private:
  struct FileCloser {
    void operator()(FILE* f) const { fclose(f); }
  };
  Result<void> put(const std::string& block);
  std::unique_ptr<FILE, FileCloser> f_;
  std::string path_;
  uint64_t packets_ = 0;
};

}  // namespace flowscope::trace
