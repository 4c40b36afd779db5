// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* What the building blocks of the agent's programs cost on this kernel: each
 * program does one thing on the agent's busiest hook (inet_sock_set_state)
 * and is attached alone while connections churn (bench/bpf_costs.cpp). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "costs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct fs_cost_value);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counter SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(empty, const struct sock *sk)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(percpu_counter, const struct sock *sk)
{
	__u32 i = 0;
	__u64 *v = bpf_map_lookup_elem(&counter, &i);
	if (v)
		*v += 1;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hash_lookup, const struct sock *sk)
{
	__u64 k = (__u64)sk;
	return bpf_map_lookup_elem(&hash, &k) != 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hash_update_delete, const struct sock *sk)
{
	__u64 k = (__u64)sk;
	struct fs_cost_value v = {};
	bpf_map_update_elem(&hash, &k, &v, BPF_ANY);
	bpf_map_delete_elem(&hash, &k);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ringbuf_record, const struct sock *sk)
{
	struct fs_cost_value *r = bpf_ringbuf_reserve(&ring, sizeof(*r), 0);
	if (!r)
		return 0;
	r->v[0] = 1;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ktime_get_ns, const struct sock *sk)
{
	return bpf_ktime_get_ns() & 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(current_comm, const struct sock *sk)
{
	char c[16];
	bpf_get_current_comm(c, sizeof(c));
	return c[0];
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(current_cgroup_id, const struct sock *sk)
{
	return bpf_get_current_cgroup_id() & 1;
}

/* A flow's whole life on this hook, two ways: created at the first
 * transition, looked up at the others, deleted at CLOSE. The same logical
 * work over the same runs, so the per-run figures compare the stores with
 * their real cache behaviour (entries touched at different times). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fs_cost_value);
} sk_store SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hash_flow_life, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 k = (__u64)sk;
	if (oldstate == TCP_CLOSE || oldstate == TCP_LISTEN) {
		struct fs_cost_value v = {};
		bpf_map_update_elem(&hash, &k, &v, BPF_NOEXIST);
		return 0;
	}
	struct fs_cost_value *f = bpf_map_lookup_elem(&hash, &k);
	if (!f)
		return 0;
	f->v[1]++;
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&hash, &k);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sk_storage_flow_life, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 flags = (oldstate == TCP_CLOSE || oldstate == TCP_LISTEN) ? BPF_SK_STORAGE_GET_F_CREATE : 0;
	struct fs_cost_value *f = bpf_sk_storage_get(&sk_store, (void *)sk, 0, flags);
	if (!f)
		return 0;
	f->v[1]++;
	if (newstate == TCP_CLOSE)
		bpf_sk_storage_delete(&sk_store, (void *)sk);
	return 0;
}
