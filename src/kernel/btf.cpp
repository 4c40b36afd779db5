#include "kernel/btf.h"

#include <cerrno>
#include <cstring>

#include <bpf/btf.h>

namespace flowscope {

Result<BtfPtr> load_kernel_btf() {
  btf* b = btf__load_vmlinux_btf();
  if (!b) {
    return fail_errno(errno, "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {}; flowscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
                std::strerror(errno));
  }
  return BtfPtr(b);
}

std::map<int64_t, std::string> enum_names(const btf* b, const std::string& enum_name,
                                          const std::string& strip_prefix) {
  std::map<int64_t, std::string> out;
  int id = btf__find_by_name_kind(b, enum_name.c_str(), BTF_KIND_ENUM);
  if (id < 0) id = btf__find_by_name_kind(b, enum_name.c_str(), BTF_KIND_ENUM64);
  if (id < 0) return out;
  const btf_type* t = btf__type_by_id(b, id);
  const uint16_t n = btf_vlen(t);
  auto add = [&](const char* name, int64_t v) {
    std::string s = name;
    if (s.rfind(strip_prefix, 0) == 0) s.erase(0, strip_prefix.size());
    out.emplace(v, std::move(s));
  };
  if (btf_is_enum(t)) {
    const struct btf_enum* e = btf_enum(t);
    for (uint16_t i = 0; i < n; i++) add(btf__name_by_offset(b, e[i].name_off), e[i].val);
  } else {
    const struct btf_enum64* e = btf_enum64(t);
    for (uint16_t i = 0; i < n; i++)
      add(btf__name_by_offset(b, e[i].name_off), static_cast<int64_t>(btf_enum64_value(&e[i])));
  }
  return out;
}

namespace {

std::string type_name(const btf* b, uint32_t id) {
  std::string prefix, suffix;
  for (int depth = 0; depth < 16; depth++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!t) return "?";
    switch (btf_kind(t)) {
      case BTF_KIND_PTR:
        suffix = " *" + suffix;
        id = t->type;
        continue;
      case BTF_KIND_CONST:
        prefix = "const " + prefix;
        id = t->type;
        continue;
      case BTF_KIND_VOLATILE:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG:
        id = t->type;
        continue;
      case BTF_KIND_STRUCT:
        return prefix + "struct " + btf__name_by_offset(b, t->name_off) + suffix;
      case BTF_KIND_UNION:
        return prefix + "union " + btf__name_by_offset(b, t->name_off) + suffix;
      case BTF_KIND_ENUM:
      case BTF_KIND_ENUM64:
        return prefix + "enum " + btf__name_by_offset(b, t->name_off) + suffix;
      case BTF_KIND_FUNC_PROTO:
        return prefix + "fn" + suffix;
      default:
        if (t->name_off == 0 && id == 0) return prefix + "void" + suffix;
        return prefix + btf__name_by_offset(b, t->name_off) + suffix;
    }
  }
  return "?";
}

const btf_type* trace_proto(const btf* b, const std::string& tp) {
  int id = btf__find_by_name_kind(b, ("btf_trace_" + tp).c_str(), BTF_KIND_TYPEDEF);
  if (id < 0) return nullptr;
  const btf_type* t = btf__type_by_id(b, id);  // typedef -> ptr -> func_proto
  t = btf__type_by_id(b, t->type);
  if (!t || !btf_is_ptr(t)) return nullptr;
  t = btf__type_by_id(b, t->type);
  if (!t || !btf_is_func_proto(t)) return nullptr;
  return t;
}

}  // namespace

std::vector<TracepointInfo> kernel_tracepoints(const btf* b) {
  std::vector<TracepointInfo> out;
  const uint32_t n = btf__type_cnt(b);
  for (uint32_t id = 1; id < n; id++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!btf_is_typedef(t)) continue;
    const char* name = btf__name_by_offset(b, t->name_off);
    if (std::strncmp(name, "btf_trace_", 10) != 0) continue;
    const btf_type* proto = trace_proto(b, name + 10);
    if (!proto) continue;
    TracepointInfo info{name + 10, {}};
    const btf_param* p = btf_params(proto);
    for (uint16_t i = 1; i < btf_vlen(proto); i++) info.args.push_back({type_name(b, p[i].type)});
    out.push_back(std::move(info));
  }
  return out;
}

int tracepoint_arg_count(const btf* b, const std::string& name) {
  const btf_type* proto = trace_proto(b, name);
  return proto ? static_cast<int>(btf_vlen(proto)) - 1 : -1;
}

}  // namespace flowscope
