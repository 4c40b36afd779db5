// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowscope trace: follows packets (struct sk_buff) through the kernel's
 * network stack on raw tracepoints (and, with --functions, on kprobes).
 *
 * User space finds every tracepoint with a `struct sk_buff *` argument in the
 * kernel's BTF and attaches one of the programs below to each, choosing the
 * program by the position of the skb argument (raw tracepoint programs can
 * only read as many arguments as the tracepoint has, so there is one program
 * per position). The attach cookie says which tracepoint fired.
 *
 * Per event:
 *   skb tracked? (track_hint, then hash map) ──yes──────────────────► emit
 *        │no
 *   read only what the filters look at (mark, netns, ifname, the header
 *   bytes the pcap filter can reach)
 *   --mark / --netns / --ifname / pcap filter  ───────────────no──► return
 *     (verdict memo per CPU, else the cBPF interpreter)
 *        │yes
 *   read the whole event, track the skb (hash map, bounded) ────────► emit
 * consume_skb / kfree_skb end the packet's life: emit, then forget the skb.
 *
 * Most events are of packets that do not match: that path is kept short.
 * Kernel objects are read with plain loads through bpf_rdonly_cast() (the
 * verifier turns them into fault-safe BPF_PROBE_MEM loads, a few instructions
 * each) instead of one bpf_probe_read_kernel() call per field.
 *
 * Built twice. The default object needs Linux 6.10 (raw tracepoint attach
 * cookies, bpf_rdonly_cast). The portable one (FS_TRACE_PORTABLE, chosen by
 * user space when the feature table says the kernel lacks either) reads
 * kernel memory with bpf_probe_read_kernel() (CO-RE) and tells tracepoints
 * apart by a stub program per tracepoint (see FS_TRACE_MAX_STUBS in trace.h).
 * It also holds the kprobe programs of `trace --functions`, which name the
 * function they fired in by bpf_get_func_ip(): the same handler, so a packet
 * is followed through functions and tracepoints alike.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. */
const volatile __u32 filter_len = 0; /* cBPF instructions; 0: no pcap filter */
/* Bytes from the IP header that any load of the filter can reach (user space
 * proves the bound, filter_bytes_needed()): the filter path copies no more. */
const volatile __u32 filter_need = FS_CBPF_PKT_MAX;
const volatile __u32 memo_on = 0; /* 1: verdicts memoised (filter_need <= FS_MEMO_BYTES) */
/* 1: packet bytes on the filter path read with direct loads (needs a kernel
 * whose verifier treats a pointer read from an skb as readable memory);
 * 0: with bpf_probe_read_kernel(). User space tries 1, then 0. */
const volatile __u32 direct_loads = 1;
const volatile struct fs_cbpf_insn filter_insns[FS_CBPF_MAX_INSNS] = {};
const volatile __u32 filter_mark = 0;
const volatile __u32 filter_mark_mask = 0; /* 0: no mark filter */
const volatile __u32 filter_netns = 0;     /* 0: any */
const volatile char filter_ifname[16] = {};
const volatile __u32 filter_ifname_set = 0;
const volatile __u32 track = 1;            /* 0: no tracking (--drops) */
const volatile __u64 wakeup_bytes = 1024 * 1024; /* ring buffer fill that wakes the reader */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192); /* resized by user space (--max-packets) */
	__type(key, __u64);
	__type(value, struct fs_trace_tracked);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024); /* resized by user space */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_TSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* A tracked skb may be in a slot of this array (see fs_track_hint_slot). */
__u32 track_hint[FS_TRACK_HINT_SLOTS] = {};

struct scratch {
	struct fs_trace_event ev;
	struct fs_cbpf_vm vm;
	__u32 caplen;  /* bytes valid in buf */
	__u32 gen;     /* bumped by every program run on this CPU (nesting check) */
	__u8 buf[FS_CBPF_BUF];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

/*
 * Verdict memo. A packet passes several tracepoints (queue, transmit, receive,
 * delivery, free) with the same headers; its verdict is a function of what the
 * filters read: the header bytes within filter_need, the captured and wire
 * lengths, and mark, netns, ifname when those filters are set. Each CPU keeps
 * the last verdicts in a small direct-mapped table (slot chosen by the skb
 * address) keyed by exactly those inputs, so a hit is exact by construction:
 * a reused sk_buff, a NAT rewrite or a new device simply misses.
 */
#define FS_MEMO_WORDS 8 /* header bytes covered: 64 */
#define FS_MEMO_BYTES (FS_MEMO_WORDS * 8)
#define FS_MEMO_BITS 6
struct memo_entry {
	__u64 words[FS_MEMO_WORDS]; /* buf[0..64), zero past caplen */
	__u64 ifname[2];
	__u32 mark;
	__u32 netns;
	__u32 wire_len;
	__u32 caplen;
	__u32 verdict;
	__u32 used;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << FS_MEMO_BITS);
	__type(key, __u32);
	__type(value, struct memo_entry);
} memo SEC(".maps");

#ifdef FS_TRACE_PORTABLE
/* Kernel memory through bpf_probe_read_kernel(), CO-RE relocated. */
#define KPTR(type, p) ((type *)(p))
#define RD(p, f) BPF_CORE_READ(p, f)
#define DIRECT_LOADS 0
#else
/* Kernel objects as read-only BTF pointers: direct, fault-safe loads. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define KPTR(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))
#define RD(p, f) ((p)->f)
#define DIRECT_LOADS direct_loads
#endif

/* Packet ids, one counter shared by all CPUs. */
__u64 next_pkt_id = 0;

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_map, &zero);
}

struct loop_ctx {
	struct scratch *s;
};

/* One cBPF instruction per bpf_loop() iteration; returns 1 to stop. */
static long cbpf_step_cb(__u32 i, void *ctx)
{
	struct scratch *s = ((struct loop_ctx *)ctx)->s;
	struct fs_cbpf_vm *vm = &s->vm;
	__u32 pc = vm->pc;
	if (pc >= filter_len || pc >= FS_CBPF_MAX_INSNS) {
		fs_cbpf_finish(vm, 0);
		return 1;
	}
	struct fs_cbpf_insn in;
	in.code = filter_insns[pc & (FS_CBPF_MAX_INSNS - 1)].code;
	in.jt = filter_insns[pc & (FS_CBPF_MAX_INSNS - 1)].jt;
	in.jf = filter_insns[pc & (FS_CBPF_MAX_INSNS - 1)].jf;
	in.k = filter_insns[pc & (FS_CBPF_MAX_INSNS - 1)].k;
	fs_cbpf_step(vm, &in, filter_len, s->buf, s->caplen, s->ev.wire_len);
	return vm->done ? 1 : 0;
}

/* Runs the pcap filter over s->buf; 1 on a match. */
static __always_inline int run_filter(struct scratch *s)
{
	if (filter_len == 0)
		return 1;
	if (s->ev.flags & FS_TEV_NOT_IP)
		return 0; /* the filter was compiled for raw IP packets */
	__builtin_memset(&s->vm, 0, sizeof(s->vm));
	struct loop_ctx lc = {.s = s};
	bpf_loop(FS_CBPF_MAX_INSNS, cbpf_step_cb, &lc, 0);
	if (!s->vm.done) {
		stat_inc(FS_TSTAT_FILTER_ABORT);
		return 0;
	}
	return s->vm.ret != 0;
}

/*
 * Where the IP header starts, as an offset from skb->head. Depends on the
 * path: on transmit the network header is set and data points at the link
 * header; on receive before the IP layer data points at the IP header and
 * the network header may still be unset (fresh skb) or left from the sender
 * (veth keeps the offsets).
 */
static __always_inline __u32 l3_offset(struct sk_buff *skb, __u32 data_off)
{
	__u16 nh = RD(skb, network_header);
	__u16 mh = RD(skb, mac_header);
	if (nh != (__u16)~0U && nh != 0 && (mh == (__u16)~0U || nh > mh))
		return nh;
	if (mh != (__u16)~0U && data_off > mh)
		return data_off;
	if (mh != (__u16)~0U)
		return mh + 14; /* Ethernet header not pulled yet */
	return data_off;
}

static __always_inline void read_netns_ifname(struct fs_trace_event *ev, struct sk_buff *skb)
{
	struct net_device *dev = RD(skb, dev);
	if (dev) {
		ev->ifindex = RD(dev, ifindex);
		if (DIRECT_LOADS) {
			__builtin_memcpy(ev->ifname, dev->name, sizeof(ev->ifname));
		} else {
			__builtin_memset(ev->ifname, 0, sizeof(ev->ifname));
			bpf_probe_read_kernel_str(ev->ifname, sizeof(ev->ifname), dev->name);
		}
#ifdef FS_TRACE_PORTABLE
		ev->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
#else
		ev->netns = dev->nd_net.net->ns.inum;
#endif
	} else {
		ev->ifindex = 0;
		__builtin_memset(ev->ifname, 0, sizeof(ev->ifname));
		struct sock *sk = RD(skb, sk);
#ifdef FS_TRACE_PORTABLE
		ev->netns = sk ? BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) : 0;
#else
		ev->netns = sk ? sk->__sk_common.skc_net.net->ns.inum : 0;
#endif
	}
}

/*
 * Copies at most `want` bytes of the packet, from its IP header on, into
 * s->buf and sets s->caplen, ev->len, ev->wire_len and FS_TEV_NOT_IP. The
 * first FS_MEMO_BYTES of s->buf hold exactly the captured bytes and zeros
 * after them, so the memo can compare whole words. A short copy (want <=
 * FS_MEMO_BYTES: the filter path) is done with direct loads from the data
 * buffer when the kernel allows it (direct_loads), otherwise and for a long
 * copy with bpf_probe_read_kernel().
 */
static __always_inline void read_packet(struct scratch *s, struct sk_buff *skb, __u32 want)
{
	struct fs_trace_event *ev = &s->ev;
	unsigned char *head = RD(skb, head);
	unsigned char *data = RD(skb, data);
	__u32 tail = RD(skb, tail);
	__u32 data_off = data - head;
	__u32 off = l3_offset(skb, data_off);
	ev->len = RD(skb, len);
	/* wire_len: the packet's bytes from the IP header on. */
	if (off >= data_off)
		ev->wire_len = ev->len > off - data_off ? ev->len - (off - data_off) : 0;
	else
		ev->wire_len = ev->len + (data_off - off);
	__u32 cap = tail > off ? tail - off : 0;
	if (cap > ev->wire_len)
		cap = ev->wire_len;
	if (cap > want)
		cap = want;
	if (cap > FS_CBPF_PKT_MAX)
		cap = FS_CBPF_PKT_MAX;
	__u64 *w = (__u64 *)s->buf;
	if (DIRECT_LOADS && want <= FS_MEMO_BYTES) {
		/* Fault-safe loads (rdonly untrusted memory): a word that runs
		 * past the captured bytes stays inside the skb's buffer (the
		 * shared info follows its end) and is masked below. */
		const __u64 *src = (const __u64 *)(head + off);
#pragma unroll
		for (int i = 0; i < FS_MEMO_WORDS; i++) {
			__u64 v = 0;
			if (i * 8 < cap) {
				v = src[i];
				if (cap < i * 8 + 8) {
					__u32 keep = (cap - i * 8) * 8; /* bits of captured bytes */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
					v &= (1ULL << keep) - 1;
#else
					v &= ~(~0ULL >> keep);
#endif
				}
			}
			w[i] = v;
		}
	} else {
#pragma unroll
		for (int i = 0; i < FS_MEMO_WORDS; i++)
			w[i] = 0;
		/* The bound for older verifiers (6.1), which lose the checks above
		 * when the compiler copies cap to another register: a no-op
		 * mask (cap <= FS_CBPF_PKT_MAX) the compiler cannot drop. */
		__u32 n = cap;
		barrier_var(n);
		n &= FS_CBPF_BUF - 1;
		if (n && bpf_probe_read_kernel(s->buf, n, head + off)) {
			cap = 0;
			w[0] = 0;
		}
	}
	s->caplen = cap;
	__u8 version = cap ? s->buf[0] >> 4 : 0;
	ev->flags = (version != 4 && version != 6) ? FS_TEV_NOT_IP : 0;
}

/* Reads what the filters look at (nothing else). */
static __always_inline void read_filter_inputs(struct scratch *s, struct sk_buff *skb)
{
	if (filter_mark_mask)
		s->ev.mark = RD(skb, mark);
	if (filter_netns || filter_ifname_set)
		read_netns_ifname(&s->ev, skb);
	if (filter_len)
		read_packet(s, skb, filter_need);
}

/* The whole event: every field, and the packet as far as it is captured. */
static __always_inline void fill_event(struct scratch *s, struct sk_buff *skb, __u32 tp)
{
	struct fs_trace_event *ev = &s->ev;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->pkt_id = 0;
	ev->location = 0;
	ev->tp = tp;
	ev->cpu = bpf_get_smp_processor_id();
	ev->mark = RD(skb, mark);
	ev->reason = 0;
	ev->protocol = bpf_ntohs(RD(skb, protocol));
	ev->pad = 0;
	read_netns_ifname(ev, skb);
	read_packet(s, skb, FS_CBPF_PKT_MAX);
	__builtin_memcpy(ev->pkt, s->buf, FS_TRACE_SNAP);
	ev->cap_len = s->caplen < FS_TRACE_SNAP ? s->caplen : FS_TRACE_SNAP;
}

static __always_inline int passes_filters(struct scratch *s)
{
	struct fs_trace_event *ev = &s->ev;
	if (filter_mark_mask && (ev->mark & filter_mark_mask) != filter_mark)
		return 0;
	if (filter_netns && ev->netns != filter_netns)
		return 0;
	if (filter_ifname_set) {
#pragma unroll
		for (int i = 0; i < 16; i++) {
			if (ev->ifname[i] != filter_ifname[i])
				return 0;
			if (!filter_ifname[i])
				break;
		}
	}
	return run_filter(s);
}

static __always_inline int memo_hit(const struct memo_entry *m, const struct scratch *s)
{
	if (!m->used || m->caplen != s->caplen || m->wire_len != s->ev.wire_len)
		return 0;
	if (filter_mark_mask && m->mark != s->ev.mark)
		return 0;
	if (filter_netns && m->netns != s->ev.netns)
		return 0;
	if (filter_ifname_set) {
		const __u64 *n = (const __u64 *)s->ev.ifname;
		if (m->ifname[0] != n[0] || m->ifname[1] != n[1])
			return 0;
	}
	const __u64 *w = (const __u64 *)s->buf;
#pragma unroll
	for (int i = 0; i < FS_MEMO_WORDS; i++) {
		if (i * 8 >= filter_need)
			break;
		if (m->words[i] != w[i])
			return 0;
	}
	return 1;
}

/*
 * passes_filters() for a packet not tracked yet, reading as little as possible.
 * `gen` is s->gen at the start of this run: programs attached to different
 * tracepoints can nest on one CPU (a softirq on the way out of an interrupt)
 * and share the per-CPU scratch and memo, so a memo entry is trusted or
 * written only when no other run came in between.
 */
static __always_inline int decide(struct scratch *s, struct sk_buff *skb, __u64 skb_addr, __u32 gen)
{
	read_filter_inputs(s, skb);
	if (!memo_on) {
		if (filter_len)
			stat_inc(FS_TSTAT_FILTER_RUNS);
		return passes_filters(s);
	}
	__u32 slot = (__u32)((skb_addr * 0x9E3779B97F4A7C15ULL) >> (64 - FS_MEMO_BITS));
	struct memo_entry *m = bpf_map_lookup_elem(&memo, &slot);
	if (!m)
		return passes_filters(s);
	if (memo_hit(m, s)) {
		int v = m->verdict;
		if (s->gen == gen)
			return v;
	}
	stat_inc(FS_TSTAT_FILTER_RUNS);
	int v = passes_filters(s);
	if (s->gen != gen)
		return v;
	const __u64 *w = (const __u64 *)s->buf;
#pragma unroll
	for (int i = 0; i < FS_MEMO_WORDS; i++)
		m->words[i] = w[i];
	const __u64 *n = (const __u64 *)s->ev.ifname;
	m->ifname[0] = filter_ifname_set ? n[0] : 0;
	m->ifname[1] = filter_ifname_set ? n[1] : 0;
	m->mark = s->ev.mark;
	m->netns = s->ev.netns;
	m->wire_len = s->ev.wire_len;
	m->caplen = s->caplen;
	m->verdict = v;
	m->used = 1;
	if (s->gen != gen)
		m->used = 0; /* a nested run may have written part of it */
	return v;
}

static __always_inline void emit(struct scratch *s)
{
	/* The reader polls on a timer; it is woken early only when the buffer
	 * fills up, so a busy trace costs few wake-ups. */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, &s->ev, sizeof(s->ev), flags)) {
		stat_inc(FS_TSTAT_RINGBUF_FULL);
		return;
	}
	stat_inc(FS_TSTAT_EMITTED);
}

static __always_inline __u32 be32_at(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* See fs_trace_tracked in trace.h. 0 when the packet is not IP. */
static __always_inline __u64 fingerprint(struct scratch *s)
{
	if (s->ev.flags & FS_TEV_NOT_IP)
		return 0;
	const __u8 *b = s->buf;
	__u64 fp;
	__u32 l4;
	__u8 proto;
	if ((b[0] >> 4) == 4) {
		fp = ((__u64)b[4] << 24) | ((__u64)b[5] << 16) | ((__u64)b[2] << 8) | b[3];
		l4 = (b[0] & 0xf) * 4;
		proto = b[9];
	} else {
		fp = ((__u64)(b[1] & 0xf) << 32) | ((__u64)b[2] << 24) | ((__u64)b[3] << 16) | ((__u64)b[4] << 8) | b[5];
		l4 = 40;
		proto = b[6];
	}
	if (l4 + 16 > s->caplen)
		return fp;
	const __u8 *t = b + (l4 & 63); /* l4 <= 60 */
	fp *= 0x100000001b3ULL;
	if (proto == 6) {
		fp ^= be32_at(t + 4); /* seq */
		fp *= 0x100000001b3ULL;
		fp ^= be32_at(t + 8); /* ack */
		fp *= 0x100000001b3ULL;
		fp ^= t[13];          /* flags */
	} else if (proto == 1 || proto == 58) {
		fp ^= be32_at(t + 4); /* echo id and sequence */
	} else if (proto == 17) {
		fp ^= ((__u32)t[4] << 8) | t[5]; /* UDP length */
	}
	return fp;
}

static __always_inline int is_reused(const struct fs_trace_tracked *t, const struct fs_trace_tracked *now)
{
	return t->head != now->head || t->protocol != now->protocol || t->fingerprint != now->fingerprint;
}

static __always_inline void untrack(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key) == 0)
		__sync_fetch_and_sub(&track_hint[fs_track_hint_slot(key)], 1);
}

/* `tp`: the hook's index in user space's table, or FS_TP_FROM_COOKIE (read
 * only once the packet matched), or FS_TP_FUNC for a kprobe. */
#define FS_TP_FROM_COOKIE 0xfffffffeu
static __always_inline int handle(void *ctx, __u64 skb_addr, __u64 location, __u32 reason, __u32 kind, __u32 tp)
{
	if (!skb_addr)
		return 0;
	stat_inc(FS_TSTAT_EVENTS);
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 gen = ++s->gen;
	struct sk_buff *skb = KPTR(struct sk_buff, skb_addr);
	__u64 key = skb_addr;
	struct fs_trace_tracked *t = 0;
	if (track && track_hint[fs_track_hint_slot(key)])
		t = bpf_map_lookup_elem(&tracked, &key);
	if (!t && !decide(s, skb, skb_addr, gen))
		return 0;
	/* Which tracepoint fired matters only from here on. */
#ifndef FS_TRACE_PORTABLE
	if (tp == FS_TP_FROM_COOKIE)
		tp = bpf_get_attach_cookie(ctx) & 0xffff;
#endif
	/* A tracked packet, or one that matched just now. */
	fill_event(s, skb, tp);
	s->ev.skb = skb_addr;
	if (kind == FS_TP_KIND_FUNC) {
		s->ev.flags |= FS_TEV_FUNC;
		s->ev.location = location;
	}
	struct fs_trace_tracked now = {.head = (__u64)RD(skb, head), .protocol = s->ev.protocol, .fingerprint = fingerprint(s)};
	if (t && is_reused(t, &now)) {
		/* See fs_trace_tracked in trace.h. A reallocated head (skb_cow)
		 * also lands here: the packet then continues as a new one when it
		 * still matches the filters. */
		stat_inc(FS_TSTAT_REUSED);
		untrack(key);
		t = 0;
		if (!passes_filters(s))
			return 0;
	}
	if (t) {
		s->ev.pkt_id = t->pkt_id;
	} else {
		s->ev.pkt_id = __sync_fetch_and_add(&next_pkt_id, 1) + 1;
		s->ev.flags |= FS_TEV_NEW;
		stat_inc(FS_TSTAT_MATCHED);
		if (track && (kind == FS_TP_KIND_GENERIC || kind == FS_TP_KIND_FUNC)) {
			now.pkt_id = s->ev.pkt_id;
			now.first_ns = s->ev.ts_ns;
			__u32 slot = fs_track_hint_slot(key);
			__sync_fetch_and_add(&track_hint[slot], 1);
			if (bpf_map_update_elem(&tracked, &key, &now, BPF_NOEXIST)) {
				__sync_fetch_and_sub(&track_hint[slot], 1);
				stat_inc(FS_TSTAT_TRACK_FULL);
			}
		}
	}
	if (kind == FS_TP_KIND_KFREE || kind == FS_TP_KIND_CONSUME) {
		s->ev.flags |= FS_TEV_FREE;
		s->ev.location = location;
		if (kind == FS_TP_KIND_KFREE) {
			s->ev.reason = reason;
			s->ev.flags |= FS_TEV_HAS_REASON;
		}
		if (t)
			untrack(key);
	}
	emit(s);
	return 0;
}

#ifndef FS_TRACE_PORTABLE
/* One program per position of the skb argument (raw_tp: args are u64s). The
 * kind is the program's; the attach cookie says which tracepoint fired. */
#define HANDLER(name, skb, loc, reason, kind)                                  \
	SEC("raw_tp")                                                          \
	int name(__u64 *ctx)                                                   \
	{                                                                      \
		return handle(ctx, skb, loc, reason, kind, FS_TP_FROM_COOKIE); \
	}
#else
/* The handlers, reached by tail call from a stub that pushed which
 * tracepoint fired (see FS_TRACE_MAX_STUBS in trace.h). */
struct tp_stack {
	__u32 depth;
	__u32 tp[FS_TRACE_STACK];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tp_stack);
} tp_stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, FS_TH_MAX);
	__type(key, __u32);
	__type(value, __u32);
} handlers SEC(".maps");

/* Per stub: the FS_TH_* handler of its tracepoint. Set by user space. */
const volatile __u32 stub_handler[FS_TRACE_MAX_STUBS] = {};

static __always_inline int run_popped(void *ctx, __u64 skb, __u64 loc, __u32 reason, __u32 kind)
{
	__u32 zero = 0;
	struct tp_stack *st = bpf_map_lookup_elem(&tp_stack, &zero);
	if (!st)
		return 0;
	__u32 d = st->depth;
	if (d == 0 || d > FS_TRACE_STACK)
		return 0;
	__u32 tp = st->tp[(d - 1) & (FS_TRACE_STACK - 1)];
	handle(ctx, skb, loc, reason, kind, tp);
	st->depth = d - 1;
	return 0;
}

#define HANDLER(name, skb, loc, reason, kind)                    \
	SEC("raw_tp")                                            \
	int name(__u64 *ctx)                                     \
	{                                                        \
		return run_popped(ctx, skb, loc, reason, kind); \
	}

static __always_inline int stub(void *ctx, __u32 n)
{
	__u32 zero = 0;
	struct tp_stack *st = bpf_map_lookup_elem(&tp_stack, &zero);
	if (!st)
		return 0;
	__u32 d = st->depth;
	if (d >= FS_TRACE_STACK) {
		stat_inc(FS_TSTAT_NESTED_DEEP);
		return 0;
	}
	st->tp[d & (FS_TRACE_STACK - 1)] = n;
	st->depth = d + 1;
	bpf_tail_call(ctx, &handlers, stub_handler[n & (FS_TRACE_MAX_STUBS - 1)]);
	st->depth = d; /* not reached unless the tail call failed */
	return 0;
}

/* FS_TRACE_MAX_STUBS stubs named by their index in base 4: stub_0000 ... */
#define STUB(name, n) \
	SEC("raw_tp") \
	int stub_##name(void *ctx) { return stub(ctx, n); }
#define STUB4(p, b) STUB(p##0, (b)) STUB(p##1, (b) + 1) STUB(p##2, (b) + 2) STUB(p##3, (b) + 3)
#define STUB16(p, b) STUB4(p##0, (b)) STUB4(p##1, (b) + 4) STUB4(p##2, (b) + 8) STUB4(p##3, (b) + 12)
#define STUB64(p, b) STUB16(p##0, (b)) STUB16(p##1, (b) + 16) STUB16(p##2, (b) + 32) STUB16(p##3, (b) + 48)
STUB64(0, 0)
STUB64(1, 64)

/* trace --functions: one kprobe program per position of the skb argument,
 * in two sets: kprobe.multi links (the kernel image's functions) and one
 * kprobe per function (modules' functions, or all without kprobe.multi). */
#define FUNC(name, parm, sec)                                                                  \
	SEC(sec)                                                                               \
	int name(struct pt_regs *ctx)                                                          \
	{                                                                                      \
		return handle(ctx, parm(ctx), bpf_get_func_ip(ctx), 0, FS_TP_KIND_FUNC, FS_TP_FUNC); \
	}
FUNC(func_arg0, PT_REGS_PARM1, "kprobe")
FUNC(func_arg1, PT_REGS_PARM2, "kprobe")
FUNC(func_arg2, PT_REGS_PARM3, "kprobe")
FUNC(func_arg3, PT_REGS_PARM4, "kprobe")
FUNC(func_arg4, PT_REGS_PARM5, "kprobe")
FUNC(funcm_arg0, PT_REGS_PARM1, "kprobe.multi")
FUNC(funcm_arg1, PT_REGS_PARM2, "kprobe.multi")
FUNC(funcm_arg2, PT_REGS_PARM3, "kprobe.multi")
FUNC(funcm_arg3, PT_REGS_PARM4, "kprobe.multi")
FUNC(funcm_arg4, PT_REGS_PARM5, "kprobe.multi")
#endif

HANDLER(trace_arg0, ctx[0], 0, 0, FS_TP_KIND_GENERIC)
HANDLER(trace_arg1, ctx[1], 0, 0, FS_TP_KIND_GENERIC)
HANDLER(trace_arg2, ctx[2], 0, 0, FS_TP_KIND_GENERIC)
HANDLER(trace_arg3, ctx[3], 0, 0, FS_TP_KIND_GENERIC)
/* consume_skb(skb, location) */
HANDLER(trace_consume, ctx[0], ctx[1], 0, FS_TP_KIND_CONSUME)
/* kfree_skb(skb, location, reason, ...) */
HANDLER(trace_kfree, ctx[0], ctx[1], (__u32)ctx[2], FS_TP_KIND_KFREE)
