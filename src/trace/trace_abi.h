// The kernel-side structs of trace.bpf.c as user space sees them. bpf/trace.h
// is the single definition; its layout checks run in both compilers.
#pragma once

#include "trace.h"
