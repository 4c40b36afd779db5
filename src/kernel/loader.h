// The BPF loader the agent and the tracer share: open a skeleton, load it
// with a failure a user can act on, attach its programs noting what could not
// be, open its ring buffer, read its per-CPU counters. Every handle is owned
// (kernel/handles.h); every failure is a Result carrying errno.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <bpf/libbpf.h>

#include "base/result.h"
#include "kernel/handles.h"

namespace flowscope {

// Opens a bpftool skeleton (NAME__open) into its owner.
template <class Skel, void (*Destroy)(Skel*)>
Result<SkelPtr<Skel, Destroy>> open_skeleton(Skel* (*open)(), std::string_view what) {
  SkelPtr<Skel, Destroy> s(open());
  if (!s) return fail_errno(errno, "cannot open the {} BPF object: {}", what, std::strerror(errno));
  return s;
}

// The size of a BPF ring buffer holding at least `requested` bytes: the
// kernel wants a power of two of at least a page; capped at 1 GiB.
uint32_t ring_buffer_bytes(uint32_t requested);

// The end of a libbpf/verifier log, where the reason is (the start is the
// program listing): at most `max_lines` lines and `max_bytes` bytes.
std::string verifier_tail(const std::string& log, size_t max_lines = 30, size_t max_bytes = 3000);

// One sentence saying why a load failed, read from libbpf's log and the
// error: a helper, kfunc or tracepoint this kernel lacks, a type CO-RE could
// not find, a program the verifier rejected (with its last complaint), or a
// policy refusing BPF.
std::string load_failure_reason(const std::string& log, int err);

// Loads an opened skeleton. A failure reads "loading the WHAT BPF programs
// failed: REASON", then the log's tail on the following lines.
Result<void> load_skeleton(bpf_object_skeleton* skel, std::string_view what);

// Programs to attach with libbpf's default for their section, in order. A
// required one that fails fails the whole; an optional one is noted in
// `degraded` and skipped. Programs whose autoload is off are skipped.
struct AttachProgram {
  bpf_program* prog;
  bool required = false;
};
Result<std::vector<LinkPtr>> attach_programs(std::span<const AttachProgram> progs, std::vector<std::string>& degraded);

// BPF_RAW_TRACEPOINT_OPEN with an attach cookie (Linux 6.10+), which tells a
// program serving many tracepoints which one fired. libbpf 1.1 predates the
// cookie field, so the attribute is laid out here.
Result<Fd> attach_raw_tracepoint(int prog_fd, const std::string& name, uint64_t cookie);

Result<RingBufferPtr> open_ring_buffer(const bpf_map* map, ring_buffer_sample_fn fn, void* ctx, std::string_view what);

// A BPF_MAP_TYPE_PERCPU_ARRAY of u64 counters, each summed over CPUs.
class PerCpuCounters {
 public:
  PerCpuCounters() = default;
  explicit PerCpuCounters(const bpf_map* map);
  // 0 when the slot cannot be read.
  uint64_t sum(uint32_t index) const;

 private:
  int fd_ = -1;
  int ncpus_ = 1;
};

// Kernel memory charged to a map, as the kernel reports it in fdinfo.
uint64_t map_memlock(int map_fd);
// The same over every map of an object.
uint64_t object_memlock(const bpf_object* obj);

}  // namespace flowscope
