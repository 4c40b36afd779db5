#include "kernel/features.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>

#include "kernel/btf.h"

namespace flowscope {

std::string KernelVersion::str() const { return fmt::format("{}.{}", major, minor); }

KernelProbe KernelProbe::open() {
  KernelProbe p;
  if (auto b = load_kernel_btf()) {
    p.btf_ = std::move(*b);
  } else {
    p.btf_error_ = b.error().message;
  }
  return p;
}

bool KernelProbe::tracepoint(const std::string& name, int min_args) const {
  return btf_ && tracepoint_arg_count(btf_.get(), name) >= min_args;
}

namespace {

// r0 = 0; exit — or, with a helper, call it first. The verifier names an
// unknown helper in its log; any other complaint means the helper exists.
struct TrialProgram {
  bpf_insn insns[3]{};
  size_t count = 0;
  explicit TrialProgram(int helper = -1) {
    if (helper >= 0) insns[count++] = bpf_insn{.code = BPF_JMP | BPF_CALL, .imm = helper};
    insns[count++] = bpf_insn{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0};
    insns[count++] = bpf_insn{.code = BPF_JMP | BPF_EXIT};
  }
};

bool log_says_unknown_helper(const char* log) {
  return std::strstr(log, "invalid func ") || std::strstr(log, "unknown func ") ||
         std::strstr(log, "program of this type cannot use helper ");
}

}  // namespace

// A tp_btf program is typed by the tracepoint it attaches to, so the trial
// load names one every kernel with tp_btf has (the agent's own hook).
bool KernelProbe::tp_btf_helper(bpf_func_id helper) const {
  if (!btf_) return false;
  const int target = btf__find_by_name_kind(btf_.get(), "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF);
  if (target < 0) return false;
  TrialProgram prog(helper == BPF_FUNC_unspec ? -1 : static_cast<int>(helper));
  char log[4096] = {};
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
              .attach_btf_id = static_cast<__u32>(target), .log_level = 1, .log_size = sizeof(log), .log_buf = log);
  Fd fd(bpf_prog_load(BPF_PROG_TYPE_TRACING, nullptr, "GPL", prog.insns, prog.count, &opts));
  if (helper == BPF_FUNC_unspec) return static_cast<bool>(fd);
  return !log_says_unknown_helper(log);
}

bool KernelProbe::tp_btf() const { return tp_btf_helper(BPF_FUNC_unspec); }

// r0 = 0; *(u64 *)(r10 - 8) = 0; r1 = 1; r0 = cmpxchg(r10 - 8, r0, r1); r0 = 0;
// exit. An older kernel refuses the instruction ("uses reserved fields").
bool KernelProbe::atomics() const {
  const bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0},
      {.code = BPF_ST | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_10, .off = -8},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .imm = 1},
      {.code = BPF_STX | BPF_DW | BPF_ATOMIC, .dst_reg = BPF_REG_10, .src_reg = BPF_REG_1, .off = -8, .imm = BPF_CMPXCHG},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0},
      {.code = BPF_JMP | BPF_EXIT},
  };
  Fd fd(bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, nullptr, "GPL", insns, std::size(insns), nullptr));
  return static_cast<bool>(fd);
}

bool KernelProbe::prog_type(bpf_prog_type t) const { return libbpf_probe_bpf_prog_type(t, nullptr) == 1; }
bool KernelProbe::map_type(bpf_map_type t) const { return libbpf_probe_bpf_map_type(t, nullptr) == 1; }
bool KernelProbe::helper(bpf_prog_type t, bpf_func_id h) const { return libbpf_probe_bpf_helper(t, h, nullptr) == 1; }

bool KernelProbe::btf_func(const std::string& name) const {
  return btf_ && btf__find_by_name_kind(btf_.get(), name.c_str(), BTF_KIND_FUNC) > 0;
}
bool KernelProbe::btf_struct(const std::string& name) const {
  return btf_ && btf__find_by_name_kind(btf_.get(), name.c_str(), BTF_KIND_STRUCT) > 0;
}

bool KernelProbe::tracefs_event(const std::string& category, const std::string& name) const {
  std::error_code ec;
  for (const char* base : {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"}) {
    if (std::filesystem::exists(std::string(base) + category + "/" + name, ec)) return true;
  }
  return false;
}

bool KernelProbe::kprobes() const {
  std::error_code ec;
  if (std::filesystem::exists("/sys/bus/event_source/devices/kprobe/type", ec)) return true;
  for (const char* f : {"/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"})
    if (std::filesystem::exists(f, ec)) return true;
  return false;
}

// r0 = 0; exit, loaded as a kprobe.multi program and linked to one function
// every kernel has.
bool KernelProbe::kprobe_multi() const {
  TrialProgram prog;
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_KPROBE_MULTI);
  Fd fd(bpf_prog_load(BPF_PROG_TYPE_KPROBE, nullptr, "GPL", prog.insns, prog.count, &opts));
  if (!fd) return false;
  const char* syms[] = {"tcp_v4_rcv"};
  LIBBPF_OPTS(bpf_link_create_opts, lopts);
  lopts.kprobe_multi.syms = syms;
  lopts.kprobe_multi.cnt = 1;
  Fd link(bpf_link_create(fd.get(), 0, BPF_TRACE_KPROBE_MULTI, &lopts));
  return static_cast<bool>(link);
}

const std::vector<Feature>& feature_table() {
  using P = const KernelProbe&;
  static const std::vector<Feature> table = {
      // The agent: tp_btf programs on TCP tracepoints.
      {"agent", "btf", "kernel BTF (/sys/kernel/btf/vmlinux)", {5, 4}, true,
       "types for CO-RE reads and tp_btf programs", [](P p) { return p.has_btf(); }},
      {"agent", "tp_btf", "BTF-typed tracepoints (tp_btf)", {5, 5}, true, "the type of every agent program",
       [](P p) { return p.tp_btf(); }},
      {"agent", "inet_sock_set_state", "tracepoint sock:inet_sock_set_state", {4, 16}, true,
       "each flow's start, state changes and close", [](P p) { return p.tracepoint("inet_sock_set_state", 3); }},
      {"agent", "ringbuf", "BPF ring buffer map", {5, 8}, true, "flow records to user space",
       [](P p) { return p.map_type(BPF_MAP_TYPE_RINGBUF); }},
      {"agent", "skc_to_tcp_sock", "helper bpf_skc_to_tcp_sock", {5, 9}, true, "TCP counters (bytes, segments, RTT)",
       [](P p) { return p.tp_btf_helper(BPF_FUNC_skc_to_tcp_sock); }},
      {"agent", "map_elem_iter", "BPF iterator over map elements (iter/bpf_map_elem)", {5, 9}, true,
       "interim records of long-lived flows where bpf_for_each_map_elem is missing",
       [](P p) { return p.btf_struct("bpf_iter__bpf_map_elem"); }},
      // Without any of the next four the agent loads its legacy programs
      // (same records by other means; agent.bpf.c), and says which is missing.
      {"agent", "current_task_btf", "helper bpf_get_current_task_btf", {5, 11}, false,
       "the process name is read with bpf_get_current_task and CO-RE probes instead (same result)",
       [](P p) { return p.tp_btf_helper(BPF_FUNC_get_current_task_btf); }},
      {"agent", "sk_storage_tracing", "helper bpf_sk_storage_get in tp_btf programs", {5, 11}, false,
       "connections the full flow map could not hold are marked in a hash map by socket instead",
       [](P p) { return p.tp_btf_helper(BPF_FUNC_sk_storage_get); }},
      {"agent", "atomics", "BPF atomic instructions with a result (cmpxchg)", {5, 12}, false,
       "one record per flow at exit is claimed by a map insert instead", [](P p) { return p.atomics(); }},
      {"agent", "for_each_map_elem", "helper bpf_for_each_map_elem", {5, 13}, false,
       "the interim sweep reads an iterator over the flow map instead",
       [](P p) { return p.helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_for_each_map_elem); }},
      {"agent", "kfree_skb", "tracepoint skb:kfree_skb with a drop reason", {5, 17}, false,
       "flows carry no drop reasons", [](P p) { return p.tracepoint("kfree_skb", 3); }},
      {"agent", "tcp_send_reset", "tracepoint tcp:tcp_send_reset", {4, 15}, false, "no close=rst_sent",
       [](P p) { return p.tracepoint("tcp_send_reset", 1); }},
      {"agent", "tcp_receive_reset", "tracepoint tcp:tcp_receive_reset", {4, 15}, false, "no close=rst_received",
       [](P p) { return p.tracepoint("tcp_receive_reset", 1); }},
      {"agent", "tcp_retransmit_skb", "tracepoint tcp:tcp_retransmit_skb", {4, 15}, false,
       "connects that time out have no tuple", [](P p) { return p.tracepoint("tcp_retransmit_skb", 1); }},
      {"agent", "accept_syscalls", "tracepoints syscalls:sys_exit_accept4/accept (tracefs)", {4, 7}, false,
       "inbound connections attributed at their first send or receive, not at accept()",
       [](P p) { return p.tracefs_event("syscalls", "sys_exit_accept4") && p.tracefs_event("syscalls", "sys_exit_accept"); }},
      {"agent", "sock_length", "tracepoints sock:sock_send_length/sock_recv_length", {6, 3}, false,
       "with neither these nor the accept tracepoints, inbound connections keep the listener's process",
       [](P p) { return p.tracepoint("sock_send_length", 1) && p.tracepoint("sock_recv_length", 1); },
       "accept_syscalls"},
      {"agent", "iter_tcp", "BPF iterator over TCP sockets (iter/tcp)", {5, 9}, false,
       "connections open before start-up are not seen", [](P p) { return p.btf_struct("bpf_iter__tcp"); }},

      // The tracer: raw_tp programs on every skb tracepoint. With cookies and
      // bpf_rdonly_cast one program per skb position serves all of them;
      // without, the portable variant (a stub program per tracepoint, probe
      // reads) gives the same events.
      {"trace", "btf", "kernel BTF (/sys/kernel/btf/vmlinux)", {5, 4}, true,
       "the list of skb tracepoints and their argument types", [](P p) { return p.has_btf(); }},
      {"trace", "raw_tp", "raw tracepoint programs (raw_tp)", {4, 17}, true, "the type of every trace program",
       [](P p) { return p.prog_type(BPF_PROG_TYPE_RAW_TRACEPOINT); }},
      {"trace", "ringbuf", "BPF ring buffer map", {5, 8}, true, "events to user space",
       [](P p) { return p.map_type(BPF_MAP_TYPE_RINGBUF); }},
      {"trace", "loop", "helper bpf_loop", {5, 17}, true, "the in-kernel pcap filter",
       [](P p) { return p.helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_loop); }},
      {"trace", "tail_call", "BPF tail calls (program array map)", {4, 2}, true,
       "the portable variant's stub program per tracepoint",
       [](P p) { return p.map_type(BPF_MAP_TYPE_PROG_ARRAY); }},
      {"trace", "raw_tp_cookie", "raw tracepoint attach cookies (bpf_get_attach_cookie in raw_tp)", {6, 10}, false,
       "one stub program per tracepoint tells them apart (portable variant)",
       [](P p) { return p.helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_get_attach_cookie); }},
      {"trace", "rdonly_cast", "kfunc bpf_rdonly_cast", {6, 2}, false,
       "kernel memory read with bpf_probe_read_kernel, slower per event (portable variant)",
       [](P p) { return p.btf_func("bpf_rdonly_cast"); }},
      {"trace", "kfree_skb", "tracepoint skb:kfree_skb with a drop reason", {5, 17}, false,
       "no drop reasons; --drops cannot run", [](P p) { return p.tracepoint("kfree_skb", 3); }},
      {"trace", "consume_skb", "tracepoint skb:consume_skb with a location", {6, 3}, false,
       "a packet freed normally ends at the idle timeout", [](P p) { return p.tracepoint("consume_skb", 2); }},

      // trace --functions: the portable variant's kprobe programs on every
      // kernel function with an skb argument, plus its free tracepoints.
      {"trace --functions", "btf", "kernel BTF (/sys/kernel/btf/vmlinux)", {5, 4}, true,
       "the functions with an skb argument", [](P p) { return p.has_btf(); }},
      {"trace --functions", "kprobes", "kprobes (perf kprobe PMU or tracefs kprobe_events)", {4, 1}, true,
       "attaching to kernel functions", [](P p) { return p.kprobes(); }},
      {"trace --functions", "func_ip", "helper bpf_get_func_ip in kprobes", {5, 15}, true,
       "which function a packet passed", [](P p) { return p.helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_get_func_ip); }},
      {"trace --functions", "ringbuf", "BPF ring buffer map", {5, 8}, true, "events to user space",
       [](P p) { return p.map_type(BPF_MAP_TYPE_RINGBUF); }},
      {"trace --functions", "loop", "helper bpf_loop", {5, 17}, true, "the in-kernel pcap filter",
       [](P p) { return p.helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_loop); }},
      {"trace --functions", "tail_call", "BPF tail calls (program array map)", {4, 2}, true,
       "the free tracepoints' stub programs", [](P p) { return p.map_type(BPF_MAP_TYPE_PROG_ARRAY); }},
      {"trace --functions", "kprobe_multi", "kprobe.multi links", {5, 18}, false,
       "one kprobe per function, at most --max-kprobes of them, slower to attach",
       [](P p) { return p.kprobes() && p.kprobe_multi(); }},
      {"trace --functions", "kfree_skb", "tracepoint skb:kfree_skb with a drop reason", {5, 17}, false,
       "no drop reasons", [](P p) { return p.tracepoint("kfree_skb", 3); }},
  };
  return table;
}

bool CommandReport::has(std::string_view id) const {
  const FeatureRow* r = row(id);
  return r && r->present;
}

const FeatureRow* CommandReport::row(std::string_view id) const {
  auto it = std::find_if(rows.begin(), rows.end(), [&](const FeatureRow& r) { return r.id == id; });
  return it == rows.end() ? nullptr : &*it;
}

KernelVersion CommandReport::minimum() const {
  KernelVersion v;
  for (const auto& r : rows)
    if (r.required) v = std::max(v, r.since);
  return v;
}

std::vector<const FeatureRow*> CommandReport::missing() const {
  std::vector<const FeatureRow*> out;
  for (const auto& r : rows)
    if (r.required && !r.present) out.push_back(&r);
  return out;
}

Result<void> CommandReport::check() const {
  auto m = missing();
  if (m.empty()) return {};
  const FeatureRow& r = *m.front();
  std::string also;
  for (size_t i = 1; i < m.size(); i++) also += fmt::format("{}{} ({})", i == 1 ? "; also missing: " : ", ", m[i]->hook, m[i]->since.str());
  return fail_errno(EOPNOTSUPP,
                    "flowscope {} needs Linux {} or newer: this kernel lacks {} (Linux {}), needed for {}{}; "
                    "`flowscope features` lists what this kernel offers",
                    command, minimum().str(), r.hook, r.since.str(), r.without, also);
}

CommandReport probe_command(const KernelProbe& probe, std::string_view command) {
  CommandReport rep{std::string(command), {}, {}};
  if (command == "collector") {
    rep.summary = "needs no BPF and no kernel feature beyond UDP and TCP sockets: runs on any Linux";
  }
  for (const auto& f : feature_table()) {
    if (f.command != command) continue;
    rep.rows.push_back({std::string(f.id), std::string(f.hook), std::string(f.without), f.since, f.required,
                        f.present(probe)});
  }
  for (const auto& f : feature_table()) {
    if (f.command != command || f.fallback_for.empty()) continue;
    for (auto& r : rep.rows)
      if (r.id == f.id) r.needed = !rep.has(f.fallback_for);
  }
  return rep;
}

KernelVersion minimum_kernel(std::string_view command) {
  KernelVersion v;
  for (const auto& f : feature_table())
    if (f.command == command && f.required) v = std::max(v, f.since);
  return v;
}

std::string format_reports(const std::string& kernel_release, const std::vector<CommandReport>& reports) {
  std::string out = fmt::format("kernel {}\n", kernel_release);
  for (const auto& rep : reports) {
    out += '\n';
    if (rep.rows.empty()) {
      out += fmt::format("{}: {}\n", rep.command, rep.summary);
      continue;
    }
    const auto missing = rep.missing();
    size_t optional = 0, optional_missing = 0;
    for (const auto& r : rep.rows) {
      optional += !r.required && r.needed;
      optional_missing += !r.required && r.needed && !r.present;
    }
    if (!missing.empty()) {
      out += fmt::format("{}: cannot run here (needs Linux {}+; {} required feature{} missing)\n", rep.command,
                         rep.minimum().str(), missing.size(), missing.size() == 1 ? "" : "s");
    } else if (optional_missing) {
      out += fmt::format("{}: runs here, degraded ({} of {} optional features missing; needs Linux {}+)\n",
                         rep.command, optional_missing, optional, rep.minimum().str());
    } else {
      out += fmt::format("{}: runs here with every feature (needs Linux {}+)\n", rep.command, rep.minimum().str());
    }
    size_t w = 4;
    for (const auto& r : rep.rows) w = std::max(w, r.hook.size());
    out += fmt::format("  {:<{}}  {:<5}  {:<4}  {}\n", "hook", w, "since", "here", "if missing");
    for (const auto& r : rep.rows) {
      const char* prefix = r.required ? "cannot run; needed for " : !r.needed ? "(fallback, not needed here) " : "";
      out += fmt::format("  {:<{}}  {:<5}  {:<4}  {}{}\n", r.hook, w, r.since.str(), r.present ? "yes" : "no", prefix,
                         r.without);
    }
  }
  return out;
}

}  // namespace flowscope
