#include "trace/packet.h"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace flowscope::trace {

namespace {
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

// IPv6 extension headers that may stand between the fixed header and the
// transport header (RFC 8200 4.1; AH per RFC 4302). ESP (50) hides the rest.
bool is_ipv6_ext(uint8_t h) { return h == 0 || h == 43 || h == 44 || h == 51 || h == 60; }

// Walks the extension headers from offset 40. Returns false when the
// transport header is not in this packet (a later fragment, or the chain runs
// past the captured bytes); pi.proto is then the last header type reached.
bool skip_ipv6_ext(const uint8_t* pkt, size_t caplen, PacketInfo& pi, size_t& off) {
  for (int n = 0; n < 8 && is_ipv6_ext(pi.proto); n++) {
    if (caplen < off + 8) return false;  // every extension header has at least 8 bytes
    const uint8_t next = pkt[off];
    if (pi.proto == 44) {
      // Only the first fragment (offset 0) carries the transport header.
      const bool first = (be16(pkt + off + 2) & 0xfff8) == 0;
      off += 8;
      pi.proto = next;
      if (!first) return false;
      continue;
    }
    off += pi.proto == 51 ? (pkt[off + 1] + 2u) * 4u : (pkt[off + 1] + 1u) * 8u;
    pi.proto = next;
  }
  return !is_ipv6_ext(pi.proto);
}

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
    // Only the first fragment carries the transport header; an IHL under 5
    // is malformed.
    if ((be16(pkt + 6) & 0x1fff) != 0 || l4 < 20) return pi;
  } else if (v == 6 && caplen >= 40) {
    pi.ip_version = 6;
    pi.proto = pkt[6];
    pi.ttl = pkt[7];
    inet_ntop(AF_INET6, pkt + 8, buf, sizeof(buf));
    pi.src = buf;
    inet_ntop(AF_INET6, pkt + 24, buf, sizeof(buf));
    pi.dst = buf;
    l4 = 40;
    if (!skip_ipv6_ext(pkt, caplen, pi, l4)) return pi;
  } else {
    return pi;
  }
  if (l4 >= caplen) return pi;
  const uint8_t* t = pkt + l4;
  const size_t left = caplen - l4;
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
