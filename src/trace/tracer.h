// Loads trace.bpf.c, attaches it to every skb tracepoint this kernel's BTF
// offers (and with --functions to every kernel function taking an skb), and
// hands the events to a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernel/btf.h"
#include "base/result.h"
#include "trace/trace_abi.h"

namespace flowscope::trace {

// A tracepoint with a `struct sk_buff *` argument.
struct SkbTracepoint {
  std::string name;
  int skb_arg = 0;  // position of the skb among the tracepoint's arguments
  int kind = FS_TP_KIND_GENERIC;
  std::string signature;  // "(struct sk_buff *skb, void *, enum skb_drop_reason)"
  // Attached only with TraceOptions::all_tracepoints: why it is left out by
  // default ("" when attached by default).
  std::string on_request;
};

// Every tracepoint of the kernel (per its BTF) that carries an skb, by name.
std::vector<SkbTracepoint> skb_tracepoints(const btf* b);

struct TraceOptions {
  std::string filter;                 // pcap-filter expression, "" for all
  std::optional<std::string> mark;    // VALUE[/MASK]
  std::optional<std::string> netns;   // path or inode
  std::optional<std::string> ifname;  // in --netns when given, else here
  bool drops_only = false;            // attach kfree_skb only, no tracking
  bool all_tracepoints = false;       // also those left out by default (SkbTracepoint::on_request)
  uint32_t max_packets = 8192;        // packets tracked at once
  uint32_t ringbuf_bytes = 8u << 20;
  // trace --functions: kprobes on the kernel functions with an skb argument
  // whose name matches this regular expression ("" for all).
  std::optional<std::string> functions;
  // Plain kprobes at most (kprobe.multi attaches any number in one link).
  uint32_t max_kprobes = 1000;
};

// How the tracer runs on this kernel.
struct TraceMode {
  // The portable variant: one stub program per tracepoint and probe reads
  // (no attach cookies or bpf_rdonly_cast here, or --functions).
  bool portable = false;
  bool kprobe_multi = false;     // --functions: functions of the image in kprobe.multi links
  size_t functions = 0;          // --functions: functions attached
  size_t functions_skipped = 0;  // matched but not attached (see skipped())
  double attach_s = 0;           // time spent attaching
};

struct TraceStats {
  uint64_t events = 0, matched = 0, emitted = 0, ringbuf_full = 0, track_full = 0, filter_abort = 0, reused = 0;
  uint64_t filter_runs = 0;  // cBPF filter interpreted (events not answered by the verdict memo)
  uint64_t nested_deep = 0;  // portable variant: hook runs nested too deep to trace
};

class Tracer {
 public:
  using Handler = std::function<void(const fs_trace_event&)>;
  static Result<std::unique_ptr<Tracer>> create(const TraceOptions& opts);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // Waits up to timeout_ms for events and passes each to `h`.
  Result<void> poll(int timeout_ms, const Handler& h);
  // Attached tracepoints; fs_trace_event.tp indexes this.
  const std::vector<SkbTracepoint>& tracepoints() const;
  // Tracepoints (and functions) that could not be attached, with the reason.
  const std::vector<std::string>& skipped() const;
  const TraceMode& mode() const;
  TraceStats stats() const;
  // Drop reason names of this kernel (enum skb_drop_reason, prefix stripped).
  const std::map<int64_t, std::string>& drop_names() const;
  // Stops tracking an skb that user space gave up on (never freed through a
  // traced tracepoint), if it still belongs to packet `pkt_id`.
  void forget(uint64_t skb, uint64_t pkt_id);
  // Packet id counter and free slots are bounded by max_packets.
  uint32_t max_packets() const;

  struct Impl;

 private:
  explicit Tracer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The interface index of `ifname` inside network namespace `netns_path`
// (nullopt: the current one); fails when it does not exist.
Result<unsigned> interface_index(const std::string& ifname, const std::optional<std::string>& netns_path);

}  // namespace flowscope::trace
