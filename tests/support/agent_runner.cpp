#include "support/agent_runner.h"

#include <signal.h>

#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

namespace fstest {

std::vector<Json> parse_json_lines(const std::string& text, const std::string& type) {
  std::vector<Json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    Json j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == type) out.push_back(std::move(j));
  }
  return out;
}

AgentRunner::AgentRunner(std::vector<std::string> extra_args) : AgentRunner(std::move(extra_args), 0) {}

AgentRunner::AgentRunner(std::vector<std::string> extra_args, double clock_offset_s) {
  std::vector<std::string> argv;
  if (clock_offset_s != 0) {
    if (std::string(LIBFAKETIME).empty())
      throw std::runtime_error("libfaketime not found at configure time: apt-get install faketime, then re-run cmake");
    // env execs the agent, so signals reach it directly.
    argv = {"env", "LD_PRELOAD=" LIBFAKETIME, fmt::format("FAKETIME={:+.3f}", clock_offset_s),
            "FAKETIME_DONT_FAKE_MONOTONIC=1"};
  }
  argv.insert(argv.end(), {FLOWSCOPE_BIN, "agent"});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  proc_ = std::make_unique<Process>(argv);
  if (!proc_->wait_for("agent running", std::chrono::seconds(20))) {
    throw std::runtime_error("agent did not start: " + proc_->err());
  }
}

int AgentRunner::stop() {
  proc_->signal(SIGINT);
  return proc_->wait(std::chrono::seconds(20));
}

std::vector<Json> AgentRunner::flows() const { return parse_json_lines(proc_->out(), "flow"); }
std::vector<Json> AgentRunner::stats() const { return parse_json_lines(proc_->err(), "stats"); }

std::vector<Json> AgentRunner::claims() const { return parse_json_lines(proc_->out(), "ownership"); }

namespace {

std::vector<Json> wait_lines(const std::function<std::vector<Json>()>& lines, const std::function<bool(const Json&)>& pred,
                             std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<Json> hits;
    for (auto& f : lines())
      if (pred(f)) hits.push_back(f);
    if (!hits.empty() || std::chrono::steady_clock::now() >= deadline) return hits;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

std::vector<Json> AgentRunner::wait_flows(const std::function<bool(const Json&)>& pred,
                                          std::chrono::milliseconds timeout) const {
  return wait_lines([this] { return flows(); }, pred, timeout);
}

std::vector<Json> AgentRunner::wait_claims(const std::function<bool(const Json&)>& pred,
                                           std::chrono::milliseconds timeout) const {
  return wait_lines([this] { return claims(); }, pred, timeout);
}

}  // namespace fstest
