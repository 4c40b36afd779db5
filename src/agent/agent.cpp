#include "agent/agent.h"

#include <linux/membarrier.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <charconv>
#include <cstring>
#include <thread>
#include <filesystem>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent.skel.h"
#include "agent/address_watch.h"
#include "agent/capabilities.h"
#include "agent/claims.h"
#include "agent/kernel_record.h"
#include "flow/cgroup.h"
#include "flow/json.h"
#include "kernel/btf.h"
#include "kernel/features.h"
#include "kernel/handles.h"
#include "kernel/loader.h"
#include "kernel/system.h"

namespace flowscope {

using Skel = SkelPtr<agent_bpf, agent_bpf__destroy>;

struct Agent::Impl {
  AgentOptions opts;
  Skel skel;
  std::vector<LinkPtr> links;
  RingBufferPtr rb;
  DropReasonNames drop_names;
  CgroupResolver cgroups;
  std::vector<std::shared_ptr<FlowSink>> sinks;
  std::vector<std::string> degraded;
  // Ids (features table) of the optional hooks this kernel lacks: in every
  // --stats line, so a reader of the counters knows what they cannot show.
  std::vector<std::string> features_off;
  // Kernels before 5.13: the programs built for them (see agent.bpf.c), and
  // the interim sweep walks the flow map from here.
  bool legacy = false;
  int64_t clock_offset = 0;
  uint64_t records_received = 0;
  PerCpuCounters counters;
  // Ownership evidence (agent/claims.h): the observed namespace's addresses,
  // and the ports its inbound flows show served. No watch: address claims
  // are off (said in `degraded`); port claims still go out.
  std::optional<AddressWatch> addresses;
  ClaimTracker claims{std::nullopt, std::nullopt};
  uint64_t claims_written = 0;
  std::vector<AddressChange> changes;

  void write_claims(const std::vector<OwnershipClaim>& cs);
  void read_addresses();

  static int on_record(void* ctx, void* data, size_t size);
  void handle(const fs_flow& k);
  void seed_existing(uint32_t only_netns);
  Result<void> dump(uint64_t cutoff);
  Result<void> dump_each(uint64_t cutoff);
  // The legacy sweep: an iterator over `flows`, read once per pass.
  LinkPtr dump_link;
  // One sweep that reports nothing: the calls the run loop makes work.
  bool dump_works();
  Result<void> finish();
  uint64_t unreported_at_exit = 0;
  uint64_t stat(uint32_t idx) const;
  std::string stats_line(const AgentStats& s) const;
};

namespace {

uint64_t now_ns(clockid_t c) {
  timespec t{};
  clock_gettime(c, &t);
  return uint64_t(t.tv_sec) * 1000000000ull + t.tv_nsec;
}

Result<uint64_t> resolve_cgroup(const std::string& spec, const std::string& root) {
  uint64_t id = 0;
  auto [ptr, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), id);
  if (ec == std::errc() && ptr == spec.data() + spec.size()) return id;
  std::string path = spec;
  if (!std::filesystem::exists(path) && !root.empty()) path = root + (spec.starts_with('/') ? "" : "/") + spec;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail("cgroup '{}' not found (give a path under {} or a cgroup id)", spec, root.empty() ? "the cgroup2 mount" : root);
  }
  return static_cast<uint64_t>(st.st_ino);
}

// Everything agent.bpf.c is configured with before load: its read-only
// globals and map sizes, resolved from the options in one place.
struct AgentBpfSettings {
  uint32_t netns = 0;
  uint16_t port = 0;
  uint32_t pid = 0;
  uint64_t cgroup_id = 0;
  // This kernel's values of the drop reasons the programs treat apart (the
  // enum moves between kernels); unset keeps the program's default.
  std::optional<uint32_t> reason_consumed, reason_queue_purge, reason_unspecified;
  uint32_t ringbuf_bytes = 0;
  uint32_t max_flows = 0;
};

std::optional<uint32_t> reason_value(const DropReasonNames& names, std::string_view name) {
  auto it = std::find_if(names.begin(), names.end(), [&](const auto& kv) { return kv.second == name; });
  if (it == names.end()) return std::nullopt;
  return static_cast<uint32_t>(it->first);
}

Result<AgentBpfSettings> agent_settings(const AgentOptions& opts, const DropReasonNames& names,
                                        const std::string& cgroup_root) {
  AgentBpfSettings c;
  if (opts.netns) {
    auto ns = resolve_netns(*opts.netns);
    if (!ns) return std::unexpected(ns.error());
    c.netns = *ns;
  }
  if (opts.cgroup) {
    auto cg = resolve_cgroup(*opts.cgroup, cgroup_root);
    if (!cg) return std::unexpected(cg.error());
    c.cgroup_id = *cg;
  }
  c.port = opts.port;
  c.pid = opts.pid;
  c.reason_consumed = reason_value(names, "SKB_CONSUMED");
  c.reason_queue_purge = reason_value(names, "QUEUE_PURGE");
  if (!opts.unspecified_drops) c.reason_unspecified = reason_value(names, "NOT_SPECIFIED");
  c.ringbuf_bytes = ring_buffer_bytes(opts.ringbuf_bytes);
  c.max_flows = opts.max_flows;
  return c;
}

void apply_settings(agent_bpf* s, const AgentBpfSettings& c) {
  s->rodata->filter_netns = c.netns;
  s->rodata->filter_port = c.port;
  s->rodata->filter_pid = c.pid;
  s->rodata->filter_cgroup = c.cgroup_id;
  if (c.reason_consumed) s->rodata->drop_reason_consumed = *c.reason_consumed;
  if (c.reason_queue_purge) s->rodata->drop_reason_queue_purge = *c.reason_queue_purge;
  if (c.reason_unspecified) s->rodata->drop_reason_unspecified = *c.reason_unspecified;
  s->rodata->wakeup_bytes = c.ringbuf_bytes / 4;
  s->rodata->ringbuf_bytes = c.ringbuf_bytes;
  bpf_map__set_max_entries(s->maps.flows, c.max_flows);
  bpf_map__set_max_entries(s->maps.tuples, c.max_flows);
  bpf_map__set_max_entries(s->maps.untracked_socks, c.max_flows);
  bpf_map__set_max_entries(s->maps.exit_claims, c.max_flows);
  bpf_map__set_max_entries(s->maps.events, c.ringbuf_bytes);
}

// The helpers and instructions whose absence (kernels before 5.13) selects the
// legacy programs: same records, other means (agent.bpf.c says which).
constexpr std::string_view kLegacyFallbacks[] = {"current_task_btf", "sk_storage_tracing", "atomics",
                                                 "for_each_map_elem"};

// One program of each pair the legacy build duplicates: the one this kernel
// runs stays, the other is not loaded.
void select_legacy(agent_bpf* s, bool legacy) {
  const std::pair<bpf_program*, bpf_program*> pairs[] = {
      {s->progs.on_state, s->progs.on_state_legacy},
      {s->progs.on_retransmit, s->progs.on_retransmit_legacy},
      {s->progs.on_receive_reset, s->progs.on_receive_reset_legacy},
      {s->progs.on_accept4_exit, s->progs.on_accept4_exit_legacy},
      {s->progs.on_accept_exit, s->progs.on_accept_exit_legacy},
      {s->progs.dump_flows, s->progs.dump_flows_legacy},
      {s->progs.seed_flows, s->progs.seed_flows_legacy},
  };
  for (auto [modern, old] : pairs) bpf_program__set_autoload(legacy ? modern : old, false);
  if (legacy) {
    // Hooks of 5.17 and 6.3 the legacy set has no copy of (no such kernel
    // needs it): the kernels that lack the rest lack these too.
    bpf_program__set_autoload(s->progs.on_kfree_skb, false);
    bpf_program__set_autoload(s->progs.on_recv_length, false);
    bpf_program__set_autoload(s->progs.on_send_length, false);
    // Its counterpart for nested events uses the socket cookie (5.12).
    bpf_program__set_autoload(s->progs.on_state_nested, false);
  }
}

// Each optional hook this kernel lacks has its program turned off, and said so.
void select_programs(agent_bpf* s, const CommandReport& kernel, bool accept_tracepoints, bool legacy,
                     std::vector<std::string>& degraded, std::vector<std::string>& off) {
  auto unless_present = [&](std::string_view id, std::initializer_list<bpf_program*> progs) {
    if (kernel.has(id)) return;
    for (bpf_program* p : progs) bpf_program__set_autoload(p, false);
    const FeatureRow* r = kernel.row(id);
    degraded.push_back(fmt::format("{} unavailable: {}", r->hook, r->without));
    off.emplace_back(id);
  };
  select_legacy(s, legacy);
  for (std::string_view id : kLegacyFallbacks) unless_present(id, {});
  unless_present("kfree_skb", {s->progs.on_kfree_skb});
  unless_present("tcp_send_reset", {s->progs.on_send_reset});
  unless_present("tcp_receive_reset", {s->progs.on_receive_reset, s->progs.on_receive_reset_legacy});
  unless_present("tcp_retransmit_skb", {s->progs.on_retransmit, s->progs.on_retransmit_legacy});
  // Inbound connections are bound to their process at accept(); without the
  // syscall tracepoints, at the first send or receive.
  if (accept_tracepoints) {
    bpf_program__set_autoload(s->progs.on_recv_length, false);
    bpf_program__set_autoload(s->progs.on_send_length, false);
    return;
  }
  for (bpf_program* p : {s->progs.on_accept4_exit, s->progs.on_accept_exit, s->progs.on_accept4_exit_legacy,
                         s->progs.on_accept_exit_legacy})
    bpf_program__set_autoload(p, false);
  degraded.push_back("accept attribution: syscall tracepoints unavailable, using first send/receive");
  off.emplace_back("accept_syscalls");
  unless_present("sock_length", {s->progs.on_recv_length, s->progs.on_send_length});
}

// Every network namespace some process or bind mount holds, by inode, with a
// path that opens it.
std::map<uint64_t, std::string> network_namespaces() {
  std::map<uint64_t, std::string> out;
  auto add = [&](const std::string& p) {
    struct stat st {};
    if (stat(p.c_str(), &st) == 0) out.emplace(st.st_ino, p);
  };
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/var/run/netns", ec)) add(e.path());
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (!name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) add(e.path().string() + "/ns/net");
  }
  return out;
}

// The address watch in the namespace the agent observes: --netns (a path, or
// an inode some process or bind mount holds), else the agent's own.
Result<AddressWatch> open_address_watch(const std::optional<std::string>& spec, uint32_t inode) {
  if (!spec) return AddressWatch::open(std::nullopt);
  if (std::filesystem::exists(*spec)) return AddressWatch::open(*spec);
  for (const auto& [ino, path] : network_namespaces())
    if (ino == inode) return AddressWatch::open(path);
  return fail("no path opens network namespace {}", inode);
}

uint64_t unix_now_ns() { return now_ns(CLOCK_REALTIME); }

}  // namespace

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() = default;

void Agent::add_sink(std::shared_ptr<FlowSink> sink) { impl_->sinks.push_back(std::move(sink)); }
const std::vector<std::string>& Agent::degraded() const { return impl_->degraded; }

Result<std::unique_ptr<Agent>> Agent::create(const AgentOptions& opts) {
  if (auto r = check_bpf_privileges(); !r) return std::unexpected(r.error());
  // Classic tracepoints are found in tracefs: mounted before it is probed.
  auto tracefs = ensure_tracefs();
  const KernelProbe probe = KernelProbe::open();
  if (!probe.has_btf()) return fail_errno(ENOENT, "{}", probe.btf_error());
  const CommandReport kernel = probe_command(probe, "agent");
  if (auto r = kernel.check(); !r) return std::unexpected(r.error());

  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  impl->drop_names = enum_names(probe.kernel_btf(), "skb_drop_reason", "SKB_DROP_REASON_");
  raise_memlock_limit();
  auto settings = agent_settings(opts, impl->drop_names, impl->cgroups.root());
  if (!settings) return std::unexpected(settings.error());

  auto skel = open_skeleton<agent_bpf, agent_bpf__destroy>(agent_bpf__open, "agent's");
  if (!skel) return std::unexpected(skel.error());
  impl->skel = std::move(*skel);
  agent_bpf* s = impl->skel.get();
  apply_settings(s, *settings);
  if (!tracefs) impl->degraded.push_back(tracefs.error().message);
  impl->legacy = std::ranges::any_of(kLegacyFallbacks, [&](std::string_view id) { return !kernel.has(id); });
  // FLOWSCOPE_AGENT_LEGACY=1 loads the legacy programs on any kernel, so the
  // tests run them where CI runs, not only on an old kernel in a VM.
  if (const char* v = std::getenv("FLOWSCOPE_AGENT_LEGACY"); v && std::string_view(v) == "1") {
    if (!impl->legacy) impl->degraded.push_back("legacy programs loaded (FLOWSCOPE_AGENT_LEGACY=1)");
    impl->legacy = true;
  }
  select_programs(s, kernel, tracefs && kernel.has("accept_syscalls"), impl->legacy, impl->degraded,
                  impl->features_off);

  if (auto r = load_skeleton(s->skeleton, "agent's"); !r) return std::unexpected(r.error());
  // Programs not loaded (the other half of a legacy pair, a hook missing
  // here) are skipped.
  const AttachProgram order[] = {{s->progs.on_kfree_skb},           {s->progs.on_send_reset},
                                 {s->progs.on_receive_reset},       {s->progs.on_receive_reset_legacy},
                                 {s->progs.on_retransmit},          {s->progs.on_retransmit_legacy},
                                 {s->progs.on_accept4_exit},        {s->progs.on_accept_exit},
                                 {s->progs.on_accept4_exit_legacy}, {s->progs.on_accept_exit_legacy},
                                 {s->progs.on_recv_length},         {s->progs.on_send_length},
                                 {s->progs.on_state, true},         {s->progs.on_state_nested},
                                 {s->progs.on_state_legacy, true}};
  auto links = attach_programs(order, impl->degraded);
  if (!links) return std::unexpected(links.error());
  impl->links = std::move(*links);
  impl->counters = PerCpuCounters(s->maps.stats);
  if (impl->legacy) {
    union bpf_iter_link_info info {};
    info.map.map_fd = static_cast<__u32>(bpf_map__fd(s->maps.flows));
    LIBBPF_OPTS(bpf_iter_attach_opts, iopts, .link_info = &info, .link_info_len = sizeof(info));
    impl->dump_link.reset(bpf_program__attach_iter(s->progs.dump_flows_legacy, &iopts));
    if (!impl->dump_link) return fail_errno(errno, "attaching the flow map iterator failed: {}", std::strerror(errno));
  }

  impl->seed_existing(settings->netns);
  impl->claims = ClaimTracker(opts.host, opts.host_id);
  if (!opts.ownership_claims) {
    // Nothing to watch.
  } else if (auto w = open_address_watch(opts.netns, settings->netns); w) {
    impl->addresses = std::move(*w);
  } else {
    impl->degraded.push_back(fmt::format("address ownership claims off: {}", w.error().message));
    impl->features_off.emplace_back("address_watch");
  }

  auto rb = open_ring_buffer(s->maps.events, &Impl::on_record, impl.get(), "agent's");
  if (!rb) return std::unexpected(rb.error());
  impl->rb = std::move(*rb);
  // Fixed for the agent's life so that every record of a flow carries the
  // same start time; a clock step later shifts new records, not old ones.
  impl->clock_offset = monotonic_to_realtime_offset_ns();
  for (const auto& d : impl->degraded) spdlog::warn("degraded: {}", d);
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

// Connections already open when the agent starts: bpf_iter/tcp walks the
// sockets of the namespace of the thread that opens the iterator, so a thread
// enters each namespace in turn.
void Agent::Impl::seed_existing(uint32_t only_netns) {
  LinkPtr link(bpf_program__attach_iter(legacy ? skel->progs.seed_flows_legacy : skel->progs.seed_flows, nullptr));
  if (!link) {
    degraded.push_back(fmt::format("connections open before start-up: iter/tcp unavailable ({})", std::strerror(errno)));
    features_off.emplace_back("iter_tcp");
    return;
  }
  const int link_fd = bpf_link__fd(link.get());
  size_t walked = 0;
  bool complete = true;
  for (const auto& [ino, path] : network_namespaces()) {
    if (only_netns && ino != only_netns) continue;
    auto entered = run_in_netns(path, [&] {
      Fd it(bpf_iter_create(link_fd));
      if (!it) {
        complete = false;
        return;
      }
      char buf[256];
      ssize_t n;
      while ((n = ::read(it.get(), buf, sizeof(buf))) > 0) {
      }
      if (n < 0) complete = false;
      walked++;
    });
    if (!entered) {
      complete = false;
      spdlog::debug("seeding: {}", entered.error().message);
    }
  }
  // From now on a socket without a flow is one whose opening event the
  // kernel skipped (counted as starts_missed), unless a walk failed.
  skel->bss->seeded = complete ? 1 : 0;
  spdlog::debug("seeded open connections from {} network namespaces{}", walked, complete ? "" : " (incomplete)");
}

int Agent::Impl::on_record(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Impl*>(ctx);
  if (size < sizeof(fs_flow)) return 0;
  fs_flow k;
  std::memcpy(&k, data, sizeof(k));
  self->handle(k);
  return 0;
}

void Agent::Impl::handle(const fs_flow& k) {
  records_received++;
  Flow r = decode_flow(k, clock_offset, drop_names);
  if (r.cgroup_id) {
    const CgroupInfo& cg = cgroups.info(*r.cgroup_id);
    if (!cg.path.empty()) r.cgroup = cg.path;
    r.container_id = cg.container_id;
    r.unit = cg.unit;
  }
  r.host = opts.host;
  r.host_id = opts.host_id;
  for (auto& s : sinks) s->write(r);
  if (opts.ownership_claims) claims.observe(r);
}

void Agent::Impl::write_claims(const std::vector<OwnershipClaim>& cs) {
  for (const auto& c : cs)
    for (auto& s : sinks) s->write_claim(c);
  claims_written += cs.size();
}

// Address changes since the last call; a removal is written at once (its
// released claim must not wait for the next tick).
void Agent::Impl::read_addresses() {
  if (!addresses) return;
  changes.clear();
  if (auto r = addresses->read(changes); !r) {
    // Flows matter more than this evidence: the watch stops, capture goes on.
    spdlog::warn("{}; address ownership claims stop", r.error().message);
    addresses.reset();
  }
  const uint64_t now = unix_now_ns();
  for (const auto& ch : changes) {
    if (ch.added) {
      claims.address_added(ch.addr, now);
    } else if (auto c = claims.address_removed(ch.addr, now)) {
      write_claims({*c});
    }
  }
}

// One sweep of interim records: flows last reported at or before `cutoff`
// (CLOCK_MONOTONIC ns, the clock of bpf_ktime_get_ns). The kernel side stops
// before the ring buffer fills; the sweep drains it and goes on until done.
Result<void> Agent::Impl::dump(uint64_t cutoff) {
  if (legacy) return dump_each(cutoff);
  // Each pass reports at least one flow unless other CPUs refill the ring as
  // fast as it drains; the bound keeps a pathological case from spinning.
  for (uint32_t pass = 0; pass <= opts.max_flows; pass++) {
    uint64_t args[1] = {cutoff};
    LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = args, .ctx_size_in = sizeof(args));
    if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dump_flows), &topts) != 0) {
      return fail_errno(errno, "reporting open flows failed: {}", std::strerror(errno));
    }
    ring_buffer__consume(rb.get());
    if (topts.retval == 0) return {};
  }
  return {};
}

// The sweep where the kernel cannot walk a map from BPF (before 5.13): reading
// an iterator over the flow map runs the program once per flow. A pass that
// ran short of ring space says so; the ring is drained and the map read again
// (flows reported already are past the cutoff). Bounded as dump()'s passes.
Result<void> Agent::Impl::dump_each(uint64_t cutoff) {
  skel->bss->dump_cutoff = cutoff;
  for (uint32_t pass = 0; pass <= opts.max_flows; pass++) {
    skel->bss->dump_incomplete = 0;
    Fd it(bpf_iter_create(bpf_link__fd(dump_link.get())));
    if (!it) return fail_errno(errno, "reporting open flows failed: {}", std::strerror(errno));
    char buf[64];
    ssize_t n;
    while ((n = ::read(it.get(), buf, sizeof(buf))) > 0) {
    }
    if (n < 0) return fail_errno(errno, "reporting open flows failed: {}", std::strerror(errno));
    ring_buffer__consume(rb.get());
    if (!skel->bss->dump_incomplete) return {};
  }
  return {};
}

bool Agent::Impl::dump_works() {
  if (legacy) {
    skel->bss->dump_cutoff = 0;
    Fd it(bpf_iter_create(bpf_link__fd(dump_link.get())));
    char buf[64];
    while (it && ::read(it.get(), buf, sizeof(buf)) > 0) {
    }
    return static_cast<bool>(it);
  }
  uint64_t args[1] = {0};  // a sweep that reports nothing
  LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = args, .ctx_size_in = sizeof(args));
  return bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dump_flows), &topts) == 0;
}

namespace {

// Returns once every BPF program run that began before the call has ended:
// they run under RCU, and MEMBARRIER_CMD_GLOBAL waits for a grace period.
void wait_for_running_programs() {
  if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0) return;
  // Unavailable (nohz_full CPUs): a program run lasts microseconds.
  spdlog::debug("membarrier: {}; waiting 20 ms for running BPF programs instead", std::strerror(errno));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace

// Every flow open at exit leaves as exactly one record, final or interim, or is
// counted. Once `stopping` is seen no new flow is tracked, so the map only
// shrinks while the sweep walks it (a walk may miss entries inserted behind it,
// never those that stay); a flow closing meanwhile is reported by the sweep or
// by its close, whichever claims it first. Then the programs are detached and
// the ring drained, so no record is left unread in it.
Result<void> Agent::Impl::finish() {
  ring_buffer__consume(rb.get());
  skel->bss->stopping = 1;
  wait_for_running_programs();  // no run that read stopping == 0 is still inserting
  const uint64_t cutoff = now_ns(CLOCK_MONOTONIC);
  auto r = dump(cutoff);
  links.clear();
  wait_for_running_programs();
  ring_buffer__consume(rb.get());
  // With nothing attached the map is still: what is left unreported (a sweep
  // that failed) is counted as lost.
  const int fd = bpf_map__fd(skel->maps.flows);
  uint64_t key = 0, next = 0;
  uint64_t* prev = nullptr;
  fs_flow f{};
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (bpf_map_lookup_elem(fd, &next, &f) == 0 && f.last_report_ns <= cutoff && !f.exit_claim) unreported_at_exit++;
    key = next;
    prev = &key;
  }
  return r;
}

// What the run loop still does with privileges is bpf() on descriptors it
// holds: map lookups, the sweep's BPF_PROG_TEST_RUN, detaching. That needs no
// capability since Linux 6.5; before, CAP_BPF (CAP_SYS_ADMIN before 5.8) when
// unprivileged BPF is disabled. Found by trying those calls with an empty
// effective set, then with that one capability; the first set that works is
// kept, nothing else.
Result<std::string> Agent::drop_capabilities() {
  Impl& i = *impl_;
  auto cur = current_capabilities();
  if (!cur) return std::unexpected(cur.error());
  auto run_loop_calls_work = [&] {
    uint32_t idx = FS_STAT_STATE_EVENTS;
    std::vector<uint64_t> per_cpu(static_cast<size_t>(libbpf_num_possible_cpus()));
    if (bpf_map_lookup_elem(bpf_map__fd(i.skel->maps.stats), &idx, per_cpu.data()) != 0) return false;
    return i.dump_works();
  };
  const CapMask bpf_cap = last_capability() >= CAP_BPF ? cap_bit(CAP_BPF) : cap_bit(CAP_SYS_ADMIN);
  std::optional<CapMask> keep;
  for (CapMask candidate : {CapMask{0}, bpf_cap}) {
    if (set_effective_capabilities(candidate) && run_loop_calls_work()) {
      keep = candidate & cur->permitted;
      break;
    }
  }
  if (auto r = set_effective_capabilities(cur->effective); !r) return std::unexpected(r.error());
  if (!keep) return fail("the agent's BPF calls fail without most capabilities; keeping them");
  if (auto r = limit_capabilities(*keep); !r) return std::unexpected(r.error());
  return capability_names(*keep);
}

uint64_t Agent::Impl::stat(uint32_t idx) const { return counters.sum(idx); }

AgentStats Agent::stats() const {
  const Impl& i = *impl_;
  AgentStats s;
  s.state_events = i.stat(FS_STAT_STATE_EVENTS);
  s.flows_created = i.stat(FS_STAT_FLOWS_CREATED);
  s.flows_closed = i.stat(FS_STAT_FLOWS_CLOSED);
  s.flows_emitted = i.stat(FS_STAT_FLOWS_EMITTED);
  s.flows_filtered = i.stat(FS_STAT_FLOWS_FILTERED);
  s.flow_map_full = i.stat(FS_STAT_FLOW_MAP_FULL);
  s.ringbuf_full = i.stat(FS_STAT_RINGBUF_FULL);
  s.tuple_map_full = i.stat(FS_STAT_TUPLE_MAP_FULL);
  s.drops_seen = i.stat(FS_STAT_DROPS_SEEN);
  s.drops_attributed = i.stat(FS_STAT_DROPS_ATTRIBUTED);
  s.drops_unspecified = i.stat(FS_STAT_DROPS_UNSPECIFIED);
  s.drops_purged_empty = i.stat(FS_STAT_DROPS_PURGED_EMPTY);
  s.attributed_accept = i.stat(FS_STAT_ATTRIBUTED_ACCEPT);
  s.resets = i.stat(FS_STAT_RESETS);
  s.records_received = i.records_received;
  s.unreported_at_exit = i.unreported_at_exit;
  s.close_missed = i.stat(FS_STAT_CLOSE_MISSED);
  s.children_discarded = i.stat(FS_STAT_CHILDREN_DISCARDED);
  s.starts_missed = i.stat(FS_STAT_STARTS_MISSED);
  s.nested_events = i.stat(FS_STAT_NESTED_EVENTS);
  s.claims_written = i.claims_written;
  s.addresses_held = i.claims.addresses();
  bpf_program* p;
  bpf_object__for_each_program(p, i.skel->obj) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_program__fd(p) >= 0 && bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0)
      s.recursion_misses += info.recursion_misses;
  }
  // on_state's skipped events that on_state_nested handled are not misses.
  s.recursion_misses -= std::min(s.recursion_misses, s.nested_events);
  s.open_flows = s.flows_created > s.flows_closed ? s.flows_created - s.flows_closed : 0;
  s.max_flows = i.opts.max_flows;
  s.bpf_map_bytes = object_memlock(i.skel->obj);
  return s;
}

std::string stats_json(const AgentStats& s, uint64_t time_ns) {
  return fmt::format(
      R"({{"type":"stats","time_ns":{},"state_events":{},"flows_created":{},"flows_closed":{},"flows_emitted":{},)"
      R"("flows_filtered":{},"records_received":{},"lost":{},"flow_map_full":{},"ringbuf_full":{},"tuple_map_full":{},)"
      R"("open_flows":{},"max_flows":{},"map_fill":{:.4f},"bpf_map_bytes":{},"drops_seen":{},"drops_attributed":{},"drops_unspecified":{},"drops_purged_empty":{},)"
      R"("attributed_accept":{},"resets":{},"unreported_at_exit":{},"close_missed":{},"children_discarded":{},"starts_missed":{},"nested_events":{},"recursion_misses":{},)"
      R"("claims_written":{},"addresses_held":{}}})",
      time_ns, s.state_events, s.flows_created, s.flows_closed, s.flows_emitted, s.flows_filtered, s.records_received,
      s.lost(), s.flow_map_full, s.ringbuf_full, s.tuple_map_full, s.open_flows, s.max_flows,
      s.max_flows ? double(s.open_flows) / double(s.max_flows) : 0.0, s.bpf_map_bytes, s.drops_seen, s.drops_attributed,
      s.drops_unspecified, s.drops_purged_empty, s.attributed_accept, s.resets, s.unreported_at_exit, s.close_missed, s.children_discarded, s.starts_missed, s.nested_events, s.recursion_misses,
      s.claims_written, s.addresses_held);
}

// stats_json plus the sinks' own counters (IPFIX queue and send counters).
std::string Agent::Impl::stats_line(const AgentStats& s) const {
  std::string line = stats_json(s, now_ns(CLOCK_REALTIME));
  line.pop_back();  // the closing brace
  line += R"(,"features_off":[)";
  for (size_t k = 0; k < features_off.size(); k++) line += fmt::format("{}\"{}\"", k ? "," : "", features_off[k]);
  line += "]}";
  for (const auto& sink : sinks) {
    std::string extra = sink->stats_fields();
    if (extra.empty()) continue;
    line.pop_back();  // the closing brace
    line += ',';
    line += extra;
    line += '}';
  }
  return line;
}

Result<void> Agent::run(const std::atomic<bool>& stop) {
  Impl& i = *impl_;
  using clock = std::chrono::steady_clock;
  const auto timeout = i.opts.active_timeout;
  // Check for flows due an interim record often enough that none is late by
  // more than a tenth of the timeout (bounded to keep the map walk cheap).
  const auto dump_every = std::clamp<std::chrono::milliseconds>(timeout / 10, std::chrono::milliseconds(100),
                                                                std::chrono::milliseconds(5000));
  auto next_dump = clock::now() + dump_every;
  auto next_stats = clock::now() + i.opts.stats_interval;
  // Ownership claims: a heartbeat of every address held and the ports served
  // since the last one, at the interim cadence but at least every 5 s (a
  // collector extends ranges by them), the first at once.
  const auto claim_every = std::clamp<std::chrono::milliseconds>(timeout, std::chrono::milliseconds(1000),
                                                                 std::chrono::milliseconds(5000));
  i.read_addresses();
  i.write_claims(i.claims.tick(now_ns(CLOCK_REALTIME)));
  auto next_claims = clock::now() + claim_every;
  while (!stop.load(std::memory_order_relaxed)) {
    // The kernel wakes us only when the buffer fills past a threshold; the
    // timeout bounds the latency of records at low rates.
    int n = ring_buffer__poll(i.rb.get(), 100);
    if (n < 0 && n != -EINTR) return fail_errno(-n, "ring buffer poll failed: {}", std::strerror(-n));
    ring_buffer__consume(i.rb.get());
    i.read_addresses();
    auto now = clock::now();
    if (now >= next_claims) {
      i.write_claims(i.claims.tick(now_ns(CLOCK_REALTIME)));
      next_claims = now + claim_every;
    }
    for (auto& s : i.sinks) s->flush();
    if (now >= next_dump) {
      const uint64_t t = now_ns(CLOCK_MONOTONIC), age = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
      if (auto r = i.dump(t > age ? t - age : 0); !r) return r;
      next_dump = now + dump_every;
    }
    if (i.opts.stats_interval.count() > 0 && now >= next_stats) {
      spdlog::default_logger()->flush();
      fmt::print(stderr, "{}\n", i.stats_line(stats()));
      std::fflush(stderr);
      next_stats = now + i.opts.stats_interval;
    }
  }
  auto r = i.finish();
  // What changed until now, then every address released at stop.
  i.read_addresses();
  i.write_claims(i.claims.stop(now_ns(CLOCK_REALTIME)));
  for (auto& s : i.sinks) s->flush();
  if (i.opts.stats_interval.count() > 0) {
    fmt::print(stderr, "{}\n", i.stats_line(stats()));
    std::fflush(stderr);
  }
  return r;
}

}  // namespace flowscope
