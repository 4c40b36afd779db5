/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * FS_LAYOUT_CHECK(cond): a compile-time check that works in C (clang for
 * BPF) and C++ (user space), so the headers shared across the kernel
 * boundary check their own layout in both compilers.
 */
#ifndef FLOWSCOPE_BPF_LAYOUT_CHECK_H
#define FLOWSCOPE_BPF_LAYOUT_CHECK_H

#ifdef __cplusplus
#define FS_LAYOUT_CHECK(cond) static_assert(cond, #cond)
#else
#define FS_LAYOUT_CHECK(cond) _Static_assert(cond, #cond)
#endif

#endif
