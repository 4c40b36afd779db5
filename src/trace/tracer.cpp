#include "trace/tracer.h"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kernel/features.h"
#include "kernel/handles.h"
#include "kernel/loader.h"
#include "kernel/system.h"
#include "trace.skel.h"
#include "trace/filter.h"

namespace flowscope::trace {

namespace {

// Tracepoints that fire for most packets and add nothing to a packet's path:
// each costs one program run per packet even when the filter matches nothing
// (on loopback churn they were 17 of 72 runs per connection). Attached with
// --all-tracepoints.
const char* on_request_reason(const std::string& name) {
  if (name == "netif_rx_entry") return "duplicate of netif_rx, which always follows";
  if (name == "netif_receive_skb_entry" || name == "netif_receive_skb_list_entry")
    return "duplicate of netif_receive_skb, which follows";
  if (name == "tcp_probe") return "TCP state on every received segment, not a step of the packet's path";
  if (name == "tcp_sendmsg_locked") return "the send queue's skb before it has headers";
  return "";
}

}  // namespace

std::vector<SkbTracepoint> skb_tracepoints(const btf* b) {
  std::vector<SkbTracepoint> out;
  for (const auto& tp : kernel_tracepoints(b)) {
    int pos = -1;
    std::string sig = "(";
    for (size_t i = 0; i < tp.args.size(); i++) {
      const std::string& t = tp.args[i].type;
      if (pos < 0 && (t == "struct sk_buff *" || t == "const struct sk_buff *")) pos = static_cast<int>(i);
      sig += (i ? ", " : "") + t;
    }
    sig += ")";
    if (pos < 0) continue;
    SkbTracepoint s{tp.name, pos, FS_TP_KIND_GENERIC, sig, on_request_reason(tp.name)};
    if (tp.name == "kfree_skb" && pos == 0 && tp.args.size() >= 3 && tp.args[1].type == "void *" &&
        tp.args[2].type == "enum skb_drop_reason") {
      s.kind = FS_TP_KIND_KFREE;
    } else if (tp.name == "consume_skb" && pos == 0 && tp.args.size() >= 2 && tp.args[1].type == "void *") {
      s.kind = FS_TP_KIND_CONSUME;
    } else if (tp.name == "kfree_skb" || tp.name == "consume_skb") {
      // An older kernel without location/reason: traced as a plain event;
      // packets then end by the idle timeout.
    }
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const SkbTracepoint& x, const SkbTracepoint& y) { return x.name < y.name; });
  return out;
}

namespace {

using TraceSkel = SkelPtr<trace_bpf, trace_bpf__destroy>;

// Everything trace.bpf.c is configured with before load: its read-only
// globals and map sizes, resolved from the options in one place.
struct TraceBpfSettings {
  std::vector<fs_cbpf_insn> filter;
  uint32_t filter_need = 1;
  uint32_t memo_on = 0;
  std::pair<uint32_t, uint32_t> mark{0, 0};  // value, mask
  uint32_t netns = 0;
  std::optional<std::string> ifname;
  uint32_t track = 1;
  uint32_t max_tracked = 16;
  uint32_t ringbuf_bytes = 0;
};

TraceBpfSettings trace_settings(const TraceOptions& opts, std::vector<fs_cbpf_insn> filter,
                                std::pair<uint32_t, uint32_t> mark, uint32_t netns) {
  TraceBpfSettings c;
  // The filter path copies only the header bytes the filter can reach; when
  // they fit the verdict memo (64 bytes), verdicts are memoised per CPU.
  // At least the first byte: it tells IP from non-IP (a filter such as
  // "greater 100" loads no packet byte, yet matches IP packets only).
  c.filter_need = std::max(1u, filter_bytes_needed(filter));
  c.memo_on = !filter.empty() && c.filter_need <= 64 ? 1 : 0;
  c.filter = std::move(filter);
  c.mark = mark;
  c.netns = netns;
  c.ifname = opts.ifname;
  c.track = opts.drops_only ? 0 : 1;
  c.max_tracked = std::max(16u, opts.max_packets);
  c.ringbuf_bytes = ring_buffer_bytes(opts.ringbuf_bytes);
  return c;
}

void apply_settings(trace_bpf* s, const TraceBpfSettings& c, uint32_t direct_loads) {
  s->rodata->filter_len = static_cast<uint32_t>(c.filter.size());
  for (size_t i = 0; i < c.filter.size(); i++) const_cast<fs_cbpf_insn&>(s->rodata->filter_insns[i]) = c.filter[i];
  s->rodata->filter_need = c.filter_need;
  s->rodata->memo_on = c.memo_on;
  s->rodata->direct_loads = direct_loads;
  s->rodata->filter_mark = c.mark.first;
  s->rodata->filter_mark_mask = c.mark.second;
  s->rodata->filter_netns = c.netns;
  if (c.ifname) {
    std::memcpy(const_cast<char*>(s->rodata->filter_ifname), c.ifname->c_str(), c.ifname->size());
    s->rodata->filter_ifname_set = 1;
  }
  s->rodata->track = c.track;
  bpf_map__set_max_entries(s->maps.tracked, c.max_tracked);
  bpf_map__set_max_entries(s->maps.events, c.ringbuf_bytes);
  s->rodata->wakeup_bytes = c.ringbuf_bytes / 4;
}

}  // namespace

struct Tracer::Impl {
  TraceSkel skel;
  std::vector<SkbTracepoint> attached;
  std::vector<std::string> skipped;
  std::vector<Fd> links;
  RingBufferPtr rb;
  std::map<int64_t, std::string> drop_names;
  const Handler* handler = nullptr;
  PerCpuCounters counters;
  uint32_t max_packets = 0;

  Result<void> load(const TraceBpfSettings& settings);
  void attach(std::vector<SkbTracepoint> wanted);

  static int on_event(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    if (size < sizeof(fs_trace_event) || !self->handler) return 0;
    fs_trace_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    (*self->handler)(ev);
    return 0;
  }
};

Result<unsigned> interface_index(const std::string& ifname, const std::optional<std::string>& netns_path) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return fail("bad interface name \"{}\"", ifname);
  if (!netns_path) {
    unsigned idx = if_nametoindex(ifname.c_str());
    if (!idx) return fail("no interface \"{}\" in this network namespace", ifname);
    return idx;
  }
  std::string path = *netns_path;
  if (!path.empty() && path.find('/') == std::string::npos && std::all_of(path.begin(), path.end(), ::isdigit)) {
    return 0u;  // an inode cannot be entered: the name is matched in the kernel only
  }
  Result<unsigned> r = fail("interface lookup failed");
  auto entered = run_in_netns(path, [&] {
    unsigned idx = if_nametoindex(ifname.c_str());
    if (!idx)
      r = fail("no interface \"{}\" in network namespace {}", ifname, path);
    else
      r = idx;
  });
  if (!entered) return std::unexpected(entered.error());
  return r;
}

// The skb tracepoints to attach; the others are noted in `skipped` with why.
std::vector<SkbTracepoint> wanted_tracepoints(const btf* b, const TraceOptions& opts, std::vector<std::string>& skipped) {
  std::vector<SkbTracepoint> wanted;
  for (auto& tp : skb_tracepoints(b)) {
    if (opts.drops_only && tp.kind != FS_TP_KIND_KFREE) continue;
    if (!opts.all_tracepoints && !tp.on_request.empty()) {
      skipped.push_back(fmt::format("{}: left out by default ({}); --all-tracepoints attaches it", tp.name, tp.on_request));
      continue;
    }
    if (tp.skb_arg > 3) {
      skipped.push_back(fmt::format("{}: skb is argument {}, at most 3 is supported", tp.name, tp.skb_arg));
      continue;
    }
    wanted.push_back(std::move(tp));
  }
  return wanted;
}

// First with direct loads of packet bytes (a pointer read from an skb is
// readable memory for the verifier only since Linux 6.16 or so); if this
// kernel rejects that, again with bpf_probe_read_kernel() for them.
Result<void> Tracer::Impl::load(const TraceBpfSettings& settings) {
  for (uint32_t direct : {1u, 0u}) {
    auto opened = open_skeleton<trace_bpf, trace_bpf__destroy>(trace_bpf__open, "trace");
    if (!opened) return std::unexpected(opened.error());
    skel = std::move(*opened);
    apply_settings(skel.get(), settings, direct);
    auto loaded = load_skeleton(skel->skeleton, "trace");
    if (loaded || !direct) return loaded;
    spdlog::debug("trace: direct packet loads rejected by this kernel, using bpf_probe_read_kernel: {}",
                  loaded.error().message);
  }
  return {};
}

// One program per skb argument position (and one each for the frees), each
// attached to many tracepoints; the cookie says which one fired.
void Tracer::Impl::attach(std::vector<SkbTracepoint> wanted) {
  trace_bpf* s = skel.get();
  const int prog_fd[4] = {bpf_program__fd(s->progs.trace_arg0), bpf_program__fd(s->progs.trace_arg1),
                          bpf_program__fd(s->progs.trace_arg2), bpf_program__fd(s->progs.trace_arg3)};
  for (auto& tp : wanted) {
    int fd = tp.kind == FS_TP_KIND_KFREE     ? bpf_program__fd(s->progs.trace_kfree)
             : tp.kind == FS_TP_KIND_CONSUME ? bpf_program__fd(s->progs.trace_consume)
                                             : prog_fd[tp.skb_arg];
    const uint64_t cookie = attached.size() | (static_cast<uint64_t>(tp.kind) << FS_TP_KIND_SHIFT);
    auto link = attach_raw_tracepoint(fd, tp.name, cookie);
    if (!link) {
      skipped.push_back(fmt::format("{}: attach failed: {}", tp.name, link.error().message));
      continue;
    }
    links.push_back(std::move(*link));
    attached.push_back(std::move(tp));
  }
}

Tracer::Tracer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tracer::~Tracer() = default;

Result<std::unique_ptr<Tracer>> Tracer::create(const TraceOptions& opts) {
  auto prog = compile_filter(opts.filter);  // before privileges: a typo is reported as such
  if (!prog) return std::unexpected(prog.error());
  std::pair<uint32_t, uint32_t> mark{0, 0};
  if (opts.mark) {
    auto m = parse_mark(*opts.mark);
    if (!m) return std::unexpected(m.error());
    mark = *m;
  }
  if (auto r = check_bpf_privileges(); !r) return std::unexpected(r.error());
  uint32_t netns = 0;
  if (opts.netns) {
    auto ns = resolve_netns(*opts.netns);
    if (!ns) return std::unexpected(ns.error());
    netns = *ns;
  }
  if (opts.ifname) {
    auto idx = interface_index(*opts.ifname, opts.netns);
    if (!idx) return std::unexpected(idx.error());
  }
  const KernelProbe probe = KernelProbe::open();
  if (!probe.has_btf()) return fail_errno(ENOENT, "{}", probe.btf_error());
  if (auto r = probe_command(probe, "trace").check(); !r) return std::unexpected(r.error());

  auto impl = std::make_unique<Impl>();
  impl->drop_names = enum_names(probe.kernel_btf(), "skb_drop_reason", "SKB_DROP_REASON_");
  impl->max_packets = opts.max_packets;
  raise_memlock_limit();

  std::vector<SkbTracepoint> wanted = wanted_tracepoints(probe.kernel_btf(), opts, impl->skipped);
  if (opts.drops_only && wanted.empty()) return fail("this kernel has no kfree_skb tracepoint with a drop reason");

  const TraceBpfSettings settings = trace_settings(opts, std::move(*prog), mark, netns);
  if (auto r = impl->load(settings); !r) return std::unexpected(r.error());
  impl->attach(std::move(wanted));
  if (impl->attached.empty()) {
    return fail("no skb tracepoint could be attached: {}",
                impl->skipped.empty() ? std::string("none found in BTF") : impl->skipped.back());
  }
  trace_bpf* s = impl->skel.get();
  impl->counters = PerCpuCounters(s->maps.stats);
  auto rb = open_ring_buffer(s->maps.events, &Impl::on_event, impl.get(), "trace");
  if (!rb) return std::unexpected(rb.error());
  impl->rb = std::move(*rb);
  return std::unique_ptr<Tracer>(new Tracer(std::move(impl)));
}

Result<void> Tracer::poll(int timeout_ms, const Handler& h) {
  impl_->handler = &h;
  // The kernel side wakes us only when the buffer is a quarter full: after
  // the timeout, take whatever arrived without a wake-up.
  int n = ring_buffer__poll(impl_->rb.get(), timeout_ms);
  if (n >= 0) n = ring_buffer__consume(impl_->rb.get());
  impl_->handler = nullptr;
  if (n < 0 && n != -EINTR) return fail_errno(-n, "reading the trace ring buffer failed: {}", std::strerror(-n));
  return {};
}

const std::vector<SkbTracepoint>& Tracer::tracepoints() const { return impl_->attached; }
const std::vector<std::string>& Tracer::skipped() const { return impl_->skipped; }
const std::map<int64_t, std::string>& Tracer::drop_names() const { return impl_->drop_names; }
uint32_t Tracer::max_packets() const { return impl_->max_packets; }

TraceStats Tracer::stats() const {
  TraceStats st;
  uint64_t* fields[FS_TSTAT_MAX] = {&st.events,     &st.matched,      &st.emitted, &st.ringbuf_full,
                                    &st.track_full, &st.filter_abort, &st.reused,  &st.filter_runs};
  for (uint32_t i = 0; i < FS_TSTAT_MAX; i++) *fields[i] = impl_->counters.sum(i);
  return st;
}

void Tracer::forget(uint64_t skb, uint64_t pkt_id) {
  const int fd = bpf_map__fd(impl_->skel->maps.tracked);
  fs_trace_tracked t{};
  if (bpf_map_lookup_elem(fd, &skb, &t) == 0 && t.pkt_id == pkt_id && bpf_map_delete_elem(fd, &skb) == 0) {
    // One tracked skb fewer in its hint slot (see track_hint in bpf/trace.h).
    __atomic_fetch_sub(&impl_->skel->bss->track_hint[fs_track_hint_slot(skb)], 1u, __ATOMIC_RELAXED);
  }
}

}  // namespace flowscope::trace
