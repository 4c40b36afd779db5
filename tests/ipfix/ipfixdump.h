// Runs libfixbuf's ipfixDump (Debian package libfixbuf-tools) on an IPFIX file
// and cuts its output into blocks, for tests that check how a strict RFC 5610
// reader sees flowscope's IPFIX. Output as ipfixDump 2.4 prints it:
//
//   --- template record ---
//   	ent: 32473  id:     1  type: uint32    len:     4     flowscopeSrttMicroseconds
//   --- data record 14 ---
//   	(32473/1)      flowscopeSrttMicroseconds : 1234
//
// An element it has no type record for is "_alienInformationElement", type
// "octet".
#pragma once

#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "flow/fields.h"
#include "ipfix/ie.h"

namespace fstest {

inline std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

struct IpfixDumpOutput {
  std::string text;
  std::vector<std::string> flow_templates;  // "template record" blocks (not options templates)
  std::vector<std::string> flow_records;    // data records other than RFC 5610 type records
  size_t type_records = 0;
  std::vector<std::string> instance_records;  // flowscope's exporter instance options records
  std::vector<std::string> claim_templates;   // options template 260 (ownership claims)
  std::vector<std::string> claim_records;     // its data records
};

inline IpfixDumpOutput ipfix_dump(const std::string& file) {
  IpfixDumpOutput o;
  o.text = run_command(fmt::format("ipfixDump --rfc5610 --in {} 2>&1", file));
  std::istringstream in(o.text);
  std::string line, kind, body;
  auto flush = [&] {
    const bool claim = body.find("flowscopeOwnershipState") != std::string::npos;
    // Claims come in an options template, flows in plain ones.
    if (claim && kind.find("template record") != std::string::npos) o.claim_templates.push_back(body);
    if (!claim && kind == "template record") o.flow_templates.push_back(body);
    if (kind == "data record") {
      if (body.find("informationElementName") != std::string::npos)
        o.type_records++;
      else if (body.find("flowscopeExporterInstance") != std::string::npos)
        o.instance_records.push_back(body);
      else if (claim)
        o.claim_records.push_back(body);
      else
        o.flow_records.push_back(body);
    }
    body.clear();
  };
  const std::regex header(R"(^--- (.*?)( \d+)? ---$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, header)) {
      flush();
      kind = m[1];
      continue;
    }
    body += line + "\n";
  }
  flush();
  return o;
}

// flowscope's own elements (under its PEN), from the field table.
struct OwnElement {
  uint16_t id;
  std::string_view name;
  flowscope::ipfix::DataType type;
};
inline std::vector<OwnElement> own_elements() {
  std::vector<OwnElement> out;
  flowscope::schema::for_each_field([&](const auto& f) {
    if (f.ie.pen == flowscope::schema::kOwnPen) out.push_back({f.ie.id, f.ie.name, f.ie.type});
  });
  return out;
}

// ipfixDump's name for an RFC 5610 data type in a template field line.
inline std::string_view fixbuf_type(flowscope::ipfix::DataType t) {
  using flowscope::ipfix::DataType;
  switch (t) {
    case DataType::octetArray: return "octet";
    case DataType::unsigned8: return "uint8";
    case DataType::unsigned16: return "uint16";
    case DataType::unsigned32: return "uint32";
    case DataType::unsigned64: return "uint64";
    case DataType::boolean: return "bool";
    case DataType::string: return "string";
    case DataType::dateTimeMilliseconds: return "millisec";
    case DataType::ipv4Address: return "ipv4";
    case DataType::ipv6Address: return "ipv6";
  }
  return "?";
}

// Every flowscope element, by name and type, in a flow template.
inline void expect_template_names_all(const std::string& t, uint32_t pen) {
  EXPECT_EQ(t.find("_alien"), std::string::npos) << "an element ipfixDump does not know:\n" << t;
  for (const auto& e : own_elements()) {
    const std::regex want(fmt::format(R"(ent:\s+{}\s+id:\s+{}\s+type:\s+{}\s+len:\s+\d+\s+{}\s*$)", pen, e.id,
                                      fixbuf_type(e.type), e.name),
                          std::regex::multiline);
    EXPECT_TRUE(std::regex_search(t, want)) << "template lacks " << e.name << " <" << fixbuf_type(e.type) << ">:\n"
                                            << t;
  }
}

// Every flowscope element, by name, in a flow data record.
inline void expect_record_names_all(const std::string& r, uint32_t pen) {
  EXPECT_EQ(r.find("_alien"), std::string::npos) << r;
  for (const auto& e : own_elements()) {
    const std::regex want(fmt::format(R"(\({}/{}\)\s+{} : )", pen, e.id, e.name));
    EXPECT_TRUE(std::regex_search(r, want)) << "data record lacks " << e.name << ":\n" << r;
  }
}

}  // namespace fstest
