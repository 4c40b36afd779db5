// JSON-lines output of flow records to a stdio stream (stdout by default).
#pragma once

#include <cstdio>
#include <string>

#include "flow/flow.h"

namespace flowscope {

// One ownership claim as a JSON line (with the newline):
//   {"type":"ownership","host":..,"host_id":..,"addr":"10.0.0.1","port":0,
//    "protocol":0,"from_ns":..,"to_ns":..,"held":true|false,
//    "exe":..,"unit":..,"comm":..,"container_id":..,"pid":..,"netns":..}
// Times are Unix epoch nanoseconds like a flow's start_ns; unknown is null.
void append_claim_json_line(std::string& out, const OwnershipClaim& c);

class JsonLinesSink : public FlowSink {
 public:
  explicit JsonLinesSink(std::FILE* out) : out_(out) {}
  void write(const Flow& r) override;
  // {"type":"ownership",...}: keys as the flow's where they mean the same.
  void write_claim(const OwnershipClaim& c) override;
  void flush() override;
  bool failed() const { return failed_; }

 private:
  std::FILE* out_;
  std::string buf_;
  bool failed_ = false;
};

}  // namespace flowscope
