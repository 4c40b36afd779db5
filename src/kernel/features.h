// What each subcommand needs from the running kernel, and whether this kernel
// has it. One table says, per command, every hook and helper it uses, the
// kernel version that brought it, and what is lost without it; the agent and
// the tracer check it before loading (so a too-old kernel gets one sentence,
// not a verifier log), and `flowscope features` prints it.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <linux/bpf.h>

#include "base/result.h"
#include "kernel/handles.h"

namespace flowscope {

struct KernelVersion {
  int major = 0, minor = 0;
  auto operator<=>(const KernelVersion&) const = default;
  std::string str() const;
};

// Answers about the running kernel, each from the kernel itself: its BTF, a
// trial load of a two-instruction program, libbpf's probes, tracefs.
class KernelProbe {
 public:
  // Never fails: without BTF every BTF-based answer is "no".
  static KernelProbe open();
  bool has_btf() const { return btf_ != nullptr; }
  const btf* kernel_btf() const { return btf_.get(); }
  // The BTF load error when has_btf() is false.
  const std::string& btf_error() const { return btf_error_; }

  // A raw tracepoint known to BTF with at least `min_args` arguments.
  bool tracepoint(const std::string& name, int min_args = 0) const;
  // A BTF-typed tracepoint program (tp_btf) loads.
  bool tp_btf() const;
  // The BPF atomic instructions with a result (cmpxchg, fetch-add: 5.12); the
  // plain atomic add is older.
  bool atomics() const;
  bool prog_type(bpf_prog_type t) const;
  bool map_type(bpf_map_type t) const;
  // `helper` is callable from programs of type `t`.
  bool helper(bpf_prog_type t, bpf_func_id helper) const;
  // `helper` is callable from a tp_btf program (libbpf cannot probe tracing
  // programs, whose helper set differs from raw_tp's).
  bool tp_btf_helper(bpf_func_id helper) const;
  // A kernel function (kfunc) or struct named in the kernel's BTF.
  bool btf_func(const std::string& name) const;
  bool btf_struct(const std::string& name) const;
  // A classic tracepoint in tracefs (events/CATEGORY/NAME).
  bool tracefs_event(const std::string& category, const std::string& name) const;

 private:
  BtfPtr btf_;
  std::string btf_error_;
};

// One thing a subcommand uses from the kernel.
struct Feature {
  std::string_view command;  // "agent", "trace"
  std::string_view id;       // stable key the code looks up
  std::string_view hook;     // what it is, as a user would search for it
  KernelVersion since;       // first mainline kernel that has it
  bool required;             // the command refuses to start without it
  std::string_view without;  // what is lost without it (why it is required)
  std::function<bool(const KernelProbe&)> present;
  // A fallback is used only when the feature with this id is missing.
  std::string_view fallback_for = {};
};

// Every feature of every command, in the order they are printed.
const std::vector<Feature>& feature_table();

// One feature's answer on this kernel.
struct FeatureRow {
  std::string id, hook, without;
  KernelVersion since;
  bool required = false;
  bool present = false;
  // False for a fallback whose primary feature is present: not used here.
  bool needed = true;
};

// What one command can do on this kernel.
struct CommandReport {
  std::string command;
  std::string summary;  // for commands without kernel features (collector)
  std::vector<FeatureRow> rows;

  bool has(std::string_view id) const;
  const FeatureRow* row(std::string_view id) const;
  // The newest `since` among required features: the command's minimum kernel.
  KernelVersion minimum() const;
  // Required features this kernel lacks.
  std::vector<const FeatureRow*> missing() const;
  // Fails, naming the first missing required feature, its kernel version and
  // what it is for, when the command cannot run here.
  Result<void> check() const;
};

CommandReport probe_command(const KernelProbe& probe, std::string_view command);
// The minimum kernel of `command` from the table alone (no probing).
KernelVersion minimum_kernel(std::string_view command);

// The table `flowscope features` prints.
std::string format_reports(const std::string& kernel_release, const std::vector<CommandReport>& reports);

}  // namespace flowscope
