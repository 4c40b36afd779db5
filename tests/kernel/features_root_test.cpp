// The kernel probes against independent witnesses: tracefs (the kernel's own
// list of tracepoints and their fields) and the running kernel's version,
// then `flowscope features` as the real binary.
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "kernel/features.h"
#include "kernel/system.h"
#include "support/process.h"

namespace flowscope {
namespace {

using namespace std::chrono_literals;

std::string tracefs_format(const std::string& cat, const std::string& name) {
  for (const char* base : {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"}) {
    std::ifstream in(std::string(base) + cat + "/" + name + "/format");
    if (in) return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  return "";
}

KernelVersion running_kernel() {
  utsname u{};
  uname(&u);
  KernelVersion v;
  std::sscanf(u.release, "%d.%d", &v.major, &v.minor);
  return v;
}

class Probe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(ensure_tracefs()); }
};

// Each tracepoint row answers as tracefs does, fields included: kfree_skb
// carries a reason and consume_skb a location only on kernels whose event
// format says so.
TEST_F(Probe, TracepointRowsAgreeWithTracefs) {
  const KernelProbe probe = KernelProbe::open();
  ASSERT_TRUE(probe.has_btf()) << probe.btf_error();
  const CommandReport agent = probe_command(probe, "agent");
  const CommandReport trace = probe_command(probe, "trace");
  const std::string kfree = tracefs_format("skb", "kfree_skb");
  const std::string consume = tracefs_format("skb", "consume_skb");
  EXPECT_EQ(agent.has("kfree_skb"), kfree.find("enum skb_drop_reason reason;") != std::string::npos) << kfree;
  EXPECT_EQ(trace.has("kfree_skb"), agent.has("kfree_skb"));
  EXPECT_EQ(trace.has("consume_skb"), consume.find("location;") != std::string::npos) << consume;
  EXPECT_EQ(agent.has("inet_sock_set_state"), !tracefs_format("sock", "inet_sock_set_state").empty());
  EXPECT_EQ(agent.has("tcp_send_reset"), !tracefs_format("tcp", "tcp_send_reset").empty());
  EXPECT_EQ(agent.has("tcp_receive_reset"), !tracefs_format("tcp", "tcp_receive_reset").empty());
  EXPECT_EQ(agent.has("tcp_retransmit_skb"), !tracefs_format("tcp", "tcp_retransmit_skb").empty());
  EXPECT_EQ(agent.has("sock_length"), !tracefs_format("sock", "sock_send_length").empty() &&
                                          !tracefs_format("sock", "sock_recv_length").empty());
  EXPECT_EQ(agent.has("accept_syscalls"), !tracefs_format("syscalls", "sys_exit_accept4").empty() &&
                                              !tracefs_format("syscalls", "sys_exit_accept").empty());
}

// A mainline kernel at least as new as a feature's version has it (distro
// kernels may backport, so only this direction is certain).
TEST_F(Probe, EveryFeatureOfAnOlderKernelIsPresent) {
  const KernelProbe probe = KernelProbe::open();
  const KernelVersion here = running_kernel();
  for (const char* c : {"agent", "trace"}) {
    for (const auto& row : probe_command(probe, c).rows) {
      if (row.id == "accept_syscalls" || row.id == "btf") continue;  // kernel config, not version
      if (here < row.since) continue;
      EXPECT_TRUE(row.present) << c << ": " << row.hook << " (" << row.since.str() << ")";
    }
  }
}

// A helper the kernel has not got is told apart from one it has: the probe
// really reads the verifier's answer (helper 0x7fff does not exist).
TEST_F(Probe, UnknownHelperIsAbsent) {
  const KernelProbe probe = KernelProbe::open();
  EXPECT_TRUE(probe.tp_btf());
  EXPECT_TRUE(probe.tp_btf_helper(BPF_FUNC_ktime_get_ns));
  EXPECT_FALSE(probe.tp_btf_helper(static_cast<bpf_func_id>(0x7fff)));
  EXPECT_FALSE(probe.helper(BPF_PROG_TYPE_RAW_TRACEPOINT, static_cast<bpf_func_id>(0x7fff)));
  EXPECT_FALSE(probe.btf_func("flowscope_no_such_kfunc"));
  EXPECT_FALSE(probe.tracepoint("flowscope_no_such_tracepoint"));
}

TEST(FeaturesCommand, ReportsThisKernel) {
  fstest::Process p({FLOWSCOPE_BIN, "features"});
  ASSERT_EQ(p.wait(60s), 0) << p.err();
  const std::string out = p.out();
  utsname u{};
  uname(&u);
  EXPECT_NE(out.find(std::string("kernel ") + u.release), std::string::npos) << out;
  // The agent's hook is here: tp_btf loaded at inet_sock_set_state.
  std::istringstream in(out);
  std::string line;
  bool tp_btf_row = false;
  while (std::getline(in, line)) {
    if (line.find("BTF-typed tracepoints (tp_btf)") == std::string::npos) continue;
    tp_btf_row = true;
    EXPECT_NE(line.find(" 5.5 "), std::string::npos) << line;
    EXPECT_NE(line.find(" yes "), std::string::npos) << line;
  }
  EXPECT_TRUE(tp_btf_row) << out;
  // At or past a command's minimum (mainline) kernel it runs; below it, the
  // command says so and names that minimum (a distro kernel may backport a
  // feature, so "runs here" is accepted there too).
  const KernelVersion here = running_kernel();
  for (const char* c : {"agent", "trace"}) {
    const KernelVersion min = minimum_kernel(c);
    const bool runs = out.find(fmt::format("\n{}: runs here", c)) != std::string::npos;
    if (here >= min) {
      EXPECT_TRUE(runs) << c << " on " << here.str() << ":\n" << out;
    } else if (!runs) {
      EXPECT_NE(out.find(fmt::format("\n{}: cannot run here (needs Linux {}+", c, min.str())), std::string::npos) << out;
    }
  }
  EXPECT_NE(out.find("\ncollector: "), std::string::npos) << out;
  EXPECT_NE(out.find("raw tracepoint attach cookies"), std::string::npos) << out;
}

}  // namespace
}  // namespace flowscope
