// The kernel-side structs of trace.bpf.c, checked against the layout both
// compilers must agree on (bpf/trace.h is the single definition).
#pragma once

#include <cstddef>

#include "trace.h"

static_assert(sizeof(fs_cbpf_insn) == 8);
static_assert(offsetof(fs_cbpf_insn, k) == 4);
static_assert(sizeof(fs_trace_event) == 88 + FS_TRACE_SNAP);
static_assert(offsetof(fs_trace_event, tp) == 32);
static_assert(offsetof(fs_trace_event, protocol) == 64);
static_assert(offsetof(fs_trace_event, ifname) == 72);
static_assert(offsetof(fs_trace_event, pkt) == 88);
static_assert(sizeof(fs_trace_tracked) == 40);
