// JSON-lines output of flow records to a stdio stream (stdout by default).
#pragma once

#include <cstdio>
#include <string>

#include "flow/flow.h"

namespace flowscope {

class JsonLinesSink : public FlowSink {
 public:
  explicit JsonLinesSink(std::FILE* out) : out_(out) {}
  void write(const Flow& r) override;
  void flush() override;
  bool failed() const { return failed_; }

 private:
  std::FILE* out_;
  std::string buf_;
  bool failed_ = false;
};

}  // namespace flowscope
