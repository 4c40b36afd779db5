// Host facts and set-up the kernel side needs: privileges, tracefs, netns
// identities, clocks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"

namespace flowscope {

// Fails with a clear message when the process cannot load BPF programs.
Result<void> check_bpf_privileges();

// Mounts tracefs at /sys/kernel/tracing when nothing provides it; classic
// tracepoints need it to look up event ids.
Result<void> ensure_tracefs();

// Accepts a network namespace as a path (/var/run/netns/NAME, /proc/PID/ns/net)
// or as an inode number, and returns the inode number.
Result<uint32_t> resolve_netns(const std::string& spec);

// Runs `fn` on a thread that has entered the network namespace at `path`
// (setns affects only the calling thread, so the caller's stays as it was).
Result<void> run_in_netns(const std::string& path, const std::function<void()>& fn);

// Inode of the calling thread's network namespace.
uint32_t current_netns();

// Nanoseconds to add to CLOCK_MONOTONIC (bpf_ktime_get_ns) to get Unix time.
int64_t monotonic_to_realtime_offset_ns();

// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF maps to it.
void raise_memlock_limit();

}  // namespace flowscope
