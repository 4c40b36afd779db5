#include "trace/functions.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>

#include <bpf/btf.h>
#include <fmt/format.h>

namespace flowscope::trace {

namespace {

// Follows const/volatile/typedef to the type that matters.
int skip_mods(const btf* b, int id) {
  for (int guard = 0; guard < 16 && id > 0; guard++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!t) return -1;
    const int k = btf_kind(t);
    if (k != BTF_KIND_CONST && k != BTF_KIND_VOLATILE && k != BTF_KIND_TYPEDEF && k != BTF_KIND_RESTRICT &&
        k != BTF_KIND_TYPE_TAG)
      return id;
    id = static_cast<int>(t->type);
  }
  return -1;
}

bool is_skb_pointer(const btf* b, int id) {
  id = skip_mods(b, id);
  const btf_type* t = id > 0 ? btf__type_by_id(b, id) : nullptr;
  if (!t || !btf_is_ptr(t)) return false;
  const int to = skip_mods(b, static_cast<int>(t->type));
  const btf_type* s = to > 0 ? btf__type_by_id(b, to) : nullptr;
  if (!s || !btf_is_struct(s)) return false;
  const char* name = btf__name_by_offset(b, s->name_off);
  return name && std::string_view(name) == "sk_buff";
}

void collect(const btf* b, int first_id, const std::string& module, const std::regex* re,
             const std::unordered_set<std::string>& probeable, std::vector<SkbFunction>& out) {
  const int n = static_cast<int>(btf__type_cnt(b));
  for (int id = first_id; id < n; id++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!t || !btf_is_func(t)) continue;
    const int pos = skb_param_position(b, id);
    if (pos < 0) continue;
    std::string name = btf__name_by_offset(b, t->name_off);
    if (re && !std::regex_search(name, *re)) continue;
    if (!probeable.empty() && !probeable.count(name)) continue;
    out.push_back({std::move(name), module, pos});
  }
}

}  // namespace

int skb_param_position(const btf* b, int func_id) {
  const btf_type* f = btf__type_by_id(b, func_id);
  if (!f || !btf_is_func(f)) return -1;
  const btf_type* proto = btf__type_by_id(b, f->type);
  if (!proto || !btf_is_func_proto(proto)) return -1;
  const btf_param* p = btf_params(proto);
  const int n = std::min<int>(btf_vlen(proto), kMaxFunctionSkbArg + 1);
  for (int i = 0; i < n; i++)
    if (is_skb_pointer(b, static_cast<int>(p[i].type))) return i;
  return -1;
}

std::unordered_set<std::string> probeable_functions() {
  std::unordered_set<std::string> out;
  for (const char* path :
       {"/sys/kernel/tracing/available_filter_functions", "/sys/kernel/debug/tracing/available_filter_functions"}) {
    std::ifstream in(path);
    if (!in) continue;
    std::string line;
    while (std::getline(in, line)) {
      const auto sp = line.find_first_of(" \t");
      out.insert(sp == std::string::npos ? line : line.substr(0, sp));
    }
    if (!out.empty()) break;
  }
  return out;
}

Result<std::vector<SkbFunction>> skb_functions(const btf* vmlinux, const std::string& regex,
                                               const std::unordered_set<std::string>& probeable) {
  std::optional<std::regex> re;
  if (!regex.empty()) {
    try {
      re.emplace(regex, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      return fail("bad --functions regular expression \"{}\": {}", regex, e.what());
    }
  }
  std::vector<SkbFunction> out;
  collect(vmlinux, 1, "", re ? &*re : nullptr, probeable, out);
  // Modules' BTF is split BTF on top of the image's: their own types start
  // where the image's end.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/kernel/btf", ec)) {
    const std::string mod = e.path().filename().string();
    if (mod == "vmlinux") continue;
    BtfPtr m(btf__parse_split(e.path().c_str(), const_cast<btf*>(vmlinux)));
    if (!m) continue;  // a module unloaded meanwhile
    collect(m.get(), static_cast<int>(btf__type_cnt(vmlinux)), mod, re ? &*re : nullptr, probeable, out);
  }
  std::sort(out.begin(), out.end(), [](const SkbFunction& x, const SkbFunction& y) { return x.name < y.name; });
  out.erase(std::unique(out.begin(), out.end(), [](const SkbFunction& x, const SkbFunction& y) { return x.name == y.name; }),
            out.end());
  return out;
}

}  // namespace flowscope::trace
