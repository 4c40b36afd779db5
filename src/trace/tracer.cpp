#include "trace/tracer.h"

#include <net/if.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <variant>

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kernel/features.h"
#include "kernel/handles.h"
#include "kernel/loader.h"
#include "kernel/system.h"
#include "trace.skel.h"
#include "trace_portable.skel.h"
#include "trace/filter.h"
#include "trace/functions.h"

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
using PortableSkel = SkelPtr<trace_portable_bpf, trace_portable_bpf__destroy>;

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

// Both variants have the same globals and maps.
template <class Skel>
void apply_settings(Skel* s, const TraceBpfSettings& c, uint32_t direct_loads) {
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

// The portable variant's stub program for tracepoint `i` (named by its
// index in base 4, see trace.bpf.c).
std::string stub_name(size_t i) {
  return fmt::format("stub_{}{}{}{}", (i >> 6) & 3, (i >> 4) & 3, (i >> 2) & 3, i & 3);
}

uint32_t handler_of(const SkbTracepoint& tp) {
  if (tp.kind == FS_TP_KIND_KFREE) return FS_TH_KFREE;
  if (tp.kind == FS_TP_KIND_CONSUME) return FS_TH_CONSUME;
  return FS_TH_ARG0 + static_cast<uint32_t>(tp.skb_arg);
}

}  // namespace

struct Tracer::Impl {
  // One of the two variants is loaded; the pointers below are into it.
  TraceSkel skel;
  PortableSkel pskel;
  bpf_object* obj = nullptr;
  bpf_map* tracked = nullptr;
  bpf_map* stats = nullptr;
  bpf_map* events = nullptr;
  uint32_t* track_hint = nullptr;

  TraceMode mode;
  std::vector<SkbTracepoint> attached;
  // Portable variant: ev.tp is the stub's index; this maps it to `attached`.
  std::vector<uint32_t> stub_to_attached;
  std::vector<std::string> skipped;
  std::vector<Fd> links;
  std::vector<LinkPtr> kprobe_links;
  RingBufferPtr rb;
  std::map<int64_t, std::string> drop_names;
  const Handler* handler = nullptr;
  PerCpuCounters counters;
  uint32_t max_packets = 0;

  Result<void> load(const TraceBpfSettings& settings);
  Result<void> load_portable(const TraceBpfSettings& settings, const std::vector<SkbTracepoint>& wanted,
                             const std::vector<SkbFunction>& multi, const std::vector<SkbFunction>& plain);
  void attach(std::vector<SkbTracepoint> wanted);
  void attach_portable(std::vector<SkbTracepoint> wanted);
  void attach_functions(const std::vector<SkbFunction>& multi, const std::vector<SkbFunction>& plain);

  static int on_event(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    if (size < sizeof(fs_trace_event) || !self->handler) return 0;
    fs_trace_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    if (self->mode.portable && !(ev.flags & FS_TEV_FUNC))
      ev.tp = ev.tp < self->stub_to_attached.size() ? self->stub_to_attached[ev.tp] : ev.tp;
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
    if (loaded || !direct) {
      if (!loaded) return loaded;
      obj = skel->obj;
      tracked = skel->maps.tracked;
      stats = skel->maps.stats;
      events = skel->maps.events;
      track_hint = skel->bss->track_hint;
      return {};
    }
    spdlog::debug("trace: direct packet loads rejected by this kernel, using bpf_probe_read_kernel: {}",
                  loaded.error().message);
  }
  return {};
}

// The portable variant: a stub per wanted tracepoint (the rest not loaded),
// the handlers they tail-call, and with --functions the kprobe programs for
// the skb positions in use.
Result<void> Tracer::Impl::load_portable(const TraceBpfSettings& settings, const std::vector<SkbTracepoint>& wanted,
                                         const std::vector<SkbFunction>& multi, const std::vector<SkbFunction>& plain) {
  auto opened = open_skeleton<trace_portable_bpf, trace_portable_bpf__destroy>(trace_portable_bpf__open, "trace");
  if (!opened) return std::unexpected(opened.error());
  pskel = std::move(*opened);
  trace_portable_bpf* s = pskel.get();
  apply_settings(s, settings, 0);
  for (size_t i = 0; i < FS_TRACE_MAX_STUBS; i++) {
    bpf_program* p = bpf_object__find_program_by_name(s->obj, stub_name(i).c_str());
    if (!p) return fail("trace: the BPF object lacks program {}", stub_name(i));
    bpf_program__set_autoload(p, i < wanted.size());
    if (i < wanted.size()) const_cast<uint32_t&>(s->rodata->stub_handler[i]) = handler_of(wanted[i]);
  }
  bpf_program* const func[] = {s->progs.func_arg0, s->progs.func_arg1, s->progs.func_arg2, s->progs.func_arg3,
                               s->progs.func_arg4};
  bpf_program* const funcm[] = {s->progs.funcm_arg0, s->progs.funcm_arg1, s->progs.funcm_arg2, s->progs.funcm_arg3,
                                s->progs.funcm_arg4};
  for (int pos = 0; pos <= kMaxFunctionSkbArg; pos++) {
    auto at = [pos](const SkbFunction& f) { return f.skb_arg == pos; };
    bpf_program__set_autoload(func[pos], std::any_of(plain.begin(), plain.end(), at));
    bpf_program__set_autoload(funcm[pos], std::any_of(multi.begin(), multi.end(), at));
  }
  if (auto r = load_skeleton(s->skeleton, "trace"); !r) return r;
  const bpf_program* const handlers[FS_TH_MAX] = {s->progs.trace_arg0, s->progs.trace_arg1,   s->progs.trace_arg2,
                                                  s->progs.trace_arg3, s->progs.trace_consume, s->progs.trace_kfree};
  for (uint32_t k = 0; k < FS_TH_MAX; k++) {
    const int fd = bpf_program__fd(handlers[k]);
    if (bpf_map_update_elem(bpf_map__fd(s->maps.handlers), &k, &fd, BPF_ANY) != 0)
      return fail_errno(errno, "trace: filling the handler program array failed: {}", std::strerror(errno));
  }
  obj = s->obj;
  tracked = s->maps.tracked;
  stats = s->maps.stats;
  events = s->maps.events;
  track_hint = s->bss->track_hint;
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
    auto link = attach_raw_tracepoint(fd, tp.name, attached.size());
    if (!link) {
      skipped.push_back(fmt::format("{}: attach failed: {}", tp.name, link.error().message));
      continue;
    }
    links.push_back(std::move(*link));
    attached.push_back(std::move(tp));
  }
}

// Each tracepoint gets its own stub (loaded for it in load_portable).
void Tracer::Impl::attach_portable(std::vector<SkbTracepoint> wanted) {
  stub_to_attached.assign(wanted.size(), FS_TP_FUNC);
  for (size_t i = 0; i < wanted.size(); i++) {
    const bpf_program* stub = bpf_object__find_program_by_name(obj, stub_name(i).c_str());
    const int fd = bpf_raw_tracepoint_open(wanted[i].name.c_str(), bpf_program__fd(stub));
    if (fd < 0) {
      skipped.push_back(fmt::format("{}: attach failed: {}", wanted[i].name, std::strerror(errno)));
      continue;
    }
    links.emplace_back(fd);
    stub_to_attached[i] = static_cast<uint32_t>(attached.size());
    attached.push_back(std::move(wanted[i]));
  }
}

// The image's functions in one kprobe.multi link per skb position; the rest
// (modules' functions, or all without kprobe.multi) one kprobe each.
void Tracer::Impl::attach_functions(const std::vector<SkbFunction>& multi, const std::vector<SkbFunction>& plain) {
  trace_portable_bpf* s = pskel.get();
  bpf_program* const func[] = {s->progs.func_arg0, s->progs.func_arg1, s->progs.func_arg2, s->progs.func_arg3,
                               s->progs.func_arg4};
  bpf_program* const funcm[] = {s->progs.funcm_arg0, s->progs.funcm_arg1, s->progs.funcm_arg2, s->progs.funcm_arg3,
                                s->progs.funcm_arg4};
  const auto t0 = std::chrono::steady_clock::now();
  for (int pos = 0; pos <= kMaxFunctionSkbArg; pos++) {
    std::vector<const char*> syms;
    for (const auto& f : multi)
      if (f.skb_arg == pos) syms.push_back(f.name.c_str());
    if (syms.empty()) continue;
    LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms.data(), .cnt = syms.size());
    LinkPtr l(bpf_program__attach_kprobe_multi_opts(funcm[pos], nullptr, &opts));
    if (!l) {
      const int e = errno;
      skipped.push_back(fmt::format("{} functions with the skb as argument {}: kprobe.multi attach failed: {}",
                                    syms.size(), pos, std::strerror(e)));
      mode.functions_skipped += syms.size();
      continue;
    }
    kprobe_links.push_back(std::move(l));
    mode.functions += syms.size();
  }
  for (const auto& f : plain) {
    LinkPtr l(bpf_program__attach_kprobe(func[f.skb_arg], false, f.name.c_str()));
    if (!l) {
      const int e = errno;
      skipped.push_back(fmt::format("{}: kprobe attach failed: {}", f.name, std::strerror(e)));
      mode.functions_skipped++;
      continue;
    }
    kprobe_links.push_back(std::move(l));
    mode.functions++;
  }
  mode.attach_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

namespace {

// --functions: which functions, attached how. Only the free tracepoints stay
// (a packet's end and its drop reason); kprobe.multi takes the image's
// functions when the kernel has it, plain kprobes the rest, at most
// max_kprobes of them.
Result<void> select_functions(const KernelProbe& probe, const TraceOptions& opts, std::vector<SkbTracepoint>& wanted,
                              std::vector<SkbFunction>& multi, std::vector<SkbFunction>& plain,
                              std::vector<std::string>& skipped, TraceMode& mode) {
  const CommandReport rep = probe_command(probe, "trace --functions");
  if (!rep.has("kprobes")) {
    return fail_errno(EOPNOTSUPP,
                      "flowscope trace --functions needs kprobes, and this kernel offers none (no kprobe PMU in "
                      "/sys/bus/event_source/devices, no kprobe_events in tracefs: built without CONFIG_KPROBES or "
                      "CONFIG_KPROBE_EVENTS); flowscope trace without --functions works here on tracepoints");
  }
  if (auto r = rep.check(); !r) return r;
  std::erase_if(wanted, [](const SkbTracepoint& tp) { return tp.kind == FS_TP_KIND_GENERIC; });
  (void)ensure_tracefs();
  auto found = skb_functions(probe.kernel_btf(), *opts.functions, probeable_functions());
  if (!found) return std::unexpected(found.error());
  if (found->empty()) {
    return fail("no kernel function with a struct sk_buff * argument matches \"{}\" (the pcap filter goes before "
                "--functions, or give the expression as --functions=REGEX)",
                *opts.functions);
  }
  mode.kprobe_multi = rep.has("kprobe_multi");
  // Each plain kprobe holds a file descriptor: as many as the hard limit
  // allows, keeping some for everything else.
  uint32_t max_plain = opts.max_kprobes;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &nofile);
    getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < max_plain + 256u)
      max_plain = nofile.rlim_cur > 512 ? static_cast<uint32_t>(nofile.rlim_cur - 256) : 256u;
  }
  for (auto& f : *found) {
    if (mode.kprobe_multi && f.module.empty()) {
      multi.push_back(std::move(f));
    } else if (plain.size() < max_plain) {
      plain.push_back(std::move(f));
    } else {
      skipped.push_back(fmt::format("{}: more than {} functions need a kprobe each (--max-kprobes, open files limit)",
                                    f.name, max_plain));
      mode.functions_skipped++;
    }
  }
  return {};
}

}  // namespace

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

  // The feature table decides the variant: the default one needs attach
  // cookies and bpf_rdonly_cast; --functions is only in the portable one.
  // FLOWSCOPE_TRACE_PORTABLE=1 forces it (to test it on a new kernel).
  const CommandReport report = probe_command(probe, "trace");
  const char* force = std::getenv("FLOWSCOPE_TRACE_PORTABLE");
  impl->mode.portable = opts.functions || !report.has("raw_tp_cookie") || !report.has("rdonly_cast") ||
                        (force && std::string_view(force) == "1");
  if (impl->mode.portable && !opts.functions) {
    std::string lacks;
    for (const char* id : {"raw_tp_cookie", "rdonly_cast"})
      if (!report.has(id)) lacks += fmt::format("{}{} (Linux {})", lacks.empty() ? "" : " and ", report.row(id)->hook,
                                                report.row(id)->since.str());
    if (lacks.empty())
      spdlog::info("trace: the portable variant, as FLOWSCOPE_TRACE_PORTABLE asks");
    else
      spdlog::info("trace: this kernel lacks {}: the portable variant runs (a program per tracepoint, probe reads)", lacks);
  }
  std::vector<SkbFunction> multi, plain;
  if (opts.functions) {
    auto r = select_functions(probe, opts, wanted, multi, plain, impl->skipped, impl->mode);
    if (!r) return std::unexpected(r.error());
  }
  if (impl->mode.portable && wanted.size() > FS_TRACE_MAX_STUBS) {
    for (size_t i = FS_TRACE_MAX_STUBS; i < wanted.size(); i++)
      impl->skipped.push_back(fmt::format("{}: more than {} tracepoints on this kernel", wanted[i].name, FS_TRACE_MAX_STUBS));
    wanted.resize(FS_TRACE_MAX_STUBS);
  }

  const TraceBpfSettings settings = trace_settings(opts, std::move(*prog), mark, netns);
  if (impl->mode.portable) {
    if (auto r = impl->load_portable(settings, wanted, multi, plain); !r) return std::unexpected(r.error());
    impl->attach_portable(std::move(wanted));
    if (opts.functions) impl->attach_functions(multi, plain);
  } else {
    if (auto r = impl->load(settings); !r) return std::unexpected(r.error());
    impl->attach(std::move(wanted));
  }
  if (opts.functions && impl->mode.functions == 0) {
    return fail("no kernel function could be attached: {}",
                impl->skipped.empty() ? std::string("none matched") : impl->skipped.back());
  }
  if (!opts.functions && impl->attached.empty()) {
    return fail("no skb tracepoint could be attached: {}",
                impl->skipped.empty() ? std::string("none found in BTF") : impl->skipped.back());
  }
  impl->counters = PerCpuCounters(impl->stats);
  auto rb = open_ring_buffer(impl->events, &Impl::on_event, impl.get(), "trace");
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
const TraceMode& Tracer::mode() const { return impl_->mode; }
const std::map<int64_t, std::string>& Tracer::drop_names() const { return impl_->drop_names; }
uint32_t Tracer::max_packets() const { return impl_->max_packets; }

TraceStats Tracer::stats() const {
  TraceStats st;
  uint64_t* fields[FS_TSTAT_MAX] = {&st.events,       &st.matched, &st.emitted,     &st.ringbuf_full, &st.track_full,
                                    &st.filter_abort, &st.reused,  &st.filter_runs, &st.nested_deep};
  for (uint32_t i = 0; i < FS_TSTAT_MAX; i++) *fields[i] = impl_->counters.sum(i);
  return st;
}

void Tracer::forget(uint64_t skb, uint64_t pkt_id) {
  const int fd = bpf_map__fd(impl_->tracked);
  fs_trace_tracked t{};
  if (bpf_map_lookup_elem(fd, &skb, &t) == 0 && t.pkt_id == pkt_id && bpf_map_delete_elem(fd, &skb) == 0) {
    // One tracked skb fewer in its hint slot (see track_hint in bpf/trace.h).
    __atomic_fetch_sub(&impl_->track_hint[fs_track_hint_slot(skb)], 1u, __ATOMIC_RELAXED);
  }
}

}  // namespace flowscope::trace
