// The features table as `flowscope features` prints it, the start-up check's
// message, and the README's minimum kernels against the table.
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "kernel/features.h"

namespace flowscope {
namespace {

CommandReport agent_like(bool optional_present, bool required_present) {
  CommandReport r{"agent", "", {}};
  r.rows.push_back({"tp_btf", "BTF-typed tracepoints (tp_btf)", "every agent program is one", {5, 5}, true, true});
  r.rows.push_back({"each", "helper bpf_for_each_map_elem", "interim records", {5, 13}, true, required_present});
  r.rows.push_back({"kfree_skb", "tracepoint skb:kfree_skb", "flows carry no drop reasons", {5, 17}, false,
                    optional_present});
  return r;
}

TEST(Features, MinimumIsNewestRequiredVersionComparedAsNumbers) {
  // 5.13 > 5.5 although "5.13" < "5.5" as text; optional 5.17 does not count.
  EXPECT_EQ(agent_like(true, true).minimum(), (KernelVersion{5, 13}));
  EXPECT_EQ(agent_like(true, true).minimum().str(), "5.13");
}

TEST(Features, FormatsEveryRowWithVersionPresenceAndLoss) {
  const std::string out = format_reports("6.18.0 (x86_64)", {agent_like(true, true)});
  EXPECT_NE(out.find("kernel 6.18.0 (x86_64)\n"), std::string::npos) << out;
  EXPECT_NE(out.find("agent: runs here with every feature (needs Linux 5.13+)\n"), std::string::npos) << out;
  std::istringstream in(out);
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line.find("tracepoint skb:kfree_skb") != std::string::npos) {
      rows++;
      EXPECT_NE(line.find(" 5.17 "), std::string::npos) << line;
      EXPECT_NE(line.find(" yes "), std::string::npos) << line;
      EXPECT_TRUE(line.ends_with("flows carry no drop reasons")) << line;
    }
    if (line.find("helper bpf_for_each_map_elem") != std::string::npos) {
      rows++;
      EXPECT_TRUE(line.ends_with("cannot run; needed for interim records")) << line;
    }
  }
  EXPECT_EQ(rows, 2) << out;
}

TEST(Features, ColumnsLineUp) {
  const std::string out = format_reports("x", {agent_like(true, true)});
  std::istringstream in(out);
  std::string line;
  std::set<size_t> since_columns;
  while (std::getline(in, line)) {
    if (!line.starts_with("  ")) continue;
    size_t at = line.find("since");
    if (at == std::string::npos) at = line.find(" 5.") + 1;
    since_columns.insert(at);
  }
  EXPECT_EQ(since_columns.size(), 1u) << out;
}

TEST(Features, SaysDegradedAndCannotRun) {
  const std::string degraded = format_reports("x", {agent_like(false, true)});
  EXPECT_NE(degraded.find("agent: runs here, degraded (1 of 1 optional features missing; needs Linux 5.13+)"),
            std::string::npos)
      << degraded;
  EXPECT_NE(degraded.find(" no "), std::string::npos) << degraded;
  const std::string cannot = format_reports("x", {agent_like(true, false)});
  EXPECT_NE(cannot.find("agent: cannot run here (needs Linux 5.13+; 1 required feature missing)"), std::string::npos)
      << cannot;
}

TEST(Features, AnUnneededFallbackIsNotADegradation) {
  CommandReport r = agent_like(true, true);
  r.rows.push_back({"fallback", "tracepoint sock:sock_send_length", "no attribution", {6, 3}, false, false, false});
  const std::string out = format_reports("x", {r});
  EXPECT_NE(out.find("agent: runs here with every feature"), std::string::npos) << out;
  EXPECT_NE(out.find("(fallback, not needed here) no attribution"), std::string::npos) << out;
}

TEST(Features, CheckListsEveryMissingRequiredFeature) {
  CommandReport r = agent_like(true, false);
  r.rows.push_back({"cookie", "raw tracepoint attach cookies", "which tracepoint fired", {6, 10}, true, false});
  auto c = r.check();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("needs Linux 6.10 or newer"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("; also missing: raw tracepoint attach cookies (6.10)"), std::string::npos)
      << c.error().message;
}

TEST(Features, CommandWithoutKernelFeaturesIsOneLine) {
  CommandReport c{"collector", "needs no BPF", {}};
  EXPECT_NE(format_reports("x", {c}).find("\ncollector: needs no BPF\n"), std::string::npos);
}

TEST(Features, CheckNamesTheFirstMissingFeatureItsKernelAndWhatFor) {
  EXPECT_TRUE(agent_like(false, true).check());
  auto r = agent_like(true, false).check();
  ASSERT_FALSE(r);
  const std::string& m = r.error().message;
  EXPECT_NE(m.find("flowscope agent needs Linux 5.13 or newer"), std::string::npos) << m;
  EXPECT_NE(m.find("lacks helper bpf_for_each_map_elem (Linux 5.13), needed for interim records"), std::string::npos)
      << m;
  EXPECT_NE(m.find("flowscope features"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
  EXPECT_EQ(r.error().code, EOPNOTSUPP);
}

TEST(Features, TableIdsAreUniquePerCommand) {
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (const auto& f : feature_table()) {
    EXPECT_TRUE(seen.emplace(f.command, f.id).second) << f.command << " " << f.id;
    EXPECT_FALSE(f.without.empty()) << f.id;
    EXPECT_GE(f.since, (KernelVersion{4, 0})) << f.id;
  }
}

// The README states the minimum kernels; they are the ones the code checks.
TEST(Features, ReadmeStatesTheMinimumKernelsTheTableChecks) {
  std::ifstream in(FLOWSCOPE_README);
  ASSERT_TRUE(in) << FLOWSCOPE_README;
  const std::string readme((std::istreambuf_iterator<char>(in)), {});
  const size_t section = readme.find("## Kernel requirements");
  ASSERT_NE(section, std::string::npos);
  const std::string text = readme.substr(section, readme.find("\n## ", section + 1) - section);
  for (const char* c : {"agent", "trace", "trace --functions"}) {
    const std::string row = fmt::format("| `flowscope {}` | Linux {} |", c, minimum_kernel(c).str());
    EXPECT_NE(text.find(row), std::string::npos) << "README lacks: " << row;
  }
  // `run` is the agent with a local collector: the agent's minimum.
  const std::string run_row = fmt::format("| `flowscope run` | Linux {} |", minimum_kernel("agent").str());
  EXPECT_NE(text.find(run_row), std::string::npos) << "README lacks: " << run_row;
  EXPECT_NE(text.find("| `flowscope collector` | any |"), std::string::npos);
  EXPECT_EQ(minimum_kernel("collector"), KernelVersion{});
}

}  // namespace
}  // namespace flowscope
