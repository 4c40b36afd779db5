// The loader's reading of libbpf and verifier logs: a failed load says in one
// line why, whatever the log's length. Logs are shaped as libbpf 1.1 prints
// them (prog 'NAME': ... BEGIN/END PROG LOAD LOG).
#include <cerrno>

#include <gtest/gtest.h>

#include "kernel/loader.h"

namespace flowscope {
namespace {

std::string prog_log(const std::string& prog, const std::string& body) {
  return "libbpf: prog '" + prog + "': BPF program load failed: Invalid argument\n" + "libbpf: prog '" + prog +
         "': -- BEGIN PROG LOAD LOG --\n" + body + "-- END PROG LOAD LOG --\n" + "libbpf: prog '" + prog +
         "': failed to load: -22\nlibbpf: failed to load object 'agent_bpf'\n";
}

TEST(Loader, RingBufferIsAPowerOfTwoOfAtLeastAPage) {
  EXPECT_EQ(ring_buffer_bytes(0), 4096u);
  EXPECT_EQ(ring_buffer_bytes(4096), 4096u);
  EXPECT_EQ(ring_buffer_bytes(4097), 8192u);
  EXPECT_EQ(ring_buffer_bytes(8u << 20), 8u << 20);
  EXPECT_EQ(ring_buffer_bytes(0xffffffffu), 1u << 30);  // bounded, no endless loop
}

TEST(Loader, TailKeepsTheEndOfTheLog) {
  std::string log;
  for (int i = 0; i < 100; i++) log += "line " + std::to_string(i) + "\n";
  const std::string t = verifier_tail(log, 5);
  EXPECT_EQ(t.find("line 94"), std::string::npos);
  EXPECT_NE(t.find("line 99"), std::string::npos);
  EXPECT_LE(verifier_tail(std::string(10000, 'x'), 30, 3000).size(), 3003u);
}

TEST(Loader, UnknownHelperIsNamedWithItsKernel) {
  // What a 5.10 verifier says about bpf_for_each_map_elem (helper 164).
  const std::string log = prog_log("dump_flows", "0: (85) call unknown#164\ninvalid func unknown#164\nprocessed 1 insns\n");
  EXPECT_EQ(load_failure_reason(log, EINVAL),
            "this kernel lacks the BPF helper bpf_for_each_map_elem (Linux 5.13); the kernel is older than flowscope "
            "needs");
}

TEST(Loader, VerifierRejectionNamesTheProgramAndItsLastComplaint) {
  const std::string log = prog_log("on_state",
                                   "0: R1=ctx() R10=fp0\n; int on_state(u64 *ctx)\n0: (79) r2 = *(u64 *)(r1 +8)\n"
                                   "R2 invalid mem access 'scalar'\n"
                                   "processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1\n");
  EXPECT_EQ(load_failure_reason(log, EINVAL),
            "the kernel's verifier rejected program on_state: R2 invalid mem access 'scalar'");
}

TEST(Loader, MissingKfuncAndCoreAndAttachTarget) {
  EXPECT_EQ(load_failure_reason("libbpf: extern (func ksym) 'bpf_rdonly_cast': not found in kernel or module BTFs\n",
                                ESRCH),
            "this kernel lacks the kernel function bpf_rdonly_cast (or does not allow it here)");
  EXPECT_NE(load_failure_reason(prog_log("on_state", "1: <invalid CO-RE relocation>\nfailed to resolve CO-RE "
                                                     "relocation <byte_off> [7] struct sock.sk_foo (0:1 @ offset 8)\n"),
                                EINVAL)
                .find("CO-RE relocation failed: <byte_off> [7] struct sock.sk_foo"),
            std::string::npos);
  EXPECT_EQ(load_failure_reason("libbpf: prog 'on_x': failed to find kernel BTF type ID of 'tcp_foo': -3\n", ESRCH),
            "this kernel has no tcp_foo to attach to");
}

TEST(Loader, PermissionIsAPolicyNotAVerifierMatter) {
  EXPECT_NE(load_failure_reason("anything", EPERM).find("security policy"), std::string::npos);
}

TEST(Loader, WithoutAKnownShapeTheErrnoSpeaks) {
  EXPECT_EQ(load_failure_reason("", EINVAL), "Invalid argument");
}

}  // namespace
}  // namespace flowscope
