#include "pcap_reader.h"

#include <pcap/pcap.h>

#include <stdexcept>

namespace fstest {

std::vector<CapturedPacket> read_capture(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) throw std::runtime_error(err);
  std::vector<CapturedPacket> out;
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(p, &h, &d) == 1) out.push_back({pcap_datalink(p), std::vector<uint8_t>(d, d + h->caplen)});
  pcap_close(p);
  return out;
}

}  // namespace fstest
