// trace --functions: the kernel functions that take a `struct sk_buff *`,
// found in the BTF of the kernel and of its loaded modules, as pwru and
// ipftrace2 find them.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "base/result.h"
#include "kernel/handles.h"

namespace flowscope::trace {

// kprobe programs read at most the first five arguments (PT_REGS_PARM1..5).
inline constexpr int kMaxFunctionSkbArg = 4;

struct SkbFunction {
  std::string name;
  std::string module;  // "" for the kernel image
  int skb_arg = 0;     // position of the first struct sk_buff * argument
};

// The position of the first `struct sk_buff *` among the first five
// parameters of BTF function `func_id`, or -1.
int skb_param_position(const btf* b, int func_id);

// Functions (image and module BTF under /sys/kernel/btf) with an skb among
// their first five arguments, whose name matches `regex` (ECMAScript, search
// anywhere; "" for all) and, when `probeable` is not empty, is in it (the
// kernel's available_filter_functions: what kprobes can attach to). Sorted
// by name, each name once.
Result<std::vector<SkbFunction>> skb_functions(const btf* vmlinux, const std::string& regex,
                                               const std::unordered_set<std::string>& probeable);

// Names listed in tracefs' available_filter_functions (a module's functions
// carry " [module]" there; the name alone is kept). Empty when unreadable.
std::unordered_set<std::string> probeable_functions();

}  // namespace flowscope::trace
