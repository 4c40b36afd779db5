#include "kernel/loader.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <linux/bpf.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <regex>

#include <bpf/bpf.h>
#include <fmt/format.h>

#include "kernel/libbpf_log.h"

namespace flowscope {

uint32_t ring_buffer_bytes(uint32_t requested) {
  uint32_t p = 4096;
  while (p < requested && p < (1u << 30)) p <<= 1;
  return p;
}

std::string verifier_tail(const std::string& log, size_t max_lines, size_t max_bytes) {
  size_t pos = log.size();
  for (size_t i = 0; i < max_lines && pos > 0; i++) {
    pos = log.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
  }
  if (log.size() - pos > max_bytes) return "..." + log.substr(log.size() - max_bytes);
  return log.substr(pos);
}

namespace {

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  if (s.starts_with("libbpf: ")) s.erase(0, 8);
  return s;
}

std::vector<std::string> lines_of(const std::string& log) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    out.push_back(log.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Helpers flowscope's programs call, for naming an unknown one ("invalid
// func unknown#164" is all an older verifier says).
std::string helper_name(int id) {
  switch (id) {
    case BPF_FUNC_skc_to_tcp_sock: return "bpf_skc_to_tcp_sock (Linux 5.9)";
    case BPF_FUNC_get_current_task_btf: return "bpf_get_current_task_btf (Linux 5.11)";
    case BPF_FUNC_for_each_map_elem: return "bpf_for_each_map_elem (Linux 5.13)";
    case BPF_FUNC_loop: return "bpf_loop (Linux 5.17)";
    case BPF_FUNC_get_attach_cookie: return "bpf_get_attach_cookie (Linux 5.15; in raw_tp 6.10)";
    case BPF_FUNC_ringbuf_output: return "bpf_ringbuf_output (Linux 5.8)";
    case BPF_FUNC_ringbuf_reserve: return "bpf_ringbuf_reserve (Linux 5.8)";
    case BPF_FUNC_ringbuf_query: return "bpf_ringbuf_query (Linux 5.8)";
    default: return fmt::format("#{}", id);
  }
}

// The verifier's last complaint: the last line of the program's load log
// that is not its closing statistics.
std::string last_complaint(const std::vector<std::string>& lines, size_t begin) {
  static const std::regex stats(R"(^(processed \d+ insns|verification time|stack depth|max_states_per_insn|-- END|Func#|mark_precise))");
  std::string last;
  for (size_t i = begin; i < lines.size(); i++) {
    const std::string& l = lines[i];
    if (l.find("-- END PROG LOAD LOG --") != std::string::npos) break;
    if (l.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) continue;
    if (l.empty() || std::regex_search(l, stats)) continue;
    last = l;
  }
  return last;
}

}  // namespace

std::string load_failure_reason(const std::string& log, int err) {
  if (err == EPERM) {
    return "the kernel refused to load BPF programs (EPERM): BPF may be disabled or restricted by a security "
           "policy (kernel.unprivileged_bpf_disabled, lockdown, seccomp), or flowscope lacks CAP_BPF and CAP_PERFMON";
  }
  std::vector<std::string> lines;
  for (const auto& l : lines_of(log)) lines.push_back(trim(l));
  std::smatch m;
  // The first line matching `re`, patterns tried in order of how much they
  // explain: a missing piece of the kernel explains the errors that follow.
  auto find = [&](const std::regex& re) {
    for (const auto& l : lines)
      if (std::regex_search(l, m, re)) return true;
    return false;
  };
  static const std::regex core(R"(failed to resolve CO-RE relocation (.*))");
  static const std::regex core_poison(R"(invalid func unknown#195896080)");  // libbpf's mark on a failed relocation
  if (find(core)) return fmt::format("this kernel's types lack what a program reads (CO-RE relocation failed: {})", m[1].str());
  if (find(core_poison)) return "this kernel's types lack what a program reads (a CO-RE relocation failed)";
  static const std::regex unknown_id(R"(invalid func unknown#(\d+))");
  if (find(unknown_id)) {
    int id = 0;
    const std::string s = m[1].str();
    std::from_chars(s.data(), s.data() + s.size(), id);
    return fmt::format("this kernel lacks the BPF helper {}; the kernel is older than flowscope needs", helper_name(id));
  }
  static const std::regex unknown_name(R"(unknown func (bpf_\w+)#)");
  if (find(unknown_name)) return fmt::format("this kernel does not allow the BPF helper {} in this kind of program", m[1].str());
  static const std::regex kfunc(R"(extern \(func ksym\) '(\w+)': not found|kernel function (\w+) |cannot find kfunc (\w+))");
  if (find(kfunc)) {
    const std::string name = m[1].matched ? m[1].str() : m[2].matched ? m[2].str() : m[3].str();
    return fmt::format("this kernel lacks the kernel function {} (or does not allow it here)", name);
  }
  static const std::regex target(R"(failed to find kernel BTF type ID of '(\w+)')");
  if (find(target)) return fmt::format("this kernel has no {} to attach to", m[1].str());
  static const std::regex too_complex(R"(BPF program is too large.*|.*too complex.*)");
  if (find(too_complex)) return fmt::format("the program is too complex for this kernel's verifier ({})", m[0].str());
  static const std::regex failed(R"(prog '(\w+)': BPF program load failed)");
  for (size_t i = 0; i < lines.size(); i++) {
    if (!std::regex_search(lines[i], m, failed)) continue;
    const std::string prog = m[1].str();
    const std::string why = last_complaint(lines, i + 1);
    if (!why.empty()) return fmt::format("the kernel's verifier rejected program {}: {}", prog, why);
    return fmt::format("the kernel refused program {}: {}", prog, std::strerror(err));
  }
  return std::strerror(err);
}

Result<void> load_skeleton(bpf_object_skeleton* skel, std::string_view what) {
  take_libbpf_log();  // only this load's messages explain its failure
  if (int err = bpf_object__load_skeleton(skel); err) {
    const int code = errno == EPERM ? EPERM : err < 0 ? -err : errno;
    const std::string log = take_libbpf_log();
    return fail_errno(code, "loading the {} BPF programs failed: {}\n{}", what, load_failure_reason(log, code),
                      verifier_tail(log));
  }
  return {};
}

Result<std::vector<LinkPtr>> attach_programs(std::span<const AttachProgram> progs, std::vector<std::string>& degraded) {
  std::vector<LinkPtr> links;
  for (const auto& a : progs) {
    if (!bpf_program__autoload(a.prog)) continue;
    LinkPtr l(bpf_program__attach(a.prog));
    if (!l) {
      const int e = errno;
      if (a.required) return fail_errno(e, "attaching {} failed: {}", bpf_program__name(a.prog), std::strerror(e));
      degraded.push_back(fmt::format("{}: attach failed: {}", bpf_program__name(a.prog), std::strerror(e)));
      continue;
    }
    links.push_back(std::move(l));
  }
  return links;
}

namespace {
struct RawTpAttr {
  uint64_t name;
  uint32_t prog_fd;
  uint32_t pad;
  uint64_t cookie;
};
}  // namespace

Result<Fd> attach_raw_tracepoint(int prog_fd, const std::string& name, uint64_t cookie) {
  RawTpAttr attr{};
  attr.name = reinterpret_cast<uint64_t>(name.c_str());
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.cookie = cookie;
  const int fd = static_cast<int>(syscall(__NR_bpf, BPF_RAW_TRACEPOINT_OPEN, &attr, sizeof(attr)));
  if (fd < 0) return fail_errno(errno, "{}", std::strerror(errno));
  return Fd(fd);
}

Result<RingBufferPtr> open_ring_buffer(const bpf_map* map, ring_buffer_sample_fn fn, void* ctx, std::string_view what) {
  RingBufferPtr rb(ring_buffer__new(bpf_map__fd(map), fn, ctx, nullptr));
  if (!rb) return fail_errno(errno, "cannot open the {} ring buffer: {}", what, std::strerror(errno));
  return rb;
}

PerCpuCounters::PerCpuCounters(const bpf_map* map)
    : fd_(bpf_map__fd(map)), ncpus_(std::max(1, libbpf_num_possible_cpus())) {}

uint64_t PerCpuCounters::sum(uint32_t index) const {
  std::vector<uint64_t> per_cpu(ncpus_);
  if (fd_ < 0 || bpf_map_lookup_elem(fd_, &index, per_cpu.data()) != 0) return 0;
  uint64_t total = 0;
  for (uint64_t v : per_cpu) total += v;
  return total;
}

uint64_t map_memlock(int map_fd) {
  std::ifstream in(fmt::format("/proc/self/fdinfo/{}", map_fd));
  std::string key;
  uint64_t value = 0;
  while (in >> key) {
    if (key == "memlock:" && in >> value) return value;
  }
  return 0;
}

uint64_t object_memlock(const bpf_object* obj) {
  uint64_t total = 0;
  const bpf_map* m;
  bpf_object__for_each_map(m, obj) total += map_memlock(bpf_map__fd(m));
  return total;
}

}  // namespace flowscope
