#include "export/json_sink.h"

#include "flow/json.h"

namespace flowscope {

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
