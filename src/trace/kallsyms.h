// Kernel addresses to "function+0xoffset" from /proc/kallsyms (read as root,
// or addresses read as zero and nothing resolves).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowscope::trace {

class Kallsyms {
 public:
  // Reads /proc/kallsyms (or `path`); empty table when unreadable.
  static Kallsyms load(const std::string& path = "/proc/kallsyms");
  // "sym+0x1c", or "0xffff..." when no symbol covers the address.
  std::string symbolize(uint64_t addr) const;
  // Just the function name, "" when unknown.
  std::string function(uint64_t addr) const;
  size_t size() const { return syms_.size(); }

 private:
  struct Sym {
    uint64_t addr;
    std::string name;
  };
  const Sym* find(uint64_t addr) const;
  std::vector<Sym> syms_;
};

}  // namespace flowscope::trace
