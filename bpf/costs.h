/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by costs.bpf.c and bpf_costs.cpp. */
#ifndef FLOWSCOPE_BENCH_COSTS_H
#define FLOWSCOPE_BENCH_COSTS_H

/* The size of the agent's flow record, so map and ring costs match. */
struct fs_cost_value {
	unsigned long long v[24];
};

#endif
