// flowscope's IPFIX read by libfixbuf's ipfixDump (CERT NetSA, Debian package
// libfixbuf-tools), a strict RFC 5610 reader nobody here wrote. ipfixDump
// learns an enterprise element's name and type only from a type record it has
// already read when a template names the element; otherwise it prints the
// element as an unknown octet array. So every flowscope element must be named,
// with its type, in every template and every data record ipfixDump prints.
//
// The input is what the exporter sends, in its order: an IPFIX file is the
// messages one after another (RFC 5655), so the file holds the template
// messages, data, a template refresh and more data, cut to the UDP and the TCP
// message sizes.
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ipfix/encoder.h"
#include "net/cidr.h"
#include "ipfixdump.h"

using namespace flowscope;
using namespace flowscope::ipfix;

namespace {

Flow sample(int family, uint16_t lport) {
  Flow r;
  if (family == 4) {
    uint8_t a[4], b[4];
    inet_pton(AF_INET, "10.1.2.3", a);
    inet_pton(AF_INET, "192.0.2.9", b);
    r.src_ip = ip16_from_v4(a);
    r.dst_ip = ip16_from_v4(b);
  } else {
    uint8_t a[16], b[16];
    inet_pton(AF_INET6, "fd00::1", a);
    inet_pton(AF_INET6, "2001:db8::42", b);
    r.src_ip = ip16_from_v6(a);
    r.dst_ip = ip16_from_v6(b);
  }
  r.src_port = lport;
  r.dst_port = 443;
  r.protocol = 6;
  r.start_ns = 1'700'000'000'123'000'000ull;
  r.end_ns = 1'700'000'005'456'000'000ull;
  r.bytes = 10000;
  r.packets = 12;
  r.srtt_us = 1234;
  r.pid = 4242;
  r.comm = "curl";
  r.cgroup = "/system.slice/x.scope";
  return r;
}

class IpfixDump : public ::testing::TestWithParam<size_t> {};

}  // namespace

TEST_P(IpfixDump, NamesEveryFlowscopeElementWithItsType) {
  if (fstest::run_command("command -v ipfixDump").empty())
    GTEST_FAIL() << "ipfixDump is not installed (scripts/setup.sh installs libfixbuf-tools)";
  const size_t max_message = GetParam();
  Encoder enc({.domain = 3, .max_message = max_message});
  std::vector<Message> msgs;
  auto add = [&](std::vector<Message> m) { msgs.insert(msgs.end(), m.begin(), m.end()); };
  const std::vector<Flow> recs = {sample(4, 1000), sample(6, 2000)};
  OwnershipClaim held;
  held.host = "web-1";
  held.addr = *parse_ip("10.1.2.3");
  held.from_ns = 1'700'000'000'000'000'000ull;
  held.to_ns = 1'700'000'005'000'000'000ull;
  OwnershipClaim port = held;
  port.addr = *parse_ip("fd00::1");
  port.port = 8443;
  port.protocol = 6;
  port.held = false;
  port.exe = "nginx";
  port.unit = "nginx.service";
  port.pid = 4242;
  std::vector<ExportRecord> mixed(recs.begin(), recs.end());
  mixed.push_back(held);
  mixed.push_back(port);
  add(enc.template_messages(1700000000));
  add(enc.encode(mixed, 1700000001));
  add(enc.template_messages(1700000600));  // refresh
  add(enc.encode(mixed, 1700000601));

  const std::string path = fmt::format("{}/fs-ipfixdump-{}.ipfix", ::testing::TempDir(), getpid());
  {
    std::ofstream f(path, std::ios::binary);
    for (const auto& m : msgs) f.write(reinterpret_cast<const char*>(m.data()), std::streamsize(m.size()));
  }
  const auto dump = fstest::ipfix_dump(path);
  std::filesystem::remove(path);
  const std::string& out = dump.text;
  ASSERT_NE(out.find("--- data record"), std::string::npos) << out;
  // ipfixDump read the whole file without complaint.
  EXPECT_EQ(out.find("rror"), std::string::npos) << out;

  // Per round: the IPv4 and IPv6 templates, one type record per element, the
  // two flows. Two rounds (start and refresh).
  EXPECT_EQ(dump.flow_templates.size(), 4u) << out;
  EXPECT_EQ(dump.type_records, 2 * (fstest::own_elements().size() + 1)) << out;  // + flowscopeOwnershipState
  ASSERT_EQ(dump.flow_records.size(), 2 * recs.size()) << out;
  for (const auto& t : dump.flow_templates) fstest::expect_template_names_all(t, kDefaultPen);
  // Data records: every element by name; values read with the announced type
  // (an unknown element is printed as raw octets: srtt 1234 showed as
  // 3523477504).
  for (const auto& r : dump.flow_records) {
    fstest::expect_record_names_all(r, kDefaultPen);
    EXPECT_NE(r.find("flowscopeSrttMicroseconds : 1234\n"), std::string::npos) << r;
    EXPECT_NE(r.find("flowscopeProcessId : 4242\n"), std::string::npos) << r;
    EXPECT_NE(r.find("flowscopeProcessName : (len: 4) curl\n"), std::string::npos) << r;
    EXPECT_NE(r.find("flowscopeCgroupPath : (len: 21) /system.slice/x.scope\n"), std::string::npos) << r;
  }
  // Claims (template 260): every element named with its type, values read
  // as sent.
  ASSERT_EQ(dump.claim_templates.size(), 2u) << out;
  for (const auto& t : dump.claim_templates) {
    EXPECT_EQ(t.find("_alien"), std::string::npos) << t;
    EXPECT_TRUE(std::regex_search(t, std::regex(fmt::format(R"(ent:\s+{}\s+id:\s+101\s+type:\s+uint8\s+len:\s+1\s+flowscopeOwnershipState)", kDefaultPen))))
        << t;
    EXPECT_NE(t.find("sourceIPv6Address"), std::string::npos) << t;
    EXPECT_NE(t.find("flowscopeProgramName"), std::string::npos) << t;
  }
  ASSERT_EQ(dump.claim_records.size(), 4u) << out;
  for (size_t i = 0; i < 4; i++) {
    const std::string& r = dump.claim_records[i];
    EXPECT_EQ(r.find("_alien"), std::string::npos) << r;
    EXPECT_NE(r.find("flowscopeHostName : (len: 5) web-1\n"), std::string::npos) << r;
    if (i % 2 == 0) {
      EXPECT_NE(r.find("sourceIPv6Address : ::ffff:0a01:0203\n"), std::string::npos) << r;
      EXPECT_NE(r.find("flowscopeOwnershipState : 1\n"), std::string::npos) << r;
    } else {
      EXPECT_NE(r.find("sourceTransportPort : 8443\n"), std::string::npos) << r;
      EXPECT_NE(r.find("flowscopeOwnershipState : 2\n"), std::string::npos) << r;
      EXPECT_NE(r.find("flowscopeProgramName : (len: 5) nginx\n"), std::string::npos) << r;
      EXPECT_NE(r.find("flowscopeProcessId : 4242\n"), std::string::npos) << r;
    }
  }
}

// UDP (path-MTU sized) and TCP (largest) message sizes.
INSTANTIATE_TEST_SUITE_P(MessageSizes, IpfixDump, ::testing::Values(size_t(1400), size_t(65535)));
