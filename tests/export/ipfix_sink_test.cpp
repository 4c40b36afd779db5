// The IPFIX sink without root: URL parsing, and a full queue drops records,
// counts them, and advances the sequence number so the collector sees the
// same loss (RFC 7011 §10.2.2).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "export/ipfix_exporter.h"
#include "ipfix/decoder.h"

using namespace flowscope;

TEST(IpfixSink, ParsesDestinations) {
  auto a = parse_ipfix_url("udp://127.0.0.1:4739");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->tcp);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 4739);
  auto b = parse_ipfix_url("tcp://[::1]:9995");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->tcp);
  EXPECT_EQ(b->host, "::1");
  auto c = parse_ipfix_url("tcp://collector.example:4739");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "collector.example");
  for (const char* bad : {"127.0.0.1:4739", "sctp://h:1", "udp://h", "udp://h:0", "udp://h:70000", "udp://:4739",
                          "udp://::1:4739", "udp://[::1]4739", "udp://h:47x"}) {
    EXPECT_FALSE(parse_ipfix_url(bad)) << bad;
  }
  EXPECT_FALSE(IpfixExporter::create({"udp://no-such-host.invalid:4739"}, {}));
}

TEST(IpfixSink, FullQueueDropsAreCountedAndVisibleAsSequenceGap) {
  int rx = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  int big = 8 << 20;
  setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  socklen_t len = sizeof(a);
  getsockname(rx, reinterpret_cast<sockaddr*>(&a), &len);

  IpfixExportOptions o;
  o.queue_records = 16;
  auto e = IpfixExporter::create({"udp://127.0.0.1:" + std::to_string(ntohs(a.sin_port))}, o);
  ASSERT_TRUE(e) << e.error().message;
  Flow r;
  r.src_ip = *parse_ip("127.0.0.1");
  r.dst_ip = *parse_ip("127.0.0.1");
  r.dst_port = 80;
  const int n = 1000;
  for (int i = 0; i < n; i++) {
    r.src_port = uint16_t(10000 + i);
    (*e)->write(r);  // no flush: the sender cannot keep up with a 16-record queue
  }
  (*e)->flush();
  // One more record after the drops carries the sequence number past them.
  for (int i = 0; i < 1000 && (*e)->stats()[0].queued > 0; i++) usleep(10000);
  r.src_port = 9999;
  (*e)->write(r);
  (*e)->flush();
  (*e)->close(std::chrono::seconds(5));
  const auto s = (*e)->stats()[0];
  EXPECT_GT(s.dropped_queue_full, 0u);
  EXPECT_EQ(s.records_sent + s.dropped_queue_full, uint64_t(n + 1));
  EXPECT_EQ(s.dropped_send_failed + s.dropped_at_exit, 0u);

  ipfix::Decoder dec;
  std::vector<uint8_t> buf(65536);
  uint64_t flows = 0;
  for (;;) {
    pollfd p{rx, POLLIN, 0};
    if (poll(&p, 1, 200) != 1) break;
    ssize_t got = recv(rx, buf.data(), buf.size(), 0);
    ASSERT_GT(got, 0);
    auto res = dec.feed("agent", ipfix::Transport::Udp, std::span(buf.data(), size_t(got)));
    EXPECT_TRUE(res.ok()) << res.error;
    flows += res.flows.size();
  }
  close(rx);
  EXPECT_EQ(flows, s.records_sent);
  EXPECT_EQ(dec.counters().records_lost, s.dropped_queue_full);
  EXPECT_EQ(dec.counters().messages_malformed, 0u);
}
