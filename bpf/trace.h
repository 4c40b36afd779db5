/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Structs and constants shared by trace.bpf.c and user space (src/trace).
 * Fixed-width types only, no bool, no implicit padding; the layout checks at
 * the end run in both compilers. Never include vmlinux.h here.
 */
#ifndef FLOWSCOPE_BPF_TRACE_H
#define FLOWSCOPE_BPF_TRACE_H

#include "layout_check.h"

#include "cbpf.h"

/* Bytes of each packet copied into an event, from its IP header on. */
#define FS_TRACE_SNAP 128

/* The attach cookie of every raw tracepoint link (default variant): the
 * index of the tracepoint in user space's table. The kind of a hook is its
 * program's. */
#define FS_TP_KIND_GENERIC 0
#define FS_TP_KIND_KFREE 1   /* kfree_skb(skb, location, reason, ...) */
#define FS_TP_KIND_CONSUME 2 /* consume_skb(skb, location) */
#define FS_TP_KIND_FUNC 3    /* a kprobe on a kernel function (trace --functions) */

/*
 * The portable variant (trace_portable: kernels without raw tracepoint
 * cookies) tells tracepoints apart by program: each attached tracepoint gets
 * its own stub program, which pushes its index on a per-CPU stack and
 * tail-calls the handler for its kind and skb position (index FS_TH_* in the
 * `handlers` program array); the handler pops it when done. A stack, not one
 * slot: a hard interrupt may fire another traced hook between the push and the
 * handler's read, and that run pushes and pops above ours.
 */
#define FS_TRACE_MAX_STUBS 128
#define FS_TRACE_STACK 8
#define FS_TH_ARG0 0 /* .. FS_TH_ARG0 + 3 */
#define FS_TH_CONSUME 4
#define FS_TH_KFREE 5
#define FS_TH_MAX 6
/* ev.tp of a function event before user space names it (ev.location holds
 * the function's address). */
#define FS_TP_FUNC 0xffffu

/* fs_trace_event.flags */
#define FS_TEV_FREE (1u << 0)      /* the packet was freed: its last event */
#define FS_TEV_NEW (1u << 1)       /* first event of a newly tracked packet */
#define FS_TEV_HAS_REASON (1u << 2)
#define FS_TEV_NOT_IP (1u << 3)    /* no IPv4/IPv6 header found */
#define FS_TEV_FUNC (1u << 4)      /* a kernel function's entry: location is its address */

/*
 * One event: a tracked packet seen at one tracepoint.
 *
 *   0  ts_ns  skb  pkt_id  location               (4 x u64)
 *  32  tp cpu netns ifindex mark len wire_len reason (8 x u32)
 *  64  protocol cap_len flags pad                  (4 x u16)
 *  72  ifname[16]
 *  88  pkt[FS_TRACE_SNAP]   the packet from its IP header
 */
struct fs_trace_event {
	fs_u64 ts_ns;    /* bpf_ktime_get_ns() */
	fs_u64 skb;      /* struct sk_buff * as an integer */
	fs_u64 pkt_id;   /* assigned when the packet first matched */
	fs_u64 location; /* kfree_skb/consume_skb: the caller's address; FS_TEV_FUNC: the function's */
	fs_u32 tp;       /* index into user space's tracepoint table */
	fs_u32 cpu;
	fs_u32 netns;    /* inode of the device's (or socket's) network namespace */
	fs_u32 ifindex;  /* 0: no device */
	fs_u32 mark;
	fs_u32 len;      /* skb->len */
	fs_u32 wire_len; /* bytes from the IP header to the end of the packet */
	fs_u32 reason;   /* kfree_skb: enum skb_drop_reason of the running kernel */
	fs_u16 protocol; /* skb->protocol, host order (0x0800, 0x86dd, ...) */
	fs_u16 cap_len;  /* bytes valid in pkt */
	fs_u16 flags;    /* FS_TEV_* */
	fs_u16 pad;
	char ifname[16];
	fs_u8 pkt[FS_TRACE_SNAP];
};

/* Value of the `tracked` map (key: skb address). */
struct fs_trace_tracked {
	fs_u64 pkt_id;
	fs_u64 first_ns;
	fs_u64 head;        /* skb->head when last seen */
	fs_u64 fingerprint; /* header fields NAT and forwarding leave alone */
	fs_u16 protocol;    /* skb->protocol when last seen */
	fs_u16 pad[3];
};
/* An sk_buff freed where no tracepoint fires (__kfree_skb, used by TCP for
 * most received segments) is soon reused for another packet: the slab hands
 * out the last freed object first, often with the same data buffer. A
 * tracked skb is taken as reused, and the event treated as a new packet, when
 * its data buffer (head), its protocol or its fingerprint changed. The
 * fingerprint covers what differs between two packets of one flow but stays
 * put through NAT and forwarding: IPv4 id and total length (IPv6 payload
 * length and flow label), TCP sequence, acknowledgment and flags, ICMP id and
 * sequence, UDP length. */

/*
 * A packet not tracked yet costs a hash map lookup per event only when it may
 * be tracked: `track_hint[fs_track_hint_slot(skb)]` (a global array) counts
 * the tracked skbs whose address falls in that slot. Whoever inserts into the
 * `tracked` map adds one before the insert (and takes it back if the insert
 * fails); whoever deletes an entry (BPF at free or reuse, user space in
 * Tracer::forget) takes one away after a successful delete. A slot at 0 means
 * no tracked skb has this address: the lookup is skipped.
 */
#define FS_TRACK_HINT_BITS 12
#define FS_TRACK_HINT_SLOTS (1u << FS_TRACK_HINT_BITS)
static inline fs_u32 fs_track_hint_slot(fs_u64 skb)
{
	return (fs_u32)((skb * 0x9E3779B97F4A7C15ULL) >> (64 - FS_TRACK_HINT_BITS));
}

/* Indices of the per-CPU `stats` array. */
enum fs_trace_stat {
	FS_TSTAT_EVENTS = 0,      /* tracepoint hits with an skb */
	FS_TSTAT_MATCHED,         /* packets that matched the filters and are tracked */
	FS_TSTAT_EMITTED,         /* events written to the ring buffer */
	FS_TSTAT_RINGBUF_FULL,    /* events lost: ring buffer full */
	FS_TSTAT_TRACK_FULL,      /* matched packets not tracked: map full */
	FS_TSTAT_FILTER_ABORT,    /* filter program ran off its end (counted as no match) */
	FS_TSTAT_REUSED,          /* tracked skbs found reused for another packet */
	FS_TSTAT_FILTER_RUNS,     /* cBPF filter interpreted (not answered by the verdict memo) */
	FS_TSTAT_NESTED_DEEP,     /* portable variant: hooks nested deeper than FS_TRACE_STACK, not traced */
	FS_TSTAT_MAX,
};

/* Layout checks, seen by both compilers. */
FS_LAYOUT_CHECK(sizeof(struct fs_cbpf_insn) == 8);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_cbpf_insn, k) == 4);
FS_LAYOUT_CHECK(sizeof(struct fs_trace_event) == 88 + FS_TRACE_SNAP);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_trace_event, tp) == 32);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_trace_event, protocol) == 64);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_trace_event, ifname) == 72);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_trace_event, pkt) == 88);
FS_LAYOUT_CHECK(sizeof(struct fs_trace_tracked) == 40);

#endif
