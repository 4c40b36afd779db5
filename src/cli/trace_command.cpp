// `flowscope trace`
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "kernel/btf.h"
#include "kernel/system.h"
#include "trace/functions.h"
#include "trace/output.h"
#include "trace/pcapng.h"
#include "trace/tracer.h"

namespace flowscope::cli {

namespace {

using namespace flowscope::trace;

struct TraceArgs {
  TraceOptions opts;
  std::vector<std::string> filter_words;
  std::optional<std::string> mark, netns, ifname;
  bool list = false, events = false, json = false, drops = false, all_tracepoints = false;
  std::string pcap;
  std::string functions;  // --functions[=REGEX]
  bool functions_set = false;
  const CLI::Option* functions_opt = nullptr;
  double duration_s = 0;
  double idle_s = 2;
  uint64_t count = 0;
};

uint64_t mono_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int list_tracepoints() {
  auto btf = load_kernel_btf();
  if (!btf) {
    spdlog::error("{}", btf.error().message);
    return 1;
  }
  auto tps = skb_tracepoints(btf->get());
  size_t on_request = 0;
  for (const auto& tp : tps) {
    const char* kind = tp.kind == FS_TP_KIND_KFREE ? "  [drop reason]" : tp.kind == FS_TP_KIND_CONSUME ? "  [free]" : "";
    const std::string req = tp.on_request.empty() ? "" : "  [--all-tracepoints: " + tp.on_request + "]";
    fmt::print("{:<32} skb=arg{} {}{}{}\n", tp.name, tp.skb_arg, tp.signature, kind, req);
    if (!tp.on_request.empty()) on_request++;
  }
  fmt::print("{} tracepoints with a struct sk_buff * argument ({} attached only with --all-tracepoints)\n", tps.size(),
             on_request);
  return 0;
}

// --list with --functions: the functions that would be attached.
int list_functions(const std::string& regex) {
  auto btf = load_kernel_btf();
  if (!btf) {
    spdlog::error("{}", btf.error().message);
    return 1;
  }
  (void)ensure_tracefs();
  auto fns = skb_functions(btf->get(), regex, probeable_functions());
  if (!fns) {
    spdlog::error("{}", fns.error().message);
    return 1;
  }
  for (const auto& f : *fns) fmt::print("{:<48} skb=arg{}{}\n", f.name, f.skb_arg, f.module.empty() ? "" : " [" + f.module + "]");
  fmt::print("{} functions with a struct sk_buff * among their first five arguments\n", fns->size());
  return 0;
}

int run_trace(TraceArgs& a) {
  a.functions_set = a.functions_opt && a.functions_opt->count() > 0;
  if (a.list && a.functions_set) return list_functions(a.functions);
  if (a.list) return list_tracepoints();
  std::string expr;
  for (const auto& w : a.filter_words) expr += (expr.empty() ? "" : " ") + w;
  a.opts.filter = expr;
  a.opts.mark = a.mark;
  a.opts.netns = a.netns;
  a.opts.ifname = a.ifname;
  a.opts.drops_only = a.drops;
  a.opts.all_tracepoints = a.all_tracepoints;
  if (a.functions_set) a.opts.functions = a.functions;
  if (a.functions_set && a.drops) {
    spdlog::error("--functions and --drops do not go together: --drops watches kfree_skb only");
    return 1;
  }
  auto tracer = Tracer::create(a.opts);
  if (!tracer) {
    spdlog::error("{}", tracer.error().message);
    return 1;
  }
  Tracer& t = **tracer;
  for (const auto& s : t.skipped()) spdlog::debug("not traced: {}", s);
  std::vector<std::string> names;
  for (const auto& tp : t.tracepoints()) names.push_back(tp.name);
  EventNames n(names, t.drop_names(), Kallsyms::load(), monotonic_to_realtime_offset_ns());

  std::optional<PcapngWriter> pcap;
  if (!a.pcap.empty()) {
    auto w = PcapngWriter::open(a.pcap, FS_TRACE_SNAP);
    if (!w) {
      spdlog::error("{}", w.error().message);
      return 1;
    }
    pcap.emplace(std::move(*w));
  }

  PacketAssembler assembler(std::chrono::nanoseconds(static_cast<int64_t>(a.idle_s * 1e9)), t.max_packets());
  DropSummary drops;
  uint64_t packets_done = 0;
  bool write_failed = false;
  std::string write_error;

  auto finish_packets = [&](std::vector<TracedPacket> done) {
    for (auto& p : done) {
      // Never freed on a traced path: stop tracking its skb in the kernel.
      if (!p.freed && !p.events.empty()) t.forget(p.events.back().skb, p.id);
      if (!a.events && !a.json) {
        fmt::print("{}\n", format_packet_block(n, p));
      }
      if (pcap && !p.events.empty()) {
        const auto& f = p.events.front();
        auto r = pcap->write(static_cast<uint64_t>(n.realtime_ns(f.ts_ns)), f.pkt, f.cap_len, f.wire_len, packet_comment(n, p));
        if (!r) {
          write_failed = true;
          write_error = r.error().message;
        }
      }
      packets_done++;
    }
  };

  const Tracer::Handler handler = [&](const fs_trace_event& ev) {
    if (a.drops) {
      drops.add(n, ev);
      return;
    }
    if (a.json) {
      fmt::print("{}\n", event_json(n, ev).dump());
    } else if (a.events) {
      fmt::print("{}\n", format_event_line(n, ev));
    }
    finish_packets(assembler.add(ev));
  };

  install_signal_handlers();
  const bool tty = isatty(STDOUT_FILENO);
  if (a.drops)
    spdlog::info("watching drops on kfree_skb{}; summary every second, Ctrl-C to stop", expr.empty() ? "" : " for \"" + expr + "\"");
  else if (a.functions_set)
    spdlog::info("tracing on {} functions ({}, attached in {:.2f} s{}) and {} tracepoints{}; Ctrl-C to stop",
                 t.mode().functions, t.mode().kprobe_multi ? "kprobe.multi" : "one kprobe each", t.mode().attach_s,
                 t.mode().functions_skipped ? fmt::format(", {} not attached: -v lists them", t.mode().functions_skipped) : "",
                 t.tracepoints().size(), expr.empty() ? "" : " for \"" + expr + "\"");
  else
    spdlog::info("tracing on {} tracepoints{}; Ctrl-C to stop", t.tracepoints().size(), expr.empty() ? "" : " for \"" + expr + "\"");
  const uint64_t start = mono_now_ns();
  uint64_t last_tick = start;
  uint64_t reported_lost = 0;
  while (!g_stop.load()) {
    if (auto r = t.poll(100, handler); !r) {
      spdlog::error("{}", r.error().message);
      return 1;
    }
    const uint64_t now = mono_now_ns();
    if (!a.drops) finish_packets(assembler.expire(now));
    if (now - last_tick >= 1000000000ull) {
      last_tick = now;
      const TraceStats st = t.stats();
      const uint64_t lost = st.ringbuf_full;
      if (lost != reported_lost) {
        spdlog::warn("{} events lost so far (ring buffer full; try --ringbuf-size)", lost);
        reported_lost = lost;
      }
      if (a.drops) {
        if (tty) fmt::print("\033[H\033[2J");
        fmt::print("{}", drops.render(clock_time(n.realtime_ns(now))));
      }
      std::fflush(stdout);
      if (pcap) (void)pcap->flush();
    }
    if (a.duration_s > 0 && static_cast<double>(now - start) / 1e9 >= a.duration_s) break;
    if (a.count && packets_done >= a.count) break;
    if (ferror(stdout)) {
      spdlog::error("writing to stdout failed");
      return 1;
    }
  }
  // Drain what is left, then end every open packet.
  (void)t.poll(0, handler);
  if (!a.drops) finish_packets(assembler.expire(mono_now_ns(), true));
  if (a.drops) fmt::print("{}", drops.render("total"));
  std::fflush(stdout);
  if (pcap) {
    if (auto r = pcap->flush(); !r) {
      write_failed = true;
      write_error = r.error().message;
    }
  }
  const TraceStats st = t.stats();
  spdlog::info("{} packets traced, {} events, {} lost (ring buffer full), {} not tracked (--max-packets reached){}",
               st.matched, st.emitted, st.ringbuf_full, st.track_full,
               pcap ? fmt::format(", {} written to {}", pcap->packets(), a.pcap) : "");
  spdlog::debug("{} tracepoint hits, {} filter runs (the rest answered by the verdict memo), {} sk_buffs seen reused, "
                "{} filter runs ended without a verdict, {} packets shown before their end (too many open)",
                st.events, st.filter_runs, st.reused, st.filter_abort, assembler.pushed_out());
  if (st.filter_abort) spdlog::warn("{} packets not matched because the filter program ended without a verdict", st.filter_abort);
  if (write_failed) {
    spdlog::error("{}", write_error);
    return 1;
  }
  return 0;
}

}  // namespace

Command add_trace_command(CLI::App& app, const GlobalOptions& global) {
  (void)global;
  auto args = std::make_shared<TraceArgs>();
  auto* cmd = app.add_subcommand("trace", "Follow packets through the kernel's network stack; say where and why they are dropped");
  cmd->add_option("filter", args->filter_words, "pcap-filter expression (tcpdump syntax), e.g. 'tcp and port 443'");
  cmd->add_flag("--list", args->list, "List the skb tracepoints this kernel offers (with --functions: the functions) and exit");
  cmd->add_flag("--all-tracepoints", args->all_tracepoints,
                "Also attach the tracepoints left out by default (--list marks them: duplicates, tcp_probe, ...)");
  // A flag taking its value only as --functions=REGEX, so that a filter
  // after a bare --functions stays the filter.
  auto* functions = cmd->add_flag("--functions{}", args->functions,
                                  "Follow packets through every kernel function taking a struct sk_buff * (kprobes; "
                                  "found in BTF); --functions=REGEX: only functions whose name matches");
  args->functions_opt = functions;
  cmd->add_option("--max-kprobes", args->opts.max_kprobes,
                  "--functions without kprobe.multi (and modules' functions): kprobes attached at most")
      ->check(CLI::Range(1u, 100000u))
      ->capture_default_str();
  cmd->add_flag("--events", args->events, "One line per event as it happens (instead of one block per packet)");
  cmd->add_flag("--json", args->json, "One JSON object per event");
  cmd->add_option("--pcap", args->pcap, "Also write traced packets to this pcapng file, path and drop reason in comments");
  cmd->add_flag("--drops", args->drops, "Dropwatch-style summary of drops by reason, location and interface, every second");
  cmd->add_option("--mark", args->mark, "Only packets with this skb mark: VALUE[/MASK]");
  cmd->add_option("--netns", args->netns, "Only packets first seen in this network namespace (path or inode)");
  cmd->add_option("--ifname", args->ifname, "Only packets first seen on this interface (in --netns when given)");
  cmd->add_option("--max-packets", args->opts.max_packets, "Packets tracked at once")
      ->check(CLI::Range(16u, 1u << 22))
      ->capture_default_str();
  cmd->add_option("--ringbuf-size", args->opts.ringbuf_bytes, "Kernel-to-user ring buffer bytes")
      ->check(CLI::Range(4096u, 1u << 30))
      ->capture_default_str();
  cmd->add_option("--duration", args->duration_s, "Stop after this many seconds")->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--count", args->count, "Stop after this many packets");
  cmd->add_option("--idle-timeout", args->idle_s, "Seconds after which a packet never freed on a traced path is shown")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  return {cmd, [args] { return run_trace(*args); }};
}

}  // namespace flowscope::cli
