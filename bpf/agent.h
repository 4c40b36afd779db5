/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Structs and constants shared by agent.bpf.c and user space.
 * Fixed-width types only, no bool, no implicit padding; the layout checks at the
 * end run in both compilers (clang for BPF, the host compiler for user space),
 * so a change on one side cannot silently break the other. Never include
 * vmlinux.h here.
 */
#ifndef FLOWSCOPE_BPF_AGENT_H
#define FLOWSCOPE_BPF_AGENT_H

#include "layout_check.h"

#ifdef __cplusplus
#include <cstdint>
typedef std::uint8_t fs_u8;
typedef std::uint16_t fs_u16;
typedef std::uint32_t fs_u32;
typedef std::uint64_t fs_u64;
#else
typedef __u8 fs_u8;
typedef __u16 fs_u16;
typedef __u32 fs_u32;
typedef __u64 fs_u64;
#endif

#define FS_COMM_LEN 16
#define FS_DROP_SLOTS 4

/* fs_flow.direction */
#define FS_DIR_UNKNOWN 0
#define FS_DIR_OUTBOUND 1 /* we called connect() */
#define FS_DIR_INBOUND 2  /* a listener accepted it */

/* fs_flow.kind */
#define FS_KIND_FINAL 0
#define FS_KIND_INTERIM 1

/* fs_flow.flags */
#define FS_F_RST_SENT (1u << 0)
#define FS_F_RST_RECEIVED (1u << 1)
#define FS_F_FIN_SENT (1u << 2)     /* we sent a FIN (FIN_WAIT1 or LAST_ACK seen) */
#define FS_F_FIN_ACKED (1u << 3)    /* our FIN is counted in bytes_acked */
#define FS_F_ESTABLISHED (1u << 4)  /* the handshake completed */
#define FS_F_PREEXISTING (1u << 5)  /* opened before the agent started: start time unknown */
#define FS_F_ATTRIBUTED (1u << 6)   /* pid/comm/cgroup were taken in process context */
#define FS_F_SYN_ACKED (1u << 7)    /* our SYN is counted in bytes_acked (active open) */
#define FS_F_FIN_RECEIVED (1u << 8) /* the peer's FIN is counted in bytes_received */
#define FS_F_INDEXED (1u << 9)      /* in the tuples map (kernel-internal) */

/* Socket addresses as the socket sees them: local = us, remote = peer. IPv4 uses
 * the first 4 bytes of each address. Ports in host byte order. */
struct fs_tuple {
	fs_u8 local_addr[16];
	fs_u8 remote_addr[16];
	fs_u16 local_port;
	fs_u16 remote_port;
	fs_u16 family; /* AF_INET or AF_INET6 */
	fs_u16 pad;
};

struct fs_drop_slot {
	fs_u32 reason; /* enum skb_drop_reason value of the running kernel */
	fs_u32 count;
};

/* Per-connection state kept in the kernel (map `flows`, keyed by the socket's
 * address) and, filled with the counters, the record sent through the ring
 * buffer. Counters are raw tcp_sock values; user space derives payload bytes. */
struct fs_flow {
	fs_u64 sk;           /* struct sock * as an integer: identity while open */
	fs_u64 cookie;       /* socket cookie: tells this socket from a later one at the same
			      * address (0 on the legacy programs) */
	fs_u64 start_ns;     /* bpf_ktime_get_ns() at the first event */
	fs_u64 end_ns;       /* at close, or at the dump for an interim record */
	fs_u64 last_report_ns;
	fs_u64 cgroup_id;
	fs_u64 bytes_acked;    /* tcp_sock.bytes_acked: includes SYN/FIN as flagged */
	fs_u64 bytes_received; /* tcp_sock.bytes_received: includes the peer's FIN */
	fs_u32 segs_out;
	fs_u32 segs_in;
	fs_u32 total_retrans;
	fs_u32 srtt_us;  /* tcp_sock.srtt_us: smoothed RTT << 3 */
	fs_u32 mdev_us;  /* tcp_sock.mdev_us: RTT mean deviation << 2 */
	fs_u32 netns;    /* network namespace inode */
	fs_u32 pid;      /* process (tgid) that connected or accepted */
	fs_u32 sk_err;   /* sk_err at close: ECONNREFUSED, ETIMEDOUT, ... */
	char comm[FS_COMM_LEN];
	struct fs_tuple tuple;
	fs_u8 direction;
	fs_u8 kind;
	fs_u8 last_state; /* TCP state before the final transition */
	fs_u8 pad0;
	fs_u32 flags;       /* FS_F_* */
	fs_u32 drops_other; /* drops whose reason found no free slot */
	fs_u32 exit_claim;  /* kernel-internal: set by whichever of the exit sweep and the
			     * close reports the flow first while the agent stops */
	char exe[FS_COMM_LEN]; /* comm of the owner's thread-group leader: the program, not the thread */
	struct fs_drop_slot drops[FS_DROP_SLOTS];
};

/* Indices of the per-CPU `stats` array. */
enum fs_stat {
	FS_STAT_STATE_EVENTS = 0, /* inet_sock_set_state events seen */
	FS_STAT_FLOWS_CREATED,
	FS_STAT_FLOWS_CLOSED,      /* ->CLOSE seen for a tracked flow */
	FS_STAT_FLOWS_EMITTED,     /* records written to the ring buffer */
	FS_STAT_FLOWS_FILTERED,    /* final records suppressed by a filter */
	FS_STAT_FLOW_MAP_FULL,     /* a new flow could not be tracked */
	FS_STAT_RINGBUF_FULL,      /* a record was lost: ring buffer full */
	FS_STAT_TUPLE_MAP_FULL,    /* drop attribution by tuple unavailable for a flow */
	FS_STAT_DROPS_SEEN,        /* kfree_skb events with a real drop reason */
	FS_STAT_DROPS_UNSPECIFIED, /* kfree_skb with NOT_SPECIFIED, not attributed (see README) */
	FS_STAT_DROPS_ATTRIBUTED,  /* ... of which belonged to a tracked flow */
	FS_STAT_ATTRIBUTED_ACCEPT, /* inbound flows bound to the accepting process */
	FS_STAT_RESETS,            /* tcp_send_reset / tcp_receive_reset on tracked flows */
	FS_STAT_DROPS_PURGED_EMPTY, /* QUEUE_PURGE of a payload-less skb at teardown: not a loss */
	FS_STAT_CLOSE_MISSED,      /* a flow's socket was reused before its close was seen: record lost */
	FS_STAT_CHILDREN_DISCARDED, /* accepted children closed from SYN_RECV, empty: no connection of their own */
	FS_STAT_STARTS_MISSED,     /* flows first seen after their start although start-up saw every open socket */
	FS_STAT_NESTED_EVENTS,     /* state changes on_state skipped (nested) and on_state_nested handled */
	FS_STAT_MAX,
};

/* Key of the `tuples` map: lets kfree_skb find the flow of a packet that no
 * longer (or not yet) carries its socket. */
struct fs_tuple_key {
	fs_u8 local_addr[16];
	fs_u8 remote_addr[16];
	fs_u16 local_port;
	fs_u16 remote_port;
};

/* Layout checks, seen by both compilers. */
FS_LAYOUT_CHECK(sizeof(struct fs_tuple) == 40);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_tuple, local_port) == 32);
FS_LAYOUT_CHECK(sizeof(struct fs_drop_slot) == 8);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, comm) == 96);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, tuple) == 112);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, direction) == 152);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, flags) == 156);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, exe) == 168);
FS_LAYOUT_CHECK(__builtin_offsetof(struct fs_flow, drops) == 184);
FS_LAYOUT_CHECK(sizeof(struct fs_flow) == 184 + 8 * FS_DROP_SLOTS);
FS_LAYOUT_CHECK(sizeof(struct fs_tuple_key) == 36);
FS_LAYOUT_CHECK(sizeof(struct fs_flow) % 8 == 0); /* ring buffer records need no padding */

#endif
