// Runs `flowscope agent` as a child process and parses its JSON lines.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/process.h"

namespace fstest {

using Json = nlohmann::json;

class AgentRunner {
 public:
  // Starts the agent with extra arguments and waits until it is attached.
  explicit AgentRunner(std::vector<std::string> extra_args = {});
  // The same, with the agent's wall clock (CLOCK_REALTIME only; its
  // monotonic clock, which the kernel's timestamps use, stays true) offset
  // by `clock_offset_s` seconds with libfaketime: a host whose clock is off.
  AgentRunner(std::vector<std::string> extra_args, double clock_offset_s);
  // SIGINT, wait for exit; returns the exit status.
  int stop();
  // Records of type "flow" printed so far.
  std::vector<Json> flows() const;
  // Ownership claims ("ownership" lines) printed so far.
  std::vector<Json> claims() const;
  // Polls until `pred` holds for some claim or the timeout passes.
  std::vector<Json> wait_claims(const std::function<bool(const Json&)>& pred, std::chrono::milliseconds timeout) const;
  // "stats" lines from stderr.
  std::vector<Json> stats() const;
  // Polls until `pred` holds for some flow or the timeout passes.
  std::vector<Json> wait_flows(const std::function<bool(const Json&)>& pred, std::chrono::milliseconds timeout) const;
  Process& process() { return *proc_; }

 private:
  std::unique_ptr<Process> proc_;
};

std::vector<Json> parse_json_lines(const std::string& text, const std::string& type);

}  // namespace fstest
