// fs_ipfix_gen: an IPFIX (RFC 7011) exporter that sends synthetic TCP flow
// records at full speed, for the collector ingest benchmark.
//
//   fs_ipfix_gen --proto udp|tcp --addr A --port P [--records N] [--per-message K]
//
// Every message:
//
//   +--------------------------------------------------------------+
//   | header: version=10 | length | export time | sequence | domain|  16 bytes
//   +--------------------------------------------------------------+
//   | [template set: id 2, template 256 with 9 fields]             |  first message,
//   +--------------------------------------------------------------+  then every 100 (UDP)
//   | data set: id 256 | length | K records of 45 bytes            |
//   +--------------------------------------------------------------+
//
// Record: sourceIPv4Address(8) destinationIPv4Address(12) sourceTransportPort(7)
// destinationTransportPort(11) protocolIdentifier(4) octetDeltaCount(1)
// packetDeltaCount(2) flowStartMilliseconds(152) flowEndMilliseconds(153).
// The sequence number counts data records sent before the message (§3.1).
// Addresses and ports vary per record so no two flows are alike.
#include <netinet/tcp.h>

#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"

namespace {

struct Writer {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) {
    u8(uint8_t(v >> 8));
    u8(uint8_t(v));
  }
  void u32(uint32_t v) {
    u16(uint16_t(v >> 16));
    u16(uint16_t(v));
  }
  void u64(uint64_t v) {
    u32(uint32_t(v >> 32));
    u32(uint32_t(v));
  }
  void put16(size_t at, uint16_t v) {
    b[at] = uint8_t(v >> 8);
    b[at + 1] = uint8_t(v);
  }
};

constexpr uint16_t kTemplateId = 256;
constexpr uint16_t kFields[][2] = {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 8}, {2, 8}, {152, 8}, {153, 8}};

}  // namespace

int main(int argc, char** argv) {
  using namespace fsbench;
  CLI::App app{"fs_ipfix_gen: synthetic IPFIX at full speed"};
  std::string proto = "udp", addr = "127.0.0.1";
  uint16_t port = 4739;
  uint64_t records = 1000000;
  int per_msg = 30;
  app.add_option("--proto", proto)->check(CLI::IsMember({"udp", "tcp"}))->capture_default_str();
  app.add_option("--addr", addr)->capture_default_str();
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--records", records)->capture_default_str();
  app.add_option("--per-message", per_msg)->check(CLI::Range(1, 1000))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  install_signals();

  Addr d = make_addr(addr, port);
  const bool udp = proto == "udp";
  int fd = socket(d.family(), udp ? SOCK_DGRAM : SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, d.sa(), d.len) != 0) {
    fmt::print(stderr, "fs_ipfix_gen: connect {}:{}: {}\n", addr, port, std::strerror(errno));
    return 1;
  }
  const uint64_t now_ms = uint64_t(time(nullptr)) * 1000;
  uint64_t sent = 0, messages = 0, send_errors = 0, bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  Writer w;
  while (sent < records && !g_stop.load()) {
    w.b.clear();
    w.u16(10);
    w.u16(0);  // length, patched below
    w.u32(uint32_t(now_ms / 1000));
    w.u32(uint32_t(sent));
    w.u32(1);  // observation domain
    if (messages % 100 == 0 && (udp || messages == 0)) {
      const size_t set = w.b.size();
      w.u16(2);
      w.u16(0);
      w.u16(kTemplateId);
      w.u16(uint16_t(std::size(kFields)));
      for (auto& f : kFields) {
        w.u16(f[0]);
        w.u16(f[1]);
      }
      w.put16(set + 2, uint16_t(w.b.size() - set));
    }
    const uint64_t n = std::min<uint64_t>(uint64_t(per_msg), records - sent);
    const size_t set = w.b.size();
    w.u16(kTemplateId);
    w.u16(0);
    for (uint64_t i = 0; i < n; i++) {
      const uint64_t k = sent + i;
      w.u32(0x0a000000u | uint32_t(k & 0xffffff));  // 10.x.y.z
      w.u32(0x0a800001u);                           // 10.128.0.1
      w.u16(uint16_t(1024 + k % 60000));
      w.u16(443);
      w.u8(6);
      w.u64(1000 + k % 100000);
      w.u64(10 + k % 100);
      w.u64(now_ms - 5000 + k % 1000);
      w.u64(now_ms);
    }
    w.put16(set + 2, uint16_t(w.b.size() - set));
    w.put16(2, uint16_t(w.b.size()));
    size_t off = 0;
    while (off < w.b.size()) {
      ssize_t r = send(fd, w.b.data() + off, w.b.size() - off, MSG_NOSIGNAL);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        // UDP: a full socket buffer or an ICMP error from a previous
        // datagram; count it and go on. TCP: the peer is gone.
        send_errors++;
        if (!udp) {
          fmt::print(stderr, "fs_ipfix_gen: send: {}\n", std::strerror(errno));
          return 1;
        }
        break;
      }
      off += size_t(r);
    }
    bytes += w.b.size();
    sent += n;
    messages++;
  }
  const double secs = seconds_since(t0);
  close(fd);
  fmt::print("{{\"records\":{},\"messages\":{},\"bytes\":{},\"send_errors\":{},\"seconds\":{:.3f},\"records_per_s\":{:.0f}}}\n",
             sent, messages, bytes, send_errors, secs, double(sent) / secs);
  return 0;
}
