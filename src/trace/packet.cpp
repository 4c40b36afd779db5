#include "trace/packet.h"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace flowscope::trace {

namespace {
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
}  // namespace

PacketInfo decode_packet(const uint8_t* pkt, size_t caplen) {
  PacketInfo pi;
  if (caplen < 1) return pi;
  const int v = pkt[0] >> 4;
  size_t l4 = 0;
  char buf[INET6_ADDRSTRLEN];
  if (v == 4 && caplen >= 20) {
    pi.ip_version = 4;
    pi.proto = pkt[9];
    pi.ttl = pkt[8];
    inet_ntop(AF_INET, pkt + 12, buf, sizeof(buf));
    pi.src = buf;
    inet_ntop(AF_INET, pkt + 16, buf, sizeof(buf));
    pi.dst = buf;
    l4 = (pkt[0] & 0xf) * 4u;
    // Only the first fragment carries the transport header.
    if ((be16(pkt + 6) & 0x1fff) != 0) return pi;
  } else if (v == 6 && caplen >= 40) {
    pi.ip_version = 6;
    pi.proto = pkt[6];
    pi.ttl = pkt[7];
    inet_ntop(AF_INET6, pkt + 8, buf, sizeof(buf));
    pi.src = buf;
    inet_ntop(AF_INET6, pkt + 24, buf, sizeof(buf));
    pi.dst = buf;
    l4 = 40;  // extension headers are not followed
  } else {
    return pi;
  }
  const uint8_t* t = pkt + l4;
  const size_t left = caplen > l4 ? caplen - l4 : 0;
  if ((pi.proto == 6 || pi.proto == 17 || pi.proto == 132) && left >= 4) {
    pi.has_ports = true;
    pi.sport = be16(t);
    pi.dport = be16(t + 2);
    if (pi.proto == 6 && left >= 14) pi.tcp_flags = t[13];
  } else if ((pi.proto == 1 || pi.proto == 58) && left >= 2) {
    pi.icmp_type = t[0];
    pi.icmp_code = t[1];
  }
  return pi;
}

std::string PacketInfo::proto_name() const {
  switch (proto) {
    case 6: return "TCP";
    case 17: return "UDP";
    case 1: return "ICMP";
    case 58: return "ICMPv6";
    case 132: return "SCTP";
    default: return fmt::format("proto {}", proto);
  }
}

std::string PacketInfo::flags_string() const {
  std::string s;
  if (tcp_flags & 0x02) s += 'S';
  if (tcp_flags & 0x01) s += 'F';
  if (tcp_flags & 0x04) s += 'R';
  if (tcp_flags & 0x08) s += 'P';
  if (tcp_flags & 0x10) s += '.';
  return s.empty() ? "none" : s;
}

std::string PacketInfo::summary() const {
  if (ip_version == 0) return "non-IP";
  auto addr = [&](const std::string& a, uint16_t port) {
    if (!has_ports) return a;
    return ip_version == 6 ? fmt::format("[{}]:{}", a, port) : fmt::format("{}:{}", a, port);
  };
  std::string s = fmt::format("{} > {} {}", addr(src, sport), addr(dst, dport), proto_name());
  if (proto == 6 && has_ports) s += fmt::format(" [{}]", flags_string());
  if (icmp_type >= 0) s += fmt::format(" {}/{}", icmp_type, icmp_code);
  return s;
}

}  // namespace flowscope::trace
