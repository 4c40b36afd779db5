// Capabilities of the calling thread (and of the threads it creates later):
// read them, and give up all but a few for good.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace flowscope {

// A set of capabilities as a bit mask: bit N is capability N (CAP_BPF = 39).
using CapMask = uint64_t;
constexpr CapMask cap_bit(int cap) { return CapMask{1} << cap; }

struct CapSets {
  CapMask effective = 0;
  CapMask permitted = 0;
  CapMask inheritable = 0;
};

Result<CapSets> current_capabilities();
// Sets the effective set to `effective` (within the permitted set); reversible.
Result<void> set_effective_capabilities(CapMask effective);
// For good: keeps only `keep` in the effective and permitted sets, empties the
// inheritable and ambient sets and removes everything else from the bounding
// set, so no later execve can regain it either. Call it before creating
// threads: capabilities belong to each thread.
Result<void> limit_capabilities(CapMask keep);
// "cap_bpf,cap_perfmon", or "none".
std::string capability_names(CapMask m);
// The highest capability number this kernel knows.
int last_capability();

}  // namespace flowscope
