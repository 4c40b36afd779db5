// Facts read from the running kernel's BTF: enum names (drop reasons move
// between kernels, so they are never hard-coded) and which tracepoints exist.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernel/handles.h"
#include "base/result.h"

namespace flowscope {

Result<BtfPtr> load_kernel_btf();

// value -> name for every enumerator of `enum enum_name`, with `strip_prefix`
// removed from the names. Empty when the enum does not exist.
std::map<int64_t, std::string> enum_names(const btf* b, const std::string& enum_name,
                                          const std::string& strip_prefix);

// Arguments of a raw tracepoint as BTF describes them (typedef btf_trace_NAME).
struct TracepointArg {
  std::string type;  // e.g. "struct sk_buff *"
};
struct TracepointInfo {
  std::string name;
  std::vector<TracepointArg> args;  // without the leading void *ctx
};
// Every raw tracepoint known to BTF.
std::vector<TracepointInfo> kernel_tracepoints(const btf* b);
// -1 when the tracepoint does not exist.
int tracepoint_arg_count(const btf* b, const std::string& name);

}  // namespace flowscope
