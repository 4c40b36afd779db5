// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowscope agent: one record per TCP connection, built from tracepoints only
 * (no kprobes, no fentry/fexit), aggregated in the kernel and sent to user
 * space through a ring buffer when the connection closes.
 *
 * Life of a flow (keyed by the struct sock address):
 *   CLOSE->SYN_SENT      outbound, process context: bind pid/comm/cgroup
 *   LISTEN->SYN_RECV     inbound child, softirq: provisional owner = listener
 *   accept(2) returns    process context: bind to the accepting process
 *   ->CLOSE              read tuple (if not known yet) and tcp_sock counters,
 *                        emit, forget
 * The transitions in between cost no lookup: what they say (handshake done,
 * our FIN sent) follows from the state the socket left for CLOSE. The first
 * interim record indexes a long-lived flow by tuple for drop attribution.
 *
 * Kernels before 5.13 (Debian 11's 5.10) load the *_legacy programs instead:
 * the same bodies with `legacy` set, which use only what 5.9 offers (see
 * mark_untracked for why they are separate programs, `accepted` for the
 * maps they stay off, dump_flows_legacy for the sweep).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "agent.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define EEXIST_ 17

/* Set by user space before load. */
const volatile __u32 filter_netns = 0;   /* 0: any */
const volatile __u16 filter_port = 0;    /* 0: any; local or remote */
const volatile __u32 filter_pid = 0;     /* 0: any */
const volatile __u64 filter_cgroup = 0;  /* 0: any */
const volatile __u32 drop_reason_consumed = 0xffffffff; /* SKB_CONSUMED on this kernel */
/* NOT_SPECIFIED on this kernel, or ~0 to attribute those frees too. */
const volatile __u32 drop_reason_unspecified = 0xffffffff;
const volatile __u32 drop_reason_queue_purge = 0xffffffff; /* QUEUE_PURGE on this kernel */
const volatile __u64 wakeup_bytes = 256 * 1024;          /* ring buffer fill that wakes the reader */
const volatile __u64 ringbuf_bytes = 4 * 1024 * 1024;    /* size of `events` */

/* Set by user space when the agent stops: no new flow is tracked from then on,
 * and each open flow is reported exactly once, by the exit sweep or by its
 * close, whichever claims it first (fs_flow.exit_claim). */
__u32 stopping = 0;

/* Set by user space once the start-up walk has given every open socket a
 * flow: a socket seen later without one opened since, and the kernel skipped
 * the event that opened it. */
__u32 seeded = 0;

/* Not preallocated: kernel memory follows the number of open connections,
 * bounded by --max-flows (safe in any context since Linux 6.1's bpf_mem_alloc). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144); /* resized by user space (--max-flows) */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct fs_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fs_tuple_key);
	__type(value, __u64);
} tuples SEC(".maps");

/* Drops of packets whose flow had no known tuple yet (a SYN refused before the
 * connecting socket's port was seen); merged when the tuple appears. */
struct pending_drops {
	struct fs_drop_slot slot[FS_DROP_SLOTS];
	__u64 last_ns; /* the latest drop: flows that started later were not there */
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct fs_tuple_key);
	__type(value, struct pending_drops);
} pending SEC(".maps");
/* Entries added to `pending` minus those merged (LRU evictions not seen). */
__u64 pending_entries = 0;

struct owner {
	__u64 cgroup_id;
	__u32 pid;
	__u32 pad;
	char comm[FS_COMM_LEN];
	char exe[FS_COMM_LEN];
};
struct listener_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};
/* Who listens on a port: the provisional owner of an inbound child until accept(). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct listener_key);
	__type(value, struct owner);
} listeners SEC(".maps");

/* Sockets whose flow the full `flows` map could not hold (counted in
 * FS_STAT_FLOW_MAP_FULL when it happened). A later event of such a socket finds
 * no flow; the mark says it is not a connection opened before the agent, so
 * it is left out instead of being reported as one. Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} untracked SEC(".maps");

/* The same mark where tp_btf programs cannot use socket storage (before 5.11):
 * a hash keyed by the socket's address, removed at the socket's close. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144); /* resized by user space (--max-flows) */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} untracked_socks SEC(".maps");

/* Every program that differs on kernels before 5.13 is built twice from one
 * body: `legacy` is a constant at each call, so the modern program keeps no
 * trace of the fallback and the legacy one none of the helpers and
 * instructions the older kernel would refuse (its verifier rejects an atomic
 * with a result even in dead code). User space loads one set. */
static __always_inline void mark_untracked(struct sock *sk, const int legacy)
{
	if (legacy) {
		__u64 key = (__u64)sk;
		__u8 one = 1;
		bpf_map_update_elem(&untracked_socks, &key, &one, BPF_ANY);
	} else {
		bpf_sk_storage_get(&untracked, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	}
}

static __always_inline int is_untracked(struct sock *sk, const int legacy)
{
	if (legacy) {
		__u64 key = (__u64)sk;
		return bpf_map_lookup_elem(&untracked_socks, &key) != 0;
	}
	return bpf_sk_storage_get(&untracked, sk, 0, 0) != 0;
}

/* Legacy programs only. The 5.10 verifier warns (a kernel WARN, fatal under
 * panic_on_warn) when a tracepoint or raw_tp program uses a map that is not
 * preallocated: the legacy set keeps such programs off `flows`. The accept
 * tracepoints leave the acceptor here (LRU: preallocated), keyed by socket;
 * the flow takes it at its close or its next interim record. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} accepted SEC(".maps");

/* Legacy exit claims: the update with BPF_NOEXIST succeeds for one caller
 * only, which is what cmpxchg gives on newer kernels. Used once the agent
 * stops; resized by user space (--max-flows). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} exit_claims SEC(".maps");

/* 1 when another caller reported the flow already (legacy exit claim). */
static __always_inline int claimed_before(__u64 key)
{
	__u8 one = 1;
	return bpf_map_update_elem(&exit_claims, &key, &one, BPF_NOEXIST) != 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024); /* resized by user space (--ringbuf-size) */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Set while on_state runs on this CPU (see on_state_nested). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} state_busy SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v) /* atomic: on_state_nested may interrupt an increment on this CPU */
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

/* Reads addresses and ports; returns 0 (and writes nothing) while the tuple
 * is not complete: the local port not bound yet (a connect at SYN_SENT), or
 * no remote port yet. The latter is an accepted child at its first event on
 * older kernels (seen on 6.1 and 6.12; 6.18 has the tuple there):
 * inet_csk_clone_lock() fires LISTEN->SYN_RECV before it copies the request's
 * ports, and the addresses (and, for IPv4 on a dual-stack listener, the
 * family) are the listener's until tcp_v4/v6_syn_recv_sock() fill them in; a
 * connected socket always has a remote port. At the final CLOSE the kernel
 * has already released the port (skc_num reads 0) but inet_sport still holds
 * it, so a flow can learn its tuple as late as that. RD reads one field and
 * RD_ADDR one 16-byte address: direct loads for a BTF pointer (events; CO-RE
 * relocated and checked by the verifier, a load each), BPF_CORE_READ for a
 * socket address kept as an integer (the periodic dump; a helper call each). */
#define RD_DIRECT(p, field) ((p)->field)
#define RD_ADDR_DIRECT(dst, p, field) __builtin_memcpy((dst), &(p)->field, 16)
#define RD_ADDR_PROBE(dst, p, field) BPF_CORE_READ_INTO((struct in6_addr *)(dst), p, field)
#define SKC(field) inet_conn.icsk_inet.sk.__sk_common.field
#define DEFINE_READ_TUPLE(name, RD, RD_ADDR)                                                  \
	static __always_inline int name(const struct tcp_sock *tp, struct fs_tuple *t)        \
	{                                                                                     \
		__u16 lport = RD(tp, SKC(skc_num));                                           \
		if (!lport)                                                                   \
			lport = bpf_ntohs(RD(tp, inet_conn.icsk_inet.inet_sport));            \
		__u16 rport = bpf_ntohs(RD(tp, SKC(skc_dport)));                              \
		if (!lport || !rport)                                                         \
			return 0;                                                             \
		t->family = RD(tp, SKC(skc_family));                                          \
		t->local_port = lport;                                                        \
		t->remote_port = rport;                                                       \
		if (t->family == AF_INET6) {                                                  \
			RD_ADDR(t->local_addr, tp, SKC(skc_v6_rcv_saddr));                    \
			RD_ADDR(t->remote_addr, tp, SKC(skc_v6_daddr));                       \
		} else {                                                                      \
			__u32 la = RD(tp, SKC(skc_rcv_saddr)), ra = RD(tp, SKC(skc_daddr));   \
			__builtin_memcpy(t->local_addr, &la, 4);                              \
			__builtin_memcpy(t->remote_addr, &ra, 4);                             \
		}                                                                             \
		return 1;                                                                     \
	}
DEFINE_READ_TUPLE(read_tuple, RD_DIRECT, RD_ADDR_DIRECT)
DEFINE_READ_TUPLE(read_tuple_probe, BPF_CORE_READ, RD_ADDR_PROBE)

static __always_inline void tuple_key(const struct fs_tuple *t, struct fs_tuple_key *k)
{
	__builtin_memcpy(k->local_addr, t->local_addr, 16);
	__builtin_memcpy(k->remote_addr, t->remote_addr, 16);
	k->local_port = t->local_port;
	k->remote_port = t->remote_port;
}

static __always_inline void add_drop(struct fs_drop_slot *slots, __u32 *other, __u32 reason, __u32 n)
{
	/* Slots store reason+1 so that 0 means free; claimed with cmpxchg because
	 * several CPUs may drop packets of one flow at once. */
	__u32 tag = reason + 1;
#pragma unroll
	for (int i = 0; i < FS_DROP_SLOTS; i++) {
		__u32 cur = slots[i].reason;
		if (cur == 0)
			cur = __sync_val_compare_and_swap(&slots[i].reason, 0, tag);
		if (cur == 0 || cur == tag) {
			__sync_fetch_and_add(&slots[i].count, n);
			return;
		}
	}
	if (other)
		__sync_fetch_and_add(other, n);
}

static __always_inline void swap_key(struct fs_tuple_key *k)
{
	struct fs_tuple_key s = {};
	__builtin_memcpy(s.local_addr, k->remote_addr, 16);
	__builtin_memcpy(s.remote_addr, k->local_addr, 16);
	s.local_port = k->remote_port;
	s.remote_port = k->local_port;
	*k = s;
}

/* Folds in drops of packets that had no socket when dropped, kept under the
 * packet's (source, destination). Only drops no later flow could own: a flow
 * that started after the last of them was not there (a retried SYN's server
 * side must not inherit the first SYN's drop). */
static __always_inline void merge_pending(struct fs_flow *f, struct fs_tuple_key *k)
{
	struct pending_drops *p = bpf_map_lookup_elem(&pending, k);
	if (!p || p->last_ns < f->start_ns)
		return;
#pragma unroll
	for (int i = 0; i < FS_DROP_SLOTS; i++)
		if (p->slot[i].reason)
			add_drop(f->drops, &f->drops_other, p->slot[i].reason - 1, p->slot[i].count);
	if (!bpf_map_delete_elem(&pending, k))
		__sync_fetch_and_sub(&pending_entries, 1);
}

/* Both directions of a flow not in the tuples index: packets it sent and
 * packets sent to it. Almost always nothing is pending: skip the lookups then
 * (evicted entries keep the count above zero, which only costs the lookups). */
static __always_inline void merge_pending_both(struct fs_flow *f)
{
	if (!pending_entries || !f->tuple.local_port || (f->flags & FS_F_INDEXED))
		return;
	struct fs_tuple_key k = {};
	tuple_key(&f->tuple, &k);
	merge_pending(f, &k);
	swap_key(&k);
	merge_pending(f, &k);
}

/* Puts a long-lived flow into the tuples index, so that drops of its packets
 * without a socket are attributed as they happen. Short flows are never
 * indexed (two map updates saved per connection): their rare socket-less
 * drops wait in `pending` and are folded in at close. */
static __always_inline void index_flow(struct fs_flow *f)
{
	if (!f->tuple.local_port || (f->flags & FS_F_INDEXED))
		return;
	merge_pending_both(f);
	struct fs_tuple_key k = {};
	tuple_key(&f->tuple, &k);
	__u64 skp = f->sk;
	if (bpf_map_update_elem(&tuples, &k, &skp, BPF_ANY))
		stat_inc(FS_STAT_TUPLE_MAP_FULL);
	else
		f->flags |= FS_F_INDEXED;
}

/* Folds in drops of packets the flow sent before its tuple was known (a SYN
 * refused by a closed port), kept under (local, remote). */
static __always_inline void merge_sent_pending(struct fs_flow *f)
{
	if (!pending_entries || !f->tuple.local_port)
		return;
	struct fs_tuple_key k = {};
	tuple_key(&f->tuple, &k);
	merge_pending(f, &k);
}

/* Records the flow's tuple once the local port is bound (tp: the socket as a
 * tcp_sock, or 0 when it is not one). */
static __always_inline void learn_tuple(const struct tcp_sock *tp, struct fs_flow *f, const int legacy)
{
	if (f->tuple.local_port || !tp || !read_tuple(tp, &f->tuple))
		return;
	/* Nothing is pending without drop reasons (legacy: kernels before 5.17). */
	if (!legacy)
		merge_sent_pending(f);
}

/* The program's name: its thread-group leader's comm (a thread is often
 * named for its job, "Chrome_ChildIOT", not for its program). */
static __always_inline void current_exe(char *exe, const int legacy)
{
	if (legacy) {
		/* Before 5.11: the task as an integer, read with CO-RE probes. */
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		struct task_struct *leader = BPF_CORE_READ(t, group_leader);
		bpf_core_read_str(exe, FS_COMM_LEN, &leader->comm);
		return;
	}
	struct task_struct *t = bpf_get_current_task_btf();
	bpf_probe_read_kernel_str(exe, FS_COMM_LEN, t->group_leader->comm);
}

static __always_inline void bind_owner(struct fs_flow *f, const int legacy)
{
	f->pid = bpf_get_current_pid_tgid() >> 32;
	f->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(f->comm, sizeof(f->comm));
	current_exe(f->exe, legacy);
	f->flags |= FS_F_ATTRIBUTED;
}

/* Legacy: binds an inbound flow to the process that accepted it, left in
 * `accepted` by the accept tracepoints. */
static __always_inline void merge_accepted(struct fs_flow *f, __u64 key)
{
	if (f->flags & FS_F_ATTRIBUTED)
		return;
	struct owner *o = bpf_map_lookup_elem(&accepted, &key);
	if (!o)
		return;
	/* Usually the listener's own process accepts: its owner is already
	 * right, only the flag is missing (as on newer kernels). */
	if (o->pid != f->pid || o->cgroup_id != f->cgroup_id) {
		f->pid = o->pid;
		f->cgroup_id = o->cgroup_id;
		__builtin_memcpy(f->comm, o->comm, sizeof(f->comm));
		__builtin_memcpy(f->exe, o->exe, sizeof(f->exe));
	}
	f->flags |= FS_F_ATTRIBUTED;
	stat_inc(FS_STAT_ATTRIBUTED_ACCEPT);
	bpf_map_delete_elem(&accepted, &key);
}

/* What the state a socket is in (or left for CLOSE) says of its handshake and
 * our FIN: derived here rather than tracked per transition, so the
 * transitions in between need no work at all. */
static __always_inline void state_flags(struct fs_flow *f, int state)
{
	if (state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING || state == TCP_LAST_ACK ||
	    state == TCP_TIME_WAIT)
		f->flags |= FS_F_FIN_SENT;
	if (state != TCP_SYN_SENT && state != TCP_SYN_RECV && state != TCP_NEW_SYN_RECV && state != TCP_CLOSE &&
	    state != TCP_LISTEN)
		f->flags |= FS_F_ESTABLISHED;
}

/* Fills the counters of a record from the live socket; state is the socket's
 * state (for a final record, the state it left for CLOSE). RD reads one field:
 * a direct load for a BTF pointer (events), BPF_CORE_READ for a socket address
 * kept as an integer (the periodic dump), from one definition. */
#define DEFINE_READ_COUNTERS(name, RD)                                                         \
	static __always_inline void name(const struct tcp_sock *tp, struct fs_flow *f, int state) \
	{                                                                                      \
		state_flags(f, state);                                                         \
		f->bytes_acked = RD(tp, bytes_acked);                                          \
		f->bytes_received = RD(tp, bytes_received);                                    \
		f->segs_out = RD(tp, segs_out);                                                \
		f->segs_in = RD(tp, segs_in);                                                  \
		f->total_retrans = RD(tp, total_retrans);                                      \
		f->srtt_us = RD(tp, srtt_us);                                                  \
		f->mdev_us = RD(tp, mdev_us);                                                  \
		f->sk_err = RD(tp, inet_conn.icsk_inet.sk.sk_err);                             \
		/* write_seq counts the FIN once queued: all acked means the FIN too. */       \
		if ((f->flags & FS_F_FIN_SENT) && RD(tp, snd_una) == RD(tp, write_seq))        \
			f->flags |= FS_F_FIN_ACKED;                                            \
		/* SOCK_DONE is set by tcp_fin(): the peer's FIN arrived in order and is  \
		 * counted in bytes_received. */                                            \
		unsigned long skflags = RD(tp, inet_conn.icsk_inet.sk.__sk_common.skc_flags);  \
		if (skflags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))        \
			f->flags |= FS_F_FIN_RECEIVED;                                         \
		if ((f->direction == FS_DIR_OUTBOUND) && (f->flags & FS_F_ESTABLISHED))        \
			f->flags |= FS_F_SYN_ACKED;                                            \
	}
DEFINE_READ_COUNTERS(read_counters, RD_DIRECT)
DEFINE_READ_COUNTERS(read_counters_probe, BPF_CORE_READ)

static __always_inline int passes_filters(const struct fs_flow *f)
{
	if (filter_port && f->tuple.local_port != filter_port && f->tuple.remote_port != filter_port)
		return 0;
	if (filter_pid && f->pid != filter_pid)
		return 0;
	if (filter_cgroup && f->cgroup_id != filter_cgroup)
		return 0;
	return 1;
}

static __always_inline void emit(struct fs_flow *f)
{
	if (!passes_filters(f)) {
		stat_inc(FS_STAT_FLOWS_FILTERED);
		return;
	}
	struct fs_flow *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		stat_inc(FS_STAT_RINGBUF_FULL);
		return;
	}
	__builtin_memcpy(r, f, sizeof(*r));
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(r, avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	stat_inc(FS_STAT_FLOWS_EMITTED);
}

static __always_inline void forget(struct fs_flow *f, __u64 key)
{
	if (f->flags & FS_F_INDEXED) {
		struct fs_tuple_key k = {};
		tuple_key(&f->tuple, &k);
		__u64 *owner = bpf_map_lookup_elem(&tuples, &k);
		if (owner && *owner == key)
			bpf_map_delete_elem(&tuples, &k);
	}
	bpf_map_delete_elem(&flows, &key);
}

static __always_inline void track_listener(const struct sock *sk, int newstate, const int legacy)
{
	struct listener_key lk = {.netns = sk_netns(sk), .port = sk->__sk_common.skc_num};
	if (newstate == TCP_LISTEN) {
		struct owner o = {};
		o.pid = bpf_get_current_pid_tgid() >> 32;
		o.cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(o.comm, sizeof(o.comm));
		current_exe(o.exe, legacy);
		bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY);
	} else {
		bpf_map_delete_elem(&listeners, &lk);
	}
}

/* The socket's cookie: unique for the life of the system, unlike its address,
 * which a later socket reuses. None on the legacy programs (5.10 has no such
 * helper for tracing). */
static __always_inline __u64 sock_cookie(const struct sock *sk, const int legacy)
{
	return legacy ? 0 : bpf_get_socket_cookie((void *)sk);
}

/* A flow whose socket went away without its close seen (the kernel skipped
 * that event): its record is lost. Counted once: while the agent stops, only
 * by whichever claims it first (the exit sweep, or a socket reusing the
 * address); the entry is dropped. */
static __always_inline void drop_stale(struct fs_flow *f, __u64 key, const int legacy)
{
	if (!stopping || (legacy ? !claimed_before(key) : !__sync_val_compare_and_swap(&f->exit_claim, 0, 1)))
		stat_inc(FS_STAT_CLOSE_MISSED);
	forget(f, key);
}

static __always_inline int state_change(const struct sock *sk, const int oldstate, const int newstate,
					 const int legacy)
{
	if (sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	stat_inc(FS_STAT_STATE_EVENTS);
	/* Only the first transition (tracking starts) and CLOSE (the record)
	 * need work: the others are read back from the state at close, and the
	 * tuple of an outbound socket (whose port is bound after SYN_SENT) from
	 * the socket at close, so they cost no map lookup. A socket first seen
	 * in one of them was open before the agent: its record starts at CLOSE. */
	switch (newstate) {
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_RECV || oldstate == TCP_SYN_SENT)
			return 0;
		break;
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
		return 0;
	case TCP_LISTEN:
		track_listener(sk, newstate, legacy);
		return 0;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN) {
			track_listener(sk, newstate, legacy);
			return 0;
		}
		break;
	}

	__u64 key = (__u64)sk;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	/* A connect or a new child starts a flow: it is inserted whole, with no
	 * lookup before it (there is nothing to find) or after it (nothing is
	 * left to add). */
	const int starts = (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) || oldstate == TCP_LISTEN ||
			   newstate == TCP_SYN_RECV;
	struct fs_flow *f = starts ? 0 : bpf_map_lookup_elem(&flows, &key);
	if (f && !legacy) {
		__u64 cookie = sock_cookie(sk, legacy);
		if (!f->cookie) {
			f->cookie = cookie; /* an accepted child's, final only after its start (see below) */
		} else if (f->cookie != cookie) {
			/* An earlier socket's at this address, whose close was skipped. */
			drop_stale(f, key, legacy);
			f = 0;
		}
	}
	if (!f) {
		__u64 now = bpf_ktime_get_ns();
		if (oldstate == TCP_CLOSE && newstate == TCP_CLOSE)
			return 0;
		__u32 netns = sk_netns(sk);
		if (filter_netns && netns != filter_netns)
			return 0;
		if (stopping && newstate != TCP_CLOSE) {
			/* Not tracked any more; an entry under a starting socket's
			 * address belongs to a freed socket (see below). */
			if (starts) {
				struct fs_flow *old = bpf_map_lookup_elem(&flows, &key);
				if (old)
					drop_stale(old, key, legacy);
			}
			return 0;
		}
		/* Counted when the map had no room for it: not preexisting. */
		if (!starts && is_untracked((struct sock *)sk, legacy)) {
			if (legacy && newstate == TCP_CLOSE)
				bpf_map_delete_elem(&untracked_socks, &key);
			return 0;
		}
		struct fs_flow nf = {};
		nf.sk = key;
		nf.start_ns = now;
		nf.last_report_ns = now;
		nf.netns = netns;
		if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
			nf.direction = FS_DIR_OUTBOUND;
			bind_owner(&nf, legacy); /* connect(2) runs in the caller's context */
		} else if (oldstate == TCP_LISTEN || oldstate == TCP_SYN_RECV || newstate == TCP_SYN_RECV) {
			nf.direction = FS_DIR_INBOUND;
			/* An acceptor left under this address belongs to a socket
			 * that was never tracked (filtered, or the map full). */
			if (legacy)
				bpf_map_delete_elem(&accepted, &key);
			struct listener_key lk = {.netns = netns, .port = sk->__sk_common.skc_num};
			struct owner *o = bpf_map_lookup_elem(&listeners, &lk);
			if (o) {
				nf.pid = o->pid;
				nf.cgroup_id = o->cgroup_id;
				__builtin_memcpy(nf.comm, o->comm, sizeof(nf.comm));
				__builtin_memcpy(nf.exe, o->exe, sizeof(nf.exe));
			}
		} else {
			/* Its start was not seen: open before the agent, or (once the
			 * start-up walk is done) opened since and that event skipped.
			 * The direction is told as for the walk: a connection on a
			 * listening port was accepted. */
			nf.flags |= FS_F_PREEXISTING;
			if (seeded)
				stat_inc(FS_STAT_STARTS_MISSED);
			if (tp && read_tuple(tp, &nf.tuple)) {
				struct listener_key lk = {.netns = netns, .port = nf.tuple.local_port};
				nf.direction = bpf_map_lookup_elem(&listeners, &lk) ? FS_DIR_INBOUND : FS_DIR_OUTBOUND;
			}
		}
		/* An accepted child knows its tuple already on recent kernels (on
		 * older ones it is read later: see read_tuple); a connecting socket
		 * binds its port after SYN_SENT (read at close then). */
		if (newstate != TCP_CLOSE && tp)
			read_tuple(tp, &nf.tuple);
		/* Before 6.18 an accepted child gets its request's cookie after
		 * LISTEN->SYN_RECV, with its ports: without them it is taken at
		 * the flow's next event. */
		if (!(starts && nf.direction == FS_DIR_INBOUND && !nf.tuple.local_port))
			nf.cookie = sock_cookie(sk, legacy);
		/* A socket that starts cannot have a live flow: an entry under its
		 * address is left from a freed socket whose memory it reuses, whose
		 * close was never seen (the kernel skips an event that comes while
		 * a program already runs on that CPU: recursion_misses; or it was
		 * seeded at start-up as it closed). That record is lost: counted,
		 * and the entry replaced. */
		long err = bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST);
		if (err == -EEXIST_ && starts) {
			struct fs_flow *old = bpf_map_lookup_elem(&flows, &key);
			if (old)
				drop_stale(old, key, legacy);
			err = bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST);
		}
		if (err && err != -EEXIST_) {
			stat_inc(FS_STAT_FLOW_MAP_FULL);
			if (newstate != TCP_CLOSE)
				mark_untracked((struct sock *)sk, legacy);
			return 0;
		}
		if (!err)
			stat_inc(FS_STAT_FLOWS_CREATED);
		/* Done, unless drops wait for this tuple or the flow ends now (or
		 * was tracked already: seeded at start-up). */
		if (!err && newstate != TCP_CLOSE && (legacy || !(pending_entries && nf.tuple.local_port)))
			return 0;
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f)
			return 0;
		if (!err && newstate != TCP_CLOSE) {
			if (!legacy)
				merge_sent_pending(f);
			return 0;
		}
	}

	if (newstate != TCP_CLOSE) {
		learn_tuple(tp, f, legacy);
		return 0;
	}
	if (tp) {
		if (!f->tuple.local_port)
			read_tuple(tp, &f->tuple);
		read_counters(tp, f, oldstate);
	}
	f->last_state = (__u8)oldstate;
	/* Two CPUs that complete one handshake at once clone two children; the
	 * one that loses the hash insert is closed from SYN_RECV by the kernel
	 * (inet_ehash_nolisten) without a byte: the winner is the connection.
	 * Counted, not reported (a Fast Open child with data is reported). */
	const int discard = oldstate == TCP_SYN_RECV && f->direction == FS_DIR_INBOUND && !f->bytes_received &&
			    !f->bytes_acked;
	if (discard)
		stat_inc(FS_STAT_CHILDREN_DISCARDED);
	if (!legacy && !discard)
		merge_pending_both(f);
	f->end_ns = bpf_ktime_get_ns();
	f->kind = FS_KIND_FINAL;
	stat_inc(FS_STAT_FLOWS_CLOSED);
	/* While the agent stops, the exit sweep may have reported this flow
	 * already: one record per flow either way (claimed with cmpxchg, or
	 * before 5.12 with an insert that only one caller can make). */
	if (legacy)
		merge_accepted(f, key);
	if (!discard &&
	    (!stopping || (legacy ? !claimed_before(key) : !__sync_val_compare_and_swap(&f->exit_claim, 0, 1))))
		emit(f);
	forget(f, key);
	return 0;
}

static __always_inline __u32 *state_busy_flag(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&state_busy, &zero);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 *busy = state_busy_flag();
	if (busy)
		*busy = 1;
	state_change(sk, oldstate, newstate, 0);
	if (busy)
		*busy = 0;
	return 0;
}

/* The kernel runs a program at most once at a time per CPU: a state change in
 * a softirq that interrupts on_state in process context on that CPU (a burst
 * of loopback connections: a whole backlog of them) is skipped for on_state.
 * This second program on the same tracepoint handles exactly those: it acts
 * only while on_state is midway on its CPU, so every other event is handled
 * once, by on_state. What is left is the few instructions the kernel runs
 * around on_state's body; a start or close lost there is still found (see
 * drop_stale and FS_STAT_STARTS_MISSED). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 *busy = state_busy_flag();
	if (!busy || !*busy)
		return 0;
	stat_inc(FS_STAT_NESTED_EVENTS);
	return state_change(sk, oldstate, newstate, 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_legacy, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change(sk, oldstate, newstate, 1);
}

static __always_inline struct fs_flow *flow_of(const struct sock *sk)
{
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	return bpf_map_lookup_elem(&flows, &key);
}

/* The counters come from tcp_sock at close; here we only learn the tuple of
 * a connect that never completes (SYN retransmits), for the timeout record. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk)
{
	struct fs_flow *f = flow_of(sk);
	if (f)
		learn_tuple(bpf_skc_to_tcp_sock((void *)sk), f, 0);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit_legacy, const struct sock *sk)
{
	struct fs_flow *f = flow_of(sk);
	if (f)
		learn_tuple(bpf_skc_to_tcp_sock((void *)sk), f, 1);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk)
{
	struct fs_flow *f = flow_of(sk);
	if (f) {
		f->flags |= FS_F_RST_SENT;
		stat_inc(FS_STAT_RESETS);
	}
	return 0;
}

static __always_inline void receive_reset(struct sock *sk, const int legacy)
{
	struct fs_flow *f = flow_of(sk);
	if (f) {
		learn_tuple(bpf_skc_to_tcp_sock(sk), f, legacy); /* a refused connect is seen here with its port */
		f->flags |= FS_F_RST_RECEIVED;
		stat_inc(FS_STAT_RESETS);
	}
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	receive_reset(sk, 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset_legacy, struct sock *sk)
{
	receive_reset(sk, 1);
	return 0;
}

/* --- drops ---------------------------------------------------------------- */

struct pkt_tuple {
	struct fs_tuple_key k; /* src as local, dst as remote */
};

/* Parses the IP and TCP headers of an skb; 0 if it is not TCP or unreadable. */
static __always_inline int parse_skb(const struct sk_buff *skb, struct fs_tuple_key *k)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 proto = bpf_ntohs(skb->protocol);
	if (nh == (__u16)~0U)
		return 0;
	__u8 l4proto;
	__u32 l4off;
	if (proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		if (ip.version != 4)
			return 0;
		l4proto = ip.protocol;
		l4off = nh + ip.ihl * 4;
		__builtin_memcpy(k->local_addr, &ip.saddr, 4);
		__builtin_memcpy(k->remote_addr, &ip.daddr, 4);
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		l4proto = ip6.nexthdr;
		l4off = nh + sizeof(ip6);
		/* Extension headers before TCP (hop-by-hop, routing, fragment,
		 * destination options, AH; RFC 8200 4.1), a few at most. */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (l4proto != 0 && l4proto != 43 && l4proto != 44 && l4proto != 51 && l4proto != 60)
				break;
			__u8 ext[4];
			if (bpf_probe_read_kernel(ext, sizeof(ext), head + l4off))
				return 0;
			if (l4proto == 44) {
				/* Only the first fragment holds the TCP header. */
				if ((((__u16)ext[2] << 8) | ext[3]) & 0xfff8)
					return 0;
				l4off += 8;
			} else if (l4proto == 51) {
				l4off += ((__u32)ext[1] + 2) * 4;
			} else {
				l4off += ((__u32)ext[1] + 1) * 8;
			}
			l4proto = ext[0];
		}
		__builtin_memcpy(k->local_addr, &ip6.saddr, 16);
		__builtin_memcpy(k->remote_addr, &ip6.daddr, 16);
	} else {
		return 0;
	}
	if (l4proto != IPPROTO_TCP_)
		return 0;
	__be16 ports[2];
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4off))
		return 0;
	k->local_port = bpf_ntohs(ports[0]);
	k->remote_port = bpf_ntohs(ports[1]);
	return 1;
}


static __always_inline struct fs_flow *flow_by_tuple(struct fs_tuple_key *k)
{
	__u64 *skp = bpf_map_lookup_elem(&tuples, k);
	if (!skp)
		return 0;
	return bpf_map_lookup_elem(&flows, skp);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, int reason)
{
	if ((__u32)reason == drop_reason_consumed)
		return 0;
	/* Most NOT_SPECIFIED frees on a TCP path are packets the stack finished
	 * with (e.g. the handshake's last ACK), not losses: counted, not attributed. */
	if ((__u32)reason == drop_reason_unspecified) {
		stat_inc(FS_STAT_DROPS_UNSPECIFIED);
		return 0;
	}
	/* A socket torn down with packets still queued frees them as QUEUE_PURGE.
	 * Without payload (the peer's FIN after our close, a bare ACK) the packet
	 * was fully processed: bookkeeping, not a loss. With payload it is data
	 * that was never read, and counts. */
	if ((__u32)reason == drop_reason_queue_purge && skb->len == 0) {
		stat_inc(FS_STAT_DROPS_PURGED_EMPTY);
		return 0;
	}
	stat_inc(FS_STAT_DROPS_SEEN);
	struct fs_flow *f = flow_of(skb->sk);
	struct fs_tuple_key k = {};
	if (!f) {
		if (!parse_skb(skb, &k))
			return 0;
		/* The packet's source is the sender: try the receiving socket
		 * (local = destination) first, then the sending one. */
		swap_key(&k);
		f = flow_by_tuple(&k);
		if (!f) {
			swap_key(&k);
			f = flow_by_tuple(&k);
		}
	}
	if (f) {
		add_drop(f->drops, &f->drops_other, reason, 1);
		stat_inc(FS_STAT_DROPS_ATTRIBUTED);
		return 0;
	}
	/* No indexed flow: a short one (folds it in at close), or one whose
	 * tuple is not known yet. Kept under the packet's (source, destination). */
	struct pending_drops *p = bpf_map_lookup_elem(&pending, &k);
	if (!p) {
		struct pending_drops z = {};
		if (!bpf_map_update_elem(&pending, &k, &z, BPF_NOEXIST))
			__sync_fetch_and_add(&pending_entries, 1);
		p = bpf_map_lookup_elem(&pending, &k);
		if (!p)
			return 0;
	}
	add_drop(p->slot, 0, reason, 1);
	p->last_ns = bpf_ktime_get_ns();
	return 0;
}

/* --- process attribution for accepted sockets ------------------------------ */

static __always_inline int bind_accepted(long fd, const int legacy)
{
	if (fd < 0)
		return 0;
	struct fdtable *fdt;
	__u64 fds;
	unsigned int max_fds;
	if (legacy) {
		/* Before 5.11: the task as an integer, read with CO-RE probes. */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		fdt = BPF_CORE_READ(task, files, fdt);
		if (!fdt)
			return 0;
		max_fds = BPF_CORE_READ(fdt, max_fds);
		fds = (__u64)BPF_CORE_READ(fdt, fd);
	} else {
		struct task_struct *task = bpf_get_current_task_btf();
		fdt = task->files->fdt;
		if (!fdt)
			return 0;
		max_fds = fdt->max_fds;
		fds = (__u64)fdt->fd;
	}
	if ((unsigned long)fd >= max_fds)
		return 0;
	/* An indexed load needs a helper: BTF pointers take constant offsets only. */
	__u64 slot = fds + (__u64)fd * sizeof(struct file *);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), (void *)slot) || !file)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u64 key = (__u64)sk;
	if (legacy) {
		/* Not `flows` from here (see `accepted`). */
		struct owner o = {};
		o.pid = bpf_get_current_pid_tgid() >> 32;
		o.cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(o.comm, sizeof(o.comm));
		current_exe(o.exe, 1);
		bpf_map_update_elem(&accepted, &key, &o, BPF_ANY);
		return 0;
	}
	struct fs_flow *f = bpf_map_lookup_elem(&flows, &key);
	if (f && !(f->flags & FS_F_ATTRIBUTED)) {
		/* Usually the listener's own process accepts: its owner is already
		 * right, only the flag is missing. */
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (tgid == f->pid && f->cgroup_id == bpf_get_current_cgroup_id())
			f->flags |= FS_F_ATTRIBUTED;
		else
			bind_owner(f, legacy);
		stat_inc(FS_STAT_ATTRIBUTED_ACCEPT);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return bind_accepted(ctx->ret, 0);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return bind_accepted(ctx->ret, 0);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit_legacy(struct trace_event_raw_sys_exit *ctx)
{
	return bind_accepted(ctx->ret, 1);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit_legacy(struct trace_event_raw_sys_exit *ctx)
{
	return bind_accepted(ctx->ret, 1);
}

/* Fallback where syscall tracepoints are missing: the first receive or send on
 * a socket runs in the owner's context. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv_length, struct sock *sk)
{
	struct fs_flow *f = flow_of(sk);
	if (f && !(f->flags & FS_F_ATTRIBUTED))
		bind_owner(f, 0);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send_length, struct sock *sk)
{
	struct fs_flow *f = flow_of(sk);
	if (f && !(f->flags & FS_F_ATTRIBUTED))
		bind_owner(f, 0);
	return 0;
}

/* --- interim records -------------------------------------------------------- */

struct dump_ctx {
	__u64 now;
	__u64 cutoff;
	__u64 room;       /* stop when the ring has less free space than this */
	__u32 incomplete; /* stopped early: run again after draining the ring */
	__u32 pad;
};

static __always_inline long dump_flow(__u64 key, struct fs_flow *f, struct dump_ctx *c, const int legacy)
{
	if (f->last_report_ns > c->cutoff)
		return 0;
	/* Never overflow the ring with interim records: stop, let user space
	 * drain it, and continue in the next pass (flows already reported in
	 * this sweep carry a last_report_ns past the cutoff). */
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + c->room > ringbuf_bytes) {
		c->incomplete = 1;
		return 1;
	}
	const struct tcp_sock *tp = (const struct tcp_sock *)f->sk;
	/* A socket gone (closed, or its memory another socket's) whose close was
	 * skipped: nothing true to report. Counted when the agent stops; until
	 * then a socket reusing the address finds it (drop_stale). A close that
	 * runs now has claimed the flow before the state reads CLOSE. */
	if (!legacy && ((f->cookie && BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_cookie.counter) != f->cookie) ||
			BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_state) == TCP_CLOSE)) {
		if (stopping && !__sync_val_compare_and_swap(&f->exit_claim, 0, 1))
			stat_inc(FS_STAT_CLOSE_MISSED);
		return 0;
	}
	/* At exit, a flow closing right now may have been reported by its close
	 * (claimed as there: cmpxchg, or the claim insert before 5.12). */
	if (stopping) {
		if (legacy ? claimed_before(key) : __sync_val_compare_and_swap(&f->exit_claim, 0, 1))
			return 0;
	}
	if (legacy)
		merge_accepted(f, key);
	f->last_report_ns = c->now;
	if (!f->tuple.local_port)
		read_tuple_probe(tp, &f->tuple);
	/* The tuples index serves drop attribution (5.17 and newer). */
	if (!legacy)
		index_flow(f);
	struct fs_flow r;
	__builtin_memcpy(&r, f, sizeof(r));
	read_counters_probe(tp, &r, BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_state));
	r.end_ns = c->now;
	r.kind = FS_KIND_INTERIM;
	emit(&r);
	return 0;
}

/* Run from user space with BPF_PROG_TEST_RUN, never attached. args[0] is the
 * cutoff: flows last reported at or before it get an interim record (now minus
 * the active timeout; at shutdown, the start of the sweep). Returns 1 when it
 * stopped early for lack of ring space. */
static long dump_one(struct bpf_map *map, __u64 *key, struct fs_flow *f, struct dump_ctx *c)
{
	return dump_flow(*key, f, c, 0);
}

static __always_inline struct dump_ctx dump_start(__u64 cutoff)
{
	__u64 room = 64 * sizeof(struct fs_flow);
	if (room > ringbuf_bytes / 2)
		room = ringbuf_bytes / 2; /* a tiny ring still makes progress */
	struct dump_ctx c = {.now = bpf_ktime_get_ns(), .cutoff = cutoff, .room = room};
	return c;
}

SEC("raw_tp")
int dump_flows(__u64 *args)
{
	struct dump_ctx c = dump_start(args[0]);
	bpf_for_each_map_elem(&flows, dump_one, &c, 0);
	return c.incomplete;
}

/* The same for kernels without bpf_for_each_map_elem (before 5.13): an
 * iterator over `flows`, run by user space reading it (a tracing program: no
 * warning for the map; see `accepted`). It cannot be stopped midway, so a
 * sweep that runs short of ring space skips the rest and says so in
 * dump_incomplete; user space drains the ring and reads it again. */
__u64 dump_cutoff = 0;
__u32 dump_incomplete = 0;

SEC("iter/bpf_map_elem")
int dump_flows_legacy(struct bpf_iter__bpf_map_elem *ctx)
{
	__u64 *key = ctx->key;
	struct fs_flow *f = ctx->value;
	if (!key || !f)
		return 0;
	struct dump_ctx c = dump_start(dump_cutoff);
	dump_flow(*key, f, &c, 1);
	if (c.incomplete)
		dump_incomplete = 1;
	return 0;
}

/* --- connections open before the agent started ------------------------------ */

/* Run once per network namespace at start-up (bpf_iter over its TCP sockets):
 * established connections get a flow entry so they report interim and final
 * records like the rest. Their start and owner are unknown. */
static __always_inline int seed_flow(struct sock_common *skc, const int legacy)
{
	if (!skc)
		return 0;
	int state = skc->skc_state;
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || state == TCP_CLOSE)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	const struct sock *sk = (const struct sock *)tp;
	__u32 netns = sk_netns(sk);
	struct listener_key lk = {.netns = netns, .port = sk->__sk_common.skc_num};
	if (state == TCP_LISTEN) {
		/* Listening sockets come first in the walk; their owner is unknown
		 * here (accept() will name it). */
		struct owner o = {};
		bpf_map_update_elem(&listeners, &lk, &o, BPF_NOEXIST);
		return 0;
	}
	if (filter_netns && netns != filter_netns)
		return 0;
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct fs_flow nf = {};
	nf.sk = key;
	nf.cookie = legacy ? 0 : bpf_get_socket_cookie(skc);
	nf.start_ns = now;
	nf.last_report_ns = now;
	nf.netns = netns;
	nf.flags = FS_F_PREEXISTING;
	/* A connection on a listening port was accepted; any other was connected
	 * from here (so its SYN is in bytes_acked). */
	nf.direction = bpf_map_lookup_elem(&listeners, &lk) ? FS_DIR_INBOUND : FS_DIR_OUTBOUND;
	long err = bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST);
	if (err == -EEXIST_)
		return 0; /* tracked already: it changed state since the walk began */
	if (err) {
		stat_inc(FS_STAT_FLOW_MAP_FULL);
		mark_untracked((struct sock *)tp, legacy);
		return 0;
	}
	stat_inc(FS_STAT_FLOWS_CREATED);
	struct fs_flow *f = bpf_map_lookup_elem(&flows, &key);
	if (f)
		learn_tuple(tp, f, legacy);
	return 0;
}

SEC("iter/tcp")
int seed_flows(struct bpf_iter__tcp *ctx)
{
	return seed_flow(ctx->sk_common, 0);
}

SEC("iter/tcp")
int seed_flows_legacy(struct bpf_iter__tcp *ctx)
{
	return seed_flow(ctx->sk_common, 1);
}
