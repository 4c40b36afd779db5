/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A classic BPF (cBPF, the language of pcap filters) interpreter written to
 * compile both as a BPF program (trace.bpf.c runs it inside the kernel, one
 * instruction per bpf_loop() iteration) and as host C/C++ (unit tests compare
 * it with libpcap's own bpf_filter()).
 *
 * cBPF jumps only forward, so a program of N instructions finishes in at most
 * N steps. Every packet access is bounds-checked against the captured length
 * and then masked, so the BPF verifier can prove it stays inside a buffer of
 * FS_CBPF_BUF bytes. A load past the captured bytes ends the program with 0
 * (no match), as bpf_filter() does.
 */
#ifndef FLOWSCOPE_BPF_CBPF_H
#define FLOWSCOPE_BPF_CBPF_H

#ifdef __cplusplus
#include <cstdint>
typedef std::uint8_t fs_u8;
typedef std::uint16_t fs_u16;
typedef std::uint32_t fs_u32;
typedef std::uint64_t fs_u64;
#define FS_CBPF_INLINE static inline
#elif defined(__bpf__)
typedef __u8 fs_u8;
typedef __u16 fs_u16;
typedef __u32 fs_u32;
typedef __u64 fs_u64;
#define FS_CBPF_INLINE static __always_inline
#else
#include <stdint.h>
typedef uint8_t fs_u8;
typedef uint16_t fs_u16;
typedef uint32_t fs_u32;
typedef uint64_t fs_u64;
#define FS_CBPF_INLINE static inline
#endif

#define FS_CBPF_MAX_INSNS 256 /* power of two: pc is masked with MAX-1 */
#define FS_CBPF_PKT_MAX 256   /* packet bytes a filter can look at */
#define FS_CBPF_BUF 512       /* packet buffer size: PKT_MAX plus slack for masked loads */

/* Same layout as struct bpf_insn of <pcap/bpf.h> and struct sock_filter. */
struct fs_cbpf_insn {
	fs_u16 code;
	fs_u8 jt;
	fs_u8 jf;
	fs_u32 k;
};

struct fs_cbpf_vm {
	fs_u32 pc;
	fs_u32 a;
	fs_u32 x;
	fs_u32 done; /* 1 when the program returned */
	fs_u32 ret;  /* its return value: 0 = no match */
	fs_u32 mem[16];
};

/* Instruction classes, sizes, modes and operations (cBPF encoding). */
#define FS_CBPF_CLASS(c) ((c)&0x07)
#define FS_CBPF_SIZE(c) ((c)&0x18)
#define FS_CBPF_MODE(c) ((c)&0xe0)
#define FS_CBPF_OP(c) ((c)&0xf0)
#define FS_CBPF_SRC(c) ((c)&0x08)
#define FS_CBPF_RVAL(c) ((c)&0x18)
#define FS_CBPF_MISCOP(c) ((c)&0xf8)

FS_CBPF_INLINE void fs_cbpf_finish(struct fs_cbpf_vm *vm, fs_u32 ret)
{
	vm->done = 1;
	vm->ret = ret;
}

/* Loads `size` (1, 2, 4) bytes big-endian at offset k; 0 when out of bounds. */
FS_CBPF_INLINE int fs_cbpf_load(const fs_u8 *pkt, fs_u32 caplen, fs_u32 k, fs_u32 size, fs_u32 *out)
{
	if (caplen > FS_CBPF_PKT_MAX || k >= caplen || caplen - k < size)
		return 0;
	fs_u32 i = k & (FS_CBPF_PKT_MAX - 1);
	if (size == 1)
		*out = pkt[i];
	else if (size == 2)
		*out = ((fs_u32)pkt[i] << 8) | pkt[i + 1];
	else
		*out = ((fs_u32)pkt[i] << 24) | ((fs_u32)pkt[i + 1] << 16) | ((fs_u32)pkt[i + 2] << 8) | pkt[i + 3];
	return 1;
}

FS_CBPF_INLINE fs_u32 fs_cbpf_size(fs_u16 code)
{
	switch (FS_CBPF_SIZE(code)) {
	case 0x00: return 4; /* W */
	case 0x08: return 2; /* H */
	default: return 1;   /* B */
	}
}

/* Jumps forward by `off` instructions after the current one. */
FS_CBPF_INLINE void fs_cbpf_jump(struct fs_cbpf_vm *vm, fs_u32 off, fs_u32 len)
{
	fs_u32 next = vm->pc + 1 + off;
	if (next >= len || next < vm->pc)
		fs_cbpf_finish(vm, 0); /* off the end: invalid program, no match */
	else
		vm->pc = next;
}

/*
 * Executes one instruction `in` (the one at vm->pc) of a program of `len`
 * instructions over `pkt` (caplen bytes valid, buffer FS_CBPF_BUF bytes) whose
 * full length is wirelen. Sets vm->done when the program returns.
 */
FS_CBPF_INLINE void fs_cbpf_step(struct fs_cbpf_vm *vm, const struct fs_cbpf_insn *in, fs_u32 len,
				 const fs_u8 *pkt, fs_u32 caplen, fs_u32 wirelen)
{
	fs_u16 code = in->code;
	fs_u32 k = in->k;
	fs_u32 v = 0;
	switch (FS_CBPF_CLASS(code)) {
	case 0x00: /* LD */
		switch (FS_CBPF_MODE(code)) {
		case 0x00: vm->a = k; break; /* IMM */
		case 0x20:                   /* ABS */
			if (!fs_cbpf_load(pkt, caplen, k, fs_cbpf_size(code), &v)) {
				fs_cbpf_finish(vm, 0);
				return;
			}
			vm->a = v;
			break;
		case 0x40: /* IND */
			if (k + vm->x < k || !fs_cbpf_load(pkt, caplen, k + vm->x, fs_cbpf_size(code), &v)) {
				fs_cbpf_finish(vm, 0);
				return;
			}
			vm->a = v;
			break;
		case 0x60: vm->a = vm->mem[k & 15]; break;  /* MEM */
		case 0x80: vm->a = wirelen; break;          /* LEN */
		default: fs_cbpf_finish(vm, 0); return;
		}
		break;
	case 0x01: /* LDX */
		switch (FS_CBPF_MODE(code)) {
		case 0x00: vm->x = k; break;
		case 0x60: vm->x = vm->mem[k & 15]; break;
		case 0x80: vm->x = wirelen; break;
		case 0xa0: /* MSH: 4 * (P[k] & 0xf), the IPv4 header length */
			if (!fs_cbpf_load(pkt, caplen, k, 1, &v)) {
				fs_cbpf_finish(vm, 0);
				return;
			}
			vm->x = (v & 0xf) << 2;
			break;
		default: fs_cbpf_finish(vm, 0); return;
		}
		break;
	case 0x02: vm->mem[k & 15] = vm->a; break; /* ST */
	case 0x03: vm->mem[k & 15] = vm->x; break; /* STX */
	case 0x04: { /* ALU */
		fs_u32 src = FS_CBPF_SRC(code) ? vm->x : k;
		switch (FS_CBPF_OP(code)) {
		case 0x00: vm->a += src; break;
		case 0x10: vm->a -= src; break;
		case 0x20: vm->a *= src; break;
		case 0x30:
			if (src == 0) {
				fs_cbpf_finish(vm, 0);
				return;
			}
			vm->a /= src;
			break;
		case 0x90:
			if (src == 0) {
				fs_cbpf_finish(vm, 0);
				return;
			}
			vm->a %= src;
			break;
		case 0x40: vm->a |= src; break;
		case 0x50: vm->a &= src; break;
		case 0xa0: vm->a ^= src; break;
		case 0x60: vm->a = src < 32 ? vm->a << src : 0; break;
		case 0x70: vm->a = src < 32 ? vm->a >> src : 0; break;
		case 0x80: vm->a = (fs_u32)(-(fs_u64)vm->a); break; /* NEG */
		default: fs_cbpf_finish(vm, 0); return;
		}
		break;
	}
	case 0x05: { /* JMP */
		fs_u32 src = FS_CBPF_SRC(code) ? vm->x : k;
		int cond;
		switch (FS_CBPF_OP(code)) {
		case 0x00: fs_cbpf_jump(vm, k, len); return; /* JA */
		case 0x10: cond = vm->a == src; break;
		case 0x20: cond = vm->a > src; break;
		case 0x30: cond = vm->a >= src; break;
		case 0x40: cond = (vm->a & src) != 0; break;
		default: fs_cbpf_finish(vm, 0); return;
		}
		fs_cbpf_jump(vm, cond ? in->jt : in->jf, len);
		return;
	}
	case 0x06: /* RET */
		switch (FS_CBPF_RVAL(code)) {
		case 0x00: fs_cbpf_finish(vm, k); return;
		case 0x08: fs_cbpf_finish(vm, vm->x); return;
		default: fs_cbpf_finish(vm, vm->a); return;
		}
	case 0x07: /* MISC */
		if (FS_CBPF_MISCOP(code) == 0x00)
			vm->x = vm->a; /* TAX */
		else
			vm->a = vm->x; /* TXA */
		break;
	}
	/* Not a jump or return: fall through to the next instruction. */
	if (vm->pc + 1 >= len)
		fs_cbpf_finish(vm, 0);
	else
		vm->pc++;
}

#endif
