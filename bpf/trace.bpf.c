// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowscope trace: follows packets (struct sk_buff) through the kernel's
 * network stack on raw tracepoints only (no kprobes, no fentry/fexit).
 *
 * User space finds every tracepoint with a `struct sk_buff *` argument in the
 * kernel's BTF and attaches one of the programs below to each, choosing the
 * program by the position of the skb argument (raw tracepoint programs can
 * only read as many arguments as the tracepoint has, so there is one program
 * per position). The attach cookie says which tracepoint fired.
 *
 * Per event:
 *   skb tracked? ──yes──────────────────────────────────────────► emit
 *        │no
 *   --mark / --netns / --ifname / pcap filter (cBPF, interpreted)  ─no─► return
 *        │yes
 *   track it (hash map, bounded) ──────────────────────────────────► emit
 * consume_skb / kfree_skb end the packet's life: emit, then forget the skb.
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

struct scratch {
	struct fs_trace_event ev;
	struct fs_cbpf_vm vm;
	__u32 caplen;  /* bytes valid in buf */
	__u32 pad;
	__u8 buf[FS_CBPF_BUF];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

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

/* One cBPF instruction per bpf_loop() iteration; returns 1 to stop. */
static long cbpf_step_cb(__u32 i, void *unused)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
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
	bpf_loop(FS_CBPF_MAX_INSNS, cbpf_step_cb, 0, 0);
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
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 mh = BPF_CORE_READ(skb, mac_header);
	if (nh != (__u16)~0U && nh != 0 && (mh == (__u16)~0U || nh > mh))
		return nh;
	if (mh != (__u16)~0U && data_off > mh)
		return data_off;
	if (mh != (__u16)~0U)
		return mh + 14; /* Ethernet header not pulled yet */
	return data_off;
}

static __always_inline void fill_event(struct scratch *s, struct sk_buff *skb, __u64 cookie)
{
	struct fs_trace_event *ev = &s->ev;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->skb = (__u64)skb;
	ev->pkt_id = 0;
	ev->location = 0;
	ev->tp = cookie & 0xffff;
	ev->cpu = bpf_get_smp_processor_id();
	ev->mark = BPF_CORE_READ(skb, mark);
	ev->len = BPF_CORE_READ(skb, len);
	ev->reason = 0;
	ev->protocol = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	ev->flags = 0;
	ev->pad = 0;

	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		ev->ifindex = BPF_CORE_READ(dev, ifindex);
		BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
		ev->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		ev->ifindex = 0;
		ev->ifname[0] = 0;
		struct sock *sk = BPF_CORE_READ(skb, sk);
		ev->netns = sk ? BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) : 0;
	}

	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u32 tail = BPF_CORE_READ(skb, tail);
	__u32 data_off = data - head;
	__u32 off = l3_offset(skb, data_off);
	/* wire_len: the packet's bytes from the IP header on. */
	if (off >= data_off)
		ev->wire_len = ev->len > off - data_off ? ev->len - (off - data_off) : 0;
	else
		ev->wire_len = ev->len + (data_off - off);
	__u32 cap = tail > off ? tail - off : 0;
	if (cap > ev->wire_len)
		cap = ev->wire_len;
	if (cap > FS_CBPF_PKT_MAX)
		cap = FS_CBPF_PKT_MAX;
	if (cap && bpf_probe_read_kernel(s->buf, cap, head + off))
		cap = 0;
	s->caplen = cap;
	ev->cap_len = cap < FS_TRACE_SNAP ? cap : FS_TRACE_SNAP;
	__builtin_memcpy(ev->pkt, s->buf, FS_TRACE_SNAP);
	__u8 version = cap ? s->buf[0] >> 4 : 0;
	if (version != 4 && version != 6)
		ev->flags |= FS_TEV_NOT_IP;
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

static __always_inline int handle(struct sk_buff *skb, __u64 cookie, __u64 location, __u32 reason)
{
	if (!skb)
		return 0;
	stat_inc(FS_TSTAT_EVENTS);
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 kind = (cookie >> FS_TP_KIND_SHIFT) & 0xf;
	__u64 key = (__u64)skb;
	struct fs_trace_tracked *t = track ? bpf_map_lookup_elem(&tracked, &key) : 0;
	fill_event(s, skb, cookie);
	__u64 head = (__u64)BPF_CORE_READ(skb, head);
	struct fs_trace_tracked now = {.head = head, .protocol = s->ev.protocol, .fingerprint = fingerprint(s)};
	if (t && is_reused(t, &now)) {
		/* See fs_trace_tracked in trace.h. A reallocated head (skb_cow)
		 * also lands here: the packet then continues as a new one when it
		 * still matches the filters. */
		stat_inc(FS_TSTAT_REUSED);
		bpf_map_delete_elem(&tracked, &key);
		t = 0;
	}
	if (t) {
		s->ev.pkt_id = t->pkt_id;
	} else {
		if (!passes_filters(s))
			return 0;
		s->ev.pkt_id = __sync_fetch_and_add(&next_pkt_id, 1) + 1;
		s->ev.flags |= FS_TEV_NEW;
		stat_inc(FS_TSTAT_MATCHED);
		if (track && kind == FS_TP_KIND_GENERIC) {
			now.pkt_id = s->ev.pkt_id;
			now.first_ns = s->ev.ts_ns;
			if (bpf_map_update_elem(&tracked, &key, &now, BPF_NOEXIST))
				stat_inc(FS_TSTAT_TRACK_FULL);
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
			bpf_map_delete_elem(&tracked, &key);
	}
	emit(s);
	return 0;
}

/* One program per position of the skb argument (raw_tp: args are u64s). */
SEC("raw_tp")
int trace_arg0(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[0], bpf_get_attach_cookie(ctx), 0, 0);
}

SEC("raw_tp")
int trace_arg1(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[1], bpf_get_attach_cookie(ctx), 0, 0);
}

SEC("raw_tp")
int trace_arg2(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[2], bpf_get_attach_cookie(ctx), 0, 0);
}

SEC("raw_tp")
int trace_arg3(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[3], bpf_get_attach_cookie(ctx), 0, 0);
}

/* consume_skb(skb, location) */
SEC("raw_tp")
int trace_consume(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[0], bpf_get_attach_cookie(ctx), ctx[1], 0);
}

/* kfree_skb(skb, location, reason, ...) */
SEC("raw_tp")
int trace_kfree(__u64 *ctx)
{
	return handle((struct sk_buff *)ctx[0], bpf_get_attach_cookie(ctx), ctx[1], (__u32)ctx[2]);
}
