// What the copied header bytes of an event say: addresses, protocol, ports,
// TCP flags. Works on the bytes from the IP header on (IPv4 or IPv6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flowscope::trace {

struct PacketInfo {
  int ip_version = 0;  // 4, 6, or 0 when not IP / unreadable
  std::string src, dst;
  uint8_t proto = 0;  // IPPROTO_*
  bool has_ports = false;
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;       // TCP only
  int icmp_type = -1, icmp_code = -1;
  uint8_t ttl = 0;

  // "10.0.0.1:40000 > 10.0.0.2:80 TCP [S]", "fd00::1 > fd00::2 ICMPv6 128/0"
  std::string summary() const;
  std::string proto_name() const;
  std::string flags_string() const;  // "S", "S.", "R.", "P.", "F." (tcpdump style)
};

PacketInfo decode_packet(const uint8_t* pkt, size_t caplen);

}  // namespace flowscope::trace
