// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Two programs the kernel refuses, for the loader's root test: one the
 * verifier rejects (a number dereferenced as a pointer), one calling a helper
 * no kernel has. Each is loaded alone (the other's autoload turned off).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("raw_tp")
int reads_a_number(void *ctx)
{
	volatile unsigned long addr = 42;
	return *(int *)addr;
}

static long (*bpf_no_such_helper)(void) = (void *)0x7fff;

SEC("raw_tp")
int calls_unknown_helper(void *ctx)
{
	return (int)bpf_no_such_helper();
}
