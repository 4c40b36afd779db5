#include "trace/kallsyms.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace flowscope::trace {

Kallsyms Kallsyms::load(const std::string& path) {
  Kallsyms k;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext [module]"
    std::istringstream ls(line);
    std::string addr, type, name;
    if (!(ls >> addr >> type >> name)) continue;
    if (type != "t" && type != "T" && type != "w" && type != "W") continue;
    uint64_t a = std::strtoull(addr.c_str(), nullptr, 16);
    if (a == 0) continue;
    k.syms_.push_back({a, std::move(name)});
  }
  std::sort(k.syms_.begin(), k.syms_.end(), [](const Sym& x, const Sym& y) { return x.addr < y.addr; });
  return k;
}

const Kallsyms::Sym* Kallsyms::find(uint64_t addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr, [](uint64_t a, const Sym& s) { return a < s.addr; });
  if (it == syms_.begin()) return nullptr;
  return &*std::prev(it);
}

std::string Kallsyms::symbolize(uint64_t addr) const {
  const Sym* s = addr ? find(addr) : nullptr;
  if (!s) return fmt::format("{:#x}", addr);
  return fmt::format("{}+{:#x}", s->name, addr - s->addr);
}

std::string Kallsyms::function(uint64_t addr) const {
  const Sym* s = addr ? find(addr) : nullptr;
  return s ? s->name : std::string();
}

}  // namespace flowscope::trace
