// The decoder's state under floods: sessions and templates are bounded per
// source (exporter address) with least-recently-used eviction inside the
// budget, idle UDP sessions expire with their templates, and a legitimate
// exporter's templates and data keep being decoded whatever another source
// sends. Fed directly (no sockets): what the collector does with each
// datagram, at the decoder's own speed.
#include <arpa/inet.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "net/cidr.h"
#include "hostile_ipfix.h"
#include "ipfix/decoder.h"
#include "ipfix/encoder.h"

using namespace flowscope;
using namespace flowscope::ipfix;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));

Flow record(uint16_t port) {
  Flow r;
  r.src_ip = *parse_ip("10.1.2.3");
  r.dst_ip = *parse_ip("192.0.2.9");
  r.src_port = port;
  r.dst_port = 443;
  r.start_ns = 1'700'000'000'000'000'000ull;
  r.end_ns = r.start_ns + 1'000'000;
  r.bytes = port;
  return r;
}

// A legitimate exporter: flowscope's own encoder, one session.
struct Legit {
  std::string session = "udp:127.0.0.1:4000";
  std::string source = "127.0.0.1";
  Encoder enc{{.domain = 7}};
  uint16_t next_port = 1;

  void templates(Decoder& d, std::chrono::system_clock::time_point now = t0) {
    for (auto& m : enc.template_messages(1'700'000'000)) ASSERT_TRUE(d.feed(session, source, Transport::Udp, m, now).ok());
  }
  // Sends one record; returns the ports decoded from it.
  std::vector<uint16_t> data(Decoder& d, std::chrono::system_clock::time_point now = t0) {
    std::vector<uint16_t> got;
    for (auto& m : enc.encode(std::vector<Flow>{record(next_port++)}, 1'700'000'000)) {
      auto r = d.feed(session, source, Transport::Udp, m, now);
      EXPECT_TRUE(r.ok()) << r.error;
      for (auto& f : r.flows) got.push_back(f.record.src_port);
    }
    return got;
  }
};

size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}

std::map<std::string, SourceCounters> by_source(Decoder& d) {
  std::map<std::string, SourceCounters> out;
  for (auto& [s, c] : d.take_source_counters()) out[s] = c;
  return out;
}

}  // namespace

// 10^5 sessions (1,000 source ports x 100 observation domains) from one
// address, each defining a template: only that address's own 256 domains
// churn; the legitimate exporter decodes every record it sends in between.
TEST(DecoderBudget, SessionFloodChurnsOnlyTheFloodersOwnDomains) {
  const uint32_t n = 100'000 / fstest::kFloodScale;
  Decoder dec;
  Legit legit;
  legit.templates(dec);
  std::vector<uint16_t> decoded;
  uint64_t sent = 0;
  for (uint32_t i = 0; i < n; i++) {
    const std::string session = "udp:127.0.0.2:" + std::to_string(10'000 + i % 1000);
    ASSERT_TRUE(dec.feed(session, "127.0.0.2", Transport::Udp, fstest::one_field_templates(i / 1000, 256, 1), t0).ok());
    if (i % 1000 == 0) {
      for (auto p : legit.data(dec)) decoded.push_back(p);
      sent++;
    }
  }
  for (auto p : legit.data(dec)) decoded.push_back(p);
  sent++;
  ASSERT_EQ(decoded.size(), sent);
  for (size_t i = 0; i < decoded.size(); i++) EXPECT_EQ(decoded[i], i + 1);  // each once, in order
  // A session that starts after the flood (an exporter restarting on a new
  // port) is not locked out either.
  Legit late;
  late.session = "udp:127.0.0.1:4001";
  late.templates(dec);
  EXPECT_EQ(late.data(dec).size(), 1u);

  const auto u = dec.usage();
  EXPECT_EQ(u.domains, 256u + 2u);
  EXPECT_EQ(dec.counters().domains_evicted, n - 256u);
  auto sc = by_source(dec);
  EXPECT_EQ(sc["127.0.0.2"].domains_evicted, n - 256u);
  EXPECT_EQ(sc.count("127.0.0.1"), 0u);  // nothing taken from the legitimate exporter
  EXPECT_EQ(dec.counters().sets_no_template, 0u);
}

// A flood of sessions whose data sets wait for templates that never come:
// each evicted session takes its held sets along (counted), the hold stays
// within its bound, and every held set is accounted for.
TEST(DecoderBudget, HeldDataGoesWithItsSessionAndIsCounted) {
  const uint32_t n = 100'000 / fstest::kFloodScale;
  DecoderOptions o{.hold_max_bytes = 256 << 10};
  Decoder dec(o);
  Legit legit;
  legit.templates(dec);
  size_t decoded = 0;
  for (uint32_t i = 0; i < n; i++) {
    const std::string session = "udp:127.0.0.2:" + std::to_string(10'000 + i % 1000);
    ASSERT_TRUE(dec.feed(session, "127.0.0.2", Transport::Udp, fstest::data_set(i / 1000, 300, 32), t0).ok());
    if (i % 1000 == 0) decoded += legit.data(dec).size();
  }
  EXPECT_EQ(decoded, n / 1000);
  const auto& c = dec.counters();
  EXPECT_EQ(c.sets_held, n);
  EXPECT_LE(dec.usage().held_bytes, o.hold_max_bytes);
  const uint64_t still_held = dec.usage().held_bytes / (32 + 128);
  EXPECT_EQ(c.sets_no_template + still_held, c.sets_held);
  EXPECT_GE(c.sets_no_template, n - 256u);  // at most one per live session is left
}

// Data that came before its template (an exporter restarting against a
// running collector) waits in the hold; a source flooding the hold only
// pushes out its own share, and the legitimate data decodes when its
// template comes.
TEST(DecoderBudget, HeldDataOfOneSourceCannotPushOutAnothers) {
  Decoder dec;
  Legit legit;
  auto early = legit.enc.encode(std::vector<Flow>{record(1)}, 1'700'000'000);
  for (auto& m : early) ASSERT_TRUE(dec.feed(legit.session, legit.source, Transport::Udp, m, t0).ok());
  for (uint32_t i = 0; i < 10'000; i++)
    ASSERT_TRUE(dec.feed("udp:127.0.0.2:9", "127.0.0.2", Transport::Udp, fstest::data_set(1, 300, 200), t0).ok());
  EXPECT_LE(dec.usage().held_bytes, (256u << 10) + 2 * (200 + 128 + 1024));
  std::vector<uint16_t> ports;
  for (auto& m : legit.enc.template_messages(1'700'000'000)) {
    auto r = dec.feed(legit.session, legit.source, Transport::Udp, m, t0);
    ASSERT_TRUE(r.ok()) << r.error;
    for (auto& f : r.flows) ports.push_back(f.record.src_port);
  }
  EXPECT_EQ(ports, std::vector<uint16_t>{1});
  EXPECT_EQ(dec.counters().sets_held_decoded, 1u);
}

// Spoofed source addresses, one session each, fill the global table: the
// least recently active session makes room, so an exporter that keeps
// sending keeps its session and templates.
TEST(DecoderBudget, SpoofedSourcesAtTheGlobalBoundEvictTheLeastRecent) {
  const uint32_t n = 100'000 / fstest::kFloodScale;
  Decoder dec({.max_domains = 1024});
  Legit legit;
  legit.templates(dec);
  size_t decoded = 0, sent = 0;
  for (uint32_t i = 0; i < n; i++) {
    const std::string src = "198.51." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + "x" +
                            std::to_string(i / 65536);
    ASSERT_TRUE(dec.feed("udp:" + src + ":9", src, Transport::Udp, fstest::one_field_templates(0, 256, 1), t0).ok());
    if (i % 500 == 0) {
      decoded += legit.data(dec).size();
      sent++;
    }
  }
  EXPECT_EQ(decoded, sent);
  EXPECT_EQ(dec.usage().domains, 1024u);
  EXPECT_EQ(dec.counters().domains_evicted, n + 1u - 1024u);
  EXPECT_EQ(by_source(dec).count("127.0.0.1"), 0u);
}

// 10^6 one-field templates (1,000 messages of 1,000, over 1,000 domains)
// from one address: its template memory stays within its budget, the
// legitimate exporter's templates are never evicted, and the process grows
// by a bounded amount (unbounded, this flood took ~150 MB).
TEST(DecoderBudget, TemplateFloodStaysWithinTheSourceBudget) {
  DecoderOptions o;
  Decoder dec(o);
  Legit legit;
  legit.templates(dec);
  const size_t legit_bytes = dec.usage().template_bytes;
  const uint64_t templates0 = dec.counters().templates;
  const size_t rss0 = rss_bytes();
  const uint32_t messages = 1000 / fstest::kFloodScale;
  size_t decoded = 0, sent = 0;
  for (uint32_t i = 0; i < messages; i++) {
    auto m = fstest::one_field_templates(i, 256, 1000);
    ASSERT_TRUE(dec.feed("udp:127.0.0.2:5555", "127.0.0.2", Transport::Udp, m, t0).ok());
    if (i % 50 == 0) {
      decoded += legit.data(dec).size();
      sent++;
    }
  }
  const size_t grown = rss_bytes() > rss0 ? rss_bytes() - rss0 : 0;
  decoded += legit.data(dec).size();
  sent++;
  EXPECT_EQ(decoded, sent);
  Legit late;  // templates defined after the flood are taken too
  late.session = "udp:127.0.0.1:4001";
  late.templates(dec);
  EXPECT_EQ(late.data(dec).size(), 1u);
  EXPECT_EQ(dec.counters().templates - templates0, messages * 1000u + 2u);  // every one (and the late flow templates) was read...
  const auto u = dec.usage();
  EXPECT_LE(u.template_bytes - 2 * legit_bytes, o.max_template_bytes_per_source);  // ...few are kept
  auto sc = by_source(dec);
  EXPECT_GT(sc["127.0.0.2"].templates_evicted, messages * 1000u - 10'000u);
  EXPECT_EQ(sc.count("127.0.0.1"), 0u);
  // Budget 1 MiB, charged at what templates cost; the bound documented for
  // the whole decoder is max_template_bytes (16 MiB) plus its domains.
  if (!fstest::kSanitized) {
    EXPECT_LT(grown, size_t(16) << 20) << "RSS grew by " << grown;
  }
  RecordProperty("rss_growth_bytes", std::to_string(grown));
  std::printf("template flood: RSS grew by %zu KiB; template bytes charged %zu\n", grown / 1024, u.template_bytes);
}

// Many sources flooding templates at once reach the global bound: the
// source holding the most gives way, never the small legitimate one.
TEST(DecoderBudget, TemplateFloodFromManySourcesKeepsTheGlobalBound) {
  DecoderOptions o{.max_template_bytes = 4u << 20, .max_template_bytes_per_source = 1u << 20};
  Decoder dec(o);
  Legit legit;
  legit.templates(dec);
  for (uint32_t i = 0; i < 400 / fstest::kFloodScale; i++) {
    const std::string src = "203.0.113." + std::to_string(i % 40);
    ASSERT_TRUE(dec.feed("udp:" + src + ":1", src, Transport::Udp, fstest::one_field_templates(i, 256, 1000), t0).ok());
  }
  EXPECT_LE(dec.usage().template_bytes, o.max_template_bytes);
  EXPECT_EQ(legit.data(dec).size(), 1u);
  EXPECT_EQ(by_source(dec).count("127.0.0.1"), 0u);
}

// Inside one source the least recently used template goes first: one that
// data keeps using survives a stream of new ones.
TEST(DecoderBudget, TemplatesInUseSurviveInsideTheBudget) {
  Decoder dec({.max_template_bytes_per_source = 64 * (kTemplateCost + kFieldCost)});
  Legit legit;
  legit.source = "127.0.0.2";  // the same address as the flood below
  legit.templates(dec);
  size_t decoded = 0;
  for (uint32_t i = 0; i < 200; i++) {
    ASSERT_TRUE(dec.feed("udp:127.0.0.2:9", "127.0.0.2", Transport::Udp, fstest::one_field_templates(1, uint16_t(300 + i % 1000), 1), t0).ok());
    if (i % 10 == 0) decoded += legit.data(dec).size();
  }
  EXPECT_EQ(decoded, 20u);
  EXPECT_GT(dec.counters().templates_evicted, 100u);
}

// Sessions that fall silent expire with their templates: the table that a
// flood filled is empty again after the idle time, and TCP sessions (which
// end with their connection) stay.
TEST(DecoderBudget, IdleUdpSessionsExpireWithTheirTemplates) {
  DecoderOptions o{.template_lifetime = 1800s, .session_idle = 600s};
  Decoder dec(o);
  for (uint32_t i = 0; i < 4096; i++) {
    const std::string src = "192.0.2." + std::to_string(i % 200);
    ASSERT_TRUE(dec.feed("udp:" + src + ":" + std::to_string(i), src, Transport::Udp, fstest::one_field_templates(0, 256, 4), t0).ok());
  }
  ASSERT_TRUE(dec.feed("tcp:192.0.2.1:1#0", "192.0.2.1", Transport::Tcp, fstest::one_field_templates(0, 256, 4), t0).ok());
  EXPECT_EQ(dec.usage().domains, 4096u);  // the global bound
  dec.expire(t0 + 599s);
  EXPECT_EQ(dec.counters().domains_expired, 0u);
  dec.expire(t0 + 601s);
  EXPECT_EQ(dec.counters().domains_expired, 4095u);  // one UDP session made room for the TCP one
  const auto u = dec.usage();
  EXPECT_EQ(u.domains, 1u);
  EXPECT_EQ(u.templates, 4u);
  EXPECT_EQ(u.template_bytes, 4 * (kTemplateCost + kFieldCost));
  dec.close_session("tcp:192.0.2.1:1#0");
  EXPECT_EQ(dec.usage().domains, 0u);
  EXPECT_EQ(dec.usage().template_bytes, 0u);
  EXPECT_EQ(dec.usage().sources, 0u);
}
