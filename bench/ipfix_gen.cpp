// fs_ipfix_gen: an IPFIX (RFC 7011) exporter that sends synthetic TCP flow
// records at full speed, for the collector ingest benchmark.
//
//   fs_ipfix_gen --proto udp|tcp --addr A --port P [--records N] [--per-message K]
//
// The stream is described in ipfix_stream.h.
#include <netinet/tcp.h>

#include <vector>

#include <CLI/CLI.hpp>

#include "common.h"
#include "ipfix_stream.h"

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
  IpfixWriter w;
  while (sent < records && !g_stop.load()) {
    const uint64_t n = std::min<uint64_t>(uint64_t(per_msg), records - sent);
    ipfix_message(w, sent, n, now_ms, messages % 100 == 0 && (udp || messages == 0));
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
