// trace --functions' choice of functions, against this kernel's BTF (read
// without root): where the skb sits in known signatures, the regex, and the
// list being sorted with each name once.
#include <algorithm>

#include <bpf/btf.h>
#include <gtest/gtest.h>

#include "kernel/btf.h"
#include "trace/functions.h"

namespace {

using flowscope::trace::skb_functions;
using flowscope::trace::skb_param_position;

TEST(SkbFunctions, FindsTheSkbWhereTheSignatureHasIt) {
  auto kbtf = flowscope::load_kernel_btf();
  if (!kbtf) GTEST_SKIP() << "no kernel BTF: " << kbtf.error().message;
  const struct btf* b = kbtf->get();
  auto pos = [&](const char* name) {
    const int id = btf__find_by_name_kind(b, name, BTF_KIND_FUNC);
    return id > 0 ? skb_param_position(b, id) : -2;
  };
  EXPECT_EQ(pos("tcp_v4_rcv"), 0);           // (struct sk_buff *skb)
  EXPECT_EQ(pos("tcp_rcv_established"), 1);  // (struct sock *sk, struct sk_buff *skb)
  EXPECT_EQ(pos("ip_rcv"), 0);               // (struct sk_buff *skb, struct net_device *dev, ...)
  EXPECT_EQ(pos("tcp_v4_connect"), -1);      // no skb
}

TEST(SkbFunctions, RegexSelectsAndTheListIsSortedOnce) {
  auto kbtf = flowscope::load_kernel_btf();
  if (!kbtf) GTEST_SKIP() << "no kernel BTF: " << kbtf.error().message;
  auto all = skb_functions(kbtf->get(), "", {});
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_GT(all->size(), 500u);  // every kernel since 5.x has well over a thousand
  EXPECT_TRUE(std::is_sorted(all->begin(), all->end(), [](auto& x, auto& y) { return x.name < y.name; }));
  EXPECT_EQ(std::adjacent_find(all->begin(), all->end(), [](auto& x, auto& y) { return x.name == y.name; }), all->end());
  auto some = skb_functions(kbtf->get(), "^tcp_v4_rcv$", {});
  ASSERT_TRUE(some);
  ASSERT_EQ(some->size(), 1u);
  EXPECT_EQ(some->front().name, "tcp_v4_rcv");
  EXPECT_EQ(some->front().skb_arg, 0);
  // A probeable set leaves out what is not in it.
  auto none = skb_functions(kbtf->get(), "^tcp_v4_rcv$", {"ip_rcv"});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto bad = skb_functions(kbtf->get(), "(", {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("bad --functions regular expression \"(\""), std::string::npos) << bad.error().message;
}

}  // namespace
