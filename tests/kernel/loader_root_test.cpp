// The loader against the real verifier: a refused load reads as one reason a
// user can act on, then the log's tail, with the kernel's errno.
#include <cerrno>

#include <gtest/gtest.h>

#include "kernel/libbpf_log.h"
#include "kernel/loader.h"
#include "rejected.skel.h"

namespace flowscope {
namespace {

using Skel = SkelPtr<rejected_bpf, rejected_bpf__destroy>;

Error load_only(bpf_program* (*pick)(rejected_bpf*)) {
  install_libbpf_logging(false);
  auto s = open_skeleton<rejected_bpf, rejected_bpf__destroy>(rejected_bpf__open, "test");
  EXPECT_TRUE(s);
  bpf_program* keep = pick(s->get());
  bpf_program* p;
  bpf_object__for_each_program(p, (*s)->obj) bpf_program__set_autoload(p, p == keep);
  auto r = load_skeleton((*s)->skeleton, "test");
  EXPECT_FALSE(r) << "the kernel loaded a program it should refuse";
  return r ? Error{} : r.error();
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

TEST(LoaderRoot, VerifierRejectionNamesProgramAndComplaintThenTail) {
  const Error e = load_only([](rejected_bpf* s) { return s->progs.reads_a_number; });
  const std::string head = first_line(e.message);
  EXPECT_TRUE(head.starts_with("loading the test BPF programs failed: the kernel's verifier rejected program "
                               "reads_a_number: "))
      << e.message;
  EXPECT_NE(head.find("invalid mem access"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("\n"), std::string::npos) << "the log's tail follows: " << e.message;
  EXPECT_EQ(e.code, EACCES) << e.message;
}

TEST(LoaderRoot, UnknownHelperIsSaidSo) {
  const Error e = load_only([](rejected_bpf* s) { return s->progs.calls_unknown_helper; });
  EXPECT_EQ(first_line(e.message),
            "loading the test BPF programs failed: this kernel lacks the BPF helper #32767; the kernel is older than "
            "flowscope needs")
      << e.message;
  EXPECT_EQ(e.code, EINVAL) << e.message;
}

}  // namespace
}  // namespace flowscope
