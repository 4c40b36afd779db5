#include "trace/filter.h"

#include <pcap/pcap.h>

#include <algorithm>
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

namespace {

// Upper bounds of the values A, X and the scratch memory can hold at one
// instruction (kAny: anything a u32 can be).
constexpr uint64_t kAny = 0xffffffffull;
struct Bounds {
  uint64_t a = 0, x = 0;
  uint64_t mem[16] = {};
  void merge(const Bounds& o) {
    a = std::max(a, o.a);
    x = std::max(x, o.x);
    for (int i = 0; i < 16; i++) mem[i] = std::max(mem[i], o.mem[i]);
  }
};

uint64_t sat(uint64_t v) { return std::min(v, kAny); }
// The largest value with no bit above the highest bit of v.
uint64_t smear(uint64_t v) {
  uint64_t m = 0;
  while (m < v) m = (m << 1) | 1;
  return m;
}

}  // namespace

uint32_t filter_bytes_needed(const std::vector<fs_cbpf_insn>& prog) {
  const size_t n = prog.size();
  std::vector<std::optional<Bounds>> in(n);
  if (n) in[0] = Bounds{};
  uint64_t need = 0;
  auto flow = [&](size_t to, const Bounds& b) {
    if (to >= n) return;  // off the end: the program stops with no match
    if (in[to]) in[to]->merge(b);
    else in[to] = b;
  };
  for (size_t pc = 0; pc < n; pc++) {
    if (!in[pc]) continue;  // unreachable
    Bounds b = *in[pc];
    const fs_cbpf_insn& i = prog[pc];
    const uint64_t k = i.k;
    const uint64_t size = fs_cbpf_size(i.code);
    const uint64_t loaded = size == 1 ? 0xff : size == 2 ? 0xffff : kAny;
    switch (FS_CBPF_CLASS(i.code)) {
      case 0x00:  // LD
        switch (FS_CBPF_MODE(i.code)) {
          case 0x00: b.a = k; break;
          case 0x20: need = std::max(need, k + size); b.a = loaded; break;
          case 0x40: need = std::max(need, k + b.x + size); b.a = loaded; break;
          case 0x60: b.a = b.mem[k & 15]; break;
          default: b.a = kAny; break;
        }
        break;
      case 0x01:  // LDX
        switch (FS_CBPF_MODE(i.code)) {
          case 0x00: b.x = k; break;
          case 0x60: b.x = b.mem[k & 15]; break;
          case 0xa0: need = std::max(need, k + 1); b.x = 60; break;
          default: b.x = kAny; break;
        }
        break;
      case 0x02: b.mem[k & 15] = b.a; break;
      case 0x03: b.mem[k & 15] = b.x; break;
      case 0x04: {  // ALU
        const uint64_t src = FS_CBPF_SRC(i.code) ? b.x : k;
        const bool is_k = !FS_CBPF_SRC(i.code);
        switch (FS_CBPF_OP(i.code)) {
          case 0x00: b.a = sat(b.a + src); break;
          case 0x20: b.a = sat(b.a * src); break;
          case 0x30: break;  // A / src <= A
          case 0x90: b.a = std::min(b.a, src ? src - 1 : 0); break;
          case 0x50: b.a = std::min(b.a, src); break;
          case 0x40: case 0xa0: b.a = smear(std::max(b.a, src)); break;
          case 0x60: b.a = is_k ? (k < 32 ? sat(b.a << k) : 0) : kAny; break;
          case 0x70: b.a = is_k ? (k < 32 ? b.a >> k : 0) : b.a; break;
          default: b.a = kAny; break;  // SUB (wraps), NEG
        }
        break;
      }
      case 0x05:  // JMP
        if (FS_CBPF_OP(i.code) == 0x00) {
          flow(pc + 1 + k, b);
        } else {
          flow(pc + 1 + i.jt, b);
          flow(pc + 1 + i.jf, b);
        }
        continue;
      case 0x06: continue;  // RET
      case 0x07:
        if (FS_CBPF_MISCOP(i.code) == 0x00) b.x = b.a;
        else b.a = b.x;
        break;
    }
    flow(pc + 1, b);
  }
  return static_cast<uint32_t>(std::min<uint64_t>(need, FS_CBPF_PKT_MAX));
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
