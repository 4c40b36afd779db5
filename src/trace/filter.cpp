#include "trace/filter.h"

#include <pcap/pcap.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <memory>

namespace flowscope::trace {

namespace {
struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
struct ProgFreer {
  void operator()(bpf_program* p) const { pcap_freecode(p); }
};
}  // namespace

Result<std::vector<fs_cbpf_insn>> compile_filter(const std::string& expr) {
  if (expr.find_first_not_of(" \t\n") == std::string::npos) return std::vector<fs_cbpf_insn>{};
  std::unique_ptr<pcap_t, PcapCloser> p(pcap_open_dead(DLT_RAW, 262144));
  if (!p) return fail("libpcap: cannot create a compiler handle");
  bpf_program prog{};
  if (pcap_compile(p.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return fail("bad filter expression \"{}\": {}", expr, pcap_geterr(p.get()));
  }
  std::unique_ptr<bpf_program, ProgFreer> owned(&prog);
  if (prog.bf_len > FS_CBPF_MAX_INSNS) {
    return fail("filter expression \"{}\" compiles to {} instructions; at most {} are supported", expr, prog.bf_len,
                FS_CBPF_MAX_INSNS);
  }
  std::vector<fs_cbpf_insn> out(prog.bf_len);
  static_assert(sizeof(bpf_insn) == sizeof(fs_cbpf_insn));
  for (unsigned i = 0; i < prog.bf_len; i++) {
    out[i] = {prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf, prog.bf_insns[i].k};
  }
  return out;
}

uint32_t run_filter(const std::vector<fs_cbpf_insn>& prog, const uint8_t* pkt, uint32_t caplen, uint32_t wirelen) {
  if (prog.empty()) return 1;
  uint8_t buf[FS_CBPF_BUF] = {};
  if (caplen > FS_CBPF_PKT_MAX) caplen = FS_CBPF_PKT_MAX;
  std::memcpy(buf, pkt, caplen);
  fs_cbpf_vm vm{};
  const uint32_t len = static_cast<uint32_t>(prog.size());
  for (uint32_t i = 0; i < FS_CBPF_MAX_INSNS && !vm.done; i++) {
    if (vm.pc >= len) break;
    fs_cbpf_step(&vm, &prog[vm.pc], len, buf, caplen, wirelen);
  }
  return vm.done ? vm.ret : 0;
}

Result<std::pair<uint32_t, uint32_t>> parse_mark(const std::string& spec) {
  auto num = [](const std::string& s) -> std::optional<uint32_t> {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s.c_str(), &end, 0);
    if (errno || *end || v > 0xffffffffUL || s[0] == '-') return std::nullopt;
    return static_cast<uint32_t>(v);
  };
  auto slash = spec.find('/');
  auto value = num(spec.substr(0, slash));
  auto mask = slash == std::string::npos ? std::optional<uint32_t>(0xffffffffu) : num(spec.substr(slash + 1));
  if (!value || !mask || *mask == 0) return fail("bad --mark \"{}\": expected VALUE[/MASK] (decimal or 0x hex, mask not 0)", spec);
  return std::pair{*value & *mask, *mask};
}

}  // namespace flowscope::trace
