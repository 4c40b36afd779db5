#include "export/json_sink.h"

#include <fmt/format.h>

#include "flow/json.h"

namespace flowscope {

namespace {

void put_text(std::string& out, const char* key, const std::optional<std::string>& v) {
  out += key;
  if (v)
    append_json_string(out, *v);
  else
    out += "null";
}

void put_num(std::string& out, const char* key, const std::optional<uint32_t>& v) {
  out += key;
  out += v ? std::to_string(*v) : "null";
}

}  // namespace

void append_claim_json_line(std::string& out, const OwnershipClaim& c) {
  out += R"({"type":"ownership")";
  put_text(out, R"(,"host":)", c.host);
  put_text(out, R"(,"host_id":)", c.host_id);
  out += fmt::format(R"(,"addr":"{}","port":{},"protocol":{},"from_ns":{},"to_ns":{},"held":{})",
                     ip16_to_string(c.addr), c.port, c.protocol, c.from_ns, c.to_ns, c.held);
  put_text(out, R"(,"exe":)", c.exe);
  put_text(out, R"(,"unit":)", c.unit);
  put_text(out, R"(,"comm":)", c.comm);
  put_text(out, R"(,"container_id":)", c.container_id);
  put_num(out, R"(,"pid":)", c.pid);
  put_num(out, R"(,"netns":)", c.netns);
  out += "}\n";
}

void JsonLinesSink::write_claim(const OwnershipClaim& c) {
  append_claim_json_line(buf_, c);
  if (buf_.size() >= 64 * 1024) flush();
}

void JsonLinesSink::write(const Flow& r) {
  append_json_line(buf_, r);
  if (buf_.size() >= 64 * 1024) flush();
}

void JsonLinesSink::flush() {
  if (buf_.empty()) return;
  if (std::fwrite(buf_.data(), 1, buf_.size(), out_) != buf_.size()) failed_ = true;
  std::fflush(out_);
  buf_.clear();
}

}  // namespace flowscope
